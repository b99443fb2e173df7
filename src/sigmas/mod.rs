//! The sigma schedules people pick by name: ComfyUI's scheduler list (`normal`, `karras`,
//! `exponential`, `sgm_uniform`, `simple`, `ddim_uniform`, `beta`, `linear_quadratic`,
//! `kl_optimal`), k-diffusion's `polyexponential` and `vp`, the Laplace schedule, diffusers'
//! `use_beta_sigmas`, and Align Your Steps' published lists for SD 1.5, SDXL and SVD.
//!
//! A [`SigmaSchedule`] is a [`Spacing`](crate::Spacing) (`Spacing::Sigmas(..)`), so it places the
//! points of a [`Grid`] like every other spacing:
//!
//! ```
//! use diffusion_samplers::{sigmas::SigmaSchedule, DiscreteVp, End, Grid, Spacing};
//! let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?; // ComfyUI's "linear" = diffusers' scaled_linear
//! let schedule: SigmaSchedule = "kl_optimal".parse()?;    // a name picked at run time
//! let grid = Grid::new(&sd, &Spacing::Sigmas(schedule.clone()), 10, End::Clean)?;
//! assert_eq!(grid.len(), 10);
//! // the k-sigmas (sigma / alpha) ComfyUI would hand to its sampler, final 0 included
//! let sigmas = schedule.sigmas(&sd, 10, End::Clean)?;
//! assert!((sigmas[0] - 14.614641).abs() < 1e-6 && sigmas[10] == 0.0);
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```
//!
//! "Sigma" here is k-diffusion's noise level `sigma / alpha` ([`Point::ksigma`]): for an epsilon
//! model with a discrete 1000-step schedule ([`crate::DiscreteVp`]) it is ComfyUI's
//! `sqrt((1 - abar) / abar)` of the model's table, and between table entries `ln(sigma)` is
//! interpolated linearly in the training index, as ComfyUI's `ModelSamplingDiscrete.sigma(t)` and
//! k-diffusion's `t_to_sigma` do (the same interpolation `DiscreteVp` uses for fractional times).
//! `sigma_min` and `sigma_max` are the schedule's noise levels at its smallest and largest trained
//! time (the table's ends: 0.0291672 and 14.614641 for Stable Diffusion's table). One difference
//! remains in how a network is called between the levels: ComfyUI conditions a discrete model on
//! the *nearest* training index (`ModelSamplingDiscrete.timestep` is an argmin over the table),
//! while `DiscreteVp` passes the fractional index (k-diffusion's `sigma_to_t` without
//! `quantize`). The table-based schedules (simple, ddim_uniform, beta) sit on integer indices, so
//! both call the network at the same timesteps there.
//!
//! # Where the grid ends
//!
//! ComfyUI's lists end at `sigma = 0`; that is [`End::Clean`], and with it every schedule gives
//! exactly the reference list. For the schedules defined by a function `f(n)` of `n` noise levels
//! from `sigma_max` down to `sigma_min` (karras, exponential, polyexponential, vp, laplace,
//! kl_optimal, beta_sigmas, and normal in model time), `End::Clean` is `f(steps)` followed by 0
//! (k-diffusion's `append_zero`) and [`End::Min`] is `f(steps + 1)`, ending at `sigma_min`
//! (ComfyUI's `LaplaceScheduler` node returns exactly this, without a final 0); [`End::At`] moves
//! `sigma_min` to the noise level at that time (vp's levels do not depend on the model: no
//! `End::At`). sgm_uniform differs from normal only in where its clean step starts, so without a
//! clean end it is normal's grid. Align Your Steps interpolates its list to `steps + 1` levels;
//! `End::Clean` replaces the last one by 0, as ComfyUI's node does, `End::Min` keeps it. The
//! table-based schedules (simple, ddim_uniform, beta, linear_quadratic) are defined only with
//! their final 0.
//!
//! # Precision
//!
//! Everything is computed in f64 from the schedule's f64 table. ComfyUI rounds its sigma table to
//! float32 (and computes `kl_optimal`, `linear_quadratic` and its linspaces in float32): its
//! sigmas differ from these by float32 rounding, at most 2e-6 relative for these schedules
//! (measured in `tests/sigma_schedules.rs` against a float32 emulation), never by a different
//! table index.

mod ays;
mod closed_form;
mod comfy;

use std::fmt;
use std::str::FromStr;

pub use ays::AysModel;
pub(crate) use closed_form::karras_levels;

use crate::error::{config_err, Error, Result};
use crate::grid::{End, Grid};
use crate::schedule::{Point, Scheduler};

/// A named sigma schedule (ComfyUI / k-diffusion / diffusers / Align Your Steps). Use it as
/// `Spacing::Sigmas(schedule)`, or call [`SigmaSchedule::sigmas`] for the list of noise levels.
///
/// The parameters have their reference defaults when parsed from a name; the name
/// ([`SigmaSchedule::name`], `Display`) does not carry non-default parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum SigmaSchedule {
    /// ComfyUI `normal` (k-diffusion's `DiscreteSchedule.get_sigmas`): `steps` model times uniform
    /// from the largest to the smallest trained time, then 0. For a discrete schedule these are
    /// training indices `linspace(999, 0, steps)` (the points of `Spacing::UniformTime`); for EDM
    /// with `c_noise` model time it is uniform in `ln(sigma)`.
    Normal,
    /// ComfyUI `sgm_uniform` (Stability's `sgm` sampling code): `linspace(t_max, t_min, steps + 1)`
    /// in model time without its last point, then 0, so the final step starts one interval above
    /// `t_min`. Without a clean end it is [`SigmaSchedule::Normal`]'s grid.
    SgmUniform,
    /// ComfyUI `simple`: the table's sigmas at indices `N - 1 - floor(i * N / steps)`, `i < steps`,
    /// then 0 (`N` training timesteps). Needs a discrete schedule.
    Simple,
    /// ComfyUI `ddim_uniform`: the table's sigmas at indices `1, 1 + s, 1 + 2s, ... < N` with
    /// `s = max(N / steps, 1)` (integer division), descending, then 0 (diffusers' `leading`
    /// spacing with `steps_offset = 1` when `N / steps` divides `N`). Where it does not, ComfyUI
    /// takes more steps than asked (7 asked, 8 taken) and so does this. Needs a discrete schedule.
    DdimUniform,
    /// ComfyUI `beta` (Lee et al. 2024, arXiv:2407.12173): Beta(`alpha`, `beta`) quantiles of the
    /// *training timesteps*: indices `rint(ppf(1 - i / steps) * (N - 1))`, repeated indices
    /// dropped, their table sigmas, then 0. Needs a discrete schedule. (diffusers'
    /// `use_beta_sigmas` applies the quantiles to the sigma range instead: [`SigmaSchedule::BetaSigmas`].)
    Beta {
        /// First shape parameter (0.6).
        alpha: f64,
        /// Second shape parameter (0.6).
        beta: f64,
    },
    /// diffusers' `use_beta_sigmas=True` (Lee et al. 2024): `sigma_min + ppf(1 - u) (sigma_max -
    /// sigma_min)` with `u = linspace(0, 1, n)` and `ppf` the Beta(`alpha`, `beta`) quantile.
    BetaSigmas {
        /// First shape parameter (0.6).
        alpha: f64,
        /// Second shape parameter (0.6).
        beta: f64,
    },
    /// Karras et al. 2022 (arXiv:2206.00364, Eq. 5; k-diffusion `get_sigmas_karras`, ComfyUI
    /// `karras`, diffusers `use_karras_sigmas`): `sigma^(1/rho)` uniform from `sigma_max` to
    /// `sigma_min`.
    Karras {
        /// The exponent (7).
        rho: f64,
    },
    /// k-diffusion `get_sigmas_exponential`, ComfyUI `exponential`, diffusers
    /// `use_exponential_sigmas`: `ln(sigma)` uniform from `sigma_max` to `sigma_min`.
    Exponential,
    /// k-diffusion `get_sigmas_polyexponential`: `ln(sigma) = ln(sigma_min) + r^rho (ln(sigma_max)
    /// - ln(sigma_min))` with `r = linspace(1, 0, n)`; `rho = 1` is `Exponential`.
    Polyexponential {
        /// The exponent (1).
        rho: f64,
    },
    /// k-diffusion `get_sigmas_vp`: the continuous VP schedule of Song et al. 2021
    /// (arXiv:2011.13456), `sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)` at
    /// `t = linspace(1, eps_s, n)`. Its noise levels do not depend on the model's table: it fits
    /// `ContinuousVp { beta_0: beta_min, beta_1: beta_min + beta_d }`, and on a schedule whose
    /// range does not reach `sigma(1)` (Stable Diffusion's stops at 14.6) the grid is refused.
    Vp {
        /// `beta(1) - beta(0)` (19.9).
        beta_d: f64,
        /// `beta(0)` (0.1).
        beta_min: f64,
        /// The smallest time (1e-3).
        eps_s: f64,
    },
    /// The Laplace schedule of Tiankai et al. 2024 (arXiv:2407.03297; ComfyUI
    /// `get_sigmas_laplace`): `ln(sigma) = mu - beta sign(1/2 - x) ln(1 - 2|1/2 - x| + 1e-5)` at
    /// `x = linspace(0, 1, n)`, clamped to `[sigma_min, sigma_max]`. Parameters that clamp more
    /// than the two ends repeat a noise level, which a grid refuses.
    Laplace {
        /// Location of `ln(sigma)` (0).
        mu: f64,
        /// Scale of `ln(sigma)` (0.5).
        beta: f64,
    },
    /// ComfyUI `linear_quadratic` (Genmo's Mochi sampler): `sigma_max (1 - x_i)` where `x`
    /// rises linearly to `threshold_noise` over `linear_steps` steps, then quadratically to 1.
    /// Made for flow models; on a VP table it is taken as ComfyUI takes it (times `sigma_max`).
    LinearQuadratic {
        /// Where the linear part ends (0.025).
        threshold_noise: f64,
        /// Steps in the linear part (`None`: `steps / 2`).
        linear_steps: Option<usize>,
    },
    /// ComfyUI `kl_optimal` (Karras' "KL-optimal" schedule as in AUTOMATIC1111 PR 15608):
    /// `sigma_i = tan(a_i atan(sigma_min) + (1 - a_i) atan(sigma_max))`, `a_i = i / (n - 1)`.
    /// At one level ComfyUI divides by zero (NaN); here `a_0 = 0` gives `sigma_max`.
    KlOptimal,
    /// Align Your Steps (Sabour et al. 2024, arXiv:2404.14507): NVIDIA's published 10-step noise
    /// levels for one model family, log-linearly interpolated to other step counts as the paper
    /// and ComfyUI's `AlignYourStepsScheduler` do. Valid only for the family they were optimised
    /// for (see [`AysModel`]); on another model they are just another hand-made list.
    AlignYourSteps(AysModel),
}

