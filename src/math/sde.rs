//! Weights of exponential integrators for the reverse-time diffusion SDE in data prediction,
//! written once for the stochastic solvers (SDE-DPM-Solver++, SEEDS, SA-Solver).
//!
//! The reverse SDE with noise fraction `eta` (`eta = 0`: the probability-flow ODE, `eta = 1`: the
//! reverse-time SDE of Song et al. 2021) has, for a step `from -> to` with
//! `h = lambda_to - lambda_from` and a constant data prediction `x0`, the exact solution
//!
//! `x_to = (sigma_to / sigma) e^{-eta h} x + alpha_to (1 - e^{-(1 + eta) h}) x0
//!         + sigma_to sqrt(1 - e^{-2 eta h}) z`
//!
//! (Lu et al. 2022, arXiv:2211.01095, Eq. 16-17, SDE-DPM-Solver++(1); Gonzalez et al. 2023,
//! arXiv:2305.14267, SEEDS-1; Xue et al. 2023, arXiv:2309.05019, Eq. 13 with `tau^2 = eta`).
//! Higher orders replace `x0` by a polynomial in `lambda` through earlier predictions and
//! integrate it exactly against the kernel `(1 + eta) e^{-(1 + eta)(lambda_to - lambda)}`
//! ([`polynomial_weights`], the moment system of [`crate::math::lagrange`] with `h` scaled by
//! `1 + eta`).

use super::lagrange::kernel_weights;
use super::phi::tail;
use crate::error::Result;
use crate::schedule::Point;

/// `(c_x, c_d, c_z)` of the first-order step `x_to = c_x x + c_d x0 + c_z z`:
/// `c_x = (sigma_to / sigma) e^{-eta h}`, `c_d = alpha_to (1 - e^{-(1 + eta) h})`,
/// `c_z = sigma_to sqrt(1 - e^{-2 eta h})`. Finite from `alpha = 0` and into `sigma = 0`
/// (`h = inf`, also with `eta = 0`); `eta = 0` is the DDIM / DPM-Solver++(1) step (`c_d` is
/// [`crate::math::expint::weights`]' data weight at `(1 + eta) h`), and a step of `h < 0`
/// (inversion) gets no noise.
///
/// ```
/// use diffusion_samplers::{math::sde::sde_weights, Point};
/// let (from, to) = (Point::new(1.0, 0.6, 0.8), Point::new(0.0, 0.8, 0.6));
/// let (c_x, c_d, c_z) = sde_weights(&from, &to, 0.0);
/// assert!((c_x - 0.75).abs() < 1e-15 && c_z == 0.0);
/// // eta = 1: the DDPM posterior mean and standard deviation
/// let e = (-(to.lambda - from.lambda)).exp();
/// let (c_x, c_d, c_z) = sde_weights(&from, &to, 1.0);
/// assert!((c_x - 0.75 * e).abs() < 1e-15 && (c_d - 0.8 * (1.0 - e * e)).abs() < 1e-15);
/// assert!((c_z - 0.6 * (1.0 - e * e).sqrt()).abs() < 1e-15);
/// ```
pub fn sde_weights(from: &Point, to: &Point, eta: f64) -> (f64, f64, f64) {
    let h = to.lambda - from.lambda;
    let eta_h = eta_h(h, eta);
    let c_x = if to.sigma == 0.0 { 0.0 } else { to.sigma / from.sigma * (-eta_h).exp() };
    let c_d = to.alpha * tail(0, h + eta_h);
    let c_z = if eta_h == 0.0 || to.sigma == 0.0 { 0.0 } else { to.sigma * (-(-2.0 * eta_h).exp_m1()).max(0.0).sqrt() };
    (c_x, c_d, c_z)
}

/// `eta h`, 0 for `eta = 0` also at `h = inf` (a step from `alpha = 0` or into `sigma = 0`):
/// `h + eta_h(h, eta)` is the scaled step `(1 + eta) h` of the SDE's exponential integrators.
pub fn eta_h(h: f64, eta: f64) -> f64 {
    if eta == 0.0 {
        0.0
    } else {
        eta * h
    }
}

/// The Ornstein-Uhlenbeck factors of noise carried across `delta = lambda_b - lambda_a >= 0` of
/// the SDE with noise fraction `eta`: a standard normal `z_a` accumulated up to `lambda_a`
/// continues as `z_b = decay z_a + fresh z` with `decay = e^{-eta delta}`,
/// `fresh = sqrt(1 - e^{-2 eta delta})` (`decay^2 + fresh^2 = 1`). SEEDS carries its noise across
/// its stages this way.
///
/// ```
/// use diffusion_samplers::math::sde::ou_factors;
/// let (d, f) = ou_factors(0.7, 1.0);
/// assert!((d * d + f * f - 1.0).abs() < 1e-15 && (d - (-0.7f64).exp()).abs() < 1e-15);
/// ```
pub fn ou_factors(delta: f64, eta: f64) -> (f64, f64) {
    let decay = (-eta * delta).exp();
    let fresh = (-(-2.0 * eta * delta).exp_m1()).max(0.0).sqrt();
    (decay, fresh)
}

