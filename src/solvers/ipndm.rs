//! iPNDM: improved pseudo linear multistep (Zhang & Chen 2022, "Fast Sampling of Diffusion
//! Models with Exponential Integrator", arXiv:2204.13902, Sec. 5 / App. "iPNDM"; diffusers'
//! `IPNDMScheduler`).
//!
//! PNDM's pseudo linear multistep ([`crate::Pndm`]) with its Runge-Kutta warm-up replaced by
//! lower-order multistep steps: with `eps_j` the noise predictions of the last `m` steps (newest
//! first, `m = min(order, steps so far + 1)`) and `b_j` the fixed Adams-Bashforth weights of order
//! `m` ([`crate::math::multistep::adams_bashforth`]),
//!
//! `eps_hat = sum_j b_j eps_j`,  `x_to = (alpha_to / alpha) x + (sigma_to - alpha_to sigma / alpha) eps_hat`
//!
//! (the DDIM transfer, [`crate::math::expint`]'s first-order noise weights; finite into
//! `sigma = 0`). 1 NFE per step. The fixed weights are exact only for steps uniform in
//! `ksigma = sigma/alpha`: there iPNDM(m) is [`crate::Lms`] of order m; on uniform-lambda grids
//! its measured global order is 2 (`tests/solvers_c2.rs`; for the variable-step weights use
//! [`crate::Lms`], the same method as DEIS's rhoAB in `ksigma`).
//!
//! Starting at `alpha = 0` (diffusers' `IPNDMScheduler` grid starts there) the transfer is
//! singular; [`ZeroAlphaStart`] says what the first step does.
//!
//! ComfyUI's `ipndm` ([`Ipndm::comfy`]) is this method with fixed weights, returning the data
//! prediction on the step into `sigma = 0` ([`CleanStep::DataPrediction`]). Its `ipndm_v`
//! ([`Ipndm::comfy_variable`]) replaces the fixed weights by step-size-dependent ones
//! ([`MultistepWeights::ComfyVariable`], from the `diff-solvers` code ComfyUI cites): exact for the
//! second order, but its third- and fourth-order weights are not the variable-step
//! Adams-Bashforth ones (the third-order weights integrate only linear polynomials exactly on
//! non-uniform steps; the fourth-order ones differ from Adams-Bashforth's even on uniform steps,
//! and do not sum to one on steps whose ratio varies, e.g. Karras grids). Measured on the
//! Gaussian mixture (`tests/solvers_cx_orders.rs`): order about 2 on uniform-logSNR grids and
//! 1.15 on Karras grids, against 3.4-3.8 for [`MultistepWeights::Lagrange`], the exact
//! variable-step method (which has the larger error below about 40 Karras steps).

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::math::multistep::{ksigma_multistep, MultistepWeights};
use crate::math::History;
use crate::ops::lincomb;
use crate::schedule::Point;

/// The first step of iPNDM from `alpha = 0` (pure noise), where `x0 = (x - sigma eps) / alpha`
/// is undefined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ZeroAlphaStart {
    /// `x_to = alpha_to x0 + sigma_to eps` with the model's own data prediction `x0` (the limit of
    /// the DDIM step; needs a v-, x0- or flow-prediction model).
    #[default]
    DataPrediction,
    /// diffusers' `(x - sigma eps) / max(alpha, 1e-8)`: with a v-prediction model `x - sigma eps`
    /// is exactly 0 there, so the first step predicts `x0 = 0` whatever the model says. This is a
    /// first-order error `alpha_to E[x0]` that makes the whole run first-order accurate when the
    /// data mean is not zero (measured in `tests/solvers_c2.rs`).
    DiffusersClamp,
}

/// What the step into `sigma = 0` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CleanStep {
    /// The multistep combination down to `sigma = 0` (diffusers' `IPNDMScheduler`).
    #[default]
    Multistep,
    /// Return the data prediction (ComfyUI's `ipndm` and `ipndm_v`).
    DataPrediction,
}

/// The iPNDM solver.
///
/// diffusers' `IPNDMScheduler` is `order = 4` with [`ZeroAlphaStart::DiffusersClamp`]; its own grid
/// (angles of a cosine schedule, starting at `alpha = 0`) is [`Ipndm::diffusers_points`], and it
/// assumes a v-prediction network (`ets = sigma x + alpha v`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, End, Grid, Ipndm, Model, Prediction, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&Ipndm::default(), &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-9) }
/// assert_eq!(model.nfe(), 10);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipndm {
    /// Maximum multistep order (1-4).
    pub order: usize,
    /// The first step from `alpha = 0`.
    pub zero_alpha_start: ZeroAlphaStart,
    /// The multistep weights: [`MultistepWeights::Uniform`] (iPNDM as published, diffusers'
    /// `IPNDMScheduler`, ComfyUI's `ipndm`), [`MultistepWeights::Lagrange`] (variable-step
    /// Adams-Bashforth in `ksigma`, order `m` on every grid: the method of [`crate::Lms`]) or
    /// [`MultistepWeights::ComfyVariable`] (ComfyUI's `ipndm_v`).
    pub weights: MultistepWeights,
    /// The step into `sigma = 0`.
    pub clean_step: CleanStep,
}