/// Every name [`SigmaSchedule`] parses, with the schedule it parses to (reference defaults).
pub const NAMES: [&str; 16] = [
    "normal",
    "karras",
    "exponential",
    "sgm_uniform",
    "simple",
    "ddim_uniform",
    "beta",
    "linear_quadratic",
    "kl_optimal",
    "polyexponential",
    "vp",
    "laplace",
    "beta_sigmas",
    "ays_sd1",
    "ays_sdxl",
    "ays_svd",
];

impl SigmaSchedule {
    /// The schedule a name stands for, with its reference defaults (`None` for an unknown name).
    fn from_name(name: &str) -> Option<SigmaSchedule> {
        use SigmaSchedule::*;
        Some(match name {
            "normal" => Normal,
            "karras" => Karras { rho: 7.0 },
            "exponential" => Exponential,
            "sgm_uniform" => SgmUniform,
            "simple" => Simple,
            "ddim_uniform" => DdimUniform,
            "beta" => Beta { alpha: 0.6, beta: 0.6 },
            "linear_quadratic" => LinearQuadratic { threshold_noise: 0.025, linear_steps: None },
            "kl_optimal" => KlOptimal,
            "polyexponential" => Polyexponential { rho: 1.0 },
            "vp" => Vp { beta_d: 19.9, beta_min: 0.1, eps_s: 1e-3 },
            "laplace" => Laplace { mu: 0.0, beta: 0.5 },
            "beta_sigmas" => BetaSigmas { alpha: 0.6, beta: 0.6 },
            "ays_sd1" => AlignYourSteps(AysModel::Sd15),
            "ays_sdxl" => AlignYourSteps(AysModel::Sdxl),
            "ays_svd" => AlignYourSteps(AysModel::Svd),
            _ => return None,
        })
    }

