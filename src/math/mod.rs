//! Numerics written once and shared by the solvers: phi functions and exponential-integrator
//! weights, the multistep [`History`], and the [`OrderPolicy`].

pub(crate) mod dpm_stages;
pub mod expint;
mod history;
pub mod lagrange;
pub mod linalg;
pub mod multistep;
pub(crate) mod numpy;
mod order;
pub mod phi;
pub(crate) mod unified;

pub use history::History;
pub use order::{LowerOrderFinal, OrderPolicy};
