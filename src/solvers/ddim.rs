//! DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502, Eq. 12).
//!
//! `x_to = alpha_to x0 + sqrt(sigma_to^2 - s^2) eps + s z`, with `(x0, eps)` the model's data
//! and noise predictions at `from`, `s = eta sigma_to sqrt(1 - e^{-2h})` (the paper's
//! `sigma_t(eta)` written in log-SNR) and `z` standard normal. First order, 1 NFE per step.
//! With `eta = 0` it is deterministic and equals DPM-Solver++(1) and Euler on the same grid; with
//! `eta > 0` it draws one noise per step (none where `s = 0`) from the loop's noise source.
//! With clipping, `x0` is clipped and `eps` is the network's own estimate (diffusers' convention).

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
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
    /// Stochasticity: 0 = deterministic DDIM, 1 = DDPM-like ancestral sampling (noise from the
    /// loop's noise source).
    pub eta: f64,
}

impl Solver for Ddim {
    type State = ();

    fn name(&self) -> &'static str {
        "DDIM"
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        self.eta > 0.0
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        if !(self.eta >= 0.0 && self.eta.is_finite()) {
            return config_err(format!("DDIM eta must be finite and >= 0, got {}", self.eta));
        }
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        // x0 and eps are linear in (x, network output): the update is one pass over memory
        let (x0, eps) = ctx.model.data_and_noise_linear(x, from)?;
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
        let z = ctx.noise.noise_between(x, from, to)?;
        terms.push((s, &z));
        lincomb(&terms)
    }
}
