//! Numerics written once and shared by the solvers: phi functions and exponential-integrator
//! weights (ODE: [`expint`], [`lagrange`]; SDE: [`sde`]), linear-multistep weights
//! ([`multistep`]), the multistep [`History`], and the [`OrderPolicy`]; k-diffusion's coordinates
//! ([`ksigma`]), its ancestral split ([`ancestral`]) and EDM's churn; Gauss-Legendre
//! [`quadrature`].

pub mod ancestral;
pub(crate) mod churn;
pub(crate) mod dpm_stages;
pub mod expint;
mod history;
pub mod ksigma;
pub mod lagrange;
pub mod linalg;
pub mod multistep;
pub(crate) mod numpy;
mod order;
pub mod phi;
pub mod quadrature;
pub mod sde;
pub(crate) mod unified;

pub use churn::Churn;
pub use history::History;
pub use order::{LowerOrderFinal, OrderPolicy};

/// A VP point (`alpha^2 + sigma^2 = 1`) with the given `lambda`, for the unit tests.
#[cfg(test)]
pub(crate) fn vp_point(lambda: f64) -> crate::schedule::Point {
    let ks = (-lambda).exp();
    let a = 1.0 / (1.0 + ks * ks).sqrt();
    crate::schedule::Point::new(0.0, a, ks * a)
}
