//! Where the sampling times go: a [`Spacing`] places them, a [`Grid`] holds the validated
//! points, and [`Grid::steps`] yields one [`Step`] per solver step.
//!
//! Validation happens once, when the grid is built: at least one step, `lambda` strictly
//! monotone, `sigma = 0` only at the end and `alpha = 0` only at the start. Solvers never check
//! indices. The sampling loop walks any list of steps (`AsRef<[Step]>`): a [`Grid`], or an
//! explicit `Vec<Step>` such as a diffusers plan whose steps may end off the next step's start.

use crate::error::{config_err, Error, Result};
use crate::limits;
use crate::math::numpy::{arange, linspace};
use crate::schedule::{Point, Scheduler};
use crate::sigmas::SigmaSchedule;

/// How sampling times are placed between the schedule's start and the grid's [`End`].
///
/// The continuous spacings (`UniformTime` .. `Exponential`) place `steps + 1` points from the
/// schedule's `t_max` to the end time, or, with [`End::Clean`], `steps` points from `t_max` to
/// `t_min` followed by the clean point. diffusers' discrete spacings (`Leading`, `Linspace`,
/// `Trailing`) place `steps` training timesteps and append the end point.
#[derive(Clone, Debug, PartialEq)]
pub enum Spacing {
    /// Uniform in the schedule's time `t`.
    UniformTime,
    /// Uniform in `lambda` (log-SNR), DPM-Solver's recommendation (arXiv:2206.00927, Sec. 3.3).
    UniformLambda,
    /// Uniform in `sqrt(t)` (DPM-Solver's `time_quadratic`, for pixel-space DDPMs).
    TimeQuadratic,
    /// Karras et al. 2022 (arXiv:2206.00364, Eq. 5): `ksigma^(1/rho)` uniform (rho = 7).
    Karras {
        /// The exponent `rho`.
        rho: f64,
    },
    /// `ln(ksigma)` uniform: diffusers' `use_exponential_sigmas`; the same points as
    /// [`Spacing::UniformLambda`].
    Exponential,
    /// diffusers' `leading`: `timesteps = [i * (N / n) for i in 0..n]` reversed, plus
    /// `steps_offset` (`N / n` is integer division).
    Leading {
        /// Added to every timestep (diffusers' `steps_offset`).
        steps_offset: usize,
        /// Space `steps + 1` timesteps and drop timestep 0, as DPMSolverMultistep, UniPC and DEIS
        /// do; `false` spaces `steps` as DDIM, Euler and PNDM do.
        skip_zero: bool,
    },
    /// diffusers' `linspace`: `linspace(0, N - 1, n)` reversed.
    Linspace {
        /// Round to integer timesteps (half to even, as numpy): DDIM and DPMSolverMultistep
        /// round, EulerDiscrete does not.
        round: bool,
        /// Space `steps + 1` timesteps and drop timestep 0 (DPMSolverMultistep, UniPC, DEIS).
        skip_zero: bool,
    },
    /// diffusers' `trailing`: `round(arange(N, 0, -N / n)) - 1` (Lin et al. 2023, Table 2).
    Trailing,
    /// A named sigma schedule: ComfyUI's list (`karras`, `simple`, `beta`, ...), k-diffusion's,
    /// diffusers' beta sigmas or Align Your Steps; see [`crate::sigmas`].
    Sigmas(SigmaSchedule),
}

/// diffusers' three timestep spacings (`set_timesteps` of its DDPM-family schedulers), written
/// once: [`Spacing`]'s discrete spacings and every diffusers planner use them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum DiffusersTimesteps {
    /// `arange(count) * (top // count) + steps_offset`.
    Leading {
        /// Added to every timestep.
        steps_offset: usize,
    },
    /// `linspace(0, top - 1, count)`, rounded half to even when `round`.
    Linspace {
        /// Round to integers.
        round: bool,
    },
    /// `round(arange(top, 0, -stride)) - 1` (numpy's `arange`: its count follows from the stride).
    Trailing {
        /// The stride (diffusers: `num_train_timesteps / steps`).
        stride: f64,
    },
}

