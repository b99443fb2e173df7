//! The ancestral split of k-diffusion's ancestral samplers (`get_ancestral_step` in
//! k-diffusion's `sampling.py`; the DDPM posterior step written in noise levels, Karras et al.
//! 2022, arXiv:2206.00364): a step from noise level `s = ksigma_from` to `s_to = ksigma_to` is a
//! deterministic step down to `s_down` followed by fresh noise of scale `s_up`, with
//! `s_to^2 = s_down^2 + s_up^2` and
//!
//! `s_up = min(s_to, eta sqrt(s_to^2 (s^2 - s_to^2) / s^2))`.
//!
//! With `r = s_to / s = e^{-h}` and `u = s_up / s_to = min(1, eta sqrt(1 - r^2))` the split
//! depends only on `h = lambda_to - lambda_from`: `s_down = s_to sqrt(1 - u^2)`. `eta = 1` is
//! DDPM's posterior variance, `eta = 0` no noise (`s_down = s_to`).
//!
//! Shared by every ancestral / SDE sampler of the k-diffusion family (Euler-ancestral, DPM-2
//! ancestral, DPM-Solver++(2S) ancestral, DPM-Solver++ SDE, and the CFG++ variants):
//! [`ancestral`] on points, with its noise-level form [`ancestral_split`] and the weights of the
//! ancestral Euler step [`ancestral_euler_weights`]; [`ksigma_point`] finds a schedule's point at
//! a noise level.

use super::expint::{weights, Form};
use crate::schedule::{Point, Scheduler};

/// An ancestral step `from -> to` split into a deterministic step to [`Ancestral::down`] and
/// fresh noise of standard deviation [`Ancestral::noise`] (in `x`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ancestral {
    /// Where the deterministic part ends: `to`'s `alpha` with the noise level
    /// `ksigma = s_down`, i.e. `sigma = sigma_to sqrt(1 - u^2)` and
    /// `lambda = lambda_to - ln sqrt(1 - u^2)` (not a point of the schedule; the deterministic
    /// formulas only need its `alpha`, `sigma` and `lambda`). Clean (`sigma = 0`) when `to` is
    /// clean or the whole step is noise (`u = 1`); equal to `to` when `eta = 0`.
    pub down: Point,
    /// Standard deviation of the added noise in `x`: `sigma_to u` (`alpha_to s_up`).
    pub noise: f64,
}

/// k-diffusion's `get_ancestral_step(ksigma_from, ksigma_to, eta)` as an [`Ancestral`] split,
/// computed from `h` without cancellation: finite for a start at `alpha = 0` (`h = inf`, `u =
/// min(1, eta)`) and into `sigma = 0`. A step of non-positive `h` (inversion) gets no noise.
///
/// ```
/// use diffusion_samplers::{math::ancestral::ancestral, Point};
/// let (from, to) = (Point::new(0.0, 1.0, 2.0), Point::new(0.0, 1.0, 1.0));
/// let a = ancestral(&from, &to, 1.0);
/// // k-diffusion: sigma_up = sqrt(1 * (4 - 1) / 4), sigma_down = sqrt(1 - sigma_up^2)
/// assert!((a.noise - 0.75f64.sqrt()).abs() < 1e-15 && (a.down.sigma - 0.5).abs() < 1e-15);
/// assert_eq!(ancestral(&from, &to, 0.0).down, to);
/// ```
pub fn ancestral(from: &Point, to: &Point, eta: f64) -> Ancestral {
    let h = to.lambda - from.lambda;
    // u^2 = min(1, eta^2 (1 - e^{-2h})) and m^2 = 1 - u^2 = (1 - eta^2) + eta^2 e^{-2h}, each
    // written without cancellation where it is small (1 - e^{-2h} = 1 into sigma = 0 or from
    // alpha = 0)
    let u2 = (eta * eta * -(-2.0 * h).exp_m1()).clamp(0.0, 1.0);
    if u2 == 0.0 {
        return Ancestral { down: *to, noise: 0.0 };
    }
    let m2 = if u2 < 1.0 { ((1.0 - eta * eta) + eta * eta * (-2.0 * h).exp()).clamp(0.0, 1.0) } else { 0.0 };
    let ln_m = 0.5 * if u2 < 0.5 { (-u2).ln_1p() } else { m2.ln() };
    let down = Point { t: to.t, alpha: to.alpha, sigma: to.sigma * m2.sqrt(), lambda: to.lambda - ln_m };
    Ancestral { down, noise: to.sigma * u2.sqrt() }
}

