//! SA-Solver: stochastic Adams predictor-corrector (Xue et al. 2023, "SA-Solver: Stochastic
//! Adams Solver for Fast Sampling of Diffusion Models", arXiv:2309.05019, Algorithm 1, data
//! prediction, Eq. 15 (predictor) and 18 (corrector); ComfyUI's `sa_solver` and `sa_solver_pece`).
//!
//! The reverse SDE with noise fraction `tau^2` ([`crate::math::sde`]) is stepped by exponential
//! Adams methods: the predictor interpolates the last `p` data predictions by their Lagrange
//! polynomial in `lambda`, the corrector the last `c` including the one at the new point, and
//! both integrate it exactly against the kernel ([`crate::math::sde::polynomial_weights`]):
//!
//! `x_pred = (sigma_to / sigma) e^{-tau^2 h} x + sum_j b_j x0_j + sigma_to sqrt(1 - e^{-2 tau^2 h}) s_noise z`.
//!
//! A step evaluates the network at the predicted sample, redoes the previous step with the
//! corrector (adding the same noise as its predictor), and predicts the next point from the
//! corrected sample: one evaluation per step ([`SaMode::Pec`]); [`SaMode::Pece`] evaluates the
//! corrected sample again (2 NFE per step after the first). `tau` is `eta` on a band of noise
//! levels and 0 elsewhere ([`SaNoise`]); with `tau = 0` it is a deterministic exponential Adams
//! predictor-corrector of order `min(p + 1, c)` (4 for the default `p = 3`, `c = 4`). Orders are
//! limited by the predictions available, lowered on the last steps
//! ([`SaSolver::lower_order_final`]), and the step into `sigma = 0` returns the data prediction
//! (uncorrected in PEC mode, as ComfyUI). One noise draw per step with `tau > 0`.
//!
//! [`SaFlavor::Diffusers`] is diffusers' `SASolverScheduler` (data prediction): its orders are
//! lowered on the last steps as there (predictor `min(p, n - i)`, corrector `min(c, n - i + 2)` at
//! step `i` of `n`), its order-2 updates carry the extra `O(h^3)` term of its `step` (written in
//! the weights: `b_newest += d`, `b_second -= d`, `d = alpha_to k (h^2 / 2 - (k h - 1 + e^{-k h})
//! / k^2) / (lambda_newest - lambda_second)`, `k = 1 + tau^2`), and it draws one noise per step
//! whether `tau` is 0 or not (its `randn_tensor` call), so recorded diffusers noise lines up.

use std::collections::VecDeque;

use candle_core::Tensor;

use super::{refuse_zero_alpha_start, Solver, StepContext};
use crate::error::{config_err, Error, Result};
use crate::grid::Step;
use crate::math::sde::{polynomial_weights, sde_weights};
use crate::math::LowerOrderFinal;
use crate::ops::lincomb;
use crate::schedule::{Point, Scheduler};

/// Whether the corrected sample is evaluated again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SaMode {
    /// Predict-evaluate-correct: the corrector reuses the evaluation at the predicted sample
    /// (ComfyUI's `sa_solver`), 1 NFE per step.
    #[default]
    Pec,
    /// Predict-evaluate-correct-evaluate (ComfyUI's `sa_solver_pece`): 2 NFE per step after the
    /// first.
    Pece,
}

/// The SA-Solver variant: ComfyUI's (the default) or diffusers' `SASolverScheduler` (see the
/// module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SaFlavor {
    /// ComfyUI's `sa_solver`.
    #[default]
    ComfyUi,
    /// diffusers' `SASolverScheduler` with `algorithm_type = "data_prediction"`.
    Diffusers,
}

