//! diffusers' sigma conversions reproduced bit for bit: `_sigma_to_t`, Karras, exponential, beta
//! and Lu-lambda sigmas of diffusers 0.42.1 (its float32 tables are [`crate::schedule`]'s table
//! builder, its numpy helpers `crate::math::numpy`).

use crate::math::numpy::{linspace, log_f32};

/// diffusers' `_sigma_to_t` for a float64 sigma: the fractional training index whose log-sigma
/// is `ln(sigma)`, by linear interpolation in log-sigma over the table (clamped to its ends).
/// With `f32_table` the table holds float32 values and, as numpy computes with them, the
/// difference of two neighbours is taken in float32.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64], f32_table: bool) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    // last index whose log-sigma is <= log_sigma (0 if none), clipped to n - 2 (the table
    // increases with the index, so this is a binary search)
    let low = log_sigmas.partition_point(|&l| log_sigma - l >= 0.0).saturating_sub(1);
    let low = low.min(n - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let den = if f32_table { (lo as f32 - hi as f32) as f64 } else { lo - hi };
    let w = ((lo - log_sigma) / den).clamp(0.0, 1.0);
    let w = if w.is_nan() { 0.0 } else { w };
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// diffusers' `_sigma_to_t` for a float32 sigma (EulerDiscrete's custom `sigmas`), where numpy
/// computes everything but the last line in float32: `log` (numpy's, [`log_f32`]), the
/// distances, the weight `w`; then `(1 - w) low + w high` in float64.
pub(crate) fn sigma_to_t_f32(sigma: f32, log_sigmas: &[f32]) -> f64 {
    let log_sigma = log_f32(sigma.max(1e-10));
    let n = log_sigmas.len();
    let low = log_sigmas.partition_point(|&l| log_sigma - l >= 0.0).saturating_sub(1).min(n - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    let w = if w.is_nan() { 0.0 } else { w };
    (1.0 - w) as f64 * low as f64 + w as f64 * (low + 1) as f64
}

/// Karras et al. (rho = 7) sigmas between `sigma_max` and `sigma_min`.
pub(crate) fn karras(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    crate::sigmas::karras_levels(sigma_max, sigma_min, n, 7.0)
}

/// Log-uniform sigmas from `sigma_max` to `sigma_min`.
pub(crate) fn exponential(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    linspace(sigma_max.ln(), sigma_min.ln(), n).into_iter().map(f64::exp).collect()
}

/// Beta-distribution sigmas (Lee et al. 2024, arXiv:2407.12173): `sigma_min + ppf(1 - u) (sigma_max -
/// sigma_min)` with `ppf` the inverse CDF of Beta(0.6, 0.6), `u` uniform in [0, 1].
pub(crate) fn beta_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    linspace(0.0, 1.0, n)
        .into_iter()
        .map(|u| sigma_min + beta_ppf(1.0 - u, 0.6, 0.6) * (sigma_max - sigma_min))
        .collect()
}

/// Lu et al. (DPM-Solver-v3's "lu lambdas"): log-sigmas uniform between the table's ends.
pub(crate) fn lu_sigmas(log_sigma_min: f64, log_sigma_max: f64, n: usize) -> Vec<f64> {
    linspace(0.0, 1.0, n).into_iter().map(|r| (log_sigma_max + r * (log_sigma_min - log_sigma_max)).exp()).collect()
}

/// The inverse CDF of the Beta(a, b) distribution at `q` (bisection on the regularized
/// incomplete beta function, to double precision).
pub(crate) fn beta_ppf(q: f64, a: f64, b: f64) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    if q >= 1.0 {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if reg_inc_beta(mid, a, b) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9), relative error ~1e-15
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized incomplete beta `I_x(a, b)` (continued fraction, Numerical Recipes `betacf`).
fn reg_inc_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(1.0 - x, b, a) / b
    }
}

fn beta_cf(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let away_from_zero = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / away_from_zero(1.0 - qab * x / qap);
    let mut h = d;
    // one modified-Lentz update with coefficient `aa`; returns the factor `h` is multiplied by
    let mut lentz = |aa: f64| {
        d = 1.0 / away_from_zero(1.0 + aa * d);
        c = away_from_zero(1.0 + aa / c);
        d * c
    };
    for m in 1..1000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= lentz(m * (b - m) * x / ((qam + m2) * (a + m2)));
        let del = lentz(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)));
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_ppf_matches_scipy() {
        // scipy.stats.beta.ppf(q, 0.6, 0.6)
        for (q, want) in [
            (0.5, 0.500_000_000_000_000_1),
            (0.1, 0.039_584_405_588_780_85),
            (0.9, 0.960_415_594_411_219_2),
            (0.01, 0.000_861_238_821_542_905_9),
            (0.999, 0.999_981_441_261_482_6),
        ] {
            let got = beta_ppf(q, 0.6, 0.6);
            assert!((got - want).abs() < 1e-10 * want, "{q}: {got} vs {want}");
        }
    }
}
