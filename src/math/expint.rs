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
    let h = to.lambda - from.lambda;
    match form {
        Form::Data => Weights {
            c_x: to.sigma / from.sigma,
            c: [to.alpha * tail(0, h), to.alpha * tail(1, h), to.alpha * tail(2, h)],
        },
        Form::Noise if to.is_clean() => {
            // limits as sigma_to -> 0: sigma_to e^h = alpha_to sigma_from / alpha_from, higher terms vanish
            Weights { c_x: to.alpha / from.alpha, c: [-to.alpha * from.sigma / from.alpha, 0.0, 0.0] }
        }
        Form::Noise => Weights {
            c_x: to.alpha / from.alpha,
            c: [-to.sigma * h.exp_m1(), -to.sigma * h * phi(2, h), -to.sigma * h * phi(3, h)],
        },
    }
}
