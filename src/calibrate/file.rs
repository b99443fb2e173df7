//! Calibrated schedules (and plans) as small JSON files that a later run loads without
//! recalibrating.
//!
//! A file names the model it was made for, the noise schedule it was made on (its time range,
//! training steps and log-SNR at probe times), the solver (a registry name such as `dpmpp_2m`, or
//! `planned` with the per-step plan), the NFE, and the grid as times, model times and k-sigmas
//! (`sigma / alpha`; 0 for the clean end). Loading checks all of it against what the caller runs
//! and rebuilds the grid from the stored times, bit for bit (`serde_json` with exact float
//! round-trips).
//!
//! ```
//! use diffusion_samplers::calibrate::{Expect, ScheduleFile};
//! use diffusion_samplers::{DiscreteVp, End, Grid, Spacing};
//! let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
//! let grid = Grid::new(&s, &Spacing::TimeQuadratic, 5, End::Clean)?;
//! let file = ScheduleFile::new("my-model", &s, "dpmpp_2m", &grid, None, "time-quadratic")?;
//! let text = file.to_json()?;
//! let back = ScheduleFile::from_json(&text, "<memory>")?;
//! let expect = Expect { model: "my-model", schedule: &s, solver: "dpmpp_2m" };
//! assert_eq!(back.grid(&expect)?, grid);
//! assert!(back.grid(&Expect { solver: "unipc_bh2_2", ..expect }).is_err());
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use super::error::CalibrationError;
use crate::error::Result;
use crate::grid::Grid;
use crate::schedule::{Point, Scheduler};
use crate::solvers::SolverPlan;

/// The `format` field of every schedule file.
pub const FORMAT: &str = "diffusion-samplers/schedule";
/// The current `version`.
pub const VERSION: u32 = 1;

/// What identifies a noise schedule: its time range, training steps and log-SNR at probe times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseScheduleId {
    /// `(t_min, t_max)`.
    pub t_range: [f64; 2],
    /// Discrete training steps, if any.
    pub train_timesteps: Option<usize>,
    /// `(t, lambda(t))` at 9 times evenly spread over the range.
    pub lambda_at: Vec<[f64; 2]>,
}

impl NoiseScheduleId {
    /// The identity of `schedule`.
    pub fn of(schedule: &dyn Scheduler) -> NoiseScheduleId {
        let (t0, t1) = schedule.t_range();
        let lambda_at = (0..9)
            .map(|i| {
                let t = t0 + (t1 - t0) * i as f64 / 8.0;
                [t, schedule.lambda(t)]
            })
            .collect();
        NoiseScheduleId { t_range: [t0, t1], train_timesteps: schedule.train_timesteps(), lambda_at }
    }

    /// `None` if `schedule` matches, else what differs.
    fn mismatch(&self, schedule: &dyn Scheduler) -> Option<String> {
        let now = NoiseScheduleId::of(schedule);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()));
        if !(close(self.t_range[0], now.t_range[0]) && close(self.t_range[1], now.t_range[1])) {
            return Some(format!("time range {:?} in the file, {:?} here", self.t_range, now.t_range));
        }
        if self.train_timesteps != now.train_timesteps {
            return Some(format!(
                "{:?} training steps in the file, {:?} here",
                self.train_timesteps, now.train_timesteps
            ));
        }
        if self.lambda_at.len() != now.lambda_at.len() {
            return Some("a different number of log-SNR probes".into());
        }
        for (a, b) in self.lambda_at.iter().zip(&now.lambda_at) {
            if !(close(a[0], b[0]) && close(a[1], b[1])) {
                return Some(format!("log-SNR {} at t = {} in the file, {} here (other betas?)", a[1], a[0], b[1]));
            }
        }
        None
    }
}