/// Where SA-Solver adds noise: the stochasticity `tau` as a function of the noise level
/// `s = sigma / alpha` of the step's end, or ([`SaNoise::ModelTimes`]) of the model time of
/// the step's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SaNoise {
    /// `tau = 0` everywhere: the deterministic predictor-corrector.
    Ode,
    /// `tau = eta` for `s_min <= s <= s_max`, else 0.
    Sigmas {
        /// Stochasticity inside the band.
        eta: f64,
        /// Lower end of the band.
        s_min: f64,
        /// Upper end of the band.
        s_max: f64,
    },
    /// `tau = eta` between the noise levels at fractions `start < end` of the model's time range
    /// counted from its noisy end (ComfyUI's default: `start = 0.2`, `end = 0.8`, `eta = 1`,
    /// its `percent_to_sigma`: the time `t_max - fraction (t_max - t_min)`).
    Percent {
        /// Stochasticity inside the band.
        eta: f64,
        /// Fraction of the time range where the band starts (noisier end).
        start: f64,
        /// Fraction where it ends.
        end: f64,
    },
    /// `tau = eta` where the model time of the step's start lies in `[t_min, t_max]` (diffusers'
    /// default `tau_func`: `eta = 1` on timesteps 200 to 800).
    ModelTimes {
        /// Stochasticity inside the band.
        eta: f64,
        /// Lower end of the band.
        t_min: f64,
        /// Upper end of the band.
        t_max: f64,
    },
}

impl SaNoise {
    fn tau(&self, schedule: &dyn Scheduler, from: &Point, to: &Point) -> f64 {
        let s = to.ksigma();
        let (eta, lo, hi) = match *self {
            SaNoise::Ode => return 0.0,
            SaNoise::ModelTimes { eta, t_min, t_max } => {
                let t = schedule.model_time(from.t);
                return if eta > 0.0 && t_min <= t && t <= t_max { eta } else { 0.0 };
            }
            SaNoise::Sigmas { eta, s_min, s_max } => (eta, s_min, s_max),
            SaNoise::Percent { eta, start, end } => {
                let (t_min, t_max) = schedule.t_range();
                let at = |f: f64| schedule.point(t_max - f * (t_max - t_min)).ksigma();
                (eta, at(end), at(start))
            }
        };
        if eta > 0.0 && lo <= s && s <= hi {
            eta
        } else {
            0.0
        }
    }
}

/// SA-Solver (data prediction). The default is ComfyUI's `sa_solver`: predictor order 3,
/// corrector order 4, noise `tau = 1` between 20% and 80% of the schedule, PEC, orders lowered
/// on the last steps.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{nfe_of, sample, DiscreteVp, End, Grid, Model, Prediction, SaMode, SaSolver, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let pece = SaSolver { mode: SaMode::Pece, ..SaSolver::default() };
/// let x = sample(&pece, &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// assert_eq!((model.nfe(), nfe_of(&pece, grid.as_ref())), (19, 19));
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SaSolver {
    /// Predictor order `p` (1-4): data predictions interpolated by the predictor.
    pub predictor_order: usize,
    /// Corrector order `c` (0-4; 0 = no corrector): predictions interpolated by the corrector,
    /// the new one included.
    pub corrector_order: usize,
    /// PEC or PECE.
    pub mode: SaMode,
    /// Where noise is added.
    pub noise: SaNoise,
    /// Scale of the added noise.
    pub s_noise: f64,
    /// Lower the orders on the last steps: predictor order at most `n - 1 - i` and corrector
    /// order at most `n - i` at step `i` of `n` (ComfyUI does this when the grid ends at
    /// `sigma = 0`; use `Never` to match it on grids that end above 0). [`SaFlavor::Diffusers`]
    /// lowers them as diffusers does (see the module docs).
    pub lower_order_final: LowerOrderFinal,
    /// ComfyUI's or diffusers' variant.
    pub flavor: SaFlavor,
}

impl Default for SaSolver {
    fn default() -> Self {
        SaSolver {
            predictor_order: 3,
            corrector_order: 4,
            mode: SaMode::Pec,
            noise: SaNoise::Percent { eta: 1.0, start: 0.2, end: 0.8 },
            s_noise: 1.0,
            lower_order_final: LowerOrderFinal::Always,
            flavor: SaFlavor::ComfyUi,
        }
    }
}

