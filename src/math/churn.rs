//! Stochastic churn (Karras et al. 2022, "EDM", arXiv:2206.00364, Algorithm 2; k-diffusion's
//! `s_churn`, `s_tmin`, `s_tmax`, `s_noise` of `sample_euler`, `sample_heun`, `sample_dpm_2`
//! and ComfyUI's `sample_heunpp2`): before a step from noise level `s = ksigma_from` in
//! `[s_tmin, s_tmax]`, add noise to raise it to `s_hat = s (1 + gamma)`,
//! `gamma = min(s_churn / N, sqrt(2) - 1)` (`N` the number of steps), then take the
//! deterministic step from `s_hat`:
//!
//! `x_hat / alpha_hat = x / alpha + s_noise sqrt(s_hat^2 - s^2) z`.
//!
//! Written once for every solver with churn.

use candle_core::Tensor;

use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::math::ksigma::renoise;
use crate::schedule::Point;
use crate::solvers::StepContext;

/// EDM's stochastic churn (Algorithm 2). [`Churn::default`] holds EDM's ImageNet-64 values;
/// [`Churn::k_diffusion`] k-diffusion's and ComfyUI's defaults with a given `s_churn`.
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
}

impl Default for Churn {
    fn default() -> Self {
        Churn { s_churn: 80.0, s_tmin: 0.05, s_tmax: 50.0, s_noise: 1.003 }
    }
}

impl Churn {
    /// k-diffusion's defaults (`s_tmin = 0`, `s_tmax = inf`, `s_noise = 1`) with churn `s_churn`.
    ///
    /// ```
    /// use diffusion_samplers::Churn;
    /// let c = Churn::k_diffusion(1.0);
    /// assert_eq!(c.gamma(14.6, 10), 0.1); // min(1 / 10, sqrt(2) - 1)
    /// assert_eq!(c.gamma(14.6, 2), std::f64::consts::SQRT_2 - 1.0);
    /// ```
    pub fn k_diffusion(s_churn: f64) -> Churn {
        Churn { s_churn, s_tmin: 0.0, s_tmax: f64::INFINITY, s_noise: 1.0 }
    }

    /// `gamma` for a step from noise level `ksigma` in a run of `count` steps (0 outside
    /// `[s_tmin, s_tmax]`).
    pub fn gamma(&self, ksigma: f64, count: usize) -> f64 {
        if self.s_churn > 0.0 && (self.s_tmin..=self.s_tmax).contains(&ksigma) {
            (self.s_churn / count as f64).min(std::f64::consts::SQRT_2 - 1.0)
        } else {
            0.0
        }
    }

    /// True when some step may get churn.
    pub fn is_active(&self) -> bool {
        self.s_churn > 0.0
    }

    /// The configuration check of the solvers that take churn.
    pub(crate) fn validate(&self) -> Result<()> {
        let finite = self.s_churn.is_finite() && self.s_noise.is_finite() && self.s_tmin.is_finite();
        if !(finite && self.s_churn >= 0.0 && self.s_noise >= 0.0 && self.s_tmin >= 0.0 && self.s_tmin <= self.s_tmax) {
            return config_err(format!(
                "invalid churn settings {self:?}: need finite s_churn, s_noise >= 0 and 0 <= s_tmin <= s_tmax \
                 (s_tmax may be infinite)"
            ));
        }
        Ok(())
    }

    /// Raise `x` at `step.from` to `s_hat` when the step gets churn: returns the point the
    /// deterministic step starts from (the schedule's point at `s_hat`, or `step.from`) and the
    /// sample there. The noise is one draw (whenever `gamma > 0`, as ComfyUI draws) for the interval
    /// `step.from -> hat`. On a schedule
    /// defined on a finite range (`DiscreteVp`) `s_hat` above its largest noise level is clamped
    /// to it, and the added noise follows the point actually reached.
    pub(crate) fn raise(&self, ctx: &mut StepContext, step: &Step, x: &Tensor) -> Result<(Point, Tensor)> {
        let from = step.from;
        let s = from.ksigma();
        let gamma = self.gamma(s, step.count);
        if gamma == 0.0 {
            return Ok((from, x.clone()));
        }
        let hat = ctx.model.schedule().point_of_lambda(-(s * (1.0 + gamma)).ln());
        let z = ctx.noise.noise_between(x, &from, &hat)?;
        Ok((hat, renoise(x, &from, &hat, self.s_noise, &z)?))
    }
}

/// The churn option of a solver (`None`: deterministic), read the same way by every solver that
/// takes one (Euler, Heun, Heun++2, DPM-2).
pub(crate) trait ChurnOption {
    /// True when some step may get churn.
    fn is_active(&self) -> bool;
    /// The configuration check ([`Churn::validate`]; nothing to check without churn).
    fn validate(&self) -> Result<()>;
    /// [`Churn::raise`], or the step's start and `x` unchanged without churn.
    fn raise(&self, ctx: &mut StepContext, step: &Step, x: &Tensor) -> Result<(Point, Tensor)>;
}

impl ChurnOption for Option<Churn> {
    fn is_active(&self) -> bool {
        self.is_some_and(|c| c.is_active())
    }

    fn validate(&self) -> Result<()> {
        self.map_or(Ok(()), |c| c.validate())
    }

    fn raise(&self, ctx: &mut StepContext, step: &Step, x: &Tensor) -> Result<(Point, Tensor)> {
        match self {
            Some(c) => c.raise(ctx, step, x),
            None => Ok((step.from, x.clone())),
        }
    }
}
