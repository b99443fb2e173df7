//! Variance-preserving schedules (`alpha^2 + sigma^2 = 1`): the discrete DDPM table and the
//! continuous linear-beta schedule of score-SDE / DPM-Solver.

use super::betas::{alphas_cumprod, rescale_zero_terminal_snr, TablePrecision};
use super::{Point, Scheduler};
use crate::error::{config_err, Result};
use crate::limits;

/// How the betas of a [`DiscreteVp`] table are made.
#[derive(Clone, Debug, PartialEq)]
pub enum BetaSchedule {
    /// `betas = linspace(beta_start, beta_end, n)` (Ho et al. 2020).
    Linear {
        /// First beta.
        beta_start: f64,
        /// Last beta.
        beta_end: f64,
    },
    /// `betas = linspace(sqrt(beta_start), sqrt(beta_end), n)^2` (Stable Diffusion).
    ScaledLinear {
        /// First beta.
        beta_start: f64,
        /// Last beta.
        beta_end: f64,
    },
    /// The cosine schedule of Nichol & Dhariwal 2021 (arXiv:2102.09672):
    /// `beta_i = min(1 - abar((i+1)/n) / abar(i/n), max_beta)`, `abar(u) = cos((u + 0.008)/1.008 * pi/2)^2`.
    SquaredCosCapV2 {
        /// Upper clip of each beta (diffusers uses 0.999).
        max_beta: f64,
    },
    /// diffusers' `"exp"`: `abar(u) = exp(-12 u)`, betas capped at 0.999.
    Exp,
    /// diffusers' `"laplace"`: the log-SNR of a Laplace distribution, betas capped at 0.999.
    Laplace,
    /// diffusers' `"sigmoid"`: `sigmoid(linspace(-6, 6, n)) (beta_end - beta_start) + beta_start`.
    Sigmoid {
        /// Smallest beta.
        beta_start: f64,
        /// Largest beta.
        beta_end: f64,
    },
    /// User-supplied betas, one per training timestep (diffusers' `trained_betas`).
    Betas(Vec<f64>),
    /// User-supplied cumulative products of `1 - beta`, one per training timestep.
    AlphasCumprod(Vec<f64>),
}

/// A discrete-time DDPM schedule: a table of `alphas_cumprod` over training indices `0..n`,
/// extended to continuous time by linear interpolation of `ln(sigma / alpha)` over the index (as
/// k-diffusion and diffusers' `_sigma_to_t` do). The model time is the (fractional) index.
///
/// ```
/// use diffusion_samplers::{DiscreteVp, Scheduler};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let (alpha, sigma) = s.alpha_sigma(0.0);
/// assert!((sigma - 0.01).abs() < 1e-12 && (alpha * alpha + sigma * sigma - 1.0).abs() < 1e-12);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone)]
pub struct DiscreteVp {
    alphas_cumprod: Vec<f64>,
    log_ksigmas: Vec<f64>,
}

impl std::fmt::Debug for DiscreteVp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.alphas_cumprod;
        write!(
            f,
            "DiscreteVp {{ train_timesteps: {}, alphas_cumprod: [{:.6e} .. {:.6e}] }}",
            a.len(),
            a[0],
            a[a.len() - 1]
        )
    }
}

impl DiscreteVp {
    /// A table of `train_timesteps` entries from a beta schedule (at most
    /// [`crate::limits::MAX_TRAIN_TIMESTEPS`] for the generated ones; `Betas` and `AlphasCumprod`
    /// tables have their own length, and `train_timesteps` is not used for them).
    pub fn new(betas: BetaSchedule, train_timesteps: usize) -> Result<DiscreteVp> {
        if !matches!(betas, BetaSchedule::Betas(_) | BetaSchedule::AlphasCumprod(_)) {
            limits::check("train_timesteps", train_timesteps, limits::MAX_TRAIN_TIMESTEPS)?;
        }
        if train_timesteps < 2 && !matches!(betas, BetaSchedule::Betas(_) | BetaSchedule::AlphasCumprod(_)) {
            return config_err(format!(
                "a discrete schedule needs at least 2 training timesteps, got {train_timesteps}"
            ));
        }
        let n = train_timesteps;
        let check_range = |start: f64, end: f64| -> Result<()> {
            if !(start.is_finite() && end.is_finite() && start > 0.0 && end > 0.0 && start < 1.0 && end < 1.0) {
                return config_err(format!(
                    "beta range ({start}, {end}) is invalid: betas must lie in (0, 1), e.g. 0.0001..0.02"
                ));
            }
            Ok(())
        };
        match &betas {
            BetaSchedule::Linear { beta_start, beta_end }
            | BetaSchedule::ScaledLinear { beta_start, beta_end }
            | BetaSchedule::Sigmoid { beta_start, beta_end } => check_range(*beta_start, *beta_end)?,
            BetaSchedule::Betas(b) if b.len() < 2 || b.iter().any(|&x| !(x > 0.0 && x <= 1.0)) => {
                return config_err("trained betas must be at least 2 values in (0, 1]");
            }
            _ => {}
        }
        let n = match &betas {
            BetaSchedule::Betas(b) => b.len(),
            _ => n,
        };
        Self::from_alphas_cumprod(alphas_cumprod(&betas, n, false, TablePrecision::Float64)?)
    }

