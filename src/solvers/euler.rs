//! Euler's method on the probability-flow ODE in the scaled variable `x / alpha` against the
//! noise level `ksigma = sigma / alpha` (Karras et al. 2022, "EDM", arXiv:2206.00364, Eq. 3/
//! Algorithm 1 without the correction): `d = (x/alpha - x0) / ksigma`,
//! `x_to / alpha_to = x / alpha + (ksigma_to - ksigma) d`. In `x` this is
//! `x_to = (sigma_to / sigma) x + alpha_to (1 - ksigma_to / ksigma) x0`. First order, 1 NFE per
//! step; equal to deterministic DDIM and DPM-Solver++(1) on the same grid.
//!
//! With [`Churn`] it is EDM's Algorithm 2 with Euler steps, k-diffusion's `sample_euler` with
//! `s_churn > 0`: each step first raises the noise level to `s (1 + gamma)` with fresh noise.
//! ComfyUI's `euler` is [`Euler`] (no churn).

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::churn::ChurnOption;
use crate::math::ksigma::euler;
use crate::math::Churn;

/// The Euler solver. [`Euler`](const@Euler) (the constant) is the deterministic method, k-diffusion's and
/// ComfyUI's `euler`; `Euler { churn: Some(..) }` adds EDM's churn.
///
/// ```
/// use diffusion_samplers::{AnySolver, Churn, Euler, Solver};
/// assert_eq!(AnySolver::new(Euler).to_string(), "euler");
/// let churned = Euler { churn: Some(Churn::k_diffusion(0.5)) };
/// assert!(churned.is_stochastic() && !Euler.is_stochastic());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Euler {
    /// Stochastic churn (EDM Algorithm 2), off by default.
    pub churn: Option<Churn>,
}

/// The deterministic Euler solver (`Euler { churn: None }`), usable as a value:
/// `sample(&Euler, ...)`.
#[allow(non_upper_case_globals)]
pub const Euler: Euler = Euler { churn: None };

impl Solver for Euler {
    type State = ();

    fn name(&self) -> &'static str {
        "Euler"
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        self.churn.is_active()
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        self.churn.validate()
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, x) = self.churn.raise(ctx, step, x)?;
        // x0 = d0.c_x x + d0.c_out out, folded into the update: one pass over memory
        let d0 = ctx.model.data_linear(&x, &from)?;
        euler(&x, &from, &d0, &step.to)
    }
}
