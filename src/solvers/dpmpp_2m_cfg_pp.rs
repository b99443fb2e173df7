//! DPM-Solver++(2M) with CFG++ (Lu et al. 2022, arXiv:2211.01095, Algorithm 2; Chung et al. 2024,
//! arXiv:2406.08070; ComfyUI's `dpmpp_2m_cfg_pp`).
//!
//! With the guided data prediction `x0` and the unconditional one `x0_u` at `from` (one
//! evaluation of a [`crate::ClassifierFreeGuidance`] network), `h = lambda_to - lambda`,
//! `r = h_prev / h` and `x0_u'` the unconditional prediction of the previous step, a step is
//!
//! `x_to = (sigma_to / sigma) x + alpha_to (x0 - e^{-h} x0_u) + alpha_to (1 - e^{-h}) / (2 r) (x0 - x0_u')`
//!
//! (the last term from the second step on, not into `sigma = 0`, where the step returns `x0`).
//! Where `x0 = x0_u` it is DPM-Solver++(2M), second order; with guidance it is CFG++'s
//! manifold-constrained update (the DDIM step renoised with the unconditional noise, plus
//! DPM-Solver++'s second-order term). 1 NFE per step.

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::History;
use crate::ops::lincomb;

/// DPM-Solver++(2M) with CFG++ (ComfyUI's `dpmpp_2m_cfg_pp`). Needs a guided network
/// ([`crate::ClassifierFreeGuidance`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DpmPP2mCfgPp;

impl Solver for DpmPP2mCfgPp {
    type State = History;

    fn name(&self) -> &'static str {
        "DPM-Solver++(2M) CFG++"
    }

    fn order(&self) -> usize {
        2
    }

    fn needs_unconditional(&self) -> bool {
        true
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        Ok(())
    }

    fn init_state(&self) -> History {
        History::new(1)
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, hist: &mut History) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let (x0, x0_u) = ctx.model.data_and_unconditional(x, from)?;
        let out = if to.is_clean() {
            x0
        } else {
            let h = step.h();
            let decay = (-h).exp();
            let mut terms = vec![(to.sigma / from.sigma, x), (to.alpha, &x0), (-to.alpha * decay, &x0_u)];
            if let Some((prev, x0_u_prev)) = hist.newest() {
                // (1 - e^{-h}) / (2 r) with r = h_prev / h; 0 after a start at alpha = 0 (h_prev = inf)
                let c = -to.alpha * (-h).exp_m1() * h / (2.0 * (from.lambda - prev.lambda));
                terms.push((c, &x0));
                terms.push((-c, x0_u_prev));
            }
            lincomb(&terms)?
        };
        hist.push(*from, x0_u);
        Ok(out)
    }
}