/// The training timesteps of `rule` below `top` (the table size, or diffusers' `last_timestep`),
/// `count` of them (trailing: as many as the stride gives), ascending.
pub(crate) fn diffusers_timesteps(rule: DiffusersTimesteps, top: usize, count: usize) -> Vec<f64> {
    match rule {
        DiffusersTimesteps::Leading { steps_offset } => {
            let ratio = top / count.max(1);
            (0..count).map(|i| (i * ratio).saturating_add(steps_offset) as f64).collect()
        }
        DiffusersTimesteps::Linspace { round } => {
            let ts = linspace(0.0, top as f64 - 1.0, count);
            if round {
                ts.into_iter().map(f64::round_ties_even).collect()
            } else {
                ts
            }
        }
        DiffusersTimesteps::Trailing { stride } => {
            arange(top as f64, 0.0, -stride).into_iter().rev().map(|t| t.round_ties_even() - 1.0).collect()
        }
    }
}

/// Where a grid ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum End {
    /// At the noise-free point `sigma = 0`, reached by a final step from the schedule's `t_min`.
    Clean,
    /// At the schedule's smallest trained time `t_min` (a small sigma > 0).
    Min,
    /// At time `t` of the schedule.
    At(f64),
}

/// What the sampling loop does at a [`Step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StepKind {
    /// The solver advances the sample from `from` to `to` (every step of a [`Grid`]).
    #[default]
    Solve,
    /// The network is evaluated once at `from` and the sample is left as it is; the solver is not
    /// called. diffusers' multistep schedulers do this on a repeated final sigma (a step of length
    /// 0 that still calls the model, e.g. Karras sigmas with `final_sigmas_type = "sigma_min"`).
    EvaluateOnly,
}

/// One solver step: from `from` to `to`, the `index`-th (0-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// 0-based position in the list of steps.
    pub index: usize,
    /// Number of steps in the list.
    pub count: usize,
    /// Where the step starts.
    pub from: Point,
    /// Where the step ends.
    pub to: Point,
    /// What the loop does here.
    pub kind: StepKind,
    /// Where the following step of the list ends, when there is one and the steps were made
    /// together ([`Step::chain`], a [`Grid`]); `None` on the last step and for a step made alone
    /// ([`Step::new`]). Methods that look one step ahead (ComfyUI's `heunpp2`) read it.
    pub next: Option<Point>,
}

impl Step {
    /// A [`StepKind::Solve`] step.
    pub fn new(index: usize, count: usize, from: Point, to: Point) -> Step {
        Step { index, count, from, to, kind: StepKind::Solve, next: None }
    }

    /// The steps between consecutive `points` (all [`StepKind::Solve`], each knowing where the
    /// following one ends: [`Step::next`]).
    pub fn chain(points: &[Point]) -> Vec<Step> {
        let count = points.len().saturating_sub(1);
        points
            .windows(2)
            .enumerate()
            .map(|(index, w)| Step { next: points.get(index + 2).copied(), ..Step::new(index, count, w[0], w[1]) })
            .collect()
    }

    /// `lambda_to - lambda_from` (positive when sampling, negative when inverting).
    pub fn h(&self) -> f64 {
        self.to.lambda - self.from.lambda
    }

    /// True on the grid's last step.
    pub fn is_last(&self) -> bool {
        self.index + 1 == self.count
    }
}

/// A validated sequence of points a solver walks through.
///
/// ```
/// use diffusion_samplers::{DiscreteVp, End, Grid, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let g = Grid::new(&s, &Spacing::Leading { steps_offset: 1, skip_zero: false }, 10, End::Clean)?;
/// let t: Vec<f64> = g.points().iter().map(|p| p.t).collect();
/// assert_eq!(&t[..3], &[901.0, 801.0, 701.0]);
/// assert!(g.points()[10].is_clean());
/// assert_eq!(g.len(), 10);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    points: Vec<Point>,
    steps: Vec<Step>,
}

impl AsRef<[Step]> for Grid {
    fn as_ref(&self) -> &[Step] {
        &self.steps
    }
}

