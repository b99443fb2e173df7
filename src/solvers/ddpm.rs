//! DDPM ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models",
//! arXiv:2006.11239, Algorithm 2 and Eq. 6-7; diffusers' `DDPMScheduler`), on any grid.
//!
//! A step samples the forward process' posterior `q(x_to | x, x0)` with the model's data
//! prediction `x0`. With `h = lambda_to - lambda` its mean is
//!
//! `x_to = (sigma_to / sigma) e^{-h} x + alpha_to (1 - e^{-2h}) x0`
//!
//! (for a variance-preserving table this is Ho et al.'s
//! `sqrt(abar_to) beta / (1 - abar) x0 + sqrt(alpha) (1 - abar_to) / (1 - abar) x`), and the added
//! noise has standard deviation `sigma_to sqrt(1 - e^{-2h})` (the posterior variance
//! `beta~`, [`DdpmVariance::FixedSmall`]) or `sigma sqrt(1 - e^{-2h})` (the forward variance
//! `beta`, [`DdpmVariance::FixedLarge`]). With the small variance it is DDIM with `eta = 1`.
//! Every weight is finite at the start `alpha = 0` and into `sigma = 0`. First order (weak),
//! 1 NFE per step. Clipping or thresholding of `x0` (diffusers' `clip_sample`, `thresholding`)
//! is the model's [`crate::DataTransform`].

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{Error, Result};
use crate::grid::Step;
use crate::ops::lincomb;

/// The variance of the added noise (diffusers' `variance_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DdpmVariance {
    /// The posterior variance `beta~ = (1 - abar_to) / (1 - abar) beta` (`fixed_small`, the default).
    #[default]
    FixedSmall,
    /// `fixed_small_log`: the same standard deviation, computed in diffusers through a logarithm.
    FixedSmallLog,
    /// The forward variance `beta = 1 - abar / abar_to` (`fixed_large`).
    FixedLarge,
    /// `fixed_large_log`: the same standard deviation as [`DdpmVariance::FixedLarge`]. (diffusers'
    /// `DDPMScheduler.step` takes the square root of `log(beta)` for this type and returns NaN; this
    /// crate uses the standard deviation the name stands for.)
    FixedLargeLog,
    /// `learned`: the network predicts the variance. Not supported (the [`crate::Denoiser`]
    /// returns one prediction per element).
    Learned,
    /// `learned_range`: the network interpolates between the two fixed log-variances. Not supported.
    LearnedRange,
}

/// Whether the step into `sigma = 0` adds noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FinalNoise {
    /// No noise on the step into `sigma = 0` (Ho et al.'s Algorithm 2: `z = 0` at the last step).
    #[default]
    Skip,
    /// diffusers' rule: noise whenever the step starts at model time `> 0`, also into `sigma = 0`.
    /// It differs from [`FinalNoise::Skip`] only with [`DdpmVariance::FixedLarge`] and a last
    /// timestep above 0 (e.g. `steps_offset = 1` or `timestep_spacing = "trailing"`), where
    /// diffusers leaves noise of standard deviation `sigma` of the last timestep in the output.
    Diffusers,
}

/// The DDPM ancestral sampler.
///
/// diffusers' `DDPMScheduler` maps onto it as: `variance_type` -> [`Ddpm::variance`]; its
/// `generator` -> the loop's noise source ([`crate::sample_with`]); `clip_sample`/`clip_sample_range`/`thresholding` ->
/// the model's [`crate::DataTransform`] (diffusers clips by default: `clip_sample = True`);
/// `timestep_spacing`/`steps_offset` -> the grid (`Spacing::Leading { steps_offset, skip_zero:
/// false }`, ending [`crate::End::Clean`]). [`Ddpm::diffusers_default`] also reproduces its noise on
/// the last step ([`FinalNoise::Diffusers`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, Ddpm, DiscreteVp, End, Grid, Model, Prediction, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Leading { steps_offset: 0, skip_zero: false }, 50, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
/// let x = sample(&Ddpm::default(), &mut model, &grid, &Tensor::ones(4, candle_core::DType::F64, &Device::Cpu)?)?;
/// assert_eq!(model.nfe(), 50);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Ddpm {
    /// The variance of the added noise.
    pub variance: DdpmVariance,
    /// Noise on the step into `sigma = 0`.
    pub final_noise: FinalNoise,
}

impl Ddpm {
    /// diffusers' `DDPMScheduler` defaults: `fixed_small`, and its rule for noise on the last step.
    pub fn diffusers_default() -> Ddpm {
        Ddpm { variance: DdpmVariance::FixedSmall, final_noise: FinalNoise::Diffusers }
    }
}

impl Solver for Ddpm {
    type State = ();

    fn name(&self) -> &'static str {
        "DDPM"
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        true
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        if matches!(self.variance, DdpmVariance::Learned | DdpmVariance::LearnedRange) {
            return Err(Error::Unsupported(format!(
                "DDPM variance type {:?} needs a network that predicts its variance: use FixedSmall or FixedLarge",
                self.variance
            )));
        }
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let x0 = ctx.model.data(x, from)?;
        let h = step.h();
        let w = -(-2.0 * h).exp_m1(); // 1 - e^{-2h}
        let c_x = to.sigma / from.sigma * (-h).exp();
        let std = match self.variance {
            DdpmVariance::FixedSmall | DdpmVariance::FixedSmallLog => to.sigma * w.sqrt(),
            _ => from.sigma * w.sqrt(),
        };
        let noisy = match (to.is_clean(), self.final_noise) {
            (false, _) => true,
            (true, FinalNoise::Skip) => false,
            (true, FinalNoise::Diffusers) => ctx.model.schedule().model_time(from.t) > 0.0,
        };
        if !noisy || std == 0.0 {
            return lincomb(&[(c_x, x), (to.alpha * w, &x0)]);
        }
        let z = ctx.noise.noise_between(x, from, to)?;
        lincomb(&[(c_x, x), (to.alpha * w, &x0), (std, &z)])
    }
}
