//! DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502, Eq. 12).
//!
//! `x_to = alpha_to x0 + sqrt(sigma_to^2 - s^2) eps + s z`, with `(x0, eps)` the model's data
//! and noise predictions at `from`, `s = eta sigma_to sqrt(1 - e^{-2h})` (the paper's
//! `sigma_t(eta)` written in log-SNR) and `z` standard normal. First order, 1 NFE per step.
//! With `eta = 0` it is deterministic and equals DPM-Solver++(1) and Euler on the same grid.
//! With clipping, `x0` is clipped and `eps` is the network's own estimate (diffusers' convention).

use candle_core::Tensor;

use super::Solver;
use crate::error::{config_err, Result};
use crate::grid::{Grid, Step};
use crate::model::Model;
use crate::noise::{NoiseSource, SeededNoise};
use crate::ops::lincomb;

/// The DDIM solver.
///
/// ```
/// use diffusion_samplers::{sample, Ddim, DiscreteVp, End, Grid, Model, Prediction, Spacing};
/// use candle_core::{Device, Tensor};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Leading { steps_offset: 1, skip_zero: false }, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
/// let x = Tensor::ones(4, candle_core::DType::F64, &Device::Cpu)?;
/// let x0 = sample(&Ddim::default(), &mut model, &grid, &x)?;
/// assert_eq!(model.nfe(), 10);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Ddim {
    /// Stochasticity: 0 = deterministic DDIM, 1 = DDPM-like ancestral sampling.
    pub eta: f64,
    /// Seed of the default noise generator when `eta > 0`.
    pub seed: u64,
}

/// DDIM's state: the noise generator (used only when `eta > 0`).
pub struct DdimState {
    noise: Box<dyn NoiseSource>,
}

impl Ddim {
    /// A state drawing its noise from `noise` instead of the seeded generator.
    pub fn state_with_noise(&self, noise: impl NoiseSource + 'static) -> DdimState {
        DdimState { noise: Box::new(noise) }
    }
}

impl Solver for Ddim {
    type State = DdimState;

    fn name(&self) -> &'static str {
        "DDIM"
    }

    fn init_state(&self, _grid: &Grid) -> Result<DdimState> {
        if !(self.eta >= 0.0 && self.eta.is_finite()) {
            return config_err(format!("DDIM eta must be finite and >= 0, got {}", self.eta));
        }
        Ok(DdimState { noise: Box::new(SeededNoise::new(self.seed)) })
    }

    fn step(&self, model: &mut Model, step: &Step, x: &Tensor, state: &mut DdimState) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        // x0 and eps are linear in (x, network output): the update is one pass over memory
        let (x0, eps) = model.data_and_noise_linear(x, from)?;
        let s = if self.eta > 0.0 { self.eta * to.sigma * (-(-2.0 * step.h()).exp_m1()).max(0.0).sqrt() } else { 0.0 };
        let c_eps = (to.sigma * to.sigma - s * s).max(0.0).sqrt();
        let c_x = to.alpha * x0.c_x + c_eps * eps.c_x;
        let mut terms = vec![(c_x, x)];
        if x0.out.id() == eps.out.id() {
            terms.push((to.alpha * x0.c_out + c_eps * eps.c_out, &x0.out));
        } else {
            terms.extend([(to.alpha * x0.c_out, &x0.out), (c_eps * eps.c_out, &eps.out)]);
        }
        if s == 0.0 {
            return lincomb(&terms);
        }
        let z = state.noise.noise_like(x)?;
        terms.push((s, &z));
        lincomb(&terms)
    }
}