impl Grid {
    /// Place `steps` steps on `schedule` with `spacing`, ending at `end`.
    ///
    /// At most [`crate::limits::MAX_STEPS`] steps ([`Error::TooLarge`] above). The schedule's
    /// own settings are checked first ([`Scheduler::validate`]), so a schedule built as a struct
    /// literal with invalid fields is refused here.
    pub fn new(schedule: &dyn Scheduler, spacing: &Spacing, steps: usize, end: End) -> Result<Grid> {
        schedule.validate()?;
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        limits::check("steps", steps, limits::MAX_STEPS)?;
        let (t_min, t_max) = schedule.t_range();
        let t_end = match end {
            End::Clean | End::Min => t_min,
            End::At(t) => {
                if !(t.is_finite() && t >= t_min.min(0.0) && t < t_max) {
                    return Err(Error::InvalidGrid(format!(
                        "end time {t} is outside the schedule's range [{t_min}, {t_max})"
                    )));
                }
                t
            }
        };
        let generated = |points: Vec<Point>| -> Result<Grid> {
            validate_points(&points, Some((spacing, steps)))?;
            Ok(Grid::unchecked(points))
        };
        let finish = |mut points: Vec<Point>| -> Result<Grid> {
            match end {
                End::Clean => points.push(schedule.clean_point()),
                End::Min | End::At(_) => points.push(schedule.point(t_end)),
            }
            generated(points)
        };
        // continuous spacings place `count` points from t_max to t_end inclusive
        let count = match end {
            End::Clean => steps,
            _ => steps + 1,
        };
        let continuous = |points: Vec<Point>| -> Result<Grid> {
            match end {
                End::Clean => {
                    let mut points = points;
                    points.push(schedule.clean_point());
                    generated(points)
                }
                _ => generated(points),
            }
        };
        match spacing {
            Spacing::UniformTime => {
                continuous(linspace(t_max, t_end, count).into_iter().map(|t| schedule.point(t)).collect())
            }
            Spacing::TimeQuadratic => {
                if t_end < 0.0 {
                    return config_err("time-quadratic spacing needs a non-negative end time");
                }
                let ts = linspace(t_max.sqrt(), t_end.sqrt(), count);
                continuous(ts.into_iter().map(|s| schedule.point(s * s)).collect())
            }
            Spacing::UniformLambda | Spacing::Exponential => {
                let (l0, l1) = finite_lambda_range(schedule, t_max, t_end, spacing)?;
                continuous(linspace(l0, l1, count).into_iter().map(|l| schedule.point_of_lambda(l)).collect())
            }
            Spacing::Karras { rho } => {
                if !(*rho > 0.0 && rho.is_finite()) {
                    return config_err(format!("Karras rho must be positive and finite, got {rho}"));
                }
                let (l0, l1) = finite_lambda_range(schedule, t_max, t_end, spacing)?;
                let points = crate::sigmas::karras_levels((-l0).exp(), (-l1).exp(), count, *rho)
                    .into_iter()
                    .map(|ks| schedule.point_of_lambda(-ks.ln()))
                    .collect();
                continuous(points)
            }
            Spacing::Leading { .. } | Spacing::Linspace { .. } | Spacing::Trailing => {
                let skip_zero = matches!(
                    *spacing,
                    Spacing::Leading { skip_zero: true, .. } | Spacing::Linspace { skip_zero: true, .. }
                );
                let n_train = discrete_steps(schedule, spacing, steps, skip_zero)?;
                // `skip_zero` spaces one more timestep and drops the smallest
                let (rule, spaced) = match *spacing {
                    Spacing::Leading { steps_offset, skip_zero } => {
                        let spaced = steps + usize::from(skip_zero);
                        let ratio = n_train / spaced;
                        if ratio == 0 {
                            return Err(Error::TooManySteps { steps, max: n_train - usize::from(skip_zero) });
                        }
                        let top = (spaced - 1) * ratio;
                        if top.checked_add(steps_offset).map_or(true, |first| first >= n_train) {
                            return Err(Error::InvalidGrid(format!(
                                "steps_offset {steps_offset} puts the first of {steps} leading timesteps at {} but \
                                 the table has {n_train} training timesteps (0..={}): lower steps_offset to at most {}",
                                top as u128 + steps_offset as u128,
                                n_train - 1,
                                n_train - 1 - top
                            )));
                        }
                        (DiffusersTimesteps::Leading { steps_offset }, spaced)
                    }
                    Spacing::Linspace { round, skip_zero } => {
                        (DiffusersTimesteps::Linspace { round }, steps + usize::from(skip_zero))
                    }
                    _ => (DiffusersTimesteps::Trailing { stride: n_train as f64 / steps as f64 }, steps),
                };
                let ts = diffusers_timesteps(rule, n_train, spaced).into_iter().rev().take(steps);
                finish(ts.map(|t| schedule.point(t)).collect())
            }
            Spacing::Sigmas(named) => named.grid(schedule, steps, end),
        }
    }

