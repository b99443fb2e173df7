//! Exponential-integrator weights for one step `from -> to` with `h = lambda_to - lambda_from`
//! (Lu et al. 2022, arXiv:2206.00927 and arXiv:2211.01095).
//!
//! Both forms write the step as `x_to = c_x * x + c[0] * m0 + c[1] * D1 + c[2] * D2`, where `m0`
//! is the model output at `from` and `D1`, `D2` are its first and second (scaled) divided
//! differences in lambda:
//!
//! - data prediction (DPM-Solver++): `c_x = sigma_to / sigma_from`,
//!   `c[k] = alpha_to * (1/k! - phi_k(-h))`, so `c[0] = alpha_to (1 - e^-h)`;
//! - noise prediction (DPM-Solver): `c_x = alpha_to / alpha_from`,
//!   `c[k] = -sigma_to * h * phi_{k+1}(h)`, so `c[0] = -sigma_to (e^h - 1)`.
//!
//! Every weight is finite at tiny `h` and at the step into `sigma = 0` (`h = inf`).

use super::phi::{phi, tail};
use crate::schedule::Point;

/// Which quantity the integrator propagates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Data (x0) prediction: DPM-Solver++.
    Data,
    /// Noise (eps) prediction: DPM-Solver.
    Noise,
}

/// Weights of `x` and of the Taylor terms of order 0, 1, 2.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    /// Weight of the current sample.
    pub c_x: f64,
    /// Weights of the model output and its first and second divided differences.
    pub c: [f64; 3],
}

/// The weights of the step `from -> to`.
///
/// ```
/// use diffusion_samplers::{math::expint::{weights, Form}, Point};
/// let (a, b) = (Point::new(0.0, 0.6, 0.8), Point::clean(-1.0));
/// let w = weights(Form::Data, &a, &b);
/// assert_eq!((w.c_x, w.c[0]), (0.0, 1.0)); // into sigma = 0 the step returns the data prediction
/// ```
pub fn weights(form: Form, from: &Point, to: &Point) -> Weights {
    let c_x = match form {
        Form::Data => to.sigma / from.sigma,
        Form::Noise => to.alpha / from.alpha,
    };
    Weights { c_x, c: [0, 1, 2].map(|k| taylor_weight(form, from, to, k)) }
}

/// The exponential-integrator weight `c_k` of the `k`-th Taylor term for the step `from -> to`,
/// for any `k` (the `c[k]` of [`weights`] for `k <= 2`): data form
/// `alpha_to (1/k! - phi_k(-h))`, noise form `-sigma_to h phi_{k+1}(h)`, with their limits into
/// `sigma = 0` (`h = inf`). The monomial `((lambda - lambda_from)/h)^k` integrates to `k! c_k`.
///
/// ```
/// use diffusion_samplers::math::{expint::{weights, Form}, lagrange::taylor_weight};
/// use diffusion_samplers::Point;
/// let (a, b) = (Point::new(0.0, 0.6, 0.8), Point::new(0.0, 0.8, 0.6));
/// for form in [Form::Data, Form::Noise] {
///     let w = weights(form, &a, &b);
///     for k in 0..3 { assert!((taylor_weight(form, &a, &b, k) - w.c[k]).abs() < 1e-15) }
/// }
/// ```
pub fn taylor_weight(form: Form, from: &Point, to: &Point, k: usize) -> f64 {
    let h = to.lambda - from.lambda;
    match form {
        Form::Data => to.alpha * tail(k, h),
        Form::Noise if to.is_clean() => {
            if k == 0 {
                -to.alpha * from.sigma / from.alpha
            } else {
                0.0
            }
        }
        Form::Noise if k == 0 => -to.sigma * h.exp_m1(),
        Form::Noise => -to.sigma * h * phi(k + 1, h),
    }
}

/// Weights on the newest model outputs `(m0, m1, m2)` of `c0 m0 + k1 D1 + k2 D2`, where `D1`,
/// `D2` are the multistep divided differences of DPM-Solver (arXiv:2211.01095, Appendix B):
/// with `r0 = (lambda_0 - lambda_1) / h`, `r1 = (lambda_1 - lambda_2) / h`,
/// `D1_0 = (m0 - m1)/r0`, `D1_1 = (m1 - m2)/r1`,
/// `D1 = D1_0 + r0/(r0 + r1) (D1_0 - D1_1)`, `D2 = (D1_0 - D1_1)/(r0 + r1)`.
///
/// `lambdas` holds the half log-SNRs of `m0` (the current point), `m1` and `m2`, newest first;
/// with two entries `D1 = D1_0` and `D2` is not used, with one the step is first order. A history
/// point at `lambda = -inf` (a start from pure noise) gives zero weight to its differences; a step
/// of zero length (`h = 0`, a repeated point) gives them zero weight too (its `c0, k1, k2` vanish).
///
/// ```
/// use diffusion_samplers::math::expint::multistep_weights;
/// // equal steps (r0 = r1 = 1): D1 = 1.5 m0 - 2 m1 + 0.5 m2, D2 = 0.5 (m0 - 2 m1 + m2)
/// assert_eq!(multistep_weights(1.0, &[2.0, 1.0, 0.0], 0.0, 1.0, 0.0), [1.5, -2.0, 0.5]);
/// assert_eq!(multistep_weights(1.0, &[2.0, 1.0, 0.0], 0.0, 0.0, 1.0), [0.5, -1.0, 0.5]);
/// assert_eq!(multistep_weights(0.5, &[1.0, 0.5], 3.0, 1.0, 0.0), [4.0, -1.0, 0.0]);
/// ```
pub fn multistep_weights(h: f64, lambdas: &[f64], c0: f64, k1: f64, k2: f64) -> [f64; 3] {
    if h == 0.0 {
        return [c0, 0.0, 0.0];
    }
    match *lambdas {
        [l0, l1, l2, ..] => {
            let (r0, r1) = ((l0 - l1) / h, (l1 - l2) / h);
            let (a, b) = (1.0 / r0, 1.0 / r1);
            let (q, p) = (r0 / (r0 + r1), 1.0 / (r0 + r1));
            [
                c0 + k1 * a * (1.0 + q) + k2 * a * p,
                -k1 * (a * (1.0 + q) + b * q) - k2 * p * (a + b),
                k1 * b * q + k2 * b * p,
            ]
        }
        [l0, l1] => {
            let a = h / (l0 - l1);
            [c0 + k1 * a, -k1 * a, 0.0]
        }
        _ => [c0, 0.0, 0.0],
    }
}
