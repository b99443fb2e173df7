//! Timestep planning, second half: the sigma-based classes (the Euler family, KDPM2 and
//! DPMSolverSDE's two-stage tables, the EDM classes, LCM / TCD, IPNDM and the flow-matching
//! classes); the DDPM-table classes are in [`super::timesteps`].

use super::config::{
    cfg_err, EdmSigmaSchedule, FinalSigmas, InterpolationType, SchedulerClass, TimeShiftType, TimestepSpacing,
};
use super::resolve::{Conversion, EdmClock, EdmNoise, Resolved};
use super::tables;
use super::timesteps::{refuse_list, EulerBase, Timetable};
use super::{FlowShift, TablePrecision, TimestepRounding};
use crate::error::{Error, Result};
use crate::grid::{diffusers_timesteps, DiffusersTimesteps, Step};
use crate::math::numpy::{interp, linspace, log_f32};
use crate::schedule::{torch_linspace_f32, Point, Scheduler};

impl Resolved {
    /// The spaced float32 timesteps of the Euler-type classes, descending (unrounded with
    /// `linspace`; `f32`: cast to float32 as Euler, Heun, LMS and KDPM2 do, DPMSolverSDE keeps
    /// float64).
    pub(super) fn euler_timesteps(&self, steps: usize, f32: bool) -> Result<Vec<f64>> {
        let n = self.n_train;
        if self.spacing == TimestepSpacing::Leading && n / steps == 0 {
            return Err(Error::TooManySteps { steps, max: n });
        }
        let rule = match DiffusersTimesteps::of(self.spacing, self.steps_offset, n, steps) {
            DiffusersTimesteps::Linspace { .. } => DiffusersTimesteps::Linspace { round: false },
            rule => rule,
        };
        // no range check: sigmas are interpolated (clamped to the table's ends)
        Ok(diffusers_timesteps(rule, n, steps)
            .into_iter()
            .rev()
            .map(|t| if f32 { t as f32 as f64 } else { t })
            .collect())
    }

