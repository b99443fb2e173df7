//! The ancestral split of a step in k-diffusion's noise level `s = ksigma = sigma / alpha`
//! (k-diffusion's `get_ancestral_step`; the ancestral sampling of Karras et al. 2022,
//! arXiv:2206.00364, and of DDPM), and the point of a schedule at a given noise level.
//!
//! A step from `s` to `s_to` is split into a deterministic step down to
//! `s_down = sqrt(s_to^2 - s_up^2)` and fresh noise of scale
//! `s_up = min(s_to, eta sqrt(s_to^2 (s^2 - s_to^2) / s^2))`: for `eta = 1` this is the DDPM
//! posterior step, for `eta = 0` the ODE step (`s_down = s_to`, `s_up = 0`).

use crate::schedule::{Point, Scheduler};

/// `(s_down, s_up)` for a step from noise level `s_from` to `s_to` with noise fraction `eta`
/// (k-diffusion's `get_ancestral_step`): `s_up = min(s_to, eta sqrt(s_to^2 (s_from^2 - s_to^2) /
/// s_from^2))`, `s_down = sqrt(s_to^2 - s_up^2)`. Finite for `s_from = inf` (a start at
/// `alpha = 0`: `s_up = min(s_to, eta s_to)`) and `s_to = 0` (both 0).
///
/// ```
/// use diffusion_samplers::math::ancestral::ancestral_split;
/// let (down, up) = ancestral_split(2.0, 1.0, 1.0);
/// assert!((up - 0.75f64.sqrt()).abs() < 1e-15 && (down - 0.5).abs() < 1e-15);
/// assert_eq!(ancestral_split(2.0, 1.0, 0.0), (1.0, 0.0));
/// assert_eq!(ancestral_split(2.0, 0.0, 1.0), (0.0, 0.0));
/// ```
pub fn ancestral_split(s_from: f64, s_to: f64, eta: f64) -> (f64, f64) {
    if eta == 0.0 || s_to == 0.0 {
        return (s_to, 0.0);
    }
    // s_to^2 (s^2 - s_to^2) / s^2 = s_to^2 (1 - (s_to / s)^2), finite at s = inf
    let ratio = s_to / s_from;
    let up = (eta * s_to * (1.0 - ratio * ratio).max(0.0).sqrt()).min(s_to);
    let down = ((s_to - up) * (s_to + up)).max(0.0).sqrt();
    (down, up)
}

/// The point of `schedule` whose noise level `sigma / alpha` is `s` (`s = 0`: the clean point).
/// Schedules defined on a finite table clamp to it ([`Scheduler::t_of_lambda`]).
///
/// ```
/// use diffusion_samplers::{math::ancestral::ksigma_point, DiscreteVp, Scheduler};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let p = ksigma_point(&s, 1.5);
/// assert!((p.ksigma() - 1.5).abs() < 1e-9);
/// assert!(ksigma_point(&s, 0.0).is_clean());
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn ksigma_point(schedule: &dyn Scheduler, s: f64) -> Point {
    if s == 0.0 {
        return schedule.clean_point();
    }
    schedule.point_of_lambda(-s.ln())
}

/// The weights of one ancestral Euler step in `x` (the sample at `from`): with `(s_down, s_up)`
/// from [`ancestral_split`] of the step's noise levels, the step
/// `x_to / alpha_to = (s_down / s) x / alpha + (1 - s_down / s) x0 + s_up z` is
/// `x_to = c_x x + c_d x0 + c_z z` with `c_x = alpha_to s_down / sigma`,
/// `c_d = alpha_to (1 - s_down / s)`, `c_z = alpha_to s_up` (finite at `alpha = 0` and into
/// `sigma = 0`).
///
/// ```
/// use diffusion_samplers::{math::ancestral::ancestral_euler_weights, Point};
/// let (from, to) = (Point::new(1.0, 0.6, 0.8), Point::new(0.0, 0.8, 0.6));
/// let (c_x, c_d, c_z) = ancestral_euler_weights(&from, &to, 0.0);
/// // eta = 0: the Euler (DDIM) step, no noise
/// assert!((c_x - 0.6 / 0.8).abs() < 1e-15 && (c_d - 0.8 * (1.0 - 0.75 / (4.0 / 3.0))).abs() < 1e-15);
/// assert_eq!(c_z, 0.0);
/// ```
pub fn ancestral_euler_weights(from: &Point, to: &Point, eta: f64) -> (f64, f64, f64) {
    let (s, s_to) = (from.ksigma(), to.ksigma());
    let (down, up) = ancestral_split(s, s_to, eta);
    // s_down / s, with s = inf at alpha = 0
    let ratio = down / s;
    (to.alpha * down / from.sigma, to.alpha * (1.0 - ratio), to.alpha * up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_the_variance_and_its_limits() {
        for (s, t, eta) in [(5.0, 2.0, 1.0), (5.0, 2.0, 0.5), (1.0, 0.999, 1.0), (3.0, 1.0, 2.0)] {
            let (down, up) = ancestral_split(s, t, eta);
            assert!((down * down + up * up - t * t).abs() < 1e-12, "{s} {t} {eta}");
            assert!(up <= t && down >= 0.0);
        }
        // eta = 1 is the DDPM posterior: s_down = s_to^2 / s
        let (down, _) = ancestral_split(5.0, 2.0, 1.0);
        assert!((down - 0.8).abs() < 1e-12);
        // a start at alpha = 0 (s = inf) and large eta stay finite
        assert_eq!(ancestral_split(f64::INFINITY, 2.0, 1.0), (0.0, 2.0));
        let (down, up) = ancestral_split(f64::INFINITY, 2.0, 0.5);
        assert!((up - 1.0).abs() < 1e-15 && (down - 3f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn euler_weights_at_the_ends() {
        // from alpha = 0 the step returns the data prediction plus noise
        let from = Point::new(1.0, 0.0, 1.0);
        let to = Point::new(0.5, 0.6, 0.8);
        let (c_x, c_d, c_z) = ancestral_euler_weights(&from, &to, 1.0);
        assert_eq!(c_x, 0.0);
        assert!((c_d - 0.6).abs() < 1e-15 && (c_z - 0.8).abs() < 1e-15);
        // into sigma = 0: the data prediction
        let (c_x, c_d, c_z) = ancestral_euler_weights(&to, &Point::clean(0.0), 1.0);
        assert_eq!((c_x, c_d, c_z), (0.0, 1.0, 0.0));
    }
}
