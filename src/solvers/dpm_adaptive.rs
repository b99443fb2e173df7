//! Adaptive DPM-Solver-12 and DPM-Solver-23 (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for
//! Diffusion Probabilistic Model Sampling in Around 10 Steps", arXiv:2206.00927, Sec. 4.2 and
//! Algorithm 6 of its appendix), in the form of k-diffusion's `sample_dpm_adaptive` /
//! `DPMSolver.dpm_solver_adaptive` (ComfyUI's `dpm_adaptive`).
//!
//! Each attempted step `s -> t = s + h` (in `lambda`) computes an embedded pair in the noise form
//! ([`crate::math::dpm_stages`]): order 3: `x_low` = DPM-Solver-2 with `r1 = 1/3`, `x_high` =
//! DPM-Solver-3 with `r1 = 1/3, r2 = 2/3` (they share the first stage: 3 evaluations per attempt);
//! order 2: `x_low` = DPM-Solver-1, `x_high` = DPM-Solver-2 with `r1 = 1/2` (2 evaluations). On the
//! scaled samples `x / alpha` (k-diffusion's coordinates),
//!
//! `delta = max(atol, rtol max(|x_low|, |x_prev|))`, `E = ||(x_low - x_high) / delta||_2 / sqrt(n)`,
//!
//! with `x_prev` the previous accepted `x_low`, and a PID controller (k-diffusion's
//! `PIDStepSizeController`, default: integral only) scales the step by
//! `1 + atan(E^{-b1} ... - 1)`, `b1 = icoeff/order`, accepting when that factor is at least
//! `accept_safety`. An accepted step continues from `x_high`. The evaluation at `s` is made once
//! per accepted step (k-diffusion re-evaluates it after a rejection, so it reports one more
//! evaluation per rejected attempt for the same result). NFE: `order` per accepted or rejected
//! attempt, minus one per rejection.
//!
//! As a [`Solver`], each grid step is integrated adaptively to its end (the controller's step
//! size carries over to the next grid step); a step into `sigma = 0` is the first-order step (the
//! data prediction), as for every exponential integrator here. Reading the error norm back to the
//! host once per attempt is inherent to error control.

use candle_core::{DType, Tensor};

use super::{refuse_zero_alpha_start, Solver, StepContext};
use crate::error::{config_err, Error, Result};
use crate::grid::Step;
use crate::math::dpm_stages::{first_order, second_order, third_order, StageCache};
use crate::model::Model;
use crate::ops::lincomb;
use crate::schedule::Point;

/// The adaptive DPM-Solver (`dpm_adaptive`). Defaults are k-diffusion's.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{testing::GaussianMixture, DiscreteVp, DpmAdaptive, Model, Prediction, Scheduler};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let gm = GaussianMixture::example(4, 3, 0)?;
/// let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
/// let noise = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(32), (8, 4), &Device::Cpu)?;
/// let (from, to) = (s.point(999.0), s.point(0.0));
/// let solver = DpmAdaptive { rtol: 1e-4, atol: 1e-4, ..DpmAdaptive::default() };
/// let (x, info) = solver.solve(&mut model, &from, &to, &noise)?;
/// let exact = gm.exact_endpoint(&noise, &from, &to)?;
/// assert!((x - exact)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-3);
/// assert_eq!(info.nfe, model.nfe());
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmAdaptive {
    /// 3 (DPM-Solver-23, 3 evaluations per attempt) or 2 (DPM-Solver-12, 2 per attempt).
    pub order: usize,
    /// Relative tolerance (on `x / alpha`).
    pub rtol: f64,
    /// Absolute tolerance (on `x / alpha`, data units).
    pub atol: f64,
    /// First step size in `lambda`.
    pub h_init: f64,
    /// Proportional coefficient of the step-size controller.
    pub pcoeff: f64,
    /// Integral coefficient of the step-size controller.
    pub icoeff: f64,
    /// Derivative coefficient of the step-size controller.
    pub dcoeff: f64,
    /// Accept a step when the controller's factor is at least this.
    pub accept_safety: f64,
    /// Give up (an error) after this many attempted steps in one `solve`.
    pub max_attempts: usize,
}

impl Default for DpmAdaptive {
    fn default() -> Self {
        DpmAdaptive {
            order: 3,
            rtol: 0.05,
            atol: 0.0078,
            h_init: 0.05,
            pcoeff: 0.0,
            icoeff: 1.0,
            dcoeff: 0.0,
            accept_safety: 0.81,
            max_attempts: 100_000,
        }
    }
}

/// What an adaptive solve did (k-diffusion's `info`, with the evaluations actually made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdaptiveInfo {
    /// Attempted steps.
    pub steps: usize,
    /// Network evaluations made.
    pub nfe: usize,
    /// Accepted steps.
    pub n_accept: usize,
    /// Rejected steps.
    pub n_reject: usize,
}

