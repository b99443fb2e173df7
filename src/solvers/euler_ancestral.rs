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
//!
//! The split is [`crate::math::ancestral`]; k-diffusion's `sample_euler_ancestral` and ComfyUI's
//! `euler_ancestral` (for `eta <= 1`) are `EulerAncestral::default()` with `eta`, `s_noise` as
//! there, drawing from the loop's noise source over each step's interval.
//!
//! With [`Guidance::CfgPp`] (CFG++, Chung et al. 2024, arXiv:2406.08070, Algorithms 1-2;
//! ComfyUI's `euler_ancestral_cfg_pp`, and with `eta = 0` its `euler_cfg_pp`) the step renoises
//! with the unconditional prediction `x0_u` of a guided network and adds the guidance
//! ([`crate::GuidedData`]): `y_to = x0 + s_down (y - x0_u) / s + s_noise s_up z`, in `x`
//! `x_to = c_x x + c_d x0_u + alpha_to (x0 - x0_u) + c_z z` with the weights above (`eta = 0`:
//! DDIM's `alpha_to x0 + sigma_to eps_u`, Algorithm 1). Into `sigma = 0` it returns `x0`. Where
//! `x0 = x0_u` it is the step above; otherwise the guidance enters every step at full weight, so
//! the result depends on the step count (no ODE limit; CFG++ is used with small guidance
//! scales, about 0.5-1.5 in ComfyUI).

use candle_core::Tensor;

use super::{validate_noise, Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::ancestral::ancestral;
use crate::math::ksigma::euler_terms;
use crate::model::Guidance;
use crate::ops::lincomb;

/// The Euler-ancestral solver, with standard guidance or CFG++.
///
/// ComfyUI: `euler_ancestral` is `EulerAncestral::default()`, `euler_ancestral_cfg_pp`
/// [`EulerAncestral::cfg_pp`] and `euler_cfg_pp` `EulerAncestral { eta: 0.0, ..EulerAncestral::cfg_pp() }`
/// (the CFG++ samplers need a guided network, [`crate::ClassifierFreeGuidance`]).
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
    /// Standard guidance or CFG++.
    pub guidance: Guidance,
}

impl Default for EulerAncestral {
    fn default() -> Self {
        EulerAncestral { eta: 1.0, s_noise: 1.0, guidance: Guidance::Standard }
    }
}

impl EulerAncestral {
    /// diffusers' `EulerAncestralDiscreteScheduler`: `eta = 1`, `s_noise = 1`.
    pub fn diffusers_default() -> EulerAncestral {
        EulerAncestral::default()
    }

    /// ComfyUI's `euler_ancestral_cfg_pp`: `eta = 1`, `s_noise = 1`, [`Guidance::CfgPp`]. It
    /// needs a guided network ([`crate::ClassifierFreeGuidance`]); the loop refuses other models.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use diffusion_samplers::{sample, ClassifierFreeGuidance, DiscreteVp, End, EulerAncestral, Grid, Model, Prediction, Spacing};
    /// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
    /// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
    /// // unconditional half predicts x0 = 0, conditional half x0 = 0.5
    /// let net = |x: &Tensor, _t: f64| {
    ///     let b = x.dim(0)? / 2;
    ///     Tensor::cat(&[x.narrow(0, 0, b)?.zeros_like()?, x.narrow(0, b, b)?.ones_like()?.affine(0.5, 0.0)?], 0)
    /// };
    /// let mut model = Model::new(ClassifierFreeGuidance { denoiser: net, scale: 1.0, rescale: 0.0 }, &s, Prediction::Sample);
    /// let x = Tensor::ones((1, 3), candle_core::DType::F64, &Device::Cpu)?;
    /// // euler_cfg_pp (eta = 0): every step lands on the guided x0
    /// let out = sample(&EulerAncestral { eta: 0.0, ..EulerAncestral::cfg_pp() }, &mut model, &grid, &x)?;
    /// for v in out.to_vec2::<f64>()?[0].iter() { assert!((v - 0.5).abs() < 1e-12) }
    /// // an unguided model is refused
    /// let mut plain = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Sample);
    /// assert!(sample(&EulerAncestral::cfg_pp(), &mut plain, &grid, &x).is_err());
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn cfg_pp() -> EulerAncestral {
        EulerAncestral { guidance: Guidance::CfgPp, ..EulerAncestral::default() }
    }
}

impl Solver for EulerAncestral {
    type State = ();

    fn name(&self) -> &'static str {
        match (self.guidance, self.eta > 0.0) {
            (Guidance::Standard, _) => "Euler-ancestral",
            (Guidance::CfgPp, true) => "Euler-ancestral CFG++",
            (Guidance::CfgPp, false) => "Euler CFG++",
        }
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }

    fn needs_unconditional(&self) -> bool {
        self.guidance.needs_unconditional()
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        validate_noise("Euler-ancestral", self.eta, self.s_noise)
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let d0 = ctx.model.guided_data(self.guidance, x, from)?;
        let split = ancestral(from, to, self.eta);
        let z = ctx.noise_if(self.s_noise * split.noise, x, from, to)?;
        let mut terms = euler_terms(x, from, &d0.data, &split.down).to_vec();
        terms.extend(d0.guidance_terms(to.alpha));
        terms.extend(z.as_ref().map(|z| (self.s_noise * split.noise, z)));
        lincomb(&terms)
    }
}