    /// diffusers' default DDPM table: linear betas 1e-4..0.02.
    pub fn linear(beta_start: f64, beta_end: f64, train_timesteps: usize) -> Result<DiscreteVp> {
        Self::new(BetaSchedule::Linear { beta_start, beta_end }, train_timesteps)
    }

    /// Stable Diffusion's table: scaled-linear betas (0.00085..0.012 for SD 1.x/2.x/XL).
    pub fn scaled_linear(beta_start: f64, beta_end: f64, train_timesteps: usize) -> Result<DiscreteVp> {
        Self::new(BetaSchedule::ScaledLinear { beta_start, beta_end }, train_timesteps)
    }

    fn from_alphas_cumprod(alphas_cumprod: Vec<f64>) -> Result<DiscreteVp> {
        Self::checked(alphas_cumprod, false)
    }

    /// A diffusers table: as [`DiscreteVp::new`] with `AlphasCumprod`, except that the last entry
    /// may be diffusers' zero-terminal-SNR floor `2^-24` even where the entry before it is smaller
    /// (linear betas rescaled to zero SNR: diffusers runs such a table, its last two noise levels
    /// out of order). Lookups by log-SNR ([`Scheduler::t_of_lambda`]) treat the last entry as the
    /// table's end.
    pub(crate) fn from_diffusers_table(alphas_cumprod: Vec<f64>) -> Result<DiscreteVp> {
        Self::checked(alphas_cumprod, true)
    }

    fn checked(alphas_cumprod: Vec<f64>, diffusers_floor: bool) -> Result<DiscreteVp> {
        if alphas_cumprod.len() < 2 {
            return config_err("a discrete schedule needs at least 2 training timesteps");
        }
        let last = alphas_cumprod.len() - 1;
        for (i, w) in alphas_cumprod.windows(2).enumerate() {
            let ok_last = i + 1 == last && w[1] == 0.0; // zero terminal SNR
            let floor = diffusers_floor && i + 1 == last && w[1] == 2f64.powi(-24) && w[0] > 0.0 && w[0] < 1.0;
            if floor {
                continue;
            }
            if !(w[0] > 0.0 && w[0] < 1.0 && (w[1] > 0.0 || ok_last) && w[1] < w[0]) {
                return config_err(format!(
                    "alphas_cumprod must decrease strictly within (0, 1) (only the last may be 0); \
                     entries {i} and {} are {} and {}",
                    i + 1,
                    w[0],
                    w[1]
                ));
            }
        }
        let log_ksigmas = alphas_cumprod.iter().map(|&a| 0.5 * ((1.0 - a) / a).ln()).collect();
        Ok(DiscreteVp { alphas_cumprod, log_ksigmas })
    }

    /// Rescale to zero terminal SNR (Lin et al. 2023, arXiv:2305.08891, Algorithm 1):
    /// `sqrt(abar)` is shifted and scaled so that the last entry is exactly 0 and the first is kept.
    /// The model must be a v- or x0-prediction model to be sampled from `alpha = 0`.
    pub fn rescale_zero_terminal_snr(self) -> Result<DiscreteVp> {
        Self::from_alphas_cumprod(rescale_zero_terminal_snr(&self.alphas_cumprod, TablePrecision::Float64))
    }