/// One accepted step, reported to [`DpmAdaptive::solve_with`]'s callback.
#[derive(Debug)]
pub struct Accepted<'a> {
    /// Where the step started.
    pub from: Point,
    /// Where it ended.
    pub to: Point,
    /// The sample at `from`.
    pub x_from: &'a Tensor,
    /// The noise prediction at `from` (made at `x_from`).
    pub eps_from: &'a Tensor,
    /// The sample at `to` (the higher-order result).
    pub x_to: &'a Tensor,
    /// The error estimate of the step (accepted when the controller's factor allowed it).
    pub error: f64,
}

/// The controller state carried between solves (k-diffusion's `PIDStepSizeController`).
#[derive(Clone, Debug)]
pub struct DpmAdaptiveState {
    h: f64,
    errs: Vec<f64>,
    info: AdaptiveInfo,
}

impl DpmAdaptiveState {
    /// Counts over every grid step so far.
    pub fn info(&self) -> AdaptiveInfo {
        self.info
    }
}

impl DpmAdaptive {
    fn validate(&self) -> Result<()> {
        if self.order != 2 && self.order != 3 {
            return config_err(format!("the adaptive DPM-Solver has orders 2 and 3, got {}", self.order));
        }
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !(ok(self.rtol) && ok(self.atol) && self.rtol + self.atol > 0.0) {
            return config_err(format!(
                "rtol and atol must be finite, non-negative and not both 0, got rtol = {}, atol = {}",
                self.rtol, self.atol
            ));
        }
        if !(self.h_init.is_finite() && self.h_init != 0.0) {
            return config_err(format!("h_init must be finite and non-zero, got {}", self.h_init));
        }
        if !(self.pcoeff.is_finite() && self.icoeff.is_finite() && self.dcoeff.is_finite())
            || !(self.accept_safety.is_finite() && self.accept_safety > 0.0)
            || self.max_attempts == 0
        {
            return config_err("PID coefficients must be finite, accept_safety positive and max_attempts at least 1");
        }
        Ok(())
    }

    fn new_state(&self) -> DpmAdaptiveState {
        DpmAdaptiveState { h: self.h_init.abs(), errs: vec![], info: AdaptiveInfo::default() }
    }

    /// Integrate from `x` at `from` to `to` (both with `sigma > 0` and `alpha > 0`; either
    /// direction) and report what it took.
    pub fn solve(&self, model: &mut Model, from: &Point, to: &Point, x: &Tensor) -> Result<(Tensor, AdaptiveInfo)> {
        self.solve_with(model, from, to, x, |_| {})
    }

    /// [`DpmAdaptive::solve`] with a callback after every accepted step (trajectories, the
    /// evaluations a calibration reuses).
    pub fn solve_with(
        &self,
        model: &mut Model,
        from: &Point,
        to: &Point,
        x: &Tensor,
        on_accept: impl FnMut(&Accepted),
    ) -> Result<(Tensor, AdaptiveInfo)> {
        self.validate()?;
        let mut state = self.new_state();
        let x = self.integrate(model, from, to, x, &mut state, on_accept)?;
        Ok((x, state.info))
    }

