//! Heun's second-order method (Karras et al. 2022, "EDM", arXiv:2206.00364, Algorithm 1) and its
//! stochastic variant with churn (Algorithm 2), on the scaled variable `x / alpha` against
//! `ksigma = sigma / alpha`.
//!
//! Euler predictor `x' = (sigma_to/sigma) x + alpha_to (1 - s_to/s) D0`, then the trapezoidal
//! corrector; in `x`:
//! `x_to = (sigma_to/sigma) x + alpha_to [ (s_to - s)/2 (1/s_to - 2/s) D0 - (s_to - s)/(2 s_to) D1 ]`
//! with `D1` the data prediction at `(x', to)`. Second order, 2 NFE per step (1 on a step into
//! `sigma = 0`, which is an Euler step as in EDM). With churn, each step first adds noise to move
//! from `s` up to `s (1 + gamma)`, `gamma = min(S_churn / N, sqrt(2) - 1)` for `s` in
//! `[S_tmin, S_tmax]` ([`Churn`]). k-diffusion's `sample_heun` (ComfyUI's `heun`) is `Heun::default()`,
//! with churn `Heun { churn: Some(Churn::k_diffusion(s_churn)) }`.

use candle_core::Tensor;

use super::{order_unless_stochastic, refuse_zero_alpha_start, stages_unless_clean, Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::churn::ChurnOption;
use crate::math::Churn;
use crate::ops::lincomb;

/// The Heun solver; `churn: None` is the deterministic EDM Algorithm 1.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Heun {
    /// Stochastic churn (EDM Algorithm 2), off by default.
    pub churn: Option<Churn>,
}

impl Solver for Heun {
    type State = ();

    fn name(&self) -> &'static str {
        "Heun"
    }

    fn order(&self) -> usize {
        order_unless_stochastic(self.is_stochastic(), 2)
    }

    fn nfe(&self, step: &Step) -> usize {
        stages_unless_clean(step, 2)
    }

    fn is_stochastic(&self) -> bool {
        self.churn.is_active()
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        self.churn.validate()?;
        refuse_zero_alpha_start(
            steps,
            "Heun cannot start at alpha = 0 (infinite noise level): start the grid below t_max or use a multistep \
             solver",
        )
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let to = step.to;
        let (from, x) = self.churn.raise(ctx, step, x)?;
        // the data predictions stay linear forms in (sample, network output), folded into the
        // updates: each stage is one pass over memory
        let d0 = ctx.model.data_linear(&x, &from)?;
        let (s0, s1) = (from.ksigma(), to.ksigma());
        let c_x = to.sigma / from.sigma;
        let c_e = to.alpha * (1.0 - s1 / s0);
        let euler = lincomb(&[(c_x + c_e * d0.c_x, &x), (c_e * d0.c_out, &d0.out)])?;
        if to.is_clean() {
            return Ok(euler);
        }
        let d1 = ctx.model.data_linear(&euler, &to)?;
        let ds = s1 - s0;
        let (k0, k1) = (to.alpha * 0.5 * ds * (1.0 / s1 - 2.0 / s0), -to.alpha * 0.5 * ds / s1);
        lincomb(&[(c_x + k0 * d0.c_x, &x), (k0 * d0.c_out, &d0.out), (k1 * d1.c_x, &euler), (k1 * d1.c_out, &d1.out)])
    }
}