    /// A grid through the given times of `schedule` (the first is where sampling starts, the last
    /// where it ends). Every time must be finite and lie in the schedule's range
    /// `[min(t_min, 0), t_max]` ([`Scheduler::t_range`]; for a discrete schedule the training
    /// indices `0..=N-1`); use [`Grid::from_points`] with [`Scheduler::clean_point`] to end at
    /// `sigma = 0` below it.
    pub fn from_times(schedule: &dyn Scheduler, times: &[f64]) -> Result<Grid> {
        schedule.validate()?;
        for (i, &t) in times.iter().enumerate() {
            check_time(schedule, t).map_err(|e| Error::InvalidGrid(format!("time {i}: {e}")))?;
        }
        Grid::from_points(times.iter().map(|&t| schedule.point(t)).collect())
    }

    /// A grid through the given noise levels `ksigma = sigma / alpha` (k-diffusion's and
    /// diffusers' Euler "sigmas"); a 0 is the clean point.
    /// Every non-zero sigma must lie within the schedule's range (its `ksigma` at
    /// [`Scheduler::t_range`]'s ends, to a relative `1e-9`): a discrete table would otherwise
    /// clamp it onto its end.
    pub fn from_sigmas(schedule: &dyn Scheduler, sigmas: &[f64]) -> Result<Grid> {
        schedule.validate()?;
        let mut points = Vec::with_capacity(sigmas.len());
        for &s in sigmas {
            if !(s >= 0.0) || s.is_infinite() {
                return Err(Error::InvalidGrid(format!("sigma {s} is not a finite non-negative number")));
            }
            if s == 0.0 {
                points.push(schedule.clean_point());
                continue;
            }
            let p = schedule.point_of_lambda(-s.ln());
            let (t_min, t_max) = schedule.t_range();
            let (lo, hi) = (schedule.point(t_min.min(0.0)).ksigma(), schedule.point(t_max).ksigma());
            let reproduced = (p.ksigma() - s).abs() <= 1e-9 * s;
            if !reproduced || check_time(schedule, p.t).is_err() {
                return Err(Error::InvalidGrid(format!(
                    "sigma {s} is outside the schedule's range [{lo}, {hi}]: give noise levels the schedule has"
                )));
            }
            points.push(p);
        }
        Grid::from_points(points)
    }

    /// A grid through explicit points, validated: at least two points, finite `t`, no NaN,
    /// `lambda` strictly monotone, `sigma = 0` only last and `alpha = 0` only first.
    pub fn from_points(points: Vec<Point>) -> Result<Grid> {
        validate_points(&points, None)?;
        Ok(Grid::unchecked(points))
    }

    fn unchecked(points: Vec<Point>) -> Grid {
        let steps = Step::chain(&points);
        Grid { points, steps }
    }

    /// The points, in the order the solver visits them.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Number of steps (`points().len() - 1`).
    pub fn len(&self) -> usize {
        self.points.len() - 1
    }

    /// Always false: a grid has at least one step.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when the grid walks towards less noise (sampling), false for an inversion grid.
    pub fn is_denoising(&self) -> bool {
        self.points[1].lambda > self.points[0].lambda
    }

    /// The steps, in order.
    pub fn steps(&self) -> impl Iterator<Item = Step> + '_ {
        self.steps.iter().copied()
    }

    /// The same points in reverse order (an inversion grid from a sampling grid and back).
    /// Fails for a grid that ends at `sigma = 0`: inversion cannot start from a noise-free point,
    /// build the sampling grid with [`End::Min`] instead.
    pub fn reversed(&self) -> Result<Grid> {
        let mut points = self.points.clone();
        points.reverse();
        Grid::from_points(points)
    }

    /// The grid from point `k` on (the last `len() - k` steps).
    pub fn skip(&self, k: usize) -> Result<Grid> {
        if k >= self.len() {
            return Err(Error::ZeroSteps);
        }
        Ok(Grid::unchecked(self.points[k..].to_vec()))
    }

    /// The image-to-image grid for `strength` in `[0, 1]`, as diffusers computes it: the last
    /// `min(floor(n * strength), n)` steps. Noise the input to `points()[0]` of the result with
    /// [`crate::add_noise`].
    pub fn img2img(&self, strength: f64) -> Result<Grid> {
        if !(0.0..=1.0).contains(&strength) {
            return config_err(format!("img2img strength must lie in [0, 1], got {strength}"));
        }
        let n = self.len();
        let init = ((n as f64 * strength) as usize).min(n);
        if init == 0 {
            return Err(Error::InvalidConfig(format!(
                "strength {strength} with {n} steps leaves no step to run: raise the strength or the step count"
            )));
        }
        self.skip(n - init)
    }

    /// The model times of the points (what the network is conditioned on), excluding a final
    /// clean point.
    pub fn model_times(&self, schedule: &dyn Scheduler) -> Vec<f64> {
        self.points.iter().filter(|p| !p.is_clean()).map(|p| schedule.model_time(p.t)).collect()
    }
}

