//! Variance-exploding schedules: `alpha = 1`, `sigma = t` (Karras et al. 2022, "EDM",
//! arXiv:2206.00364).

use super::{Point, Scheduler};
use crate::error::{config_err, Result};

/// What number an EDM network is conditioned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EdmModelTime {
    /// The noise level sigma itself.
    #[default]
    Sigma,
    /// EDM's preconditioned `c_noise = ln(sigma) / 4`.
    QuarterLogSigma,
}

/// The EDM / VE schedule: `alpha = 1`, `sigma = t`, `t` in `[sigma_min, sigma_max]`.
///
/// ```
/// use diffusion_samplers::{Edm, Scheduler};
/// let s = Edm::default();
/// assert_eq!(s.alpha_sigma(3.0), (1.0, 3.0));
/// assert_eq!(s.t_range(), (0.002, 80.0));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Edm {
    /// Smallest noise level sampled.
    pub sigma_min: f64,
    /// Noise level sampling starts from.
    pub sigma_max: f64,
    /// The network's time input.
    pub model_time: EdmModelTime,
}

impl Default for Edm {
    fn default() -> Self {
        Edm { sigma_min: 0.002, sigma_max: 80.0, model_time: EdmModelTime::Sigma }
    }
}

impl Edm {
    /// Validated constructor.
    pub fn new(sigma_min: f64, sigma_max: f64, model_time: EdmModelTime) -> Result<Edm> {
        let s = Edm { sigma_min, sigma_max, model_time };
        s.validate()?;
        Ok(s)
    }
}

impl Scheduler for Edm {
    fn alpha_sigma(&self, t: f64) -> (f64, f64) {
        (1.0, t)
    }

    fn t_of_lambda(&self, lambda: f64) -> f64 {
        (-lambda).exp()
    }

    fn t_range(&self) -> (f64, f64) {
        (self.sigma_min, self.sigma_max)
    }

    fn model_time(&self, t: f64) -> f64 {
        match self.model_time {
            EdmModelTime::Sigma => t,
            EdmModelTime::QuarterLogSigma => 0.25 * t.ln(),
        }
    }

    fn t_of_model_time(&self, model_time: f64) -> f64 {
        match self.model_time {
            EdmModelTime::Sigma => model_time,
            EdmModelTime::QuarterLogSigma => (4.0 * model_time).exp(),
        }
    }

    fn clean_point(&self) -> Point {
        Point::clean(0.0)
    }

    fn validate(&self) -> Result<()> {
        let (sigma_min, sigma_max) = (self.sigma_min, self.sigma_max);
        if !(sigma_min > 0.0 && sigma_max > sigma_min && sigma_max.is_finite()) {
            return config_err(format!(
                "need 0 < sigma_min < sigma_max < inf, got sigma_min = {sigma_min}, sigma_max = {sigma_max}"
            ));
        }
        Ok(())
    }
}
