//! Timestep planning: diffusers' `set_timesteps` for each class, in this crate's terms (the
//! timesteps, sigmas and `init_noise_sigma` diffusers computes, and the steps the loop takes).
//! The spacings are the crate's one copy ([`crate::grid`]'s diffusers spacing), the sigma
//! conversions those of [`super::tables`]. This file has the DDPM-table classes (DDIM, PNDM, the
//! multistep family); the sigma-based ones are in `timesteps_sigma.rs`.

use super::config::{cfg_err, FinalSigmas, SchedulerClass, TimestepSpacing};
use super::resolve::{Conversion, Resolved};
use super::sampler::SetTimesteps;
use super::tables;
use super::timesteps_sigma::{heun_interleave, needs_mu, stretch_to_terminal, time_shift, FlowBase};
use super::{DdimTarget, TablePrecision, TimestepRounding};
use crate::error::{Error, Result};
use crate::grid::{diffusers_timesteps, DiffusersTimesteps, Step};
use crate::math::numpy::{interp, linspace, log_f32};
use crate::schedule::Point;
use crate::solvers::pndm_points;

/// A planner's output for one step count.
pub(crate) struct Timetable {
    /// diffusers' `scheduler.timesteps`.
    pub timesteps: Vec<f64>,
    /// diffusers' `scheduler.sigmas` (empty for DDIM, DDPM, PNDM).
    pub sigmas: Vec<f64>,
    /// diffusers' `init_noise_sigma`.
    pub init_noise_sigma: f64,
    /// The steps (all [`crate::StepKind::Solve`]).
    pub steps: Vec<Step>,
    /// The class works on `x / alpha` (times `sigma_data` for the EDM-style classes).
    pub scaled: bool,
    /// The EDM-style classes' `sigma_data` (1 for the others).
    pub sigma_data: f64,
    /// diffusers' `num_inference_steps` after `set_timesteps`.
    pub inference_steps: usize,
}

impl Timetable {
    pub(super) fn new(timesteps: Vec<f64>, sigmas: Vec<f64>, steps: Vec<Step>) -> Timetable {
        let inference_steps = steps.len();
        Timetable { timesteps, sigmas, init_noise_sigma: 1.0, steps, scaled: false, sigma_data: 1.0, inference_steps }
    }
}