impl SaSolver {
    /// diffusers' `SASolverScheduler` (data prediction) with its `predictor_order`,
    /// `corrector_order` and `lower_order_final`, and its default `tau_func` (`tau = 1` on
    /// timesteps 200 to 800).
    ///
    /// ```
    /// use diffusion_samplers::{SaFlavor, SaSolver};
    /// let s = SaSolver::diffusers(2, 2, true);
    /// assert_eq!((s.predictor_order, s.corrector_order, s.flavor), (2, 2, SaFlavor::Diffusers));
    /// ```
    pub fn diffusers(predictor_order: usize, corrector_order: usize, lower_order_final: bool) -> SaSolver {
        SaSolver {
            predictor_order,
            corrector_order,
            mode: SaMode::Pec,
            noise: SaNoise::ModelTimes { eta: 1.0, t_min: 200.0, t_max: 800.0 },
            s_noise: 1.0,
            lower_order_final: if lower_order_final { LowerOrderFinal::Always } else { LowerOrderFinal::Never },
            flavor: SaFlavor::Diffusers,
        }
    }
}

/// The state of [`SaSolver`]: the newest data predictions and the previous step, for its
/// correction.
#[derive(Debug, Default)]
pub struct SaState {
    /// `(lambda, x0)`, oldest first.
    preds: VecDeque<(f64, Tensor)>,
    prev: Option<SaPrev>,
}

#[derive(Debug)]
struct SaPrev {
    /// Where the previous step started.
    from: Point,
    /// The (corrected) sample it started from.
    x: Tensor,
    /// Its `tau`.
    tau: f64,
    /// The noise its predictor added: `coefficient * z`.
    noise: Option<(f64, Tensor)>,
}

impl SaSolver {
    fn noisy(&self) -> bool {
        self.s_noise > 0.0
            && match self.noise {
                SaNoise::Ode => false,
                SaNoise::Sigmas { eta, .. } | SaNoise::Percent { eta, .. } | SaNoise::ModelTimes { eta, .. } => {
                    eta > 0.0
                }
            }
    }

    fn lowers(&self, step: &Step) -> bool {
        match self.lower_order_final {
            LowerOrderFinal::Never => false,
            LowerOrderFinal::Always => true,
            LowerOrderFinal::BelowSteps(n) => step.count < n,
        }
    }

    /// `x_to = c_x x + sum_j b_j x0_j + c_n n` over the newest `order` predictions and the noise
    /// `(c_n, n)`.
    fn adams(
        &self,
        (from, to): (&Point, &Point),
        tau: f64,
        x: &Tensor,
        preds: &VecDeque<(f64, Tensor)>,
        order: usize,
        noise: Option<&(f64, Tensor)>,
    ) -> Result<Tensor> {
        let newest = preds.iter().skip(preds.len() - order.min(preds.len()));
        let (lambdas, outputs): (Vec<f64>, Vec<&Tensor>) = newest.map(|(l, t)| (*l, t)).unzip();
        let eta = tau * tau;
        let (c_x, _, _) = sde_weights(from, to, eta);
        let mut b = polynomial_weights(from, to, eta, &lambdas)?;
        if self.flavor == SaFlavor::Diffusers && b.len() == 2 {
            // diffusers' extra O(h^3) term of its order-2 predictor and corrector
            let h = to.lambda - from.lambda;
            let k = 1.0 + eta;
            let kh = k * h;
            let d = to.alpha * k * (h * h / 2.0 - (kh + (-kh).exp_m1()) / (k * k)) / (lambdas[1] - lambdas[0]);
            if d.is_finite() {
                b[1] += d;
                b[0] -= d;
            }
        }
        let mut terms = vec![(c_x, x)];
        terms.extend(b.into_iter().zip(outputs));
        if let Some((c, n)) = noise {
            terms.push((*c, n));
        }
        lincomb(&terms)
    }
}

impl Solver for SaSolver {
    type State = SaState;

