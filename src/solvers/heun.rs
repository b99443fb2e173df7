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
//! `[S_tmin, S_tmax]`.

use candle_core::Tensor;

use super::Solver;
use crate::error::{config_err, Error, Result};
use crate::grid::{Grid, Step};
use crate::model::Model;
use crate::noise::{NoiseSource, SeededNoise};
use crate::ops::lincomb;
use crate::schedule::Point;

/// EDM's stochastic churn (Algorithm 2). Defaults are EDM's ImageNet-64 values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Churn {
    /// Total churn `S_churn`, spread over the steps.
    pub s_churn: f64,
    /// Lowest noise level (ksigma) that gets churn.
    pub s_tmin: f64,
    /// Highest noise level (ksigma) that gets churn.
    pub s_tmax: f64,
    /// Scale of the added noise (`S_noise`).
    pub s_noise: f64,
    /// Seed of the default noise generator.
    pub seed: u64,
}

impl Default for Churn {
    fn default() -> Self {
        Churn { s_churn: 80.0, s_tmin: 0.05, s_tmax: 50.0, s_noise: 1.003, seed: 0 }
    }
}

/// The Heun solver; `churn: None` is the deterministic EDM Algorithm 1.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Heun {
    /// Stochastic churn (EDM Algorithm 2), off by default.
    pub churn: Option<Churn>,
}

/// Heun's state: the noise generator for churn.
pub struct HeunState {
    noise: Box<dyn NoiseSource>,
}

impl Heun {
    /// A state drawing churn noise from `noise` instead of the seeded generator.
    pub fn state_with_noise(&self, noise: impl NoiseSource + 'static) -> HeunState {
        HeunState { noise: Box::new(noise) }
    }
}

impl Solver for Heun {
    type State = HeunState;

    fn name(&self) -> &'static str {
        "Heun"
    }

    fn init_state(&self, _grid: &Grid) -> Result<HeunState> {
        let seed = match self.churn {
            Some(c) => {
                if !(c.s_churn >= 0.0 && c.s_noise >= 0.0 && c.s_tmin <= c.s_tmax) {
                    return config_err(format!(
                        "invalid churn settings {c:?}: need s_churn, s_noise >= 0, s_tmin <= s_tmax"
                    ));
                }
                c.seed
            }
            None => 0,
        };
        Ok(HeunState { noise: Box::new(SeededNoise::new(seed)) })
    }

    fn step(&self, model: &mut Model, step: &Step, x: &Tensor, state: &mut HeunState) -> Result<Tensor> {
        let (mut from, to) = (step.from, step.to);
        if !from.ksigma().is_finite() {
            return Err(Error::Unsupported(
                "Heun cannot start at alpha = 0 (infinite noise level): start the grid below t_max or use \
                 a multistep solver"
                    .into(),
            ));
        }
        let mut x = x.clone();
        if let Some(c) = self.churn {
            let s = from.ksigma();
            if (c.s_tmin..=c.s_tmax).contains(&s) && c.s_churn > 0.0 {
                let gamma = (c.s_churn / step.count as f64).min(std::f64::consts::SQRT_2 - 1.0);
                let hat: Point = model.schedule().point_of_lambda(-(s * (1.0 + gamma)).ln());
                let extra = (hat.ksigma().powi(2) - s * s).max(0.0).sqrt() * c.s_noise;
                let z = state.noise.noise_like(&x)?;
                x = lincomb(&[(hat.alpha / from.alpha, &x), (hat.alpha * extra, &z)])?;
                from = hat;
            }
        }
        // the data predictions stay linear forms in (sample, network output), folded into the
        // updates: each stage is one pass over memory
        let d0 = model.data_linear(&x, &from)?;
        let (s0, s1) = (from.ksigma(), to.ksigma());
        let c_x = to.sigma / from.sigma;
        let c_e = to.alpha * (1.0 - s1 / s0);
        let euler = lincomb(&[(c_x + c_e * d0.c_x, &x), (c_e * d0.c_out, &d0.out)])?;
        if to.is_clean() {
            return Ok(euler);
        }
        let d1 = model.data_linear(&euler, &to)?;
        let ds = s1 - s0;
        let (k0, k1) = (to.alpha * 0.5 * ds * (1.0 / s1 - 2.0 / s0), -to.alpha * 0.5 * ds / s1);
        lincomb(&[(c_x + k0 * d0.c_x, &x), (k0 * d0.c_out, &d0.out), (k1 * d1.c_x, &euler), (k1 * d1.c_out, &d1.out)])
    }
}
