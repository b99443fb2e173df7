//! diffusers' numerics reproduced bit for bit where it matters: float32 beta / `alphas_cumprod`
//! tables as torch computes them, numpy's `linspace` / `arange` / `interp` / `round`, and the
//! sigma conversions (`_sigma_to_t`, Karras, exponential, beta, Lu lambdas) of diffusers 0.42.1.

use crate::error::Result;

use super::config::{cfg_err, BetaScheduleName};

/// `torch.linspace(start, end, n, dtype=float32)` on the CPU: `step = (end - start) / (n - 1)` in
/// float32, the first half `start + step * i` and the second half `end - step * (n - 1 - i)`,
/// each a fused multiply-add (checked bit-exact against torch 2.x).
pub(crate) fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    if n == 1 {
        return vec![s];
    }
    let step = (e - s) / (n - 1) as f32;
    let half = n / 2;
    (0..n).map(|i| if i < half { step.mul_add(i as f32, s) } else { (-step).mul_add((n - 1 - i) as f32, e) }).collect()
}

/// `np.linspace(start, stop, num)` in float64: `i * step + start`, the last value exactly `stop`.
pub(crate) fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    y[num - 1] = stop;
    y
}

/// `np.arange(start, stop, step)` for floats: `start + i * delta` with
/// `delta = (start + step) - start` and `ceil((stop - start) / step)` values.
pub(crate) fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if !(len > 0.0) || !len.is_finite() {
        return Vec::new();
    }
    let len = len as usize;
    let delta = (start + step) - start;
    (0..len).map(|i| if i == 0 { start } else { start + i as f64 * delta }).collect()
}

/// `np.interp(x, arange(fp.len()), fp)`.
pub(crate) fn np_interp(x: f64, fp: &[f64]) -> f64 {
    let last = fp.len() - 1;
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return fp[0];
    }
    if x >= last as f64 {
        return fp[last];
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return fp[j];
    }
    let slope = fp[j + 1] - fp[j];
    slope * (x - j as f64) + fp[j]
}

/// float32 betas of a diffusers scheduler, before any zero-SNR rescale.
pub(crate) fn betas_f32(
    schedule: BetaScheduleName,
    beta_start: f64,
    beta_end: f64,
    trained: Option<&[f64]>,
    n: usize,
) -> Result<Vec<f32>> {
    if let Some(b) = trained {
        if b.len() != n {
            return cfg_err(
                "trained_betas",
                format!("has {} values but num_train_timesteps is {n}: give one beta per training timestep", b.len()),
            );
        }
        return Ok(b.iter().map(|&x| x as f32).collect());
    }
    let check = || -> Result<()> {
        for (k, v) in [("beta_start", beta_start), ("beta_end", beta_end)] {
            if !(v > 0.0 && v < 1.0) {
                return cfg_err(k, format!("must lie in (0, 1) for beta_schedule {schedule:?}, got {v}"));
            }
        }
        Ok(())
    };
    Ok(match schedule {
        BetaScheduleName::Linear => {
            check()?;
            torch_linspace_f32(beta_start, beta_end, n)
        }
        BetaScheduleName::ScaledLinear => {
            check()?;
            torch_linspace_f32(beta_start.sqrt(), beta_end.sqrt(), n).into_iter().map(|b| b * b).collect()
        }
        BetaScheduleName::SquaredCosCapV2 => {
            alpha_bar_betas(n, |t| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2))
        }
        BetaScheduleName::Exp => alpha_bar_betas(n, |t| (t * -12.0).exp()),
        BetaScheduleName::Laplace => alpha_bar_betas(n, |t| {
            let lmb = -0.5 * (0.5 - t).signum() * (1.0 - 2.0 * (0.5 - t).abs() + 1e-6).ln();
            let snr = lmb.exp();
            (snr / (1.0 + snr)).sqrt()
        }),
        BetaScheduleName::Sigmoid => {
            // torch.sigmoid(torch.linspace(-6, 6, n)) * (beta_end - beta_start) + beta_start, float32
            let (bs, d) = (beta_start as f32, (beta_end - beta_start) as f32);
            torch_linspace_f32(-6.0, 6.0, n).into_iter().map(|x| (1.0 / (1.0 + (-x).exp())) * d + bs).collect()
        }
    })
}

fn alpha_bar_betas(n: usize, alpha_bar: impl Fn(f64) -> f64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr(betas)` in float32 (Lin et al. 2023, Algorithm 1).
pub(crate) fn rescale_zero_terminal_snr_f32(betas: &[f32]) -> Vec<f32> {
    let ac = cumprod_f32(betas);
    let mut s: Vec<f32> = ac.iter().map(|a| a.sqrt()).collect();
    let (s0, st) = (s[0], s[s.len() - 1]);
    let scale = s0 / (s0 - st);
    for v in s.iter_mut() {
        *v -= st;
        *v *= scale;
    }
    let bar: Vec<f32> = s.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    for w in bar.windows(2) {
        out.push(1.0 - w[1] / w[0]);
    }
    out
}

/// `torch.cumprod(1 - betas)` on float32: torch accumulates in double and stores float32.
pub(crate) fn cumprod_f32(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= (1.0f32 - b) as f64;
            acc as f32
        })
        .collect()
}

/// diffusers' `_sigma_to_t`: the fractional training index whose log-sigma is `ln(sigma)`, by
/// linear interpolation in log-sigma over the table (clamped to its ends).
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    // last index whose log-sigma is <= log_sigma (0 if none), clipped to n - 2 (the table
    // increases with the index, so this is a binary search)
    let low = log_sigmas.partition_point(|&l| log_sigma - l >= 0.0).saturating_sub(1);
    let low = low.min(n - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    let w = if w.is_nan() { 0.0 } else { w };
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// Karras et al. (rho = 7) sigmas between `sigma_max` and `sigma_min`.
pub(crate) fn karras(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    np_linspace(0.0, 1.0, n).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
}

/// Log-uniform sigmas from `sigma_max` to `sigma_min`.
pub(crate) fn exponential(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    np_linspace(sigma_max.ln(), sigma_min.ln(), n).into_iter().map(f64::exp).collect()
}

/// Beta-distribution sigmas (Lee et al. 2024, arXiv:2407.12173): `sigma_min + ppf(1 - u) (sigma_max -
/// sigma_min)` with `ppf` the inverse CDF of Beta(0.6, 0.6), `u` uniform in [0, 1].
pub(crate) fn beta_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    np_linspace(0.0, 1.0, n)
        .into_iter()
        .map(|u| sigma_min + beta_ppf(1.0 - u, 0.6, 0.6) * (sigma_max - sigma_min))
        .collect()
}

/// Lu et al. (DPM-Solver-v3's "lu lambdas"): log-sigmas uniform between the table's ends.
pub(crate) fn lu_sigmas(log_sigma_min: f64, log_sigma_max: f64, n: usize) -> Vec<f64> {
    np_linspace(0.0, 1.0, n).into_iter().map(|r| (log_sigma_max + r * (log_sigma_min - log_sigma_max)).exp()).collect()
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

    #[test]
    fn numpy_helpers() {
        assert_eq!(np_arange(1000.0, 0.0, -250.0), vec![1000.0, 750.0, 500.0, 250.0]);
        assert_eq!(np_linspace(0.0, 999.0, 4), vec![0.0, 333.0, 666.0, 999.0]);
        assert_eq!(np_interp(1.5, &[1.0, 3.0, 5.0]), 4.0);
        assert_eq!(torch_linspace_f32(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
    }
}