/// How a schedule was made and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// The method (e.g. `"gits+search"`).
    pub method: String,
    /// The teacher (e.g. `"dpm_adaptive rtol=1e-4 atol=1e-4, final: denoise"`).
    pub teacher: String,
    /// Calibration noises.
    pub noises: usize,
    /// Network calls of the teacher (each on the whole calibration batch).
    pub teacher_nfe: usize,
    /// Network calls of the student solves.
    pub student_nfe: usize,
    /// Wall time of the calibration.
    pub seconds: f64,
    /// RMSE of the calibrated student against the teacher on the calibration noises.
    pub rmse_calibration: f64,
}

/// A calibrated schedule as saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// The model it was made for (the caller's identifier, e.g. a name and a weights hash).
    pub model: String,
    /// The noise schedule it was made on.
    pub noise_schedule: NoiseScheduleId,
    /// The solver it was made for (`planned` with `plan`).
    pub solver: String,
    /// Network evaluations of one solve.
    pub nfe: usize,
    /// Times of the grid points (the schedule's own `t`; the last is the clean point's).
    pub times: Vec<f64>,
    /// Model times of the non-clean points (what the network is conditioned on).
    pub model_times: Vec<f64>,
    /// `sigma / alpha` of every point (0 at the clean end).
    pub sigmas: Vec<f64>,
    /// The per-step plan of the `planned` solver.
    pub plan: Option<SolverPlan>,
    /// The spacing the calibration started from.
    pub made_from: String,
    /// How it was made.
    pub calibration: CalibrationInfo,
}

/// What the caller runs, checked against a file on load.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// The model identifier.
    pub model: &'a str,
    /// The noise schedule.
    pub schedule: &'a dyn Scheduler,
    /// The solver name.
    pub solver: &'a str,
}

impl ScheduleFile {
    /// A file for `grid` (ending at `sigma = 0`) of `schedule`, made for `model` and `solver`.
    pub fn new(
        model: &str,
        schedule: &dyn Scheduler,
        solver: &str,
        grid: &Grid,
        plan: Option<SolverPlan>,
        made_from: &str,
    ) -> Result<ScheduleFile> {
        let pts = grid.points();
        let file = ScheduleFile {
            format: FORMAT.into(),
            version: VERSION,
            model: model.into(),
            noise_schedule: NoiseScheduleId::of(schedule),
            solver: solver.into(),
            nfe: grid.len(),
            times: pts.iter().map(|p| p.t).collect(),
            model_times: pts.iter().filter(|p| !p.is_clean()).map(|p| schedule.model_time(p.t)).collect(),
            sigmas: pts.iter().map(|p| if p.is_clean() { 0.0 } else { p.ksigma() }).collect(),
            plan,
            made_from: made_from.into(),
            calibration: CalibrationInfo::default(),
        };
        file.check_points(schedule, "<memory>")?;
        Ok(file)
    }