    fn integrate(
        &self,
        model: &mut Model,
        from: &Point,
        to: &Point,
        x: &Tensor,
        state: &mut DpmAdaptiveState,
        mut on_accept: impl FnMut(&Accepted),
    ) -> Result<Tensor> {
        if !(from.lambda.is_finite() && to.lambda.is_finite()) || from.alpha == 0.0 {
            return Err(Error::Unsupported(format!(
                "the adaptive DPM-Solver integrates between finite log-SNRs (got {} -> {}): end the interval at \
                 sigma > 0 and start it at alpha > 0",
                from.lambda, to.lambda
            )));
        }
        let schedule = model.schedule();
        let forward = to.lambda > from.lambda;
        let dir = if forward { 1.0 } else { -1.0 };
        let (t_end, order) = (to.lambda, self.order);
        let (b1, b2, b3) = (
            (self.pcoeff + self.icoeff + self.dcoeff) / order as f64,
            -(self.pcoeff + 2.0 * self.dcoeff) / order as f64,
            self.dcoeff / order as f64,
        );
        let mut s = *from;
        let mut x = x.clone();
        // the previous accepted low-order result, scaled by 1/alpha
        let mut x_prev = lincomb(&[(1.0 / from.alpha, &x)])?;
        let mut eps_s: Option<Tensor> = None;
        let mut attempts = 0usize;
        let more = |s: f64| if forward { s < t_end - 1e-5 } else { s > t_end + 1e-5 };
        while more(s.lambda) {
            attempts += 1;
            if attempts > self.max_attempts {
                return Err(Error::Adaptive(format!(
                    "{} attempted steps without reaching lambda = {t_end} (now at {}, step {:e}): loosen rtol/atol \
                     or raise max_attempts",
                    self.max_attempts, s.lambda, state.h
                )));
            }
            let lam = if forward { t_end.min(s.lambda + state.h * dir) } else { t_end.max(s.lambda + state.h * dir) };
            let t = if lam == t_end { *to } else { schedule.point_of_lambda(lam) };
            let eps = match &eps_s {
                Some(e) => e.clone(),
                None => {
                    let e = model.noise(&x, &s)?;
                    state.info.nfe += 1;
                    eps_s = Some(e.clone());
                    e
                }
            };
            let mut cache = StageCache::default();
            let nfe0 = model.nfe();
            let (x_low, x_high) = if order == 2 {
                let low = first_order(&x, &s, &t, &eps)?;
                (low, second_order(model, &x, &s, &t, &eps, 0.5, &mut cache)?)
            } else {
                let low = second_order(model, &x, &s, &t, &eps, 1.0 / 3.0, &mut cache)?;
                (low, third_order(model, &x, &s, &t, &eps, 1.0 / 3.0, 2.0 / 3.0, &mut cache)?)
            };
            state.info.nfe += model.nfe() - nfe0;
            let error = error_norm(&x_low, &x_high, &x_prev, t.alpha, self.rtol, self.atol)?;
            state.info.steps += 1;
            // PID step-size control (k-diffusion's limiter 1 + atan(f - 1), eps 1e-8)
            let inv = 1.0 / (error + 1e-8);
            if state.errs.is_empty() {
                state.errs = vec![inv, inv, inv];
            }
            state.errs[0] = inv;
            let factor = state.errs[0].powf(b1) * state.errs[1].powf(b2) * state.errs[2].powf(b3);
            let factor = 1.0 + (factor - 1.0).atan();
            let accept = factor >= self.accept_safety;
            if accept {
                state.errs[2] = state.errs[1];
                state.errs[1] = state.errs[0];
            }
            // capped: a step past the end of the interval is cut to it anyway, and the state lives on
            // across grid steps, where an error of exactly 0 (a linear model) would grow h to inf
            state.h = (state.h * factor).min(MAX_STEP);
            if !(state.h.is_finite() && state.h > 0.0) || !error.is_finite() {
                return Err(Error::NonFinite { what: "adaptive DPM-Solver error estimate", model_time: s.t });
            }
            if accept {
                on_accept(&Accepted { from: s, to: t, x_from: &x, eps_from: &eps, x_to: &x_high, error });
                x_prev = lincomb(&[(1.0 / t.alpha, &x_low)])?;
                x = x_high;
                s = t;
                eps_s = None;
                state.info.n_accept += 1;
            } else {
                state.info.n_reject += 1;
            }
        }
        Ok(x)
    }
}

/// The largest step in `lambda` the controller proposes (far beyond any schedule's log-SNR range).
const MAX_STEP: f64 = 1e3;

/// `||(x_low - x_high) / delta||_2 / sqrt(n)` on `x / alpha`, `delta = max(atol, rtol max(|x_low|, |x_prev|))`.
fn error_norm(x_low: &Tensor, x_high: &Tensor, x_prev: &Tensor, alpha: f64, rtol: f64, atol: f64) -> Result<f64> {
    let low = lincomb(&[(1.0 / alpha, x_low)])?;
    let diff = lincomb(&[(1.0 / alpha, x_low), (-1.0 / alpha, x_high)])?;
    let scale = low.abs()?.maximum(&x_prev.abs()?)?.affine(rtol, 0.0)?.maximum(atol)?;
    let ratio = diff.div(&scale)?;
    let mean = ratio.sqr()?.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok(mean.sqrt())
}

impl Solver for DpmAdaptive {
    type State = DpmAdaptiveState;

    fn name(&self) -> &'static str {
        if self.order == 2 {
            "adaptive DPM-Solver-12"
        } else {
            "adaptive DPM-Solver-23"
        }
    }

    fn order(&self) -> usize {
        self.order
    }

    /// A lower bound: one attempt per grid step (`order` evaluations), 1 into `sigma = 0`.
    fn nfe(&self, step: &Step) -> usize {
        if step.to.is_clean() {
            1
        } else {
            self.order
        }
    }

    fn is_adaptive(&self) -> bool {
        true
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        DpmAdaptive::validate(self)?;
        refuse_zero_alpha_start(
            steps,
            "the adaptive DPM-Solver (noise form) cannot start at alpha = 0: start below t_max",
        )
    }

    fn init_state(&self) -> DpmAdaptiveState {
        self.new_state()
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut DpmAdaptiveState) -> Result<Tensor> {
        if step.to.is_clean() {
            let before = ctx.model.nfe();
            let x0 = ctx.model.data(x, &step.from)?;
            state.info.nfe += ctx.model.nfe() - before;
            return Ok(x0);
        }
        self.integrate(ctx.model, &step.from, &step.to, x, state, |_| {})
    }
}