    /// The cumulative products of `1 - beta`, one per training timestep.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// The point at an integer training index, straight from the table.
    pub fn table_point(&self, index: usize) -> Point {
        let i = index.min(self.alphas_cumprod.len() - 1);
        let a = self.alphas_cumprod[i];
        Point::new(i as f64, a.sqrt(), (1.0 - a).sqrt())
    }
}

impl Scheduler for DiscreteVp {
    fn alpha_sigma(&self, t: f64) -> (f64, f64) {
        let last = (self.alphas_cumprod.len() - 1) as f64;
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, last) };
        if t.fract() == 0.0 {
            let a = self.alphas_cumprod[t as usize];
            return (a.sqrt(), (1.0 - a).sqrt());
        }
        let i = t.floor() as usize;
        let w = t - i as f64;
        let log_ks = (1.0 - w) * self.log_ksigmas[i] + w * self.log_ksigmas[i + 1];
        vp_from_log_ksigma(log_ks)
    }

    fn t_of_lambda(&self, lambda: f64) -> f64 {
        let log_ks = -lambda;
        let table = &self.log_ksigmas;
        if log_ks.is_nan() || log_ks <= table[0] {
            return 0.0;
        }
        let last = table.len() - 1;
        if log_ks >= table[last] {
            return last as f64;
        }
        // first index whose log-sigma exceeds the target; the table increases with t
        let hi = table.partition_point(|&v| v <= log_ks);
        let lo = hi - 1;
        let w = (log_ks - table[lo]) / (table[hi] - table[lo]);
        lo as f64 + w
    }

    fn t_range(&self) -> (f64, f64) {
        (0.0, (self.alphas_cumprod.len() - 1) as f64)
    }

    fn model_time(&self, t: f64) -> f64 {
        t
    }

    fn t_of_model_time(&self, model_time: f64) -> f64 {
        model_time
    }

    fn clean_point(&self) -> Point {
        Point::clean(-1.0)
    }

    fn train_timesteps(&self) -> Option<usize> {
        Some(self.alphas_cumprod.len())
    }
}

/// `(alpha, sigma)` of a VP schedule at `ln(sigma / alpha) = log_ks`.
pub(crate) fn vp_from_log_ksigma(log_ks: f64) -> (f64, f64) {
    // alpha = 1/sqrt(1 + ks^2), sigma = ks/sqrt(1 + ks^2), written to stay finite for huge ks
    if log_ks > 0.0 {
        let inv = (-log_ks).exp();
        let norm = (1.0 + inv * inv).sqrt();
        (inv / norm, 1.0 / norm)
    } else {
        let ks = log_ks.exp();
        let norm = (1.0 + ks * ks).sqrt();
        (1.0 / norm, ks / norm)
    }
}

/// The continuous linear-beta VP schedule of score-SDE (Song et al. 2021, arXiv:2011.13456) as
/// used by DPM-Solver: `ln alpha(t) = -(beta_1 - beta_0) t^2 / 4 - beta_0 t / 2`, `t` in
/// `[t_eps, 1]`. The model time is `t` itself.
///
/// ```
/// use diffusion_samplers::{ContinuousVp, Scheduler};
/// let s = ContinuousVp::default();
/// let t = 0.37;
/// assert!((s.t_of_lambda(s.lambda(t)) - t).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ContinuousVp {
    /// `beta(0)`.
    pub beta_0: f64,
    /// `beta(1)`.
    pub beta_1: f64,
    /// Smallest time sampled (the noise level where sampling usually stops).
    pub t_eps: f64,
}

impl Default for ContinuousVp {
    fn default() -> Self {
        ContinuousVp { beta_0: 0.1, beta_1: 20.0, t_eps: 1e-3 }
    }
}

impl ContinuousVp {
    /// Validated constructor.
    pub fn new(beta_0: f64, beta_1: f64, t_eps: f64) -> Result<ContinuousVp> {
        let s = ContinuousVp { beta_0, beta_1, t_eps };
        s.validate()?;
        Ok(s)
    }

    fn log_alpha(&self, t: f64) -> f64 {
        -0.25 * t * t * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0
    }
}

impl Scheduler for ContinuousVp {
    fn alpha_sigma(&self, t: f64) -> (f64, f64) {
        let la = self.log_alpha(t);
        (la.exp(), (-(2.0 * la).exp_m1()).sqrt())
    }