    /// The JSON text.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| CalibrationError::FileFormat { path: "<memory>".into(), reason: e.to_string() }.into())
    }

    /// Parse JSON text (`path` names it in errors).
    pub fn from_json(text: &str, path: &str) -> Result<ScheduleFile> {
        let file: ScheduleFile = serde_json::from_str(text)
            .map_err(|e| CalibrationError::FileFormat { path: path.into(), reason: e.to_string() })?;
        if file.format != FORMAT || file.version != VERSION {
            return Err(CalibrationError::FileFormat {
                path: path.into(),
                reason: format!(
                    "format {:?} version {}, this crate reads {FORMAT:?} version {VERSION}",
                    file.format, file.version
                ),
            }
            .into());
        }
        Ok(file)
    }

    /// Write the file.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let p = path.as_ref();
        std::fs::write(p, self.to_json()? + "\n")
            .map_err(|e| CalibrationError::FileRead { path: p.display().to_string(), reason: e.to_string() }.into())
    }

    /// Read a file (not yet checked against a model: see [`ScheduleFile::grid`]).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<ScheduleFile> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p)
            .map_err(|e| CalibrationError::FileRead { path: p.display().to_string(), reason: e.to_string() })?;
        ScheduleFile::from_json(&text, &p.display().to_string())
    }

    /// The grid, after checking the file against `expect` (model, noise schedule, solver) and
    /// its points (finite, strictly decreasing noise, inside the schedule's range, times and
    /// sigmas consistent, ending at `sigma = 0`, a plan of one entry per step).
    pub fn grid(&self, expect: &Expect) -> Result<Grid> {
        self.grid_at(expect, "<memory>")
    }

    /// [`ScheduleFile::grid`] naming `path` in errors.
    pub fn grid_at(&self, expect: &Expect, path: &str) -> Result<Grid> {
        if self.model != expect.model {
            return Err(CalibrationError::WrongModel {
                path: path.into(),
                expected: expect.model.into(),
                found: self.model.clone(),
            }
            .into());
        }
        if let Some(reason) = self.noise_schedule.mismatch(expect.schedule) {
            return Err(CalibrationError::WrongNoiseSchedule { path: path.into(), reason }.into());
        }
        if self.solver != expect.solver {
            return Err(CalibrationError::WrongSolver {
                path: path.into(),
                expected: expect.solver.into(),
                found: self.solver.clone(),
            }
            .into());
        }
        self.check_points(expect.schedule, path)
    }

    fn check_points(&self, schedule: &dyn Scheduler, path: &str) -> Result<Grid> {
        let bad =
            |reason: String| -> crate::Error { CalibrationError::InvalidSchedule { path: path.into(), reason }.into() };
        let n = self.times.len();
        if n < 2 || self.sigmas.len() != n || self.model_times.len() + 1 != n {
            return Err(bad(format!(
                "{n} times, {} sigmas and {} model times: a grid of k steps has k + 1 times and sigmas and k model times",
                self.sigmas.len(),
                self.model_times.len()
            )));
        }
        if self.nfe != n - 1 {
            return Err(bad(format!("nfe is {} but the grid has {} steps", self.nfe, n - 1)));
        }
        if let Some(plan) = &self.plan {
            if plan.steps.len() != n - 1 {
                return Err(bad(format!("the plan has {} steps, the grid {}", plan.steps.len(), n - 1)));
            }
            plan.validate().map_err(|e| bad(e.to_string()))?;
        } else if self.solver == "planned" {
            return Err(bad("solver `planned` without a plan".into()));
        }
        for (i, v) in self.times.iter().chain(&self.sigmas).chain(&self.model_times).enumerate() {
            if !v.is_finite() {
                return Err(bad(format!("value {i} is {v}: every time and sigma must be finite")));
            }
        }
        if self.sigmas[n - 1] != 0.0 {
            return Err(bad(format!("the last sigma is {}: a calibrated grid ends at sigma = 0", self.sigmas[n - 1])));
        }
        let (t_min, t_max) = schedule.t_range();
        let mut points: Vec<Point> = Vec::with_capacity(n);
        for i in 0..n - 1 {
            let t = self.times[i];
            if !(t >= t_min && t <= t_max) {
                return Err(bad(format!("time {t} (point {i}) is outside the schedule's range [{t_min}, {t_max}]")));
            }
            let p = schedule.point(t);
            let (s, mt) = (p.ksigma(), schedule.model_time(t));
            if (s - self.sigmas[i]).abs() > 1e-9 * s.max(1e-12)
                || (mt - self.model_times[i]).abs() > 1e-9 * (1.0 + mt.abs())
            {
                return Err(bad(format!(
                    "point {i}: time {t} has sigma {s} and model time {mt} on this schedule, the file says {} and {}",
                    self.sigmas[i], self.model_times[i]
                )));
            }
            if i > 0 && !(self.sigmas[i] < self.sigmas[i - 1]) {
                return Err(bad(format!(
                    "sigma does not decrease strictly at point {i} ({} after {})",
                    self.sigmas[i],
                    self.sigmas[i - 1]
                )));
            }
            points.push(p);
        }
        points.push(schedule.clean_point());
        Grid::from_points(points).map_err(|e| bad(e.to_string()))
    }
}
