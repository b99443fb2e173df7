//! Beta and alpha-bar (`alphas_cumprod`) tables, built once for the crate in either precision:
//! [`TablePrecision::Float64`] computes the formulas in f64 ([`crate::DiscreteVp`]),
//! [`TablePrecision::Float32`] replicates torch's float32 tables bit for bit (what diffusers'
//! schedulers hold; [`crate::diffusers`]).

use super::vp::BetaSchedule;
use crate::error::{config_err, Result};
use crate::math::numpy::linspace;

/// Precision of a beta / `alphas_cumprod` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TablePrecision {
    /// As diffusers: torch float32 tables (`torch.linspace` / `cumprod` replicated bit for bit),
    /// sigmas rounded to float32.
    #[default]
    Float32,
    /// The same formulas in float64.
    Float64,
}

impl TablePrecision {
    /// `x` rounded to the precision.
    pub fn round(self, x: f64) -> f64 {
        match self {
            TablePrecision::Float32 => x as f32 as f64,
            TablePrecision::Float64 => x,
        }
    }
}

/// The `alphas_cumprod` table of `n` training timesteps of `schedule`, rescaled to zero terminal
/// SNR when `rescale` (Lin et al. 2023, arXiv:2305.08891, Algorithm 1), in `precision`. Ranges
/// are the caller's to check; non-finite or out-of-range values pass through.
pub(crate) fn alphas_cumprod(
    schedule: &BetaSchedule,
    n: usize,
    rescale: bool,
    precision: TablePrecision,
) -> Result<Vec<f64>> {
    if let BetaSchedule::AlphasCumprod(a) = schedule {
        return Ok(if rescale { rescale_zero_terminal_snr(a, precision) } else { a.clone() });
    }
    let betas = betas(schedule, n, precision)?;
    Ok(match precision {
        // torch rescales the betas and takes their cumulative product again
        TablePrecision::Float32 => {
            let b: Vec<f32> = betas.iter().map(|&b| b as f32).collect();
            let b = if rescale { betas_of(&rescaled(&cumprod(&b))) } else { b };
            cumprod(&b).into_iter().map(f64::from).collect()
        }
        TablePrecision::Float64 => {
            let ac = cumprod(&betas);
            if rescale {
                rescaled(&ac)
            } else {
                ac
            }
        }
    })
}

/// `alphas_cumprod` rescaled to zero terminal SNR: `sqrt(abar)` shifted and scaled so that the
/// last entry is 0 and the first is kept (in float32 through the betas, as torch does).
pub(crate) fn rescale_zero_terminal_snr(alphas_cumprod: &[f64], precision: TablePrecision) -> Vec<f64> {
    match precision {
        TablePrecision::Float32 => {
            let a: Vec<f32> = alphas_cumprod.iter().map(|&a| a as f32).collect();
            cumprod(&betas_of(&rescaled(&a))).into_iter().map(f64::from).collect()
        }
        TablePrecision::Float64 => rescaled(alphas_cumprod),
    }
}

/// The betas of `schedule` for `n` training timesteps, in `precision` (float32 values are exact
/// f64 copies of torch's).
fn betas(schedule: &BetaSchedule, n: usize, precision: TablePrecision) -> Result<Vec<f64>> {
    let f32 = precision == TablePrecision::Float32;
    let lin = |a: f64, b: f64| -> Vec<f64> {
        if f32 {
            torch_linspace_f32(a, b, n).into_iter().map(f64::from).collect()
        } else {
            linspace(a, b, n)
        }
    };
    let out: Vec<f64> = match schedule {
        BetaSchedule::Linear { beta_start, beta_end } => lin(*beta_start, *beta_end),
        BetaSchedule::ScaledLinear { beta_start, beta_end } => {
            let roots = lin(beta_start.sqrt(), beta_end.sqrt());
            if f32 {
                roots.into_iter().map(|r| f64::from(r as f32 * r as f32)).collect()
            } else {
                roots.into_iter().map(|r| r * r).collect()
            }
        }
        BetaSchedule::SquaredCosCapV2 { max_beta } => {
            if !(*max_beta > 0.0 && *max_beta <= 1.0) {
                return config_err(format!("max_beta {max_beta} must lie in (0, 1]"));
            }
            alpha_bar_betas(n, *max_beta, |t| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2))
        }
        BetaSchedule::Exp => alpha_bar_betas(n, 0.999, |t| (t * -12.0).exp()),
        BetaSchedule::Laplace => alpha_bar_betas(n, 0.999, |t| {
            let lmb = -0.5 * (0.5 - t).signum() * (1.0 - 2.0 * (0.5 - t).abs() + 1e-6).ln();
            let snr = lmb.exp();
            (snr / (1.0 + snr)).sqrt()
        }),
        BetaSchedule::Sigmoid { beta_start, beta_end } => {
            // torch.sigmoid(torch.linspace(-6, 6, n)) * (beta_end - beta_start) + beta_start
            let x = lin(-6.0, 6.0);
            if f32 {
                let (bs, d) = (*beta_start as f32, (beta_end - beta_start) as f32);
                x.into_iter().map(|x| f64::from((1.0 / (1.0 + (-(x as f32)).exp())) * d + bs)).collect()
            } else {
                x.into_iter().map(|x| (1.0 / (1.0 + (-x).exp())) * (beta_end - beta_start) + beta_start).collect()
            }
        }
        BetaSchedule::Betas(b) => b.clone(),
        BetaSchedule::AlphasCumprod(a) => betas_of(a),
    };
    Ok(if f32 { out.into_iter().map(|b| precision.round(b)).collect() } else { out })
}

