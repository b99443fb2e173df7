//! The schedules given by a closed form over a sigma range: `f(n)` gives `n` noise levels from
//! `sigma_max` down to `sigma_min` (k-diffusion's `get_sigmas_*` without `append_zero`).
//! Each constructor validates its parameters once and returns `f`.

use super::{linspace, positive_finite};
use crate::diffusers::tables::beta_ppf;
use crate::error::{config_err, Result};

/// Karras et al. 2022 (arXiv:2206.00364, Eq. 5): `sigma^(1/rho)` uniform.
pub(super) fn karras((lo, hi): (f64, f64), rho: f64) -> Result<impl Fn(usize) -> Vec<f64>> {
    positive_finite("karras", "rho", rho)?;
    Ok(move |n| karras_levels(hi, lo, n, rho))
}

/// `n` noise levels from `hi` down to `lo` (both included) with `sigma^(1/rho)` uniform (Karras
/// et al. 2022, arXiv:2206.00364, Eq. 5; k-diffusion's `get_sigmas_karras` without the final 0):
/// the one copy of the formula, for the `karras` schedule, `Spacing::Karras`, diffusers'
/// `use_karras_sigmas` and Restart's passes.
pub(crate) fn karras_levels(hi: f64, lo: f64, n: usize, rho: f64) -> Vec<f64> {
    let (min_inv, max_inv) = (lo.powf(1.0 / rho), hi.powf(1.0 / rho));
    linspace(0.0, 1.0, n).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
}

/// k-diffusion's `get_sigmas_polyexponential`: `ln(sigma) = ln(lo) + r^rho (ln(hi) - ln(lo))`,
/// `r = linspace(1, 0, n)`; `rho = 1` is `get_sigmas_exponential` (`ln(sigma)` uniform), computed
/// as k-diffusion computes that one.
pub(super) fn polyexponential((lo, hi): (f64, f64), rho: f64) -> Result<impl Fn(usize) -> Vec<f64>> {
    positive_finite("polyexponential", "rho", rho)?;
    let (ln_lo, ln_hi) = (lo.ln(), hi.ln());
    Ok(move |n| {
        if rho == 1.0 {
            linspace(ln_hi, ln_lo, n).into_iter().map(f64::exp).collect()
        } else {
            linspace(1.0, 0.0, n).into_iter().map(|r| (r.powf(rho) * (ln_hi - ln_lo) + ln_lo).exp()).collect()
        }
    })
}

/// k-diffusion's `get_sigmas_vp`: `sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)` at
/// `t = linspace(1, eps_s, n)` (written with `exp_m1`, exact at small `t`).
pub(super) fn vp(beta_d: f64, beta_min: f64, eps_s: f64) -> Result<impl Fn(usize) -> Vec<f64>> {
    positive_finite("vp", "beta_d", beta_d)?;
    if !(beta_min >= 0.0 && beta_min.is_finite()) {
        return config_err(format!("the `vp` schedule's beta_min must be non-negative and finite, got {beta_min}"));
    }
    if !(eps_s > 0.0 && eps_s < 1.0) {
        return config_err(format!("the `vp` schedule's eps_s must lie in (0, 1), got {eps_s}"));
    }
    Ok(move |n| {
        linspace(1.0, eps_s, n).into_iter().map(|t| (beta_d * t * t / 2.0 + beta_min * t).exp_m1().sqrt()).collect()
    })
}

/// The Laplace schedule (Tiankai et al. 2024, arXiv:2407.03297, as ComfyUI's
/// `get_sigmas_laplace` defines it): `ln(sigma) = mu - beta sign(1/2 - x) ln(1 - 2|1/2 - x| + 1e-5)`
/// at `x = linspace(0, 1, n)`, clamped to `[lo, hi]`; `sign(0) = 0`.
pub(super) fn laplace((lo, hi): (f64, f64), mu: f64, beta: f64) -> Result<impl Fn(usize) -> Vec<f64>> {
    positive_finite("laplace", "beta", beta)?;
    if !mu.is_finite() {
        return config_err(format!("the `laplace` schedule's mu must be finite, got {mu}"));
    }
    const EPSILON: f64 = 1e-5;
    Ok(move |n| {
        linspace(0.0, 1.0, n)
            .into_iter()
            .map(|x| {
                let d = 0.5 - x;
                let sign = if d > 0.0 {
                    1.0
                } else if d < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                let lmb = mu - beta * sign * (1.0 - 2.0 * d.abs() + EPSILON).ln();
                lmb.exp().clamp(lo, hi)
            })
            .collect()
    })
}

/// ComfyUI's `kl_optimal`: `tan(a atan(lo) + (1 - a) atan(hi))`, `a = i / (n - 1)` (`a = 0` for
/// `n = 1`, where ComfyUI divides by zero).
pub(super) fn kl_optimal((lo, hi): (f64, f64)) -> impl Fn(usize) -> Vec<f64> {
    let (at_lo, at_hi) = (lo.atan(), hi.atan());
    move |n| {
        (0..n)
            .map(|i| {
                let a = if n > 1 { i as f64 / (n - 1) as f64 } else { 0.0 };
                (a * at_lo + (1.0 - a) * at_hi).tan()
            })
            .collect()
    }
}

/// diffusers' `_convert_to_beta` (`use_beta_sigmas`): `lo + ppf(1 - u) (hi - lo)`,
/// `u = linspace(0, 1, n)`, `ppf` the Beta(`alpha`, `beta`) quantile.
pub(super) fn beta_sigmas((lo, hi): (f64, f64), alpha: f64, beta: f64) -> Result<impl Fn(usize) -> Vec<f64>> {
    positive_finite("beta_sigmas", "alpha", alpha)?;
    positive_finite("beta_sigmas", "beta", beta)?;
    Ok(move |n| linspace(0.0, 1.0, n).into_iter().map(|u| lo + beta_ppf(1.0 - u, alpha, beta) * (hi - lo)).collect())
}