    /// `init_noise_sigma` of the k-diffusion-style classes: the largest sigma, or with `leading`
    /// spacing `sqrt(sigma_max^2 + 1)` (float32).
    pub(super) fn k_init_noise_sigma(&self, sigmas: &[f64]) -> f64 {
        let max_sigma = sigmas.iter().cloned().fold(0.0f64, f64::max);
        match self.spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma,
            TimestepSpacing::Leading => self.f32((max_sigma * max_sigma + 1.0).sqrt()),
        }
    }

    pub(super) fn plan_euler(&self, base: EulerBase) -> Result<Timetable> {
        let class = self.class;
        let table = self.ksigmas();
        let log_table = self.log_ksigmas(&table);
        let final_sigma = if class == SchedulerClass::EulerDiscrete && self.final_sigmas == FinalSigmas::SigmaMin {
            table[0]
        } else {
            0.0
        };
        let (mut ts, all) = match base {
            EulerBase::Sigmas(custom) => {
                // float32 sigmas as given (the final one included); timesteps from _sigma_to_t in float32
                let all: Vec<f64> = custom.iter().map(|&s| self.f32(s)).collect();
                let log32: Vec<f32> = table.iter().map(|&s| log_f32(s as f32)).collect();
                let ts =
                    all[..all.len() - 1].iter().map(|&s| self.f32(tables::sigma_to_t_f32(s as f32, &log32))).collect();
                (ts, all)
            }
            EulerBase::Timesteps(custom) => {
                let ts = custom.iter().map(|&t| t as f32 as f64).collect();
                self.euler_sigmas(ts, custom.len(), &table, &log_table, final_sigma)
            }
            EulerBase::Steps(steps) => {
                let ts = self.euler_timesteps(steps, true)?;
                self.euler_sigmas(ts, steps, &table, &log_table, final_sigma)
            }
        };
        if self.continuous_v {
            ts = all[..all.len() - 1].iter().map(|&s| self.f32(0.25 * (s as f32).ln() as f64)).collect();
        }
        let count = ts.len();
        if all.len() < count + 1 {
            return cfg_err("interpolation_type", "diffusers' sigmas are shorter than its timesteps here");
        }
        let points: Vec<Point> =
            (0..=count).map(|i| self.sigma_point(if i < count { ts[i] } else { -1.0 }, all[i], false)).collect();
        let init_noise_sigma = self.k_init_noise_sigma(&all);
        let timesteps = if class == SchedulerClass::HeunDiscrete { heun_times(&ts) } else { ts };
        Ok(Timetable {
            timesteps,
            sigmas: all,
            init_noise_sigma,
            steps: Step::chain(&points),
            scaled: true,
            sigma_data: 1.0,
            inference_steps: count,
        })
    }

    /// Sigmas of the Euler-type classes at their float32 timesteps `ts` (`steps` of them),
    /// converted where the config says (the timesteps then from `_sigma_to_t`), float32, with the
    /// final sigma appended.
    pub(super) fn euler_sigmas(
        &self,
        mut ts: Vec<f64>,
        steps: usize,
        table: &[f64],
        log_table: &[f64],
        final_sigma: f64,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut sigmas: Vec<f64> = match self.interpolation {
            InterpolationType::Linear => ts.iter().map(|&t| interp(t, table)).collect(),
            InterpolationType::LogLinear => {
                // torch.linspace(log(sigmas[-1]), log(sigmas[0]), steps + 1).exp(), float32
                let (lo, hi) = (table[table.len() - 1], table[0]);
                match self.quirks.precision {
                    // np.log of the float32 table's ends (numpy's float32 log)
                    TablePrecision::Float32 => {
                        let (lo, hi) = (log_f32(lo as f32) as f64, log_f32(hi as f32) as f64);
                        torch_linspace_f32(lo, hi, steps + 1).into_iter().map(|v| v.exp() as f64).collect()
                    }
                    TablePrecision::Float64 => {
                        linspace(lo.ln(), hi.ln(), steps + 1).into_iter().map(f64::exp).collect()
                    }
                }
            }
        };
        if matches!(self.conversion, Conversion::Karras | Conversion::Exponential | Conversion::Beta) {
            sigmas = self.convert(&sigmas, steps);
            ts = sigmas.iter().map(|&s| self.f32(self.sigma_to_t(s, log_table))).collect();
        }
        let mut all: Vec<f64> = sigmas.iter().map(|&s| self.f32(s)).collect();
        all.push(self.f32(final_sigma));
        (ts, all)
    }

    /// diffusers' `_sigma_to_t` for a float64 sigma against the log-sigma table in the table's
    /// precision (a float32 table's differences are taken in float32, as numpy does).
    pub(super) fn sigma_to_t(&self, sigma: f64, log_table: &[f64]) -> f64 {
        tables::sigma_to_t(sigma, log_table, self.quirks.precision == TablePrecision::Float32)
    }

    /// KDPM2, KDPM2-ancestral and DPMSolverSDE: Euler-type sigmas, two model calls per step.
    /// diffusers' timesteps interleave each step's second-stage time (DPM-2: at the geometric mean
    /// of the step's noise levels, or of the noise level and the ancestral `sigma_down`;
    /// DPMSolverSDE: the midpoint in `-ln(sigma)`); the solver places that stage itself.
    pub(super) fn plan_two_stage(&self, steps: usize) -> Result<Timetable> {
        use SchedulerClass as C;
        let class = self.class;
        let sde = class == C::DpmSolverSde;
        let table = self.ksigmas();
        let log_table = self.log_ksigmas(&table);
        let mut ts = self.euler_timesteps(steps, !sde)?;
        let mut sigmas: Vec<f64> = ts.iter().map(|&t| interp(t, &table)).collect();
        let conversion = self.conversion;
        if matches!(conversion, Conversion::Karras | Conversion::Exponential | Conversion::Beta) {
            sigmas = if sde && conversion == Conversion::Karras {
                // DPMSolverSDE's own Karras conversion ignores a config's sigma_min / sigma_max
                tables::karras(sigmas[sigmas.len() - 1], sigmas[0], steps)
            } else {
                self.convert(&sigmas, steps)
            };
            ts = sigmas
                .iter()
                .map(|&s| {
                    let t = self.sigma_to_t(s, &log_table);
                    let exact = self.quirks.timestep_rounding == TimestepRounding::Exact;
                    // KDPM2's Karras timesteps are rounded, its other conversions' and DPMSolverSDE's not
                    if conversion == Conversion::Karras && !sde && !exact {
                        t.round_ties_even()
                    } else {
                        t
                    }
                })
                .collect();
        }
        let mut all: Vec<f64> = sigmas.iter().map(|&s| self.f32(s)).collect();
        all.push(0.0);
        let count = ts.len();
        let log32: Vec<f32> = table.iter().map(|&s| log_f32(s as f32)).collect();
        let t_of = |s: f64| tables::sigma_to_t_f32(s as f32, &log32);
        let geo = |a: f64, b: f64| self.f32((0.5 * (a.ln() + b.ln())).exp());
        // the second stage of step i (from all[i] to all[i + 1]), where diffusers calls the model
        let second: Vec<f64> = (0..count.saturating_sub(1))
            .map(|i| match class {
                C::KDpm2Discrete => t_of(geo(all[i], all[i + 1])),
                C::KDpm2AncestralDiscrete => {
                    // sigma_up and sigma_down as diffusers computes them, in float32 (the latter
                    // cancels to a few digits on the last two-stage step)
                    let (s, next) = (all[i] as f32, all[i + 1] as f32);
                    let up = (next * next * (s * s - next * next) / (s * s)).sqrt();
                    let down = (next * next - up * up).max(0.0).sqrt();
                    t_of(geo(s as f64, down as f64))
                }
                _ => self.sigma_to_t((sigmas[i] * sigmas[i + 1]).sqrt(), &log_table),
            })
            .collect();
        let mut timesteps = Vec::with_capacity(2 * count);
        for (i, &t0) in ts.iter().enumerate().take(count) {
            timesteps.push(t0);
            if let Some(&t) = second.get(i) {
                timesteps.push(t);
            }
        }
        let points: Vec<Point> =
            (0..=count).map(|i| self.sigma_point(if i < count { ts[i] } else { -1.0 }, all[i], false)).collect();
        Ok(Timetable {
            timesteps,
            init_noise_sigma: self.k_init_noise_sigma(&all),
            sigmas: all,
            steps: Step::chain(&points),
            scaled: true,
            sigma_data: 1.0,
            inference_steps: count,
        })
    }

    /// The EDM-style classes: noise levels from `sigma_min` / `sigma_max` (Karras or exponential),
    /// the network's time `c_noise(sigma)`; `ramp`: EDMEuler's custom `sigmas` (a ramp in `[0, 1]`
    /// that diffusers passes through its sigma schedule).
    pub(super) fn plan_edm(&self, steps: usize, ramp: Option<&[f64]>) -> Result<Timetable> {
        use SchedulerClass as C;
        let Some(e) = self.edm else {
            return cfg_err("_class_name", "internal: an EDM planner without EDM options");
        };
        let euler = self.class == C::EdmEuler;
        let (min_inv, max_inv) = (e.sigma_min.powf(1.0 / e.rho), e.sigma_max.powf(1.0 / e.rho));
        let sigmas: Vec<f64> = match e.schedule {
            EdmSigmaSchedule::Karras if euler => {
                // EDMEuler: a float64 ramp (or the custom one), float64 arithmetic, then float32
                let ramp = ramp.map_or_else(|| linspace(0.0, 1.0, steps), |r| r.to_vec());
                ramp.iter().map(|&r| self.f32((max_inv + r * (min_inv - max_inv)).powf(e.rho))).collect()
            }
            EdmSigmaSchedule::Karras => {
                // EDMDPMSolverMultistep / CosineDPMSolverMultistep: a float32 ramp, float32 arithmetic
                let d = (min_inv - max_inv) as f32;
                torch_linspace_f32(0.0, 1.0, steps)
                    .into_iter()
                    .map(|r| self.f32(((max_inv as f32 + r * d) as f64).powf(e.rho)))
                    .collect()
            }
            // torch.linspace(ln sigma_min, ln sigma_max, n) (float32).exp().flip(0), for every class
            EdmSigmaSchedule::Exponential => torch_linspace_f32(e.sigma_min.ln(), e.sigma_max.ln(), steps)
                .into_iter()
                .rev()
                .map(|v| self.f32((v as f64).exp()))
                .collect(),
        };
        if let Some(v) = sigmas.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return refuse_list("sigmas", format!("give the noise level {v}: a ramp must stay within [0, 1]"));
        }
        let timesteps: Vec<f64> = sigmas
            .iter()
            .map(|&s| match e.noise {
                EdmNoise::QuarterLog => self.f32(0.25 * s.ln()),
                EdmNoise::Atan => self.f32(s.atan() / std::f64::consts::FRAC_PI_2),
            })
            .collect();
        let last = match self.final_sigmas {
            FinalSigmas::Zero => 0.0,
            // EDMEuler repeats its last sigma, the multistep classes end at the config's sigma_min
            FinalSigmas::SigmaMin if euler => sigmas[sigmas.len() - 1],
            // (the last float32 Karras sigma can round below sigma_min: diffusers' final step then
            // goes up by an ulp, which is a repeated sigma here)
            FinalSigmas::SigmaMin => self.f32(e.sigma_min).min(sigmas[sigmas.len() - 1]),
        };
        let mut all = sigmas;
        all.push(last);
        let clock = EdmClock { sigma_data: e.sigma_data, noise: e.noise, range: (0.0, f64::MAX) };
        let count = timesteps.len();
        let points: Vec<Point> =
            (0..=count).map(|i| if all[i] == 0.0 { Point::clean(0.0) } else { clock.point(all[i]) }).collect();
        Ok(Timetable {
            timesteps,
            sigmas: all,
            init_noise_sigma: (e.sigma_max * e.sigma_max + 1.0).sqrt(),
            steps: Step::chain(&points),
            scaled: true,
            sigma_data: e.sigma_data,
            inference_steps: count,
        })
    }

    /// LCMScheduler's / TCDScheduler's timesteps for `steps` steps: `steps` of the
    /// `original_inference_steps` distillation timesteps `k i - 1` (`k = N // original`), evenly
    /// indexed from the noisiest.
    pub(super) fn lcm_timesteps(&self, steps: usize) -> Result<Vec<f64>> {
        let (n, original) = (self.n_train, self.original_steps);
        if original > n {
            return cfg_err(
                "original_inference_steps",
                format!(
                    "{original} exceeds num_train_timesteps {n}: the distillation schedule is a subset of the table"
                ),
            );
        }
        if steps > n {
            return Err(Error::TooManySteps { steps, max: n });
        }
        if steps > original {
            return Err(Error::InvalidConfig(format!(
                "{steps} steps exceed original_inference_steps = {original}: {} samples a subset of its {original} \
                 distillation timesteps (diffusers refuses it)",
                self.class.name()
            )));
        }
        let k = n / original;
        let origin: Vec<usize> = (1..=original).rev().map(|i| i * k - 1).collect();
        let step = origin.len() as f64 / steps as f64;
        Ok((0..steps).map(|i| origin[((i as f64 * step).floor() as usize).min(origin.len() - 1)] as f64).collect())
    }

    /// LCM / TCD steps through the descending integer timesteps `ts`: LCM's last step ends at
    /// its data prediction (clean), TCD's at timestep 0 of the table.
    pub(super) fn plan_lcm(&self, ts: &[f64]) -> Result<Timetable> {
        let count = ts.len();
        let end = if self.class == SchedulerClass::Tcd { self.vp_point(0.0, 0) } else { Point::clean(-1.0) };
        let mut points: Vec<Point> = ts.iter().map(|&t| self.vp_point(t, t as usize)).collect();
        points.push(end);
        let mut table = Timetable::new(ts.to_vec(), Vec::new(), Step::chain(&points));
        table.inference_steps = count;
        Ok(table)
    }

    /// IPNDMScheduler: its own cosine grid (`sigma = sin(pi s / 2)^2` for `s` from 1 down, in
    /// float32), or `trained_betas` as the noise levels of the steps.
    pub(super) fn plan_ipndm(&self, steps: usize) -> Result<Timetable> {
        let sigmas: Vec<f64> = match &self.ipndm_betas {
            Some(b) if b.len() != steps + 1 => {
                return cfg_err(
                    "trained_betas",
                    format!(
                        "IPNDMScheduler takes trained_betas as the noise levels of the steps and the end: {} values \
                         need {} steps, not {steps}",
                        b.len(),
                        b.len().saturating_sub(1)
                    ),
                )
            }
            Some(b) => b.iter().map(|&v| self.f32(v)).collect(),
            None => {
                let mut s: Vec<f64> = torch_linspace_f32(1.0, 0.0, steps + 1)[..steps]
                    .iter()
                    .map(|&v| {
                        let angle = (v * std::f32::consts::PI) / 2.0;
                        let sin = (angle as f64).sin() as f32;
                        (sin * sin) as f64
                    })
                    .collect();
                s.push(0.0);
                s
            }
        };
        let mut points = Vec::with_capacity(steps + 1);
        for &sigma in &sigmas {
            if !(0.0..=1.0).contains(&sigma) {
                return cfg_err("trained_betas", format!("gives the noise level {sigma}: IPNDM's must lie in [0, 1]"));
            }
            if sigma == 0.0 {
                points.push(Point::clean(0.0));
                continue;
            }
            let alpha = self.f32((1.0 - sigma * sigma).max(0.0).sqrt());
            let t = self.f32(sigma.atan2(alpha) / std::f64::consts::FRAC_PI_2);
            points.push(Point::new(t, alpha, sigma));
        }
        let timesteps: Vec<f64> = points[..steps].iter().map(|p| p.t).collect();
        Ok(Timetable::new(timesteps, sigmas, Step::chain(&points)))
    }

    pub(super) fn plan_flow_match(&self, base: FlowBase, mu: Option<f64>) -> Result<Timetable> {
        let n = self.n_train as f64;
        if let FlowBase::Both(t, s) = base {
            if t.len() != s.len() {
                return refuse_list(
                    "sigmas",
                    "`sigmas` and `timesteps` should have the same length (diffusers' check)",
                );
            }
        }
        for list in [base.timesteps(), base.sigmas()].into_iter().flatten() {
            if list.is_empty() || list.iter().any(|v| !v.is_finite()) {
                return refuse_list(
                    if base.sigmas().is_some() { "sigmas" } else { "timesteps" },
                    "must hold at least one finite value per step",
                );
            }
        }
        let steps = match base {
            FlowBase::Steps(steps) => steps,
            FlowBase::Timesteps(t) | FlowBase::Both(t, _) => t.len(),
            FlowBase::Sigmas(s) => s.len(),
        };
        let (shift, dynamic) = (self.flow.shift, self.flow.dynamic);
        // constructor: sigmas = linspace(1, N, N)[::-1] / N (float32), shifted unless dynamic
        let shift_f32 = |s: f32| -> f32 {
            let sh = shift as f32;
            sh * s / (1.0 + (sh - 1.0) * s)
        };
        let min_train = 1.0f32 / self.n_train as f32;
        let (sigma_max, sigma_min) = if dynamic || self.quirks.flow_shift == FlowShift::Single {
            (1.0f64, min_train as f64)
        } else {
            (shift_f32(1.0) as f64, shift_f32(min_train) as f64)
        };
        // custom lists are float32 (and so is everything numpy computes from them)
        let custom_ts: Option<Vec<f64>> = base.timesteps().map(|t| t.iter().map(|&v| v as f32 as f64).collect());
        let mut s: Vec<f64> = match (base.sigmas(), &custom_ts) {
            (Some(sig), _) => sig.iter().map(|&v| v as f32 as f64).collect(),
            (None, Some(t)) => t.iter().map(|&v| (v as f32 / self.n_train as f32) as f64).collect(),
            (None, None) => linspace(sigma_max * n, sigma_min * n, steps).iter().map(|t| t / n).collect(),
        };
        if dynamic {
            let mu = mu.ok_or_else(needs_mu)?;
            s = s.iter().map(|&t| time_shift(self.flow.time_shift, mu, t)).collect();
        } else {
            s = s.iter().map(|&x| shift * x / (1.0 + (shift - 1.0) * x)).collect();
        }
        if let Some(term) = self.flow.shift_terminal {
            stretch_to_terminal(&mut s, term);
        }
        if matches!(self.conversion, Conversion::Karras | Conversion::Exponential | Conversion::Beta) {
            s = self.convert(&s, steps);
        }
        let s: Vec<f64> = s.iter().map(|&x| self.f32(x)).collect();
        let ts: Vec<f64> = match custom_ts {
            Some(t) => t,
            None => s.iter().map(|&x| self.f32(x * n)).collect(),
        };
        let mut all = s.clone();
        all.push(0.0);
        let count = ts.len();
        let points: Vec<Point> =
            (0..=count).map(|i| self.sigma_point(if i < count { ts[i] } else { 0.0 }, all[i], true)).collect();
        if points.iter().any(|p| !(p.alpha >= 0.0 && p.sigma >= 0.0)) {
            return cfg_err("shift", "gives flow sigmas outside [0, 1]");
        }
        Ok(Timetable::new(ts, all, Step::chain(&points)))
    }
}