/// [`Grid::from_points`]' checks: at least two points, finite `t`, no NaN, `lambda` strictly
/// monotone, `sigma = 0` only last and `alpha = 0` only first. `generated` names the spacing and
/// step count of a grid placed by [`Grid::new`] (whose repeated points the caller never gave).
fn validate_points(points: &[Point], generated: Option<(&Spacing, usize)>) -> Result<()> {
    if points.len() < 2 {
        return Err(Error::ZeroSteps);
    }
    for (i, p) in points.iter().enumerate() {
        if !p.t.is_finite() {
            return Err(Error::InvalidGrid(format!("point {i} has time t = {}: times must be finite", p.t)));
        }
        if p.lambda.is_nan() || !p.alpha.is_finite() || !p.sigma.is_finite() || p.alpha < 0.0 || p.sigma < 0.0 {
            return Err(Error::InvalidGrid(format!(
                "point {i} (t = {}) has alpha = {}, sigma = {}: both must be finite, non-negative and not both 0",
                p.t, p.alpha, p.sigma
            )));
        }
        if p.sigma == 0.0 && i + 1 != points.len() {
            return Err(Error::InvalidGrid(format!(
                "sigma = 0 at point {i} of {}: only the last point may be noise-free",
                points.len()
            )));
        }
        if p.alpha == 0.0 && i != 0 {
            return Err(Error::InvalidGrid(format!("alpha = 0 at point {i}: only the first point may be pure noise")));
        }
    }
    let increasing = points[1].lambda > points[0].lambda;
    for (i, w) in points.windows(2).enumerate() {
        let ok = if increasing { w[1].lambda > w[0].lambda } else { w[1].lambda < w[0].lambda };
        if !ok {
            let hint = match generated {
                None => "remove repeated or out-of-order times".to_string(),
                Some((spacing, steps)) => format!(
                    "{spacing:?} with {steps} steps places two points at one noise level on this schedule (two \
                     of its times are too close to tell apart, or the end is not below the last spaced time): use \
                     fewer steps, another spacing or another end"
                ),
            };
            return Err(Error::InvalidGrid(format!(
                "lambda is not strictly monotone at points {i} and {} (t = {} and {}, lambda = {} and {}): {hint}",
                i + 1,
                w[0].t,
                w[1].t,
                w[0].lambda,
                w[1].lambda
            )));
        }
    }
    Ok(())
}