    /// The schedule's name: ComfyUI's where ComfyUI has the schedule (`normal`, `karras`, ...),
    /// k-diffusion's function name otherwise (`polyexponential`, `vp`, `laplace`), `beta_sigmas`
    /// for diffusers' `use_beta_sigmas`, `ays_sd1` / `ays_sdxl` / `ays_svd` for Align Your Steps.
    pub fn name(&self) -> &'static str {
        use SigmaSchedule::*;
        match self {
            Normal => "normal",
            SgmUniform => "sgm_uniform",
            Simple => "simple",
            DdimUniform => "ddim_uniform",
            Beta { .. } => "beta",
            BetaSigmas { .. } => "beta_sigmas",
            Karras { .. } => "karras",
            Exponential => "exponential",
            Polyexponential { .. } => "polyexponential",
            Vp { .. } => "vp",
            Laplace { .. } => "laplace",
            LinearQuadratic { .. } => "linear_quadratic",
            KlOptimal => "kl_optimal",
            AlignYourSteps(AysModel::Sd15) => "ays_sd1",
            AlignYourSteps(AysModel::Sdxl) => "ays_sdxl",
            AlignYourSteps(AysModel::Svd) => "ays_svd",
        }
    }

    /// The noise levels `sigma / alpha` of a `steps`-step grid on `schedule` ending at `end`, as
    /// the reference defines them (a final clean point is 0). The list has `steps + 1` entries,
    /// except where the reference itself takes another count (`ddim_uniform` rounds the stride,
    /// `beta` drops repeated timesteps).
    ///
    /// ```
    /// use diffusion_samplers::{sigmas::SigmaSchedule, DiscreteVp, End, Scheduler};
    /// let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
    /// let s = SigmaSchedule::Simple.sigmas(&sd, 2, End::Clean)?;
    /// // the table's sigmas at training indices 999 and 499, then 0
    /// assert_eq!(s, vec![sd.point(999.0).ksigma(), sd.point(499.0).ksigma(), 0.0]);
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn sigmas(&self, schedule: &dyn Scheduler, steps: usize, end: End) -> Result<Vec<f64>> {
        Ok(self.levels(schedule, steps, end)?.into_iter().map(|l| l.ksigma(schedule)).collect())
    }

    /// The [`Grid`] through [`SigmaSchedule::sigmas`]: training indices stay integer times where the
    /// reference picks table entries; a noise level the schedule cannot represent (outside its
    /// table) is an error.
    pub fn grid(&self, schedule: &dyn Scheduler, steps: usize, end: End) -> Result<Grid> {
        let levels = self.levels(schedule, steps, end)?;
        let mut points = Vec::with_capacity(levels.len());
        for (i, level) in levels.into_iter().enumerate() {
            points.push(match level {
                Level::Time(t) => schedule.point(t),
                Level::Clean => schedule.clean_point(),
                Level::Sigma(s) => point_of_ksigma(schedule, s, i, self.name())?,
            });
        }
        Grid::from_points(points)
    }

    fn levels(&self, schedule: &dyn Scheduler, steps: usize, end: End) -> Result<Vec<Level>> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        let range = Range::new(schedule, end)?;
        use SigmaSchedule::*;
        match self {
            Normal => comfy::normal(schedule, &range, steps, false),
            SgmUniform => comfy::normal(schedule, &range, steps, true),
            Simple => self.clean_only(end).and_then(|()| comfy::simple(schedule, steps)),
            DdimUniform => self.clean_only(end).and_then(|()| comfy::ddim_uniform(schedule, steps)),
            Beta { alpha, beta } => self.clean_only(end).and_then(|()| comfy::beta(schedule, steps, *alpha, *beta)),
            LinearQuadratic { threshold_noise, linear_steps } => {
                self.clean_only(end)?;
                comfy::linear_quadratic(&range, steps, *threshold_noise, *linear_steps)
            }
            AlignYourSteps(model) => ays::levels(*model, steps, self.no_end_time(end)?),
            Vp { beta_d, beta_min, eps_s } => {
                let f = closed_form::vp(*beta_d, *beta_min, *eps_s)?;
                Ok(with_end(self.no_end_time(end)?, steps, f))
            }
            Karras { rho } => Ok(with_end(range.clean, steps, closed_form::karras(range.sigmas(self)?, *rho)?)),
            Exponential => Ok(with_end(range.clean, steps, closed_form::polyexponential(range.sigmas(self)?, 1.0)?)),
            Polyexponential { rho } => {
                Ok(with_end(range.clean, steps, closed_form::polyexponential(range.sigmas(self)?, *rho)?))
            }
            Laplace { mu, beta } => {
                Ok(with_end(range.clean, steps, closed_form::laplace(range.sigmas(self)?, *mu, *beta)?))
            }
            KlOptimal => Ok(with_end(range.clean, steps, closed_form::kl_optimal(range.sigmas(self)?))),
            BetaSigmas { alpha, beta } => {
                Ok(with_end(range.clean, steps, closed_form::beta_sigmas(range.sigmas(self)?, *alpha, *beta)?))
            }
        }
    }

    /// Ok for `End::Clean`, an error naming the schedule otherwise.
    fn clean_only(&self, end: End) -> Result<()> {
        match end {
            End::Clean => Ok(()),
            other => Err(Error::Unsupported(format!(
                "the `{}` schedule is defined only with its final sigma = 0 (End::Clean), got {other:?}: \
                 use End::Clean, or a spacing with an end time (normal, karras, exponential, ...)",
                self.name()
            ))),
        }
    }

    /// Whether the grid ends clean; an error for `End::At`, which these lists cannot honour.
    fn no_end_time(&self, end: End) -> Result<bool> {
        match end {
            End::Clean => Ok(true),
            End::Min => Ok(false),
            End::At(t) => Err(Error::Unsupported(format!(
                "the `{}` schedule's noise levels do not depend on the model, so it cannot end at time {t}: \
                 use End::Clean or End::Min",
                self.name()
            ))),
        }
    }
}