/// Where FlowMatchEuler's planner starts from: a step count or custom lists.
#[derive(Clone, Copy)]
pub(super) enum FlowBase<'a> {
    Steps(usize),
    Timesteps(&'a [f64]),
    Sigmas(&'a [f64]),
    Both(&'a [f64], &'a [f64]),
}

impl<'a> FlowBase<'a> {
    pub(super) fn timesteps(&self) -> Option<&'a [f64]> {
        match *self {
            FlowBase::Timesteps(t) | FlowBase::Both(t, _) => Some(t),
            _ => None,
        }
    }
    pub(super) fn sigmas(&self) -> Option<&'a [f64]> {
        match *self {
            FlowBase::Sigmas(s) | FlowBase::Both(_, s) => Some(s),
            _ => None,
        }
    }
}

/// The model times of a Heun-type class (the second stage at the next step's time): `t_0`, then
/// each later `t_i` twice (the step into `sigma = 0` is one stage).
pub(super) fn heun_times(ts: &[f64]) -> Vec<f64> {
    let mut v = Vec::with_capacity(2 * ts.len());
    if let Some(&first) = ts.first() {
        v.push(first);
    }
    for &t in ts.iter().skip(1) {
        v.push(t);
        v.push(t);
    }
    v
}

/// FlowMatchHeun: FlowMatchEuler's timetable with Heun's model times.
pub(super) fn heun_interleave(mut table: Timetable) -> Timetable {
    table.timesteps = heun_times(&table.timesteps);
    table
}

pub(super) fn needs_mu() -> Error {
    Error::DiffusersConfig {
        key: "use_dynamic_shifting".into(),
        message: "needs mu: call DiffusersSampler::mu (diffusers: set_timesteps(mu=...))".into(),
    }
}

pub(super) fn time_shift(kind: TimeShiftType, mu: f64, t: f64) -> f64 {
    match kind {
        TimeShiftType::Exponential => mu.exp() / (mu.exp() + (1.0 / t - 1.0)),
        TimeShiftType::Linear => mu / (mu + (1.0 / t - 1.0)),
    }
}

pub(super) fn stretch_to_terminal(s: &mut [f64], terminal: f64) {
    let last = 1.0 - s[s.len() - 1];
    let scale = last / (1.0 - terminal);
    for v in s.iter_mut() {
        *v = 1.0 - (1.0 - *v) / scale;
    }
}