impl Default for Ipndm {
    fn default() -> Self {
        Ipndm {
            order: 4,
            zero_alpha_start: ZeroAlphaStart::DataPrediction,
            weights: MultistepWeights::Uniform,
            clean_step: CleanStep::Multistep,
        }
    }
}

impl Ipndm {
    /// diffusers' `IPNDMScheduler`: order 4, its clamped first step from `alpha = 0`.
    pub fn diffusers_default() -> Ipndm {
        Ipndm { zero_alpha_start: ZeroAlphaStart::DiffusersClamp, ..Ipndm::default() }
    }

    /// ComfyUI's `ipndm`: order 4, fixed weights, the data prediction into `sigma = 0`.
    pub fn comfy() -> Ipndm {
        Ipndm { clean_step: CleanStep::DataPrediction, ..Ipndm::default() }
    }

    /// ComfyUI's `ipndm_v`: order 4, its variable-step weights, the data prediction into
    /// `sigma = 0`.
    pub fn comfy_variable() -> Ipndm {
        Ipndm { weights: MultistepWeights::ComfyVariable, ..Ipndm::comfy() }
    }

    /// The points of diffusers' `IPNDMScheduler` grid for `steps` steps, computed in f64:
    /// `sigma_i = sin(pi/2 s_i)^2` for `s_i = 1 - i/steps` (`i = 0..steps`), `alpha_i =
    /// sqrt(1 - sigma_i^2)`, and `t_i = atan2(sigma_i, alpha_i) * 2 / pi`, the timestep diffusers
    /// passes to the network. `t` is the time of the v-diffusion cosine schedule
    /// `alpha = cos(pi t / 2)`, `sigma = sin(pi t / 2)`: the model must be bound to a
    /// [`crate::Scheduler`] whose `model_time` is that `t`, such as [`crate::CosineVp`]. The first point has `alpha = 0`, the last
    /// `sigma = 0`. Build the grid with [`crate::Grid::from_points`]. At most
    /// [`crate::limits::MAX_STEPS`] steps.
    pub fn diffusers_points(steps: usize) -> Result<Vec<Point>> {
        if steps == 0 {
            return Err(crate::Error::ZeroSteps);
        }
        crate::limits::check("steps", steps, crate::limits::MAX_STEPS)?;
        Ok((0..=steps)
            .map(|i| {
                if i == steps {
                    return Point::clean(0.0);
                }
                let s = 1.0 - i as f64 / steps as f64;
                let sigma = (std::f64::consts::FRAC_PI_2 * s).sin().powi(2);
                let alpha = (1.0 - sigma * sigma).max(0.0).sqrt();
                Point::new(sigma.atan2(alpha) / std::f64::consts::FRAC_PI_2, alpha, sigma)
            })
            .collect())
    }
}

impl Solver for Ipndm {
    type State = History;

    fn name(&self) -> &'static str {
        "iPNDM"
    }

    fn order(&self) -> usize {
        self.order
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        if !(1..=4).contains(&self.order) {
            return config_err(format!("iPNDM supports orders 1..=4, got {}", self.order));
        }
        Ok(())
    }

    fn init_state(&self) -> History {
        History::new(self.order.saturating_sub(1))
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, hist: &mut History) -> Result<Tensor> {
        let model = &mut *ctx.model;
        let (from, to) = (&step.from, &step.to);
        if from.alpha == 0.0 {
            // only the grid's first point can have alpha = 0, so no history exists here
            let (out, eps) = match self.zero_alpha_start {
                ZeroAlphaStart::DataPrediction => {
                    let x0 = model.data(x, from)?;
                    let eps = lincomb(&[(1.0 / from.sigma, x)])?; // x = sigma eps at alpha = 0
                    (lincomb(&[(to.alpha, &x0), (to.sigma, &eps)])?, eps)
                }
                ZeroAlphaStart::DiffusersClamp => {
                    let eps = model.noise(x, from)?;
                    let x0 = lincomb(&[(1e8, x), (-1e8 * from.sigma, &eps)])?;
                    (lincomb(&[(to.alpha, &x0), (to.sigma, &eps)])?, eps)
                }
            };
            hist.push(*from, eps);
            return Ok(out);
        }
        let eps = model.noise(x, from)?;
        let out = match self.clean_step {
            CleanStep::DataPrediction if to.is_clean() => {
                lincomb(&[(1.0 / from.alpha, x), (-from.sigma / from.alpha, &eps)])?
            }
            _ => ksigma_multistep(from, to, x, &eps, hist, self.order, self.weights)?,
        };
        hist.push(*from, eps);
        Ok(out)
    }
}
