//! Euler-ancestral sampling (k-diffusion's `sample_euler_ancestral`; diffusers'
//! `EulerAncestralDiscreteScheduler`; the ancestral split of Karras et al. 2022, arXiv:2206.00364).
//!
//! On the noise level `s = ksigma = sigma / alpha` of the scaled sample `y = x / alpha`, a step
//! from `s` to `s_to` splits `s_to^2 = s_down^2 + s_up^2` with
//! `s_up = min(s_to, eta sqrt(s_to^2 (s^2 - s_to^2) / s^2))`, takes an Euler step to `s_down`
//! (`d = (y - x0) / s`) and adds fresh noise of scale `s_up`:
//! `y_to = y + (s_down - s) d + s_noise s_up z`.
//!
//! Written with `r = s_to / s = e^{-h}` and `u = s_up / s_to = min(1, eta sqrt(1 - r^2))` this is,
//! in `x`:
//!
//! `x_to = (sigma_to / sigma) sqrt(1 - u^2) x + alpha_to (1 - r sqrt(1 - u^2)) x0 + s_noise sigma_to u z`,
//!
//! finite at the start `alpha = 0` (`r = 0`) and into `sigma = 0`. With `eta = 1` it is DDPM's
//! posterior step and DDIM with `eta = 1`; with `eta = 0` it is [`crate::Euler`]. First order
//! (weak), 1 NFE per step, one noise draw per step (none on a step with zero noise scale).

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::ops::lincomb;

/// The Euler-ancestral solver.
///
/// diffusers' `EulerAncestralDiscreteScheduler` is `eta = 1`, `s_noise = 1` (its `generator`
/// is the loop's noise source; its sigmas and `timestep_spacing` are the grid, its
/// `init_noise_sigma` / `scale_model_input` the conversion `x = x_ve / sqrt(1 + s^2)`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, sample_with, DiscreteVp, End, EulerAncestral, Grid, Model, Prediction, SeededNoise, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
/// let x = Tensor::ones(4, candle_core::DType::F64, &Device::Cpu)?;
/// let solver = EulerAncestral::diffusers_default();
/// // seeded (reproducible) noise: `sample` uses seed 0
/// let a = sample(&solver, &mut model, &grid, &x)?;
/// let b = sample_with(&solver, &mut model, &grid, &x, &mut SeededNoise::new(0), |_| {})?;
/// assert_eq!(a.to_vec1::<f64>()?, b.to_vec1::<f64>()?);
/// // or noise supplied by the caller (here a closure returning zeros)
/// let c = sample_with(&solver, &mut model, &grid, &x, &mut |like: &Tensor| like.zeros_like(), |_| {})?;
/// assert_ne!(a.to_vec1::<f64>()?, c.to_vec1::<f64>()?);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EulerAncestral {
    /// Fraction of the ancestral noise (1 = ancestral sampling, 0 = deterministic Euler).
    pub eta: f64,
    /// Scale of the added noise (k-diffusion's `s_noise`).
    pub s_noise: f64,
}

impl Default for EulerAncestral {
    fn default() -> Self {
        EulerAncestral { eta: 1.0, s_noise: 1.0 }
    }
}

impl EulerAncestral {
    /// diffusers' `EulerAncestralDiscreteScheduler`: `eta = 1`, `s_noise = 1`.
    pub fn diffusers_default() -> EulerAncestral {
        EulerAncestral::default()
    }
}

impl Solver for EulerAncestral {
    type State = ();

    fn name(&self) -> &'static str {
        "Euler-ancestral"
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        self.eta > 0.0
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        if !(self.eta >= 0.0 && self.eta.is_finite() && self.s_noise >= 0.0 && self.s_noise.is_finite()) {
            return config_err(format!(
                "Euler-ancestral needs finite eta >= 0 and s_noise >= 0, got eta = {}, s_noise = {}",
                self.eta, self.s_noise
            ));
        }
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let x0 = ctx.model.data(x, from)?;
        let h = step.h();
        let r = (-h).exp();
        let w = -(-2.0 * h).exp_m1(); // 1 - r^2
        let up2 = (self.eta * self.eta * w).clamp(0.0, 1.0); // u^2
        let m = (1.0 - up2).sqrt(); // s_down / s_to
                                    // 1 - r m = (1 - r) + r (1 - m), written without cancellation
        let c_x0 = if m == 0.0 { 1.0 } else { -(-h).exp_m1() + r * up2 / (1.0 + m) };
        let c_x = to.sigma / from.sigma * m;
        let c_z = self.s_noise * to.sigma * up2.sqrt();
        if c_z == 0.0 {
            return lincomb(&[(c_x, x), (to.alpha * c_x0, &x0)]);
        }
        let z = ctx.noise.noise_between(x, from, to)?;
        lincomb(&[(c_x, x), (to.alpha * c_x0, &x0), (c_z, &z)])
    }
}
