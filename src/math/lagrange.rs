//! Exact integration of interpolating polynomials in `lambda` against the exponential-integrator
//! kernel: the weights of multistep methods built on Lagrange interpolation (DEIS, Zhang & Chen
//! 2022, arXiv:2204.13902) and the moment conditions of UniPC (Zhao et al. 2023,
//! arXiv:2302.04867).
//!
//! For a step `from -> to` with `h = lambda_to - lambda_from`, model outputs `m_j` taken at
//! normalised nodes `r_j = (lambda_j - lambda_from) / h` are interpolated by the polynomial
//! `P(r) = sum_j L_j(r) m_j`. The exponential integrator ([`crate::math::expint`]) integrates the
//! monomial `r^k` exactly to `k! c[k]`, so the weight of `m_j` is `w_j = sum_k [r^k]L_j k! c[k]`,
//! i.e. the solution of the moment system `sum_j r_j^k w_j = k! c[k]` ([`moment_weights`]).

pub use super::expint::taylor_weight;
use super::expint::{weights, Form};
use super::linalg::solve;
use super::phi::factorial;
use crate::error::{Error, Result};
use crate::schedule::Point;

/// The weights `w` with `sum_j nodes[j]^k w[j] = moments[k]` for `k = 0..n` (a transposed
/// Vandermonde system; the nodes must be distinct and finite).
///
/// ```
/// use diffusion_samplers::math::lagrange::moment_weights;
/// // the two-point rule integrating 1 and r over [0, 1] exactly: the trapezoid
/// let w = moment_weights(&[0.0, 1.0], &[1.0, 0.5])?;
/// assert_eq!(w, vec![0.5, 0.5]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn moment_weights(nodes: &[f64], moments: &[f64]) -> Result<Vec<f64>> {
    let n = nodes.len();
    if moments.len() != n {
        return Err(Error::InvalidConfig(format!("{n} nodes need {n} moments, got {}", moments.len())));
    }
    let mut a = vec![0.0; n * n];
    for (j, &r) in nodes.iter().enumerate() {
        let mut p = 1.0;
        for k in 0..n {
            a[k * n + j] = p;
            p *= r;
        }
    }
    solve(&a, moments)
}

/// One step of the exponential integrator with the model output interpolated by the Lagrange
/// polynomial through the outputs taken at `lambdas` (1 to 3 nodes, e.g. `[lambda_from,
/// lambda_prev, lambda_prev2]`): returns `(c_x, w)` with `x_to = c_x x + sum_j w[j] m_j`.
///
/// With one node this is the first-order (DDIM) step. With more nodes the step must have a finite
/// `h`: into `sigma = 0` every higher-order term collapses onto the newest node and the system is
/// singular, so it is refused with [`Error::Unsupported`] (solvers take a first-order step there).
/// A step of zero length (`h = 0`) has zero weights.
///
/// ```
/// use diffusion_samplers::math::{expint::Form, lagrange::lagrange_step};
/// use diffusion_samplers::Point;
/// let (from, to) = (Point::new(0.0, 0.6, 0.8), Point::new(0.0, 0.8, 0.6));
/// let prev = Point::new(0.0, 0.5, 0.9);
/// let (c_x, w) = lagrange_step(Form::Noise, &from, &to, &[from.lambda, prev.lambda])?;
/// // a constant output is integrated exactly: the weights sum to the first-order weight
/// let (_, w1) = lagrange_step(Form::Noise, &from, &to, &[from.lambda])?;
/// assert!((w[0] + w[1] - w1[0]).abs() < 1e-15 && (c_x - 0.8 / 0.6).abs() < 1e-15);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn lagrange_step(form: Form, from: &Point, to: &Point, lambdas: &[f64]) -> Result<(f64, Vec<f64>)> {
    let n = lambdas.len();
    if n == 0 || n > 3 {
        return Err(Error::InvalidConfig(format!("Lagrange steps use 1 to 3 nodes, got {n}")));
    }
    let w = weights(form, from, to);
    Ok((w.c_x, kernel_weights(from, to, lambdas, |k| taylor_weight(form, from, to, k))?))
}

