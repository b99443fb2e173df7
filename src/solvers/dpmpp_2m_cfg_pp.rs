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
use crate::error::{Error, Result};
use crate::grid::Step;
use crate::math::expint::{multistep_weights, weights, Form};
use crate::math::History;
use crate::model::Guidance;
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
        let g = ctx.model.guided_data(Guidance::CfgPp, x, from)?;
        let (x0, x0_u) = g.cfg_pp.as_ref().ok_or_else(|| Error::InvalidConfig("CFG++ lost its predictions".into()))?;
        // DPM-Solver++(1) on x0_u plus the guidance, then the 2M term k1 a (x0 - x0_u') with the
        // multistep weights (a = h / (lambda - lambda_prev); 0 after a start at alpha = 0)
        let w = weights(Form::Data, from, to);
        let mut terms = vec![(w.c_x, x), (w.c[0], x0_u)];
        terms.extend(g.guidance_terms(to.alpha));
        if let (Some((prev, x0_u_prev)), false) = (hist.newest(), to.is_clean()) {
            let m = multistep_weights(step.h(), &[from.lambda, prev.lambda], 0.0, 0.5 * w.c[0], 0.0);
            terms.extend([(m[0], x0), (m[1], x0_u_prev)]);
        }
        let out = lincomb(&terms)?;
        hist.push(*from, x0_u.clone());
        Ok(out)
    }
}
