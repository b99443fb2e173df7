//! Single-step DPM-Solver-1, -2 and -3 with their intermediate stages inside the step (Lu et al.
//! 2022, arXiv:2206.00927, Algorithms 4-5 with `r1`, `r2` as parameters; the form of
//! k-diffusion's `DPMSolver.dpm_solver_{1,2,3}_step`), in the noise form, written once for
//! DPM-Solver-fast and the adaptive DPM-Solver-12/23.
//!
//! For a step `s -> t`, `h = lambda_t - lambda_s`, stage points `s_i` at `lambda_s + r_i h` and the
//! noise predictions `eps` (at `s`), `eps_1`, `eps_2` (at the stages):
//! - order 1: `x_t = (alpha_t/alpha_s) x - sigma_t (e^h - 1) eps`;
//! - order 2: `u_1 = (alpha_1/alpha_s) x - sigma_1 (e^{r1 h} - 1) eps`,
//!   `x_t = (alpha_t/alpha_s) x - sigma_t (e^h - 1) eps - sigma_t/(2 r1) (e^h - 1) (eps_1 - eps)`;
//! - order 3: `u_2 = (alpha_2/alpha_s) x - sigma_2 (e^{r2 h} - 1) eps - sigma_2 (r2/r1) (r2 h) phi_2(r2 h) (eps_1 - eps)`,
//!   `x_t = (alpha_t/alpha_s) x - sigma_t (e^h - 1) eps - sigma_t/r2 h phi_2(h) (eps_2 - eps)`,
//!
//! where `h phi_2(h) = (e^h - 1)/h - 1` (computed without cancellation). Scalars in f64, tensors
//! touched once per update through `lincomb`.

use candle_core::Tensor;

use super::phi::phi;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::ops::lincomb;
use crate::schedule::Point;

/// The noise predictions of one step, reused between a low- and a high-order update from the
/// same start (the adaptive solver's embedded pair shares its stages).
#[derive(Debug, Default)]
pub(crate) struct StageCache {
    /// `(r1, point, eps_1)` of the first intermediate stage.
    r1: Option<(f64, Tensor)>,
}

/// `(e^{h} - 1)/h - 1 = h phi_2(h)`, finite and accurate for tiny `h`.
fn h_phi2(h: f64) -> f64 {
    h * phi(2, h)
}

fn check_finite_step(from: &Point, to: &Point) -> Result<f64> {
    let h = to.lambda - from.lambda;
    if !h.is_finite() || from.alpha == 0.0 {
        return Err(Error::Unsupported(format!(
            "a DPM-Solver stage step needs finite log-SNR at both ends (got lambda {} -> {}): take a first-order \
             step into sigma = 0, and start below alpha = 0",
            from.lambda, to.lambda
        )));
    }
    Ok(h)
}

/// The stage point at `lambda_s + r h` of `model`'s schedule.
fn stage_point(model: &Model, from: &Point, h: f64, r: f64) -> Point {
    model.schedule().point_of_lambda(from.lambda + r * h)
}

/// DPM-Solver-1 (DDIM in the noise form): `x_t = (alpha_t/alpha_s) x - sigma_t (e^h - 1) eps`.
pub(crate) fn first_order(x: &Tensor, from: &Point, to: &Point, eps: &Tensor) -> Result<Tensor> {
    let h = to.lambda - from.lambda;
    lincomb(&[(to.alpha / from.alpha, x), (-to.sigma * h.exp_m1(), eps)])
}

/// DPM-Solver-2 with its stage at `lambda_s + r1 h` (one new evaluation unless `cache` holds it).
pub(crate) fn second_order(
    model: &mut Model,
    x: &Tensor,
    from: &Point,
    to: &Point,
    eps: &Tensor,
    r1: f64,
    cache: &mut StageCache,
) -> Result<Tensor> {
    let h = check_finite_step(from, to)?;
    let eps_1 = stage_one(model, x, from, h, eps, r1, cache)?;
    let e = h.exp_m1();
    let c1 = -to.sigma / (2.0 * r1) * e;
    lincomb(&[(to.alpha / from.alpha, x), (-to.sigma * e - c1, eps), (c1, &eps_1)])
}

/// DPM-Solver-3 with stages at `lambda_s + r1 h` and `lambda_s + r2 h` (two new evaluations, one
/// if `cache` holds the first stage for this `r1`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn third_order(
    model: &mut Model,
    x: &Tensor,
    from: &Point,
    to: &Point,
    eps: &Tensor,
    r1: f64,
    r2: f64,
    cache: &mut StageCache,
) -> Result<Tensor> {
    let h = check_finite_step(from, to)?;
    let eps_1 = stage_one(model, x, from, h, eps, r1, cache)?;
    let p2 = stage_point(model, from, h, r2);
    let h2 = p2.lambda - from.lambda;
    let k = -p2.sigma * (r2 / r1) * h_phi2(h2);
    let u2 = lincomb(&[(p2.alpha / from.alpha, x), (-p2.sigma * h2.exp_m1() - k, eps), (k, &eps_1)])?;
    let eps_2 = model.noise(&u2, &p2)?;
    let c2 = -to.sigma / r2 * h_phi2(h);
    lincomb(&[(to.alpha / from.alpha, x), (-to.sigma * h.exp_m1() - c2, eps), (c2, &eps_2)])
}

fn stage_one(
    model: &mut Model,
    x: &Tensor,
    from: &Point,
    h: f64,
    eps: &Tensor,
    r1: f64,
    cache: &mut StageCache,
) -> Result<Tensor> {
    if let Some((r, e)) = &cache.r1 {
        if *r == r1 {
            return Ok(e.clone());
        }
    }
    let p1 = stage_point(model, from, h, r1);
    let u1 = first_order(x, from, &p1, eps)?;
    let eps_1 = model.noise(&u1, &p1)?;
    cache.r1 = Some((r1, eps_1.clone()));
    Ok(eps_1)
}