/// The weights on data predictions taken at `lambdas` of the step `from -> to` of the SDE with
/// noise fraction `eta`, interpolating them by their Lagrange polynomial in `lambda` and
/// integrating it exactly:
/// `w_j = alpha_to int (1 + eta) e^{-(1 + eta)(lambda_to - l)} L_j(l) dl` over
/// `[lambda_from, lambda_to]` (SA-Solver's `b` coefficients, Xue et al. 2023, arXiv:2309.05019,
/// Eq. 15 and 18, with `tau^2 = eta`). The step is `x_to = c_x x + sum_j w_j x0_j + c_z z` with
/// `c_x`, `c_z` from [`sde_weights`]. With one node this is `c_d` of [`sde_weights`]; more nodes
/// need a finite step (not into `sigma = 0`) and distinct nodes.
///
/// ```
/// use diffusion_samplers::{math::sde::{polynomial_weights, sde_weights}, Point};
/// let (from, to) = (Point::new(1.0, 0.6, 0.8), Point::new(0.0, 0.8, 0.6));
/// let prev = Point::new(2.0, 0.4, 0.9165);
/// // constants are integrated exactly: the weights sum to the first-order weight
/// let w = polynomial_weights(&from, &to, 0.5, &[from.lambda, prev.lambda])?;
/// let (_, c_d, _) = sde_weights(&from, &to, 0.5);
/// assert!((w[0] + w[1] - c_d).abs() < 1e-15);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn polynomial_weights(from: &Point, to: &Point, eta: f64, lambdas: &[f64]) -> Result<Vec<f64>> {
    // in r = (l - lambda_from) / h the kernel is the exponential integrator's with h scaled by
    // (1 + eta): int_0^1 r^k (1 + eta) h e^{-(1 + eta) h (1 - r)} dr = k! tail(k, (1 + eta) h)
    let h = to.lambda - from.lambda;
    let scaled = h + eta_h(h, eta);
    kernel_weights(from, to, lambdas, |k| to.alpha * tail(k, scaled))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::math::vp_point as vp;

    /// `int_{l0}^{l1} (1 + eta) e^{-(1 + eta)(l1 - l)} p(l) dl` by composite Simpson.
    fn simpson(l0: f64, l1: f64, eta: f64, p: impl Fn(f64) -> f64) -> f64 {
        let n = 4000;
        let dh = (l1 - l0) / n as f64;
        let f = |l: f64| (1.0 + eta) * (-(1.0 + eta) * (l1 - l)).exp() * p(l);
        let mut s = f(l0) + f(l1);
        for i in 1..n {
            s += if i % 2 == 1 { 4.0 } else { 2.0 } * f(l0 + i as f64 * dh);
        }
        s * dh / 3.0
    }

    #[test]
    fn polynomial_weights_integrate_polynomials_exactly() {
        let (from, to) = (vp(-1.0), vp(-0.2));
        let lambdas = [from.lambda, from.lambda - 0.7, from.lambda - 1.5, to.lambda];
        for eta in [0.0, 0.3, 1.0] {
            for n in 1..=4 {
                let w = polynomial_weights(&from, &to, eta, &lambdas[..n]).unwrap();
                for deg in 0..n {
                    let p = |l: f64| (l + 0.3).powi(deg as i32);
                    let got: f64 = w.iter().zip(&lambdas).map(|(w, &l)| w * p(l)).sum();
                    let want = to.alpha * simpson(from.lambda, to.lambda, eta, p);
                    assert!((got - want).abs() < 1e-10, "eta {eta}, {n} nodes, degree {deg}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn weights_are_finite_at_the_ends() {
        let from = vp(1.0);
        let clean = Point::clean(0.0);
        for eta in [0.0, 1.0] {
            assert_eq!(sde_weights(&from, &clean, eta), (0.0, 1.0, 0.0));
            assert_eq!(polynomial_weights(&from, &clean, eta, &[from.lambda]).unwrap(), vec![1.0]);
            assert!(polynomial_weights(&from, &clean, eta, &[from.lambda, 0.0]).is_err());
        }
        // from pure noise (alpha = 0) with noise: x is forgotten
        let noise = Point::new(1.0, 0.0, 1.0);
        let (c_x, c_d, c_z) = sde_weights(&noise, &from, 1.0);
        assert_eq!((c_x, c_d), (0.0, from.alpha));
        assert!((c_z - from.sigma).abs() < 1e-15);
        // tiny steps: no cancellation
        let (a, b) = (vp(0.0), Point { lambda: 1e-10, ..vp(1e-10) });
        let (_, c_d, c_z) = sde_weights(&a, &b, 1.0);
        assert!((c_d / b.alpha - 2e-10).abs() < 1e-19, "{c_d}");
        assert!((c_z / b.sigma - 2e-10f64.sqrt()).abs() < 1e-15, "{c_z}");
    }
}
