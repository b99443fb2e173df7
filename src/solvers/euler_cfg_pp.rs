//! Euler and Euler-ancestral with CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained
//! Classifier Free Guidance for Diffusion Models", arXiv:2406.08070, Algorithms 1-2; ComfyUI's
//! `euler_cfg_pp` and `euler_ancestral_cfg_pp`).
//!
//! CFG++ renoises with the unconditional prediction: with the guided data prediction `x0`, the
//! unconditional one `x0_u` (one evaluation of a [`crate::ClassifierFreeGuidance`] network), the
//! noise levels `s = sigma/alpha`, `s_to` and the ancestral split `(s_down, s_up)` of
//! [`crate::math::ancestral::ancestral_split`] (`eta = 0`: `s_down = s_to`, `s_up = 0`), a step
//! is, in the scaled sample `y = x / alpha`,
//!
//! `y_to = x0 + s_down (y - x0_u) / s + s_noise s_up z`
//!
//! (DDIM's `x_to = alpha_to x0 + sigma_to eps_u` for `eta = 0`). In `x` this is the plain ancestral
//! Euler step applied to `x0_u` plus `alpha_to (x0 - x0_u)`. Into `sigma = 0` it returns `x0`.
//! Where the guided and unconditional predictions agree (`x0 = x0_u`: guidance scale 0, or both
//! halves of the network equal) it is Euler / Euler-ancestral (first order); otherwise the term
//! `x0 - x0_u` enters every step at full weight, so the result depends on the step count (no ODE
//! limit; CFG++ is used with small guidance scales, about 0.5-1.5 in ComfyUI).
//! Every weight is finite from `alpha = 0` (`s = inf`) and into `sigma = 0`. 1 NFE per step, one noise draw
//! per step before `sigma = 0` when `eta > 0`.

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::math::ancestral::ancestral_euler_weights;
use crate::ops::lincomb;

/// Euler (`eta = 0`) or Euler-ancestral (`eta > 0`) with CFG++.
///
/// ComfyUI: `euler_cfg_pp` is `EulerCfgPp::default()` (`eta = 0`), `euler_ancestral_cfg_pp` is
/// [`EulerCfgPp::ancestral`] (`eta = 1`, `s_noise = 1`). It needs a guided network
/// ([`crate::ClassifierFreeGuidance`]); the loop refuses other models.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, ClassifierFreeGuidance, DiscreteVp, End, EulerCfgPp, Grid, Model, Prediction, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// // unconditional half predicts x0 = 0, conditional half x0 = 0.5
/// let net = |x: &Tensor, _t: f64| {
///     let b = x.dim(0)? / 2;
///     Tensor::cat(&[x.narrow(0, 0, b)?.zeros_like()?, x.narrow(0, b, b)?.ones_like()?.affine(0.5, 0.0)?], 0)
/// };
/// let mut model = Model::new(ClassifierFreeGuidance { denoiser: net, scale: 1.0, rescale: 0.0 }, &s, Prediction::Sample);
/// let x = sample(&EulerCfgPp::default(), &mut model, &grid, &Tensor::ones((1, 3), candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec2::<f64>()?[0].iter() { assert!((v - 0.5).abs() < 1e-12) }
/// // an unguided model is refused
/// let mut plain = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Sample);
/// assert!(sample(&EulerCfgPp::default(), &mut plain, &grid, &Tensor::ones((1, 3), candle_core::DType::F64, &Device::Cpu)?).is_err());
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct EulerCfgPp {
    /// Fraction of the ancestral noise (0 = deterministic `euler_cfg_pp`).
    pub eta: f64,
    /// Scale of the added noise.
    pub s_noise: f64,
}

impl EulerCfgPp {
    /// ComfyUI's `euler_ancestral_cfg_pp`: `eta = 1`, `s_noise = 1`.
    pub fn ancestral() -> EulerCfgPp {
        EulerCfgPp { eta: 1.0, s_noise: 1.0 }
    }

    fn noisy(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }
}

impl Solver for EulerCfgPp {
    type State = ();

    fn name(&self) -> &'static str {
        if self.noisy() {
            "Euler-ancestral CFG++"
        } else {
            "Euler CFG++"
        }
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        self.noisy()
    }

    fn needs_unconditional(&self) -> bool {
        true
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        if !(self.eta >= 0.0 && self.eta.is_finite() && self.s_noise >= 0.0 && self.s_noise.is_finite()) {
            return config_err(format!(
                "Euler CFG++ needs finite eta >= 0 and s_noise >= 0, got eta = {}, s_noise = {}",
                self.eta, self.s_noise
            ));
        }
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let (x0, x0_u) = ctx.model.data_and_unconditional(x, from)?;
        if to.is_clean() {
            return Ok(x0);
        }
        let eta = if self.noisy() { self.eta } else { 0.0 };
        let (c_x, c_d, c_z) = ancestral_euler_weights(from, to, eta);
        let mut terms = vec![(c_x, x), (c_d - to.alpha, &x0_u), (to.alpha, &x0)];
        let z;
        if c_z > 0.0 {
            z = ctx.noise.noise_between(x, from, to)?;
            terms.push((self.s_noise * c_z, &z));
        }
        lincomb(&terms)
    }
}