    fn name(&self) -> &'static str {
        match self.mode {
            SaMode::Pec => "SA-Solver",
            SaMode::Pece => "SA-Solver (PECE)",
        }
    }

    fn order(&self) -> usize {
        if self.noisy() {
            1
        } else {
            (self.predictor_order + 1).min(self.corrector_order.max(self.predictor_order)).min(4)
        }
    }

    fn nfe(&self, step: &Step) -> usize {
        if self.mode == SaMode::Pece && step.index > 0 && self.corrector_order > 0 {
            2
        } else {
            1
        }
    }

    fn is_stochastic(&self) -> bool {
        self.noisy() || self.flavor == SaFlavor::Diffusers
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        if !(1..=4).contains(&self.predictor_order) || self.corrector_order > 4 {
            return config_err(format!(
                "SA-Solver supports predictor orders 1..=4 and corrector orders 0..=4, got {} and {}",
                self.predictor_order, self.corrector_order
            ));
        }
        let eta_ok = match self.noise {
            SaNoise::Ode => true,
            SaNoise::Sigmas { eta, s_min, s_max } => eta >= 0.0 && eta.is_finite() && s_min <= s_max,
            SaNoise::Percent { eta, start, end } => {
                eta >= 0.0
                    && eta.is_finite()
                    && (0.0..=1.0).contains(&start)
                    && (0.0..=1.0).contains(&end)
                    && start <= end
            }
            SaNoise::ModelTimes { eta, t_min, t_max } => eta >= 0.0 && eta.is_finite() && t_min <= t_max,
        };
        if !(eta_ok && self.s_noise >= 0.0 && self.s_noise.is_finite()) {
            return config_err(format!(
                "SA-Solver needs finite eta >= 0, an ordered band (percent fractions in [0, 1]) and finite s_noise >= 0, \
                 got {:?} and s_noise = {}",
                self.noise, self.s_noise
            ));
        }
        refuse_zero_alpha_start(
            steps,
            "SA-Solver interpolates in lambda and cannot start at alpha = 0: start the grid below t_max",
        )
    }

    fn init_state(&self) -> SaState {
        SaState::default()
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut SaState) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let capacity = self.predictor_order.max(self.corrector_order);
        let x0 = ctx.model.data(x, from)?;
        state.preds.push_back((from.lambda, x0));
        while state.preds.len() > capacity {
            state.preds.pop_front();
        }
        let available = state.preds.len();
        let mut p = self.predictor_order.min(available);
        let mut c = if step.index == 0 || (to.is_clean() && self.mode == SaMode::Pec) {
            0
        } else {
            self.corrector_order.min(available)
        };
        if self.lowers(step) {
            let left = step.count.saturating_sub(step.index);
            match self.flavor {
                SaFlavor::ComfyUi => {
                    p = p.min(left.saturating_sub(1)).max(1);
                    c = c.min(left);
                }
                SaFlavor::Diffusers => {
                    p = p.min(left).max(1);
                    c = c.min(left + 2);
                }
            }
        }
        // the corrector redoes the previous step with the prediction at its end
        let corrected;
        let x = match (&state.prev, c) {
            (Some(prev), c) if c > 0 => {
                let xc = self.adams((&prev.from, from), prev.tau, &prev.x, &state.preds, c, prev.noise.as_ref())?;
                if self.mode == SaMode::Pece {
                    let x0 = ctx.model.data(&xc, from)?;
                    if let Some(last) = state.preds.back_mut() {
                        last.1 = x0;
                    }
                }
                corrected = xc;
                &corrected
            }
            (None, c) if c > 0 => {
                return Err(Error::InvalidConfig("SA-Solver state lost its previous step".into()));
            }
            _ => x,
        };
        if to.is_clean() {
            let (_, x0) = state.preds.back().ok_or_else(|| Error::InvalidConfig("SA-Solver state is empty".into()))?;
            return Ok(x0.clone());
        }
        let tau = self.noise.tau(ctx.model.schedule(), from, to);
        let mut noise = None;
        if tau > 0.0 && self.s_noise > 0.0 {
            let (_, _, c_z) = sde_weights(from, to, tau * tau);
            noise = Some((self.s_noise * c_z, ctx.noise.noise_between(x, from, to)?));
        } else if self.flavor == SaFlavor::Diffusers {
            // diffusers draws this step's noise whether it is used or not
            ctx.noise.noise_like(x)?;
        }
        let out = self.adams((from, to), tau, x, &state.preds, p, noise.as_ref())?;
        state.prev = Some(SaPrev { from: *from, x: x.clone(), tau, noise });
        Ok(out)
    }
}