/// The sampling loop's check of a list of steps (a [`Grid`]'s steps pass it by construction):
/// at least one step, `index` and `count` consistent with the position, finite `t`, finite
/// non-negative `alpha` and `sigma` (not both 0), every step of non-zero length going the same way
/// in `lambda` (all towards less noise, or all towards more), and a [`StepKind::Solve`] step of
/// zero length (a repeated point) only as the last solver step: a multistep solver would take
/// the repeated point as two nodes of its history and divide by their distance.
pub(crate) fn validate_steps(steps: &[Step]) -> Result<()> {
    if steps.is_empty() {
        return Err(Error::ZeroSteps);
    }
    let mut direction = 0.0f64;
    let mut zero_length: Option<&Step> = None;
    for (i, st) in steps.iter().enumerate() {
        if st.index != i || st.count != steps.len() {
            return Err(Error::InvalidGrid(format!(
                "step {i} of {} is labelled {} of {}: number the steps 0..{} with count {}",
                steps.len(),
                st.index,
                st.count,
                steps.len(),
                steps.len()
            )));
        }
        for p in [&st.from, &st.to] {
            let ok = p.t.is_finite()
                && !p.lambda.is_nan()
                && p.alpha.is_finite()
                && p.sigma.is_finite()
                && p.alpha >= 0.0
                && p.sigma >= 0.0;
            if !ok {
                return Err(Error::InvalidGrid(format!(
                    "step {i} has a point (t = {}) with alpha = {}, sigma = {}: t must be finite, alpha and sigma \
                     finite, non-negative and not both 0",
                    p.t, p.alpha, p.sigma
                )));
            }
        }
        if st.kind == StepKind::EvaluateOnly {
            continue;
        }
        if let Some(z) = zero_length {
            return Err(Error::InvalidGrid(format!(
                "step {} has zero length (it starts and ends at t = {}, a repeated point) and step {i} follows it: \
                 a solver step of zero length is only allowed last (diffusers' repeated final sigma); remove the \
                 repeated point or make that step StepKind::EvaluateOnly",
                z.index, z.from.t
            )));
        }
        let h = st.h();
        if h.is_nan() || (h != 0.0 && direction != 0.0 && h.signum() != direction) {
            return Err(Error::InvalidGrid(format!(
                "step {i} goes from lambda = {} to {}, against the direction of the steps before it: the steps \
                 must all go towards less noise (sampling) or all towards more (inversion)",
                st.from.lambda, st.to.lambda
            )));
        }
        if h != 0.0 {
            direction = h.signum();
        } else {
            zero_length = Some(st);
        }
    }
    Ok(())
}

/// Checks that the network may be evaluated at time `t` of `schedule`: `t` finite, within the
/// schedule's range `[min(t_min, 0), t_max]` (to a relative `1e-9`, for times recomputed from a
/// log-SNR), and a finite model time there.
pub(crate) fn check_time(schedule: &dyn Scheduler, t: f64) -> Result<()> {
    let (t_min, t_max) = schedule.t_range();
    let lo = t_min.min(0.0);
    let tol = 1e-9 * lo.abs().max(t_max.abs()).max(1.0);
    if !(t.is_finite() && t >= lo - tol && t <= t_max + tol) {
        return Err(Error::InvalidGrid(format!(
            "time t = {t} is outside the schedule's range [{lo}, {t_max}]: the network is trained on times in that \
             range only"
        )));
    }
    let model_time = schedule.model_time(t);
    if !model_time.is_finite() {
        return Err(Error::InvalidGrid(format!(
            "time t = {t} has model time {model_time}: check the schedule's settings ({schedule:?})"
        )));
    }
    Ok(())
}

/// True when the solver steps of `steps` go towards less noise (sampling); false for an
/// inversion (steps of length 0 and [`StepKind::EvaluateOnly`] steps do not count).
pub fn is_denoising(steps: &[Step]) -> bool {
    steps.iter().filter(|s| s.kind == StepKind::Solve).map(|s| s.h()).find(|h| *h != 0.0).map_or(true, |h| h > 0.0)
}

fn finite_lambda_range(schedule: &dyn Scheduler, t_max: f64, t_end: f64, spacing: &Spacing) -> Result<(f64, f64)> {
    let (l0, l1) = (schedule.lambda(t_max), schedule.lambda(t_end));
    if !(l0.is_finite() && l1.is_finite()) {
        return Err(Error::InvalidGrid(format!(
            "{spacing:?} needs a finite log-SNR at both ends, got {l0} at t = {t_max} and {l1} at t = {t_end} \
             (a zero-terminal-SNR, cosine or flow schedule starts at alpha = 0): use UniformTime or a discrete spacing"
        )));
    }
    Ok((l0, l1))
}

/// The table size of a discrete schedule for diffusers' spacings, checking that `steps` distinct
/// timesteps fit (`skip_zero` spaces one more and drops timestep 0).
fn discrete_steps(schedule: &dyn Scheduler, spacing: &Spacing, steps: usize, skip_zero: bool) -> Result<usize> {
    let n_train = schedule
        .train_timesteps()
        .ok_or_else(|| Error::Unsupported(format!("{spacing:?} spacing needs a discrete schedule (DiscreteVp)")))?;
    let max = n_train - usize::from(skip_zero);
    if steps > max {
        return Err(Error::TooManySteps { steps, max });
    }
    Ok(n_train)
}