impl fmt::Display for SigmaSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SigmaSchedule {
    type Err = Error;

    /// Parse a name of [`NAMES`] (reference defaults for the parameters).
    ///
    /// ```
    /// use diffusion_samplers::{sigmas::SigmaSchedule, Error};
    /// assert_eq!("karras".parse::<SigmaSchedule>()?, SigmaSchedule::Karras { rho: 7.0 });
    /// let err = "karas".parse::<SigmaSchedule>().unwrap_err();
    /// assert!(matches!(err, Error::UnknownSchedule { .. }) && err.to_string().contains("karras"));
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    fn from_str(name: &str) -> Result<SigmaSchedule> {
        SigmaSchedule::from_name(name)
            .ok_or_else(|| Error::UnknownSchedule { name: name.to_string(), known: NAMES.join(", ") })
    }
}

/// One noise level of a schedule's list, in the form the reference defines it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Level {
    /// A time of the schedule (a training index for table-based schedules).
    Time(f64),
    /// A noise level `sigma / alpha`.
    Sigma(f64),
    /// `sigma = 0`.
    Clean,
}

impl Level {
    fn ksigma(self, schedule: &dyn Scheduler) -> f64 {
        match self {
            Level::Time(t) => schedule.point(t).ksigma(),
            Level::Sigma(s) => s,
            Level::Clean => 0.0,
        }
    }
}