/// The weights on outputs taken at `lambdas` of the step `from -> to` that integrates their
/// Lagrange polynomial in `lambda` against a kernel whose monomial `r^k` (`r = (lambda -
/// lambda_from) / h`) integrates to `k! c(k)`: the solution of the moment system (see the
/// module docs). With one node the weight is `c(0)`; more nodes need a finite `h` (not into
/// `sigma = 0`, where the system is singular: [`Error::Unsupported`]) and distinct nodes. The
/// deterministic kernel is [`taylor_weight`] ([`lagrange_step`]); the SDE kernel is
/// [`crate::math::sde::polynomial_weights`]'.
pub(crate) fn kernel_weights(from: &Point, to: &Point, lambdas: &[f64], c: impl Fn(usize) -> f64) -> Result<Vec<f64>> {
    let n = lambdas.len();
    if n == 1 {
        return Ok(vec![c(0)]);
    }
    let h = to.lambda - from.lambda;
    if !h.is_finite() || n == 0 {
        return Err(Error::Unsupported(format!(
            "a {n}-point interpolating step from lambda = {} to {} is undefined: take a first-order step into \
             sigma = 0",
            from.lambda, to.lambda
        )));
    }
    if h == 0.0 {
        // a step of zero length (a repeated point): the integral, and every weight, is 0
        return Ok(vec![0.0; n]);
    }
    let nodes: Vec<f64> = lambdas.iter().map(|l| (l - from.lambda) / h).collect();
    let moments: Vec<f64> = (0..n).map(|k| factorial(k) * c(k)).collect();
    moment_weights(&nodes, &moments)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::math::vp_point as vp;

    /// diffusers' DEISMultistepScheduler coefficients (`ind_fn`, log-rho), written as there.
    fn deis_reference(l: &[f64], lt: f64) -> Vec<f64> {
        let rho = |lam: f64| (-lam).exp();
        let (rt, r0) = (rho(lt), rho(l[0]));
        let alpha_t = vp(lt).alpha;
        match l.len() {
            2 => {
                let r1 = rho(l[1]);
                let ind = |t: f64, b: f64, c: f64| t * (-c.ln() + t.ln() - 1.0) / (b.ln() - c.ln());
                vec![alpha_t * (ind(rt, r0, r1) - ind(r0, r0, r1)), alpha_t * (ind(rt, r1, r0) - ind(r0, r1, r0))]
            }
            _ => {
                let (r1, r2) = (rho(l[1]), rho(l[2]));
                let ind = |t: f64, b: f64, c: f64, d: f64| {
                    let (lt, lc, ld, lb) = (t.ln(), c.ln(), d.ln(), b.ln());
                    t * (lc * (ld - lt + 1.0) - ld * lt + ld + lt * lt - 2.0 * lt + 2.0) / ((lb - lc) * (lb - ld))
                };
                vec![
                    alpha_t * (ind(rt, r0, r1, r2) - ind(r0, r0, r1, r2)),
                    alpha_t * (ind(rt, r1, r2, r0) - ind(r0, r1, r2, r0)),
                    alpha_t * (ind(rt, r2, r0, r1) - ind(r0, r2, r0, r1)),
                ]
            }
        }
    }

    #[test]
    fn matches_diffusers_deis_formulas() {
        let lt = 0.4;
        for l in [vec![0.1, -0.3], vec![0.1, -0.3, -0.55], vec![-1.0, -1.7, -2.1]] {
            let (from, to) = (vp(l[0]), vp(lt));
            let (c_x, w) = lagrange_step(Form::Noise, &from, &to, &l).unwrap();
            assert!((c_x - to.alpha / from.alpha).abs() < 1e-15);
            let r = deis_reference(&l, lt);
            for (a, b) in w.iter().zip(&r) {
                assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{w:?} vs {r:?}");
            }
        }
    }

    #[test]
    fn integrates_polynomials_exactly() {
        // m(lambda) = 1 + 2 l + 3 l^2 through three nodes: the step equals the quadrature of
        // sigma_to * int e^{lambda_to - ...}: compare against a fine Simpson rule of the ODE kernel
        let m = |l: f64| 1.0 + 2.0 * l + 3.0 * l * l;
        let l = [0.2, -0.1, -0.5];
        let (from, to) = (vp(l[0]), vp(0.6));
        for form in [Form::Data, Form::Noise] {
            let (_, w) = lagrange_step(form, &from, &to, &l).unwrap();
            let got: f64 = w.iter().zip(&l).map(|(w, &li)| w * m(li)).sum();
            // data: alpha_to int_{l0}^{lt} e^{-(lt - l)} m dl ; noise: -sigma_to int e^{lt - l} ... in
            // lambda: x_t = (a_t/a_s) x - sigma_t int_{ls}^{lt} e^{lt - l} m(l) dl
            let kernel = |s: f64| match form {
                Form::Data => to.alpha * (-(to.lambda - s)).exp(),
                Form::Noise => -to.sigma * (to.lambda - s).exp(),
            };
            let n = 2000;
            let dh = (to.lambda - from.lambda) / n as f64;
            let mut sum = 0.0;
            for i in 0..=n {
                let s = from.lambda + i as f64 * dh;
                let c = if i == 0 || i == n {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                sum += c * kernel(s) * m(s);
            }
            let exact = sum * dh / 3.0;
            assert!((got - exact).abs() < 1e-11, "{form:?}: {got} vs {exact}");
        }
    }

    #[test]
    fn finite_at_tiny_and_huge_h() {
        for (h, form) in [(1e-9, Form::Data), (1e-9, Form::Noise), (40.0, Form::Data), (40.0, Form::Noise)] {
            let from = vp(-2.0);
            let to = vp(-2.0 + h);
            let l = [from.lambda, from.lambda - 1.3 * h, from.lambda - 2.1 * h];
            let (c_x, w) = lagrange_step(form, &from, &to, &l).unwrap();
            let (_, w1) = lagrange_step(form, &from, &to, &l[..1]).unwrap();
            assert!(c_x.is_finite() && w.iter().all(|v| v.is_finite()), "h = {h}: {w:?}");
            // constants are integrated exactly at every h
            let s: f64 = w.iter().sum();
            assert!((s - w1[0]).abs() <= 1e-9 * w1[0].abs(), "h = {h}: {s} vs {}", w1[0]);
        }
    }

    #[test]
    fn h_infinite_first_order_only() {
        let from = vp(1.0);
        let to = Point::clean(0.0);
        let (c_x, w) = lagrange_step(Form::Data, &from, &to, &[from.lambda]).unwrap();
        assert_eq!((c_x, w), (0.0, vec![1.0]));
        let (c_x, w) = lagrange_step(Form::Noise, &from, &to, &[from.lambda]).unwrap();
        assert!((c_x - 1.0 / from.alpha).abs() < 1e-15 && (w[0] + from.sigma / from.alpha).abs() < 1e-15);
        assert!(matches!(lagrange_step(Form::Data, &from, &to, &[from.lambda, 0.5]), Err(Error::Unsupported(_))));
    }

    #[test]
    fn taylor_weights_at_tiny_huge_and_infinite_h() {
        for k in 0..5 {
            // tiny h: c_k = scale * h / (k+1)! (1 + O(h)) (data) and -scale * h / (k+1)! (1 + O(h)) (noise)
            let from = vp(0.0);
            let to = Point { lambda: from.lambda + 1e-9, ..from };
            let want = 1e-9 / factorial(k + 1);
            assert!((taylor_weight(Form::Data, &from, &to, k) / to.alpha - want).abs() < 1e-8 * want);
            assert!((taylor_weight(Form::Noise, &from, &to, k) / -to.sigma - want).abs() < 1e-8 * want);
            // huge h: data weights approach alpha_to / k! from below (phi_k(-h) <= 1/h), noise
            // weights stay finite
            let to = vp(60.0);
            let d = 1.0 / factorial(k) - taylor_weight(Form::Data, &from, &to, k) / to.alpha;
            assert!((0.0..=1.01 / 60.0).contains(&d), "k = {k}: {d}");
            assert!(taylor_weight(Form::Noise, &from, &to, k).is_finite());
            // h = inf
            let clean = Point::clean(0.0);
            assert_eq!(taylor_weight(Form::Data, &from, &clean, k), 1.0 / factorial(k));
            let n = taylor_weight(Form::Noise, &from, &clean, k);
            assert_eq!(n, if k == 0 { -from.sigma / from.alpha } else { 0.0 });
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let (a, b) = (vp(0.0), vp(1.0));
        assert!(lagrange_step(Form::Data, &a, &b, &[]).is_err());
        assert!(lagrange_step(Form::Data, &a, &b, &[0.0, -1.0, -2.0, -3.0]).is_err());
        assert!(matches!(lagrange_step(Form::Data, &a, &b, &[0.0, 0.0]), Err(Error::InvalidGrid(_))));
        assert!(moment_weights(&[0.0], &[1.0, 2.0]).is_err());
    }
}