/// `beta_i = min(1 - abar((i+1)/n) / abar(i/n), max_beta)` (computed in f64, as diffusers does).
fn alpha_bar_betas(n: usize, max_beta: f64, alpha_bar: impl Fn(f64) -> f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta)
        })
        .collect()
}

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

/// The float types the tables are built in.
trait Real: Copy + PartialOrd + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self> {
    const ONE: Self;
    fn sqrt(self) -> Self;
    fn div(self, other: Self) -> Self;
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ONE: $t = 1.0;
            fn sqrt(self) -> $t {
                <$t>::sqrt(self)
            }
            fn div(self, other: $t) -> $t {
                self / other
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn from_f64(x: f64) -> $t {
                x as $t
            }
        }
    };
}

real!(f32);
real!(f64);

/// `cumprod(1 - betas)`, accumulated in f64 and stored in `T` (torch's float32 `cumprod` does
/// the same).
fn cumprod<T: Real>(betas: &[T]) -> Vec<T> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= (T::ONE - b).to_f64();
            T::from_f64(acc)
        })
        .collect()
}

/// The betas of an `alphas_cumprod` table: `1 - abar_i / abar_{i-1}`.
fn betas_of<T: Real>(alphas_cumprod: &[T]) -> Vec<T> {
    let mut prev = T::ONE;
    alphas_cumprod
        .iter()
        .map(|&a| {
            let b = T::ONE - a.div(prev);
            prev = a;
            b
        })
        .collect()
}

/// Zero terminal SNR: `sqrt(abar)` shifted so its last entry is 0 and scaled to keep its first,
/// squared back (in `T`'s arithmetic).
fn rescaled<T: Real>(alphas_cumprod: &[T]) -> Vec<T> {
    let s: Vec<T> = alphas_cumprod.iter().map(|a| a.sqrt()).collect();
    let (Some(&s0), Some(&st)) = (s.first(), s.last()) else { return Vec::new() };
    let scale = s0.div(s0 - st);
    s.into_iter()
        .map(|v| {
            let v = (v - st) * scale;
            v * v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_tables_are_torch_values() {
        // torch.linspace(0.0001, 0.02, 1000, dtype=torch.float32)[[0, 1, 500, 999]] and
        // torch.cumprod(1 - betas, 0)[999]
        let b =
            betas(&BetaSchedule::Linear { beta_start: 1e-4, beta_end: 0.02 }, 1000, TablePrecision::Float32).unwrap();
        assert_eq!(b[0], 1e-4f32 as f64);
        assert_eq!(b[999], 0.02f32 as f64);
        assert_eq!(torch_linspace_f32(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
        let ac = alphas_cumprod(
            &BetaSchedule::Linear { beta_start: 1e-4, beta_end: 0.02 },
            1000,
            false,
            TablePrecision::Float32,
        )
        .unwrap();
        assert!(ac.iter().all(|&a| a == a as f32 as f64));
    }

    #[test]
    fn zero_snr_keeps_the_first_entry_and_zeroes_the_last() {
        for precision in [TablePrecision::Float32, TablePrecision::Float64] {
            let s = BetaSchedule::ScaledLinear { beta_start: 0.00085, beta_end: 0.012 };
            let plain = alphas_cumprod(&s, 1000, false, precision).unwrap();
            let ac = alphas_cumprod(&s, 1000, true, precision).unwrap();
            assert!((ac[0] - plain[0]).abs() < 1e-6, "{precision:?}: {} vs {}", ac[0], plain[0]);
            assert!(ac[999].abs() < 1e-12, "{precision:?}: {}", ac[999]);
            assert!(ac.windows(2).all(|w| w[1] < w[0]));
        }
    }
}
