//! Noise schedules: how much signal (`alpha`) and noise (`sigma`) a sample holds at time `t`.
//!
//! A noisy sample is `x = alpha(t) * x0 + sigma(t) * eps`. Everything a solver needs is in a
//! [`Point`]: `t`, `alpha`, `sigma` and the half log-SNR `lambda = ln(alpha / sigma)`, all f64 on
//! the host. Time runs from the clean end (small `t`) to the noisy end (large `t`); sampling walks
//! it backwards.

mod betas;
mod flow;
mod ve;
mod vp;

pub use betas::TablePrecision;
pub(crate) use betas::{alphas_cumprod, torch_linspace_f32};
pub(crate) use flow::flow_sigma_of_lambda;
pub use flow::RectifiedFlow;
pub use ve::{Edm, EdmModelTime};
pub(crate) use vp::vp_from_log_ksigma;
pub use vp::{BetaSchedule, ContinuousVp, CosineVp, DiscreteVp};

/// One time of a schedule with its signal and noise levels.
///
/// ```
/// use diffusion_samplers::Point;
/// let p = Point::new(0.5, 0.8, 0.6);
/// assert!((p.lambda - (0.8f64 / 0.6).ln()).abs() < 1e-15);
/// assert!((p.ksigma() - 0.75).abs() < 1e-15);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The schedule's own time coordinate.
    pub t: f64,
    /// Signal scale: `x = alpha * x0 + sigma * eps`.
    pub alpha: f64,
    /// Noise scale.
    pub sigma: f64,
    /// Half log signal-to-noise ratio, `ln(alpha / sigma)`; `+inf` at `sigma = 0`, `-inf` at `alpha = 0`.
    pub lambda: f64,
}

impl Point {
    /// A point from its time, signal and noise scale (lambda is derived).
    pub fn new(t: f64, alpha: f64, sigma: f64) -> Point {
        Point { t, alpha, sigma, lambda: alpha.ln() - sigma.ln() }
    }

    /// The noise-free point (`sigma = 0`, `alpha = 1`) at time `t`.
    pub fn clean(t: f64) -> Point {
        Point { t, alpha: 1.0, sigma: 0.0, lambda: f64::INFINITY }
    }

    /// `sigma / alpha`: the noise level of the scaled sample `x / alpha`, the "sigma" of
    /// k-diffusion, EDM and diffusers' Euler/Karras schedulers.
    pub fn ksigma(&self) -> f64 {
        self.sigma / self.alpha
    }

    /// True at the noise-free end (`sigma == 0`).
    pub fn is_clean(&self) -> bool {
        self.sigma == 0.0
    }
}

/// A noise schedule (called `Scheduler` as in the product brief; diffusers' "scheduler" classes
/// are a schedule plus a solver, which this crate keeps apart).
///
/// Implementations hold only f64 host data and are cheap to query.
pub trait Scheduler: std::fmt::Debug + Send + Sync {
    /// `(alpha, sigma)` at time `t`.
    fn alpha_sigma(&self, t: f64) -> (f64, f64);

    /// The full [`Point`] at time `t`.
    fn point(&self, t: f64) -> Point {
        let (alpha, sigma) = self.alpha_sigma(t);
        Point::new(t, alpha, sigma)
    }

    /// Half log-SNR `ln(alpha / sigma)` at time `t`.
    fn lambda(&self, t: f64) -> f64 {
        self.point(t).lambda
    }

    /// The time at which `lambda(t) == lambda` (inverse of [`Scheduler::lambda`]). Schedules
    /// defined on a finite table clamp to their time range, as diffusers does.
    fn t_of_lambda(&self, lambda: f64) -> f64;

    /// The point whose half log-SNR is `lambda`.
    fn point_of_lambda(&self, lambda: f64) -> Point {
        self.point(self.t_of_lambda(lambda))
    }

    /// `(t_min, t_max)`: the times the model was trained on; sampling starts at `t_max`.
    fn t_range(&self) -> (f64, f64);

    /// The number the network is conditioned on at time `t` (training index for a discrete DDPM,
    /// `t` for a continuous VP model, sigma or `ln(sigma)/4` for EDM, `1000 * sigma` for flow
    /// models).
    fn model_time(&self, t: f64) -> f64;

    /// Inverse of [`Scheduler::model_time`].
    fn t_of_model_time(&self, model_time: f64) -> f64;

    /// The noise-free end point (`sigma = 0`), reached by a grid that ends "clean".
    fn clean_point(&self) -> Point;

    /// For a schedule defined on discrete training timesteps, how many there are.
    fn train_timesteps(&self) -> Option<usize> {
        None
    }

    /// Check the schedule's own settings: the checks of its validated constructor, for a schedule
    /// whose public fields were set directly (a struct literal). The grid builders and the
    /// sampling loop call it, so an invalid schedule is refused before a network call.
    fn validate(&self) -> crate::Result<()> {
        Ok(())
    }
}
