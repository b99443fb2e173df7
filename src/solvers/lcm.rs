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
//!
//! With a [`ConsistencyBoundary`] (diffusers' `LCMScheduler`) the data prediction is first put
//! through the consistency parametrisation's boundary condition at the step's model time `t`
//! (Song et al. 2023, arXiv:2303.01469, Sec. 3, Eq. 7; Luo et al. 2023, arXiv:2310.04378,
//! Sec. 4.1, with `t` scaled by `timestep_scaling`): `x0' = c_skip(t) x + c_out(t) x0`,
//! `c_skip = sigma_data^2 / ((s t)^2 + sigma_data^2)`, `c_out = s t / sqrt((s t)^2 + sigma_data^2)`
//! (`s` = `timestep_scaling`), folded into the same one-pass update.

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::ops::lincomb;

/// LCM's boundary condition on the data prediction (see the module docs): diffusers'
/// `LCMScheduler` uses `sigma_data = 0.5` and its config's `timestep_scaling` (10 by default).
///
/// ```
/// use diffusion_samplers::ConsistencyBoundary;
/// let b = ConsistencyBoundary::diffusers(10.0);
/// let (c_skip, c_out) = b.scalings(999.0);
/// assert!(c_skip < 1e-8 && (c_out - 1.0).abs() < 1e-8);
/// assert_eq!(b.scalings(0.0), (1.0, 0.0)); // the consistency function is the identity at t = 0
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConsistencyBoundary {
    /// `sigma_data` of the parametrisation.
    pub sigma_data: f64,
    /// The factor `s` on the model time.
    pub timestep_scaling: f64,
}

impl ConsistencyBoundary {
    /// diffusers' `LCMScheduler` (`sigma_data = 0.5`) with its `timestep_scaling`.
    pub fn diffusers(timestep_scaling: f64) -> ConsistencyBoundary {
        ConsistencyBoundary { sigma_data: 0.5, timestep_scaling }
    }

    /// `(c_skip, c_out)` at the model time `t`.
    pub fn scalings(&self, t: f64) -> (f64, f64) {
        let st = t * self.timestep_scaling;
        let sd2 = self.sigma_data * self.sigma_data;
        let d = st * st + sd2;
        (sd2 / d, st / d.sqrt())
    }
}

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
    /// The consistency boundary condition applied to the data prediction (`None`: the model's
    /// data prediction as it is, ComfyUI's `lcm`).
    pub boundary: Option<ConsistencyBoundary>,
}

impl Default for Lcm {
    fn default() -> Self {
        Lcm { s_noise: 1.0, s_noise_end: None, boundary: None }
    }
}

impl Lcm {
    /// diffusers' `LCMScheduler`: unit noise and the boundary condition with `timestep_scaling`.
    pub fn diffusers(timestep_scaling: f64) -> Lcm {
        Lcm { boundary: Some(ConsistencyBoundary::diffusers(timestep_scaling)), ..Lcm::default() }
    }

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
        if let Some(b) = self.boundary {
            if !(b.sigma_data > 0.0 && b.sigma_data.is_finite() && b.timestep_scaling.is_finite()) {
                return config_err(format!(
                    "LCM's boundary condition needs a finite sigma_data > 0 and a finite timestep_scaling, got {b:?}"
                ));
            }
        }
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let x0 = ctx.model.data(x, from)?;
        // the boundary condition x0' = c_skip x + c_out x0, folded into the update
        let (c_skip, c_out) = match self.boundary {
            Some(b) => b.scalings(ctx.model.schedule().model_time(from.t)),
            None => (0.0, 1.0),
        };
        let mut terms = vec![(to.alpha * c_out, &x0)];
        if c_skip != 0.0 {
            terms.push((to.alpha * c_skip, x));
        }
        if to.is_clean() || !self.is_stochastic() {
            return lincomb(&terms);
        }
        let z = ctx.noise.noise_between(x, from, to)?;
        terms.push((to.sigma * self.scale(step.index, step.count), &z));
        lincomb(&terms)
    }
}
