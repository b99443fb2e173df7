//! DPM-Solver++(2S) ancestral with CFG++ (Lu et al. 2022, arXiv:2211.01095, Algorithm 1 with
//! `r = 1/2`; Chung et al. 2024, arXiv:2406.08070; ComfyUI's `dpmpp_2s_ancestral_cfg_pp`).
//!
//! With the noise levels `s = sigma/alpha`, `s_to`, the ancestral split `(s_down, s_up)`
//! ([`crate::math::ancestral::ancestral_split`]), `h = ln(s / s_down)` and the guided and
//! unconditional data predictions `x0`, `x0_u` at `from`, a step takes the midpoint
//! `lambda_mid = lambda + h/2` with the unconditional prediction, evaluates the network there, and
//! finishes with the midpoint's unconditional prediction `x0_u2`; in `y = x / alpha`:
//!
//! `y_mid = e^{-h/2} y + (1 - e^{-h/2}) x0_u`,
//! `y_to = e^{-h} y + (1 - e^{-h}) x0_u2 + s_noise s_up z + (x0 - x0_u)`.
//!
//! Into `sigma = 0` (`s_down = 0`) it returns `x0` after one evaluation. Where `x0 = x0_u` it is
//! DPM-Solver++(2S) ancestral (`eta = 0`: second order); with guidance the term `x0 - x0_u` enters
//! every step at full weight (no ODE limit). 2 NFE per step (1 into `sigma = 0`), one noise draw
//! per step before `sigma = 0` when `eta > 0` (ComfyUI draws and multiplies by 0 also for
//! `eta = 0`; here nothing is drawn then).

use candle_core::Tensor;

use super::{refuse_zero_alpha_start, Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::math::ancestral::{ancestral_split, ksigma_point};
use crate::ops::lincomb;

/// DPM-Solver++(2S) ancestral with CFG++. ComfyUI's `dpmpp_2s_ancestral_cfg_pp` is the default
/// (`eta = 1`, `s_noise = 1`). Needs a guided network ([`crate::ClassifierFreeGuidance`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmPP2sAncestralCfgPp {
    /// Fraction of the ancestral noise, in `[0, 1]` (0 = deterministic).
    pub eta: f64,
    /// Scale of the added noise.
    pub s_noise: f64,
}

impl Default for DpmPP2sAncestralCfgPp {
    fn default() -> Self {
        DpmPP2sAncestralCfgPp { eta: 1.0, s_noise: 1.0 }
    }
}

impl DpmPP2sAncestralCfgPp {
    fn noisy(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }
}

impl Solver for DpmPP2sAncestralCfgPp {
    type State = ();

    fn name(&self) -> &'static str {
        "DPM-Solver++(2S) ancestral CFG++"
    }

    fn order(&self) -> usize {
        if self.noisy() {
            1
        } else {
            2
        }
    }

    fn nfe(&self, step: &Step) -> usize {
        if step.to.is_clean() {
            1
        } else {
            2
        }
    }

    fn is_stochastic(&self) -> bool {
        self.noisy()
    }

    fn needs_unconditional(&self) -> bool {
        true
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        // eta <= 1 keeps s_down > 0 on every step that does not end at sigma = 0, so the step
        // costs 2 evaluations exactly when its metadata says so
        if !((0.0..=1.0).contains(&self.eta) && self.s_noise >= 0.0 && self.s_noise.is_finite()) {
            return config_err(format!(
                "DPM-Solver++(2S) ancestral CFG++ needs 0 <= eta <= 1 and finite s_noise >= 0, got eta = {}, \
                 s_noise = {}",
                self.eta, self.s_noise
            ));
        }
        refuse_zero_alpha_start(
            steps,
            "DPM-Solver++(2S) ancestral CFG++ cannot start at alpha = 0: start the grid below t_max",
        )
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let (x0, x0_u) = ctx.model.data_and_unconditional(x, from)?;
        if to.is_clean() {
            return Ok(x0);
        }
        let s = from.ksigma();
        let eta = if self.noisy() { self.eta } else { 0.0 };
        let (s_down, s_up) = ancestral_split(s, to.ksigma(), eta);
        let h = (s / s_down).ln();
        // the midpoint in lambda, as a point of the model's schedule
        let mid = ksigma_point(ctx.model.schedule(), (s * s_down).sqrt());
        let h_mid = mid.lambda - from.lambda;
        let x_mid = lincomb(&[(mid.sigma / from.sigma, x), (-mid.alpha * (-h_mid).exp_m1(), &x0_u)])?;
        let (_, x0_u2) = ctx.model.data_and_unconditional(&x_mid, &mid)?;
        let mut terms = vec![
            (to.alpha * s_down / from.sigma, x),
            (-to.alpha * (-h).exp_m1(), &x0_u2),
            (to.alpha, &x0),
            (-to.alpha, &x0_u),
        ];
        let z;
        if s_up > 0.0 {
            z = ctx.noise.noise_between(x, from, to)?;
            terms.push((to.alpha * self.s_noise * s_up, &z));
        }
        lincomb(&terms)
    }
}