/// The part of the schedule a grid spans: from `t_max` to `t_end`, and whether it ends clean.
struct Range {
    t_max: f64,
    t_end: f64,
    clean: bool,
    ks_max: f64,
    ks_end: f64,
}

impl Range {
    fn new(schedule: &dyn Scheduler, end: End) -> Result<Range> {
        let (t_min, t_max) = schedule.t_range();
        let (t_end, clean) = match end {
            End::Clean => (t_min, true),
            End::Min => (t_min, false),
            End::At(t) => {
                if !(t.is_finite() && t >= t_min.min(0.0) && t < t_max) {
                    return Err(Error::InvalidGrid(format!(
                        "end time {t} is outside the schedule's range [{t_min}, {t_max})"
                    )));
                }
                (t, false)
            }
        };
        let ks_max = schedule.point(t_max).ksigma();
        let ks_end = schedule.point(t_end).ksigma();
        Ok(Range { t_max, t_end, clean, ks_max, ks_end })
    }

    /// `(sigma_min, sigma_max)`, both finite and positive, for the sigma-range schedules.
    fn sigmas(&self, schedule: &SigmaSchedule) -> Result<(f64, f64)> {
        let (lo, hi) = (self.ks_end, self.ks_max);
        let name = schedule.name();
        if !(lo > 0.0 && hi > lo && hi.is_finite()) {
            return Err(Error::InvalidGrid(format!(
                "the `{name}` schedule needs 0 < sigma_min < sigma_max < inf, got sigma_min = {lo} and \
                 sigma_max = {hi} (sigma / alpha at t = {} and {}): a zero-terminal-SNR or flow schedule \
                 starts at alpha = 0; use normal or a discrete spacing",
                self.t_end, self.t_max
            )));
        }
        Ok((lo, hi))
    }
}