/// Where the Euler-type planners start from: spaced timesteps, or a custom list.
#[derive(Clone, Copy)]
pub(super) enum EulerBase<'a> {
    Steps(usize),
    Timesteps(&'a [f64]),
    /// Custom sigmas, the final one included.
    Sigmas(&'a [f64]),
}

/// The error for a custom list a class's `set_timesteps` does not take (or not with its options).
pub(super) fn refuse_list<T>(argument: &str, message: impl Into<String>) -> Result<T> {
    cfg_err(argument, message)
}

impl DiffusersTimesteps {
    /// The rule of a config's `timestep_spacing` for a table of `n_train` timesteps and `steps`
    /// inference steps (trailing strides by `n_train / steps`).
    pub(super) fn of(
        spacing: TimestepSpacing,
        steps_offset: usize,
        n_train: usize,
        steps: usize,
    ) -> DiffusersTimesteps {
        match spacing {
            TimestepSpacing::Leading => DiffusersTimesteps::Leading { steps_offset },
            TimestepSpacing::Linspace => DiffusersTimesteps::Linspace { round: true },
            TimestepSpacing::Trailing => DiffusersTimesteps::Trailing { stride: n_train as f64 / steps as f64 },
        }
    }
}

impl Resolved {
    /// diffusers' timetable after `set_timesteps(request)` (`mu`: dynamic shifting).
    pub(crate) fn timetable(&self, request: &SetTimesteps, mu: Option<f64>) -> Result<Timetable> {
        match request {
            SetTimesteps::Steps(steps) => self.timetable_steps(*steps, mu),
            SetTimesteps::Timesteps(ts) => self.custom_timesteps(ts, mu),
            SetTimesteps::Sigmas(sigmas) => self.custom_sigmas(sigmas, mu),
            SetTimesteps::Both { timesteps, sigmas } => {
                if self.class != SchedulerClass::FlowMatchEulerDiscrete {
                    return refuse_list(
                        "sigmas",
                        format!(
                            "{}.set_timesteps does not take timesteps and sigmas together (only \
                             FlowMatchEulerDiscreteScheduler does)",
                            self.class.name()
                        ),
                    );
                }
                self.plan_flow_match(FlowBase::Both(timesteps, sigmas), mu)
            }
        }
    }

    pub(super) fn timetable_steps(&self, steps: usize, mu: Option<f64>) -> Result<Timetable> {
        use SchedulerClass as C;
        match self.class {
            C::Ddim | C::Ddpm => self.plan_ddim(steps),
            C::DdimInverse => self.plan_ddim_inverse(steps),
            C::Pndm => self.plan_pndm(steps),
            C::DpmSolverMultistep | C::DpmSolverSinglestep | C::DeisMultistep | C::UniPcMultistep | C::SaSolver => {
                self.plan_multistep(steps, mu, None)
            }
            C::DpmSolverMultistepInverse => self.plan_dpm_inverse(steps),
            C::EulerDiscrete | C::HeunDiscrete | C::LmsDiscrete | C::EulerAncestralDiscrete => {
                self.plan_euler(EulerBase::Steps(steps))
            }
            C::FlowMatchEulerDiscrete => self.plan_flow_match(FlowBase::Steps(steps), mu),
            C::FlowMatchHeunDiscrete => Ok(heun_interleave(self.plan_flow_match(FlowBase::Steps(steps), mu)?)),
            C::KDpm2Discrete | C::KDpm2AncestralDiscrete | C::DpmSolverSde => self.plan_two_stage(steps),
            C::EdmEuler | C::EdmDpmSolverMultistep | C::CosineDpmSolverMultistep => self.plan_edm(steps, None),
            C::Lcm | C::Tcd => {
                let ts = self.lcm_timesteps(steps)?;
                self.plan_lcm(&ts)
            }
            C::Ipndm => self.plan_ipndm(steps),
        }
    }

    /// `set_timesteps(timesteps=[...])` where the class takes it (diffusers 0.42.1).
    pub(super) fn custom_timesteps(&self, ts: &[f64], mu: Option<f64>) -> Result<Timetable> {
        use SchedulerClass as C;
        let class = self.class;
        if ts.is_empty() {
            return refuse_list("timesteps", "is empty: give at least one timestep");
        }
        if let Some(t) = ts.iter().find(|t| !t.is_finite()) {
            return refuse_list("timesteps", format!("holds {t}: every timestep must be a finite number"));
        }
        // the options under which diffusers refuses custom timesteps
        let conversion = match self.conversion {
            Conversion::Karras => Some("use_karras_sigmas"),
            Conversion::Lu => Some("use_lu_lambdas"),
            Conversion::Exponential => Some("use_exponential_sigmas"),
            Conversion::Beta => Some("use_beta_sigmas"),
            Conversion::Flow => Some("use_flow_sigmas"),
            Conversion::Interp => None,
        };
        let takes = matches!(
            class,
            C::Ddpm | C::DpmSolverMultistep | C::DpmSolverSinglestep | C::EulerDiscrete | C::HeunDiscrete
        ) || matches!(class, C::Lcm | C::Tcd | C::FlowMatchEulerDiscrete);
        if !takes {
            return refuse_list(
                "timesteps",
                format!(
                    "{}.set_timesteps takes no custom timesteps (diffusers 0.42.1: DDPM, DPMSolverMultistep, \
                     DPMSolverSinglestep, EulerDiscrete, HeunDiscrete, FlowMatchEulerDiscrete, LCM and TCD do)",
                    class.name()
                ),
            );
        }
        if let (Some(key), false) = (conversion, class == C::FlowMatchEulerDiscrete) {
            return refuse_list("timesteps", format!("cannot be set with {key} = true (diffusers refuses it)"));
        }
        if class == C::EulerDiscrete && self.continuous_v {
            return refuse_list(
                "timesteps",
                "cannot be set with timestep_type = \"continuous\" and v_prediction (diffusers refuses it)",
            );
        }
        if class == C::FlowMatchEulerDiscrete {
            return self.plan_flow_match(FlowBase::Timesteps(ts), mu);
        }
        let last = (self.n_train - 1) as f64;
        let integer = matches!(class, C::Ddpm | C::DpmSolverMultistep | C::DpmSolverSinglestep | C::Lcm | C::Tcd);
        for (i, &t) in ts.iter().enumerate() {
            if integer && t.fract() != 0.0 {
                return refuse_list(
                    "timesteps",
                    format!(
                        "timesteps[{i}] = {t}: {} takes integer timesteps (diffusers would truncate it): pass integers",
                        class.name()
                    ),
                );
            }
            if !(0.0..=last).contains(&t) {
                return refuse_list(
                    "timesteps",
                    format!("timesteps[{i}] = {t} lies outside the table's 0..={last}: pass training timesteps"),
                );
            }
            if i > 0 && t >= ts[i - 1] {
                return refuse_list(
                    "timesteps",
                    format!("must be in descending order (diffusers' `custom_timesteps` check): timesteps[{i}] = {t}"),
                );
            }
        }
        match class {
            C::Ddpm => self.plan_ddim_on(ts.to_vec()),
            C::DpmSolverMultistep | C::DpmSolverSinglestep => self.plan_multistep(ts.len(), mu, Some(ts)),
            C::EulerDiscrete | C::HeunDiscrete => self.plan_euler(EulerBase::Timesteps(ts)),
            _ => self.plan_lcm(ts), // LCM, TCD
        }
    }

    /// `set_timesteps(sigmas=[...])` where the class takes it (diffusers 0.42.1).
    pub(super) fn custom_sigmas(&self, sigmas: &[f64], mu: Option<f64>) -> Result<Timetable> {
        use SchedulerClass as C;
        let class = self.class;
        if let Some(v) = sigmas.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return refuse_list("sigmas", format!("holds {v}: every sigma must be a finite number >= 0"));
        }
        match class {
            C::EulerDiscrete => {
                if sigmas.len() < 2 {
                    return refuse_list(
                        "sigmas",
                        "EulerDiscreteScheduler takes the sigmas of every step and the final one: give at least 2",
                    );
                }
                for i in 1..sigmas.len() {
                    if sigmas[i] >= sigmas[i - 1] {
                        return refuse_list(
                            "sigmas",
                            format!("must decrease strictly (sigmas[{i}] = {} after {})", sigmas[i], sigmas[i - 1]),
                        );
                    }
                }
                self.plan_euler(EulerBase::Sigmas(sigmas))
            }
            C::FlowMatchEulerDiscrete => self.plan_flow_match(FlowBase::Sigmas(sigmas), mu),
            C::UniPcMultistep => {
                if self.conversion != Conversion::Flow {
                    return refuse_list(
                        "sigmas",
                        "UniPCMultistepScheduler takes custom sigmas only with use_flow_sigmas = true (diffusers \
                         refuses them otherwise)",
                    );
                }
                if sigmas.is_empty() {
                    return refuse_list("sigmas", "is empty: give one flow sigma per step");
                }
                self.plan_multistep(sigmas.len(), mu, Some(sigmas))
            }
            C::EdmEuler => {
                if sigmas.is_empty() {
                    return refuse_list("sigmas", "is empty: give one ramp value per step");
                }
                self.plan_edm(sigmas.len(), Some(sigmas))
            }
            _ => refuse_list(
                "sigmas",
                format!(
                    "{}.set_timesteps takes no custom sigmas (diffusers 0.42.1: EulerDiscrete, \
                     FlowMatchEulerDiscrete, UniPCMultistep with flow sigmas and EDMEuler do)",
                    class.name()
                ),
            ),
        }
    }

    pub(super) fn f32(&self, x: f64) -> f64 {
        self.quirks.precision.round(x)
    }

    /// The table's k-sigmas `sqrt((1 - abar) / abar)` in the table's precision.
    pub(super) fn ksigmas(&self) -> Vec<f64> {
        let ac = &self.alphas_cumprod;
        match self.quirks.precision {
            TablePrecision::Float32 => ac.iter().map(|&a| ((1.0 - a as f32) / a as f32).sqrt() as f64).collect(),
            TablePrecision::Float64 => ac.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect(),
        }
    }

    pub(super) fn log_ksigmas(&self, ks: &[f64]) -> Vec<f64> {
        match self.quirks.precision {
            // numpy's float32 log, to the bit (diffusers' `np.log(sigmas)`)
            TablePrecision::Float32 => ks.iter().map(|&s| log_f32(s as f32) as f64).collect(),
            TablePrecision::Float64 => ks.iter().map(|s| s.ln()).collect(),
        }
    }

    /// The table's point at timestep `index`, labelled with time `t`.
    pub(super) fn vp_point(&self, t: f64, index: usize) -> Point {
        let a = self.alphas_cumprod[index];
        if a >= 1.0 {
            return Point::clean(t);
        }
        Point::new(t, a.sqrt(), (1.0 - a).sqrt())
    }

    /// A point from diffusers' k-sigma `ks = sigma / alpha` (0 = clean), or from a flow sigma.
    pub(super) fn sigma_point(&self, t: f64, s: f64, flow: bool) -> Point {
        if s == 0.0 {
            return Point::clean(t);
        }
        if flow {
            return Point::new(t, 1.0 - s, s);
        }
        let alpha = 1.0 / (s * s + 1.0).sqrt();
        Point::new(t, alpha, s * alpha)
    }

    pub(super) fn check_timesteps(&self, ts: &[f64], key: &str) -> Result<()> {
        let last = (self.n_train - 1) as f64;
        for &t in ts {
            if !(t >= 0.0 && t <= last) {
                return cfg_err(
                    key,
                    format!(
                        "gives timestep {t}, outside the table 0..={last} (diffusers would index out of range): \
                         change steps_offset, timestep_spacing or the step count"
                    ),
                );
            }
        }
        Ok(())
    }

    /// DDIM / DDPM / PNDM integer timesteps (`steps` of them), descending.
    pub(super) fn ddim_timesteps(&self, steps: usize) -> Result<Vec<f64>> {
        let n = self.n_train;
        if steps > n {
            return Err(Error::TooManySteps { steps, max: n });
        }
        let rule = DiffusersTimesteps::of(self.spacing, self.steps_offset, n, steps);
        let ts: Vec<f64> = diffusers_timesteps(rule, n, steps).into_iter().rev().collect();
        self.check_timesteps(&ts, "timestep_spacing")?;
        Ok(ts)
    }

    pub(super) fn plan_ddim(&self, steps: usize) -> Result<Timetable> {
        self.plan_ddim_on(self.ddim_timesteps(steps)?)
    }

    /// DDIM / DDPM steps through the descending integer timesteps `ts`.
    pub(super) fn plan_ddim_on(&self, ts: Vec<f64>) -> Result<Timetable> {
        let steps = ts.len();
        let stride = (self.n_train / steps) as i64;
        let final_point = |t: f64| if self.set_alpha_to_one { Point::clean(t) } else { self.vp_point(t, 0) };
        let count = ts.len();
        let mut out = Vec::with_capacity(count);
        for (i, &t) in ts.iter().enumerate() {
            let from = self.vp_point(t, t as usize);
            let to = match (self.quirks.ddim_target, self.class) {
                // DDPM's previous_timestep is the next grid timestep
                (_, SchedulerClass::Ddpm) | (DdimTarget::NextTimestep, _) => match ts.get(i + 1) {
                    Some(&tn) => self.vp_point(tn, tn as usize),
                    None => final_point(-1.0),
                },
                (DdimTarget::UniformStride, _) => {
                    let prev = t as i64 - stride;
                    if prev >= 0 {
                        self.vp_point(prev as f64, prev as usize)
                    } else {
                        final_point(prev as f64)
                    }
                }
            };
            out.push(Step::new(i, count, from, to));
        }
        Ok(Timetable::new(ts, Vec::new(), out))
    }

    pub(super) fn plan_ddim_inverse(&self, steps: usize) -> Result<Timetable> {
        let n = self.n_train;
        if steps > n {
            return Err(Error::TooManySteps { steps, max: n });
        }
        if self.spacing == TimestepSpacing::Linspace {
            return cfg_err("timestep_spacing", "DDIMInverseScheduler supports \"leading\" and \"trailing\" only");
        }
        let ts = diffusers_timesteps(DiffusersTimesteps::of(self.spacing, self.steps_offset, n, steps), n, steps);
        self.check_timesteps(&ts, "timestep_spacing")?;
        let stride = (n / steps) as i64;
        let count = ts.len();
        let mut out = Vec::with_capacity(count);
        for (i, &t) in ts.iter().enumerate() {
            let start = match self.quirks.ddim_target {
                DdimTarget::UniformStride => (t as i64 - stride).min(n as i64 - 1),
                DdimTarget::NextTimestep if i == 0 => -1,
                DdimTarget::NextTimestep => ts[i - 1] as i64,
            };
            // the model is called at `t`; the sample is taken to be at `start` (its alphas)
            let from = if start >= 0 {
                Point { t, ..self.vp_point(t, start as usize) }
            } else if self.set_alpha_to_one {
                Point::clean(t)
            } else {
                Point { t, ..self.vp_point(t, 0) }
            };
            out.push(Step::new(i, count, from, self.vp_point(t, t as usize)));
        }
        Ok(Timetable::new(ts, Vec::new(), out))
    }

    pub(super) fn plan_pndm(&self, steps: usize) -> Result<Timetable> {
        if steps < 4 && !self.skip_prk_steps {
            return cfg_err(
                "skip_prk_steps",
                format!(
                    "PNDM's Runge-Kutta warm-up needs at least 4 steps (with {steps} diffusers stops before the last \
                     timestep): ask for more steps or set skip_prk_steps"
                ),
            );
        }
        let ts = self.ddim_timesteps(steps)?;
        let stride = (self.n_train / steps) as f64;
        let uniform = self.quirks.ddim_target == DdimTarget::UniformStride;
        for w in ts.windows(2) {
            if w[0] - stride != w[1] && uniform {
                return cfg_err(
                    "timestep_spacing",
                    format!(
                        "PNDM with this spacing steps by {stride} from timestep {} but the next timestep is {}: \
                         diffusers' off-grid PNDM steps are not implemented; use \"leading\" (or a step count that \
                         divides num_train_timesteps with \"trailing\")",
                        w[0], w[1]
                    ),
                );
            }
        }
        let points = pndm_points(|t| self.vp_point(t, t as usize), &ts, stride, self.set_alpha_to_one, uniform);
        // diffusers' timesteps (prk_timesteps + plms_timesteps), from the ascending list
        let asc: Vec<f64> = ts.iter().rev().copied().collect();
        let n = asc.len();
        let timesteps: Vec<f64> = if self.skip_prk_steps {
            let mut v: Vec<f64> = asc[..n - 1].to_vec();
            if n >= 2 {
                v.push(asc[n - 2]);
            }
            v.push(asc[n - 1]);
            v.reverse();
            v
        } else {
            let half = ((self.n_train / steps) / 2) as f64;
            let last4 = &asc[n.saturating_sub(4)..];
            let mut prk: Vec<f64> = last4.iter().flat_map(|&a| [a, a + half]).collect();
            prk.pop();
            let rep: Vec<f64> = prk.iter().flat_map(|&a| [a, a]).collect();
            let mut prk: Vec<f64> = rep[1..rep.len() - 1].to_vec();
            prk.reverse();
            let mut plms: Vec<f64> = asc[..n.saturating_sub(3)].to_vec();
            plms.reverse();
            prk.extend(plms);
            prk
        };
        Ok(Timetable::new(timesteps, Vec::new(), Step::chain(&points)))
    }

    /// `lambda_min_clipped`'s last timestep (DPM-Solver family).
    pub(super) fn last_timestep(&self) -> Result<usize> {
        let n = self.n_train;
        let Some(clip) = self.lambda_min_clipped else { return Ok(n) };
        // searchsorted(flip(lambda_t), clip): count of table lambdas below `clip`
        let below = self
            .alphas_cumprod
            .iter()
            .filter(|&&a| {
                let lambda = match self.quirks.precision {
                    TablePrecision::Float32 => {
                        let a = a as f32;
                        (a.sqrt().ln() - (1.0 - a).sqrt().ln()) as f64
                    }
                    TablePrecision::Float64 => a.sqrt().ln() - (1.0 - a).sqrt().ln(),
                };
                lambda < clip
            })
            .count();
        if n - below < 2 {
            return cfg_err(
                "lambda_min_clipped",
                format!("{clip} clips away all but {} training timesteps: lower it", n - below),
            );
        }
        Ok(n - below)
    }

    /// Timesteps of the multistep classes: `steps + 1` spaced below `last_timestep`, the last (0)
    /// dropped (singlestep always spaces `linspace`); trailing strides from `last_timestep`.
    pub(super) fn multistep_timesteps(&self, steps: usize, last_timestep: usize) -> Result<Vec<f64>> {
        let spacing =
            if self.class == SchedulerClass::DpmSolverSinglestep { TimestepSpacing::Linspace } else { self.spacing };
        let rule = DiffusersTimesteps::of(spacing, self.steps_offset, self.n_train, steps);
        let spaced = diffusers_timesteps(rule, last_timestep, steps + 1);
        let ts: Vec<f64> = match rule {
            DiffusersTimesteps::Trailing { .. } => spaced.into_iter().rev().collect(),
            _ => spaced.into_iter().rev().take(steps).collect(),
        };
        if ts.is_empty() {
            return Err(Error::ZeroSteps);
        }
        // no range check: diffusers interpolates sigmas (np.interp clamps to the table's ends)
        Ok(ts)
    }

    /// The converted sigmas (Karras, exponential, beta, Lu) between the ends of `table_desc`.
    pub(super) fn convert(&self, table_desc: &[f64], steps: usize) -> Vec<f64> {
        let (in_min, in_max) = (table_desc[table_desc.len() - 1], table_desc[0]);
        // diffusers reads config.sigma_min / sigma_max whenever the config has them (any class)
        let (lo, hi) = (self.sigma_bounds.0.unwrap_or(in_min), self.sigma_bounds.1.unwrap_or(in_max));
        match self.conversion {
            Conversion::Karras => tables::karras(lo, hi, steps),
            Conversion::Exponential => tables::exponential(lo, hi, steps),
            Conversion::Beta => tables::beta_sigmas(lo, hi, steps),
            // diffusers' _convert_to_lu over the (float32) log-sigma table's ends
            Conversion::Lu => tables::lu_sigmas(self.log_ksigmas(&[in_min])[0], self.log_ksigmas(&[in_max])[0], steps),
            Conversion::Interp | Conversion::Flow => Vec::new(),
        }
    }

    /// Flow sigmas of the multistep classes (`use_flow_sigmas`), `steps` of them, descending.
    pub(super) fn multistep_flow_sigmas(&self, steps: usize, mu: Option<f64>) -> Vec<f64> {
        let n = self.n_train as f64;
        let shift = mu.map_or(self.flow.flow_shift, f64::exp);
        let mut s: Vec<f64> = linspace(1.0, 1.0 / n, steps + 1)
            .into_iter()
            .map(|a| 1.0 - a)
            .map(|s| shift * s / (1.0 + (shift - 1.0) * s))
            .collect();
        s.reverse();
        s.truncate(steps);
        s
    }

    /// The multistep classes; `custom`: DPMSolver's custom timesteps or UniPC's custom flow sigmas.
    pub(super) fn plan_multistep(&self, steps: usize, mu: Option<f64>, custom: Option<&[f64]>) -> Result<Timetable> {
        let class = self.class;
        let conv = self.conversion;
        let table = self.ksigmas();
        let log_table = self.log_ksigmas(&table);
        let exact = self.quirks.timestep_rounding == TimestepRounding::Exact;
        let final_type = if class.accepts("final_sigmas_type") { self.final_sigmas } else { FinalSigmas::SigmaMin };
        if self.flow_sigmas && conv != Conversion::Flow {
            return cfg_err(
                "use_flow_sigmas",
                "flow sigmas combined with karras / exponential / beta sigmas are not implemented",
            );
        }
        let flow = conv == Conversion::Flow;
        let (timesteps, sigmas): (Vec<f64>, Vec<f64>) = match conv {
            Conversion::Interp => {
                let ts = match custom {
                    Some(ts) => ts.to_vec(),
                    None => self.multistep_timesteps(steps, self.last_timestep()?)?,
                };
                let s = ts.iter().map(|&t| interp(t, &table)).collect();
                (ts, s)
            }
            Conversion::Flow => {
                let s = if class == SchedulerClass::UniPcMultistep {
                    self.unipc_flow_sigmas(steps, mu, custom)?
                } else {
                    self.multistep_flow_sigmas(steps, mu)
                };
                let n = self.n_train as f64;
                let ts = s.iter().map(|&x| if exact { x * n } else { (x * n).trunc() }).collect();
                (ts, s)
            }
            _ => {
                let desc: Vec<f64> = table.iter().rev().copied().collect();
                let s = self.convert(&desc, steps);
                let round = matches!(conv, Conversion::Karras | Conversion::Lu) && self.round_karras;
                let ts = s
                    .iter()
                    .map(|&x| {
                        let t = self.sigma_to_t(x, &log_table);
                        if exact {
                            t
                        } else if round {
                            t.round_ties_even()
                        } else {
                            t.trunc()
                        }
                    })
                    .collect();
                (ts, s)
            }
        };
        // the final sigma
        let own_last = if conv == Conversion::Interp { table[0] } else { sigmas[sigmas.len() - 1] };
        let sigma_last = match class {
            // DEIS, SA-Solver: the table's smallest sigma, or their converted sigmas' last one repeated
            SchedulerClass::DeisMultistep | SchedulerClass::SaSolver => Some(own_last),
            SchedulerClass::UniPcMultistep => match final_type {
                FinalSigmas::Zero => None,
                FinalSigmas::SigmaMin => Some(own_last),
            },
            _ => match final_type {
                FinalSigmas::Zero => None,
                FinalSigmas::SigmaMin => Some(table[0]),
            },
        };
        let mut all: Vec<f64> = sigmas.iter().map(|&s| self.f32(s)).collect();
        all.push(sigma_last.map_or(0.0, |s| self.f32(s)));
        let count = timesteps.len();
        let points: Vec<Point> = (0..=count)
            .map(|i| {
                let t = if i < count { timesteps[i] } else { 0.0 };
                self.sigma_point(t, all[i], flow)
            })
            .collect();
        Ok(Timetable::new(timesteps, all, Step::chain(&points)))
    }

    pub(super) fn unipc_flow_sigmas(&self, steps: usize, mu: Option<f64>, custom: Option<&[f64]>) -> Result<Vec<f64>> {
        let n = self.n_train as f64;
        let base: Vec<f64> = match custom {
            Some(c) => c.to_vec(),
            None => linspace(1.0, 1.0 / n, steps + 1)[..steps].to_vec(),
        };
        let mut s: Vec<f64> = if self.flow.dynamic {
            let mu = mu.ok_or_else(needs_mu)?;
            base.iter().map(|&t| time_shift(self.flow.time_shift, mu, t)).collect()
        } else {
            let shift = self.flow.flow_shift;
            base.iter().map(|&x| shift * x / (1.0 + (shift - 1.0) * x)).collect()
        };
        if let Some(term) = self.flow.shift_terminal {
            stretch_to_terminal(&mut s, term);
        }
        if (s[0] - 1.0).abs() < 1e-6 {
            s[0] -= 1e-6;
        }
        Ok(s)
    }

    pub(super) fn plan_dpm_inverse(&self, steps: usize) -> Result<Timetable> {
        if self.conversion != Conversion::Interp {
            return cfg_err(
                "use_karras_sigmas",
                "DPMSolverMultistepInverseScheduler with karras / exponential / beta / flow sigmas is not implemented \
                 (diffusers repeats the last sigma there); use the default sigmas",
            );
        }
        let table = self.ksigmas();
        let noisiest = self.last_timestep()? - 1;
        // ascending, the largest of `steps + 1` dropped (trailing: as the stride gives)
        let rule = DiffusersTimesteps::of(self.spacing, self.steps_offset, self.n_train, steps);
        let mut ts = diffusers_timesteps(rule, noisiest + 1, steps + 1);
        if !matches!(rule, DiffusersTimesteps::Trailing { .. }) {
            ts.truncate(steps);
        }
        // no range check: sigmas are interpolated (clamped to the table's ends)
        let mut all: Vec<f64> = ts.iter().map(|&t| self.f32(interp(t, &table))).collect();
        all.push(self.f32(table[noisiest]));
        // diffusers drops repeated timesteps but keeps the sigmas; the loop walks the unique ones
        if ts.windows(2).any(|w| w[0] == w[1]) {
            return cfg_err(
                "timestep_spacing",
                "these settings repeat a timestep (diffusers then misaligns its sigmas)",
            );
        }
        let count = ts.len();
        let points: Vec<Point> = (0..=count)
            .map(|i| self.sigma_point(if i < count { ts[i] } else { noisiest as f64 }, all[i], false))
            .collect();
        Ok(Timetable::new(ts, all, Step::chain(&points)))
    }
}
