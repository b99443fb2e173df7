//! Rectified flow / flow matching: `x = (1 - sigma) x0 + sigma eps` (Liu et al. 2022,
//! arXiv:2209.03003; Esser et al. 2024, arXiv:2403.03206 for the shifted time of SD3 and Flux).

use super::{Point, Scheduler};
use crate::error::{config_err, Result};

/// The rectified-flow schedule `alpha = 1 - sigma`, with a static time shift: the schedule's time
/// `t` in `[t_min, 1]` maps to `sigma = shift t / (1 + (shift - 1) t)`, so a uniform grid in `t`
/// is SD3's shifted grid. The model time is `time_scale * sigma` (diffusers passes
/// `1000 * sigma`).
///
/// ```
/// use diffusion_samplers::{RectifiedFlow, Scheduler};
/// let s = RectifiedFlow { shift: 3.0, ..Default::default() };
/// let (alpha, sigma) = s.alpha_sigma(0.5);
/// assert!((sigma - 0.75).abs() < 1e-15 && (alpha - 0.25).abs() < 1e-15);
/// assert!((s.model_time(0.5) - 750.0).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RectifiedFlow {
    /// Static shift (1 = none; SD3 uses 3).
    pub shift: f64,
    /// Smallest time sampled before the final jump to `sigma = 0` (diffusers: `1 / 1000`).
    pub t_min: f64,
    /// Model time per unit sigma.
    pub time_scale: f64,
}

impl Default for RectifiedFlow {
    fn default() -> Self {
        RectifiedFlow { shift: 1.0, t_min: 1e-3, time_scale: 1000.0 }
    }
}

impl RectifiedFlow {
    /// Validated constructor.
    pub fn new(shift: f64, t_min: f64, time_scale: f64) -> Result<RectifiedFlow> {
        let s = RectifiedFlow { shift, t_min, time_scale };
        s.validate()?;
        Ok(s)
    }

    fn sigma(&self, t: f64) -> f64 {
        self.shift * t / (1.0 + (self.shift - 1.0) * t)
    }

    fn t_of_sigma(&self, sigma: f64) -> f64 {
        // sigma / (shift - (shift - 1) sigma), without its cancellation for a large shift
        sigma / (self.shift * (1.0 - sigma) + sigma)
    }
}

/// The flow sigma (`alpha = 1 - sigma`) whose half log-SNR is `lambda`: `sigma / (1 - sigma) =
/// e^{-lambda}`, written without overflow.
pub(crate) fn flow_sigma_of_lambda(lambda: f64) -> f64 {
    if lambda >= 0.0 {
        let e = (-lambda).exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + lambda.exp())
    }
}

impl Scheduler for RectifiedFlow {
    fn alpha_sigma(&self, t: f64) -> (f64, f64) {
        // alpha = 1 - sigma = (1 - t) / (1 + (shift - 1) t): exactly 0 at t = 1 (the end is pure
        // noise whatever the rounding of sigma there) and accurate near it
        let denom = 1.0 + (self.shift - 1.0) * t;
        ((1.0 - t) / denom, self.shift * t / denom)
    }

    fn t_of_lambda(&self, lambda: f64) -> f64 {
        // sigma / alpha = shift t / (1 - t) = exp(-lambda), solved for t without overflow
        if lambda >= 0.0 {
            let ks = (-lambda).exp();
            ks / (self.shift + ks)
        } else {
            1.0 / (1.0 + self.shift * lambda.exp())
        }
    }

    fn t_range(&self) -> (f64, f64) {
        (self.t_min, 1.0)
    }

    fn model_time(&self, t: f64) -> f64 {
        self.time_scale * self.sigma(t)
    }

    fn t_of_model_time(&self, model_time: f64) -> f64 {
        self.t_of_sigma(model_time / self.time_scale)
    }

    fn clean_point(&self) -> Point {
        Point::clean(0.0)
    }

    fn validate(&self) -> Result<()> {
        let (shift, t_min, time_scale) = (self.shift, self.t_min, self.time_scale);
        if !(shift > 0.0 && shift.is_finite()) {
            return config_err(format!("flow shift must be positive and finite, got {shift}"));
        }
        if !(t_min > 0.0 && t_min < 1.0) {
            return config_err(format!("t_min must lie in (0, 1), got {t_min}"));
        }
        if !(time_scale > 0.0 && time_scale.is_finite()) {
            return config_err(format!("time_scale must be positive and finite, got {time_scale}"));
        }
        Ok(())
    }
}
