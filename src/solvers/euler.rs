//! Euler's method on the probability-flow ODE in the scaled variable `x / alpha` against the
//! noise level `ksigma = sigma / alpha` (Karras et al. 2022, "EDM", arXiv:2206.00364, Eq. 3/
//! Algorithm 1 without the correction): `d = (x/alpha - x0) / ksigma`,
//! `x_to / alpha_to = x / alpha + (ksigma_to - ksigma) d`. In `x` this is
//! `x_to = (sigma_to / sigma) x + alpha_to (1 - ksigma_to / ksigma) x0`. First order, 1 NFE per
//! step; equal to deterministic DDIM and DPM-Solver++(1) on the same grid.

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::ops::lincomb;

/// The Euler solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Euler;

impl Solver for Euler {
    type State = ();

    fn name(&self) -> &'static str {
        "Euler"
    }

    fn order(&self) -> usize {
        1
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        // x0 = d0.c_x x + d0.c_out out, folded into the update: one pass over memory
        let d0 = ctx.model.data_linear(x, from)?;
        let ratio = to.ksigma() / from.ksigma(); // 0 when starting from alpha = 0
        let c_d = to.alpha * (1.0 - ratio);
        lincomb(&[(to.sigma / from.sigma + c_d * d0.c_x, x), (c_d * d0.c_out, &d0.out)])
    }
}
