//! Multistep consistency sampling (Song et al. 2023, "Consistency Models", arXiv:2303.01469,
//! Algorithm 1; Luo et al. 2023, "Latent Consistency Models", arXiv:2310.04378; ComfyUI's `lcm`,
//! diffusers' `LCMScheduler` step without its boundary-condition scalings).
//!
//! Each step maps the sample to the model's data prediction and noises it afresh to the next
//! level: `x_to = alpha_to x0 + sigma_to s_i z` (into `sigma = 0`: `x0`). For a consistency model
//! (the network returns the endpoint of the probability-flow ODE) every step count gives exact
//! samples of the data distribution; with a denoiser it is not an ODE or SDE solver and does not
//! converge as steps grow (tested in `tests/solvers_cx.rs` with the exact consistency function of
//! a Gaussian). `s_i` interpolates linearly from `s_noise` at the first step to `s_noise_end` at
//! the last (ComfyUI's options; both 1 by default). 1 NFE and one noise draw per step before
//! `sigma = 0`.

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::ops::lincomb;

/// Multistep consistency (LCM) sampling. The default is ComfyUI's `lcm`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, End, Grid, Lcm, Model, Prediction, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Trailing, 4, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&Lcm::default(), &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lcm {
    /// Noise scale at the first step.
    pub s_noise: f64,
    /// Noise scale at the last step (`None`: `s_noise` throughout).
    pub s_noise_end: Option<f64>,
}

impl Default for Lcm {
    fn default() -> Self {
        Lcm { s_noise: 1.0, s_noise_end: None }
    }
}

impl Lcm {
    /// The noise scale of step `index` of `count`.
    fn scale(&self, index: usize, count: usize) -> f64 {
        let end = self.s_noise_end.unwrap_or(self.s_noise);
        let f = if count > 1 { index as f64 / (count - 1) as f64 } else { 0.0 };
        self.s_noise + (end - self.s_noise) * f
    }
}

impl Solver for Lcm {
    type State = ();

    fn name(&self) -> &'static str {
        "LCM"
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        self.s_noise != 0.0 || self.s_noise_end.is_some_and(|e| e != 0.0)
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        let end = self.s_noise_end.unwrap_or(self.s_noise);
        if !(self.s_noise >= 0.0 && self.s_noise.is_finite() && end >= 0.0 && end.is_finite()) {
            return config_err(format!(
                "LCM needs finite noise scales >= 0, got s_noise = {}, s_noise_end = {:?}",
                self.s_noise, self.s_noise_end
            ));
        }
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let x0 = ctx.model.data(x, from)?;
        if to.is_clean() || !self.is_stochastic() {
            return lincomb(&[(to.alpha, &x0)]);
        }
        let z = ctx.noise.noise_between(x, from, to)?;
        lincomb(&[(to.alpha, &x0), (to.sigma * self.scale(step.index, step.count), &z)])
    }
}