/// `(s_down, s_up)` for a step from noise level `s_from` to `s_to` with noise fraction `eta`
/// (k-diffusion's `get_ancestral_step`): [`ancestral`] on points with `alpha = 1`. Finite for
/// `s_from = inf` (a start at `alpha = 0`: `s_up = min(s_to, eta s_to)`) and `s_to = 0` (both 0).
///
/// ```
/// use diffusion_samplers::math::ancestral::ancestral_split;
/// let (down, up) = ancestral_split(2.0, 1.0, 1.0);
/// assert!((up - 0.75f64.sqrt()).abs() < 1e-15 && (down - 0.5).abs() < 1e-15);
/// assert_eq!(ancestral_split(2.0, 1.0, 0.0), (1.0, 0.0));
/// assert_eq!(ancestral_split(2.0, 0.0, 1.0), (0.0, 0.0));
/// ```
pub fn ancestral_split(s_from: f64, s_to: f64, eta: f64) -> (f64, f64) {
    let a = ancestral(&Point::new(0.0, 1.0, s_from), &Point::new(0.0, 1.0, s_to), eta);
    (a.down.sigma, a.noise)
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

/// The weights of one ancestral Euler step in `x` (the sample at `from`): the step
/// `x_to / alpha_to = (s_down / s) x / alpha + (1 - s_down / s) x0 + s_up z` is
/// `x_to = c_x x + c_d x0 + c_z z` with `c_x = alpha_to s_down / sigma`,
/// `c_d = alpha_to (1 - s_down / s)`, `c_z = alpha_to s_up` (the Euler step to
/// [`Ancestral::down`] and [`Ancestral::noise`]; finite at `alpha = 0` and into `sigma = 0`).
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
    let a = ancestral(from, to, eta);
    let w = weights(Form::Data, from, &a.down);
    (w.c_x, w.c[0], a.noise)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ve(s: f64) -> Point {
        Point::new(0.0, 1.0, s)
    }

    /// k-diffusion's formula, written as there.
    fn reference(s: f64, s_to: f64, eta: f64) -> (f64, f64) {
        if eta == 0.0 {
            return (s_to, 0.0);
        }
        let up = s_to.min(eta * (s_to * s_to * (s * s - s_to * s_to) / (s * s)).sqrt());
        ((s_to * s_to - up * up).sqrt(), up)
    }

    #[test]
    fn matches_k_diffusion_and_scales_with_alpha() {
        for (s, s_to) in [(14.6, 9.7), (2.0, 1.999), (0.5, 0.03), (80.0, 1e-3)] {
            for eta in [0.0, 0.3, 1.0, 1.7, 50.0] {
                let (down, up) = reference(s, s_to, eta);
                let a = ancestral(&ve(s), &ve(s_to), eta);
                // the reference's sqrt(s_to^2 - s_up^2) cancels: its own error is about
                // eps s_to^2 / s_down
                let tol = 1e-13 * s_to + 4.0 * f64::EPSILON * s_to * s_to / down.max(1e-300);
                assert!((a.down.sigma - down).abs() <= tol, "{s} {s_to} {eta}: {a:?} vs {down}");
                assert!((a.noise - up).abs() <= 1e-13 * s_to, "{s} {s_to} {eta}: {a:?} vs {up}");
                if eta == 1.0 {
                    // DDPM's posterior: s_down = s_to^2 / s exactly
                    assert!((a.down.sigma / (s_to * s_to / s) - 1.0).abs() < 1e-14, "{a:?}");
                }
                if down > 0.0 {
                    assert!((a.down.lambda + a.down.sigma.ln()).abs() < 1e-12, "{a:?}");
                }
                // the same split on VP points with these noise levels, in x = alpha y
                let vp = |s: f64| Point::new(1.0, 1.0 / (1.0 + s * s).sqrt(), s / (1.0 + s * s).sqrt());
                let b = ancestral(&vp(s), &vp(s_to), eta);
                assert!((b.down.ksigma() - a.down.sigma).abs() <= 1e-12 * s_to, "{b:?}");
                assert!((b.noise - vp(s_to).alpha * up).abs() <= 1e-12 * s_to, "{b:?}");
            }
        }
    }

    #[test]
    fn ends_from_pure_noise_into_clean_and_inverted() {
        let clean = Point::clean(0.0);
        for eta in [0.0, 0.5, 1.0] {
            let a = ancestral(&ve(3.0), &clean, eta);
            assert!(a.down.is_clean() && a.noise == 0.0 && a.down.lambda == f64::INFINITY, "{a:?}");
        }
        // alpha = 0 start: u = min(1, eta)
        let noise = Point::new(1.0, 0.0, 1.0);
        let to = Point::new(0.9, 0.6, 0.8);
        let a = ancestral(&noise, &to, 1.0);
        assert!(a.down.is_clean() && a.down.lambda == f64::INFINITY && (a.noise - 0.8).abs() < 1e-15, "{a:?}");
        let a = ancestral(&noise, &to, 0.6);
        assert!((a.noise - 0.48).abs() < 1e-15 && (a.down.sigma - 0.64).abs() < 1e-15, "{a:?}");
        // inversion: no noise
        assert_eq!(ancestral(&ve(1.0), &ve(2.0), 1.0), Ancestral { down: ve(2.0), noise: 0.0 });
    }

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
