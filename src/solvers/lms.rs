//! LMS: the linear multistep (variable-step Adams-Bashforth) method on the probability-flow ODE
//! in the noise level `s = ksigma = sigma / alpha` (Karras et al. 2022, arXiv:2206.00364, Eq. 3-4;
//! k-diffusion's `sample_lms`, diffusers' `LMSDiscreteScheduler`).
//!
//! In the scaled variable `y = x / alpha` the ODE is `dy/ds = d`, `d = (y - x0) / s`, which is the
//! noise prediction `eps`. With the derivatives `d_j` taken at the last `m` noise levels `s_j`
//! (newest first, `s_0` the current one):
//!
//! `y_to = y + sum_j w_j d_j`,  `w_j = int_{s_0}^{s_to} L_j(s) ds`,
//!
//! where `L_j` is the Lagrange basis polynomial of the nodes `s_j`, integrated exactly
//! ([`crate::math::multistep::lagrange_integrals`]; diffusers uses numerical quadrature, which
//! is exact for these polynomials up to its tolerance). In `x`:
//! `x_to = (alpha_to / alpha) x + alpha_to sum_j w_j eps_j`. Order `m` in `s` (up to 4), with a
//! warm-up of orders 1, 2, .. while fewer outputs are stored, and (with [`LmsFinal::Integrate`])
//! the full order into `sigma = 0` (the integral to `s = 0` is finite). 1 NFE per step.
//!
//! k-diffusion 0.1.1's `sample_lms` and diffusers integrate to `sigma = 0` at full order; ComfyUI's
//! `lms` ([`Lms::comfyui`], the registered name `lms`) takes the step into `sigma = 0` at first
//! order, which returns the data prediction (`x = denoised`), as its other samplers do.

use candle_core::Tensor;

use super::{refuse_zero_alpha_start, Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::math::multistep::{ksigma_multistep, MultistepWeights};
use crate::math::History;

/// The LMS solver.
///
/// diffusers' `LMSDiscreteScheduler` maps onto it as: the `order` argument of its `step`
/// (default 4) is [`Lms::order`]; its sigmas (`use_karras_sigmas`, `timestep_spacing`, ...) are
/// the grid, and its `init_noise_sigma` / `scale_model_input` are the conversion `x = x_ve / sqrt(1 + s^2)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, End, Grid, Lms, Model, Prediction, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean)?;
/// // a network that always predicts x0 = 0.25: every method returns it at sigma = 0
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&Lms::diffusers_default(), &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-9) }
/// assert_eq!(model.nfe(), 10);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lms {
    /// Number of derivatives interpolated (1-4): the order in `ksigma`.
    pub order: usize,
    /// The step into `sigma = 0`.
    pub final_step: LmsFinal,
}

/// What LMS does on the step into `sigma = 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LmsFinal {
    /// Integrate the interpolating polynomial down to `sigma = 0` at full order (k-diffusion
    /// 0.1.1's `sample_lms`, diffusers' `LMSDiscreteScheduler`).
    #[default]
    Integrate,
    /// First order: the step returns the data prediction (ComfyUI's `lms`).
    Denoise,
}

impl Default for Lms {
    fn default() -> Self {
        Lms::new(4)
    }
}

impl Lms {
    /// LMS of `order` (1-4), integrating to `sigma = 0` at full order.
    pub fn new(order: usize) -> Lms {
        Lms { order, final_step: LmsFinal::Integrate }
    }

    /// diffusers' `LMSDiscreteScheduler.step` default: order 4 (and k-diffusion 0.1.1's
    /// `sample_lms`).
    pub fn diffusers_default() -> Lms {
        Lms::new(4)
    }

    /// ComfyUI's `lms`: order 4, the step into `sigma = 0` returns the data prediction.
    ///
    /// ```
    /// use diffusion_samplers::{AnySolver, Lms, LmsFinal};
    /// assert_eq!(Lms::comfyui(), Lms { order: 4, final_step: LmsFinal::Denoise });
    /// assert_eq!(AnySolver::new(Lms::comfyui()).to_string(), "lms");
    /// ```
    pub fn comfyui() -> Lms {
        Lms { order: 4, final_step: LmsFinal::Denoise }
    }
}

impl Solver for Lms {
    type State = History;

    fn name(&self) -> &'static str {
        "LMS"
    }

    fn order(&self) -> usize {
        self.order
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        if !(1..=4).contains(&self.order) {
            return config_err(format!("LMS supports orders 1..=4, got {}", self.order));
        }
        refuse_zero_alpha_start(
            steps,
            "LMS cannot start at alpha = 0 (infinite noise level): start the grid below t_max or use a multistep \
             exponential integrator (DPM-Solver++)",
        )
    }

    fn init_state(&self) -> History {
        History::new(self.order.saturating_sub(1))
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, hist: &mut History) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let eps = ctx.model.noise(x, from)?;
        let order = match self.final_step {
            LmsFinal::Denoise if to.is_clean() => 1,
            _ => self.order,
        };
        let out = ksigma_multistep(from, to, x, &eps, hist, order, MultistepWeights::Lagrange)?;
        hist.push(*from, eps);
        Ok(out)
    }
}