/// `f(steps)` then 0 when the grid ends clean, `f(steps + 1)` otherwise.
fn with_end(clean: bool, steps: usize, f: impl Fn(usize) -> Vec<f64>) -> Vec<Level> {
    let mut levels: Vec<Level> = f(if clean { steps } else { steps + 1 }).into_iter().map(Level::Sigma).collect();
    if clean {
        levels.push(Level::Clean);
    }
    levels
}

/// The point of `schedule` at noise level `ks`, refusing a level the schedule clamps away.
fn point_of_ksigma(schedule: &dyn Scheduler, ks: f64, index: usize, name: &str) -> Result<Point> {
    if !(ks > 0.0 && ks.is_finite()) {
        return Err(Error::InvalidGrid(format!(
            "the `{name}` schedule gives sigma = {ks} at position {index}: expected a finite positive noise level"
        )));
    }
    let lambda = -ks.ln();
    let p = schedule.point_of_lambda(lambda);
    if !((p.lambda - lambda).abs() <= 1e-9 * lambda.abs().max(1.0)) {
        let (t_min, t_max) = schedule.t_range();
        let (lo, hi) = (schedule.point(t_min).ksigma(), schedule.point(t_max).ksigma());
        return Err(Error::InvalidGrid(format!(
            "the `{name}` schedule asks for sigma = {ks} at position {index}, outside the noise levels this \
             schedule can represent ([{lo}, {hi}]): pick a schedule made for this model (its parameters or \
             its model family)"
        )));
    }
    Ok(p)
}

/// numpy's and torch's `linspace(start, end, n)` (`[start]` for `n = 1`), in f64.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    crate::math::numpy::linspace(start, end, n)
}

fn positive_finite(name: &str, what: &str, v: f64) -> Result<()> {
    if !(v > 0.0 && v.is_finite()) {
        return config_err(format!("the `{name}` schedule's {what} must be positive and finite, got {v}"));
    }
    Ok(())
}