    fn t_of_lambda(&self, lambda: f64) -> f64 {
        // DPM-Solver (Lu et al. 2022, arXiv:2206.00927), Appendix: closed-form inverse of lambda(t)
        let softplus = |z: f64| if z > 30.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
        let tmp = 2.0 * (self.beta_1 - self.beta_0) * softplus(-2.0 * lambda);
        let delta = self.beta_0 * self.beta_0 + tmp;
        tmp / (delta.sqrt() + self.beta_0) / (self.beta_1 - self.beta_0)
    }

    fn t_range(&self) -> (f64, f64) {
        (self.t_eps, 1.0)
    }

    fn model_time(&self, t: f64) -> f64 {
        t
    }

    fn t_of_model_time(&self, model_time: f64) -> f64 {
        model_time
    }

    fn clean_point(&self) -> Point {
        Point::clean(0.0)
    }

    fn validate(&self) -> Result<()> {
        let (beta_0, beta_1, t_eps) = (self.beta_0, self.beta_1, self.t_eps);
        if !(beta_0 >= 0.0 && beta_1 > beta_0 && beta_1.is_finite()) {
            return config_err(format!("need 0 <= beta_0 < beta_1 < inf, got beta_0 = {beta_0}, beta_1 = {beta_1}"));
        }
        check_t_eps(t_eps)
    }
}

fn check_t_eps(t_eps: f64) -> Result<()> {
    if !(t_eps > 0.0 && t_eps < 1.0) {
        return config_err(format!("t_eps must lie in (0, 1), got {t_eps}"));
    }
    Ok(())
}

/// The continuous cosine VP schedule of v-diffusion (Salimans & Ho 2022, arXiv:2202.00512;
/// Crowson's v-diffusion models) and diffusers' `IPNDMScheduler`: `alpha(t) = cos(pi t / 2)`,
/// `sigma(t) = sin(pi t / 2)`, so `lambda(t) = -ln tan(pi t / 2)`, `t` in `[t_eps, 1]`. The
/// model time is `t` itself. `alpha` is computed as `sin(pi (1 - t) / 2)`, so the end `t = 1` is
/// pure noise exactly (`alpha = 0`, `lambda = -inf`, as a zero-terminal-SNR table's end; `cos(pi /
/// 2)` would give 6e-17) and `alpha` keeps full relative accuracy near it.
///
/// ```
/// use diffusion_samplers::{CosineVp, Scheduler};
/// let s = CosineVp::default();
/// let (alpha, sigma) = s.alpha_sigma(0.5);
/// assert!((alpha - sigma).abs() < 1e-15);                // lambda(1/2) = 0
/// assert!((s.t_of_lambda(s.lambda(0.3)) - 0.3).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CosineVp {
    /// Smallest time sampled.
    pub t_eps: f64,
}

impl Default for CosineVp {
    fn default() -> Self {
        CosineVp { t_eps: 1e-3 }
    }
}

impl CosineVp {
    /// Validated constructor.
    pub fn new(t_eps: f64) -> Result<CosineVp> {
        let s = CosineVp { t_eps };
        s.validate()?;
        Ok(s)
    }
}

impl Scheduler for CosineVp {
    fn alpha_sigma(&self, t: f64) -> (f64, f64) {
        // cos(pi t / 2) = sin(pi (1 - t) / 2): exact 0 at t = 1, accurate near it (1 - t is exact there)
        use std::f64::consts::FRAC_PI_2;
        ((FRAC_PI_2 * (1.0 - t)).sin(), (FRAC_PI_2 * t).sin())
    }

    fn t_of_lambda(&self, lambda: f64) -> f64 {
        // tan(pi t / 2) = sigma / alpha = exp(-lambda); for lambda < 0 through the complementary
        // angle, accurate near t = 1
        use std::f64::consts::FRAC_PI_2;
        if lambda < 0.0 {
            1.0 - lambda.exp().atan() / FRAC_PI_2
        } else {
            (-lambda).exp().atan() / FRAC_PI_2
        }
    }

    fn t_range(&self) -> (f64, f64) {
        (self.t_eps, 1.0)
    }

    fn model_time(&self, t: f64) -> f64 {
        t
    }

    fn t_of_model_time(&self, model_time: f64) -> f64 {
        model_time
    }

    fn clean_point(&self) -> Point {
        Point::clean(0.0)
    }

    fn validate(&self) -> Result<()> {
        check_t_eps(self.t_eps)
    }
}
