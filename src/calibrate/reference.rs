//! The teacher: a fine, error-controlled solve of the calibration noises whose endpoint the
//! students are fitted to, and whose trajectory (the samples and the model's data predictions at
//! the teacher's accepted points) the dynamic programming of [`crate::calibrate::gits`] reuses
//! without further network evaluations.

use std::time::Instant;

use candle_core::Tensor;

use super::error::CalibrationError;
use crate::error::{Error, Result};
use crate::math::unified::extrapolate_clean;
use crate::model::Model;
use crate::ops::lincomb;
use crate::schedule::Point;
use crate::solvers::DpmAdaptive;

/// How the teacher goes from the schedule's last time `t_min` to `sigma = 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalStep {
    /// The model's data prediction at `t_min` (what every fixed-grid solver here, diffusers and
    /// k-diffusion do; a 500-step reference solve ends this way).
    Denoise,
    /// The data predictions at the last `points` teacher points extrapolated to `ksigma = 0` as a
    /// polynomial in `ksigma^2` (the exact ODE endpoint at `sigma = 0`, to `O(ksigma^(2 points))`;
    /// for models whose ODE is meant to be solved to `sigma = 0`, e.g. an exact denoiser).
    Extrapolate {
        /// Teacher points used (2 or more).
        points: usize,
    },
}

/// The teacher: the adaptive DPM-Solver at a tight tolerance, then the final step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Teacher {
    /// The error-controlled solver from `t_max` to `t_min`.
    pub solver: DpmAdaptive,
    /// From `t_min` to `sigma = 0`.
    pub final_step: FinalStep,
}

impl Default for Teacher {
    /// DPM-Solver-23 at `rtol = atol = 1e-4`, then [`FinalStep::Denoise`].
    fn default() -> Self {
        Teacher {
            solver: DpmAdaptive { rtol: 1e-4, atol: 1e-4, ..DpmAdaptive::default() },
            final_step: FinalStep::Denoise,
        }
    }
}

/// A teacher solve of a batch of calibration noises.
#[derive(Clone, Debug)]
pub struct Reference {
    /// The teacher's accepted points from `t_max` to `t_min` (not the clean point).
    pub points: Vec<Point>,
    /// The samples at `points`.
    pub x: Vec<Tensor>,
    /// The model's data predictions at `points` (made at `x`).
    pub data: Vec<Tensor>,
    /// The endpoint at `sigma = 0`.
    pub end: Tensor,
    /// Network evaluations the teacher made (each on the whole batch).
    pub nfe: usize,
    /// Wall time of the teacher solve.
    pub seconds: f64,
}

impl Reference {
    /// Solve `noise` (a batch of samples at `model`'s schedule's `t_max`, batch first) with
    /// `teacher` from `t_max` to `t_min` and on to `sigma = 0`.
    pub fn new(model: &mut Model, noise: &Tensor, teacher: &Teacher) -> Result<Reference> {
        let start = Instant::now();
        if noise.dims().first().copied().unwrap_or(0) == 0 {
            return Err(CalibrationError::NoNoise.into());
        }
        let schedule = model.schedule();
        let (t_min, t_max) = schedule.t_range();
        let (from, to) = (schedule.point(t_max), schedule.point(t_min));
        if let FinalStep::Extrapolate { points } = teacher.final_step {
            if points < 2 {
                return Err(Error::InvalidConfig(format!(
                    "extrapolating to sigma = 0 needs at least 2 teacher points, got {points}"
                )));
            }
        }
        let nfe0 = model.nfe();
        let (mut points, mut xs, mut data) = (vec![], vec![], vec![]);
        let mut failed = None;
        let (x_end, _) = teacher.solver.solve_with(model, &from, &to, noise, |a| {
            // x0 = (x - sigma eps) / alpha
            match lincomb(&[(1.0 / a.from.alpha, a.x_from), (-a.from.sigma / a.from.alpha, a.eps_from)]) {
                Ok(d) => {
                    points.push(a.from);
                    xs.push(a.x_from.clone());
                    data.push(d);
                }
                Err(e) => failed = Some(e),
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let d_end = model.data(&x_end, &to)?;
        points.push(to);
        xs.push(x_end);
        data.push(d_end.clone());
        let end = match teacher.final_step {
            FinalStep::Denoise => d_end,
            FinalStep::Extrapolate { points: k } => {
                let k = k.min(points.len());
                let n = points.len();
                let nodes: Vec<(&Point, &Tensor)> = (n - k..n).map(|i| (&points[i], &data[i])).collect();
                extrapolate_clean(1.0, &nodes)?
            }
        };
        Ok(Reference { points, x: xs, data, end, nfe: model.nfe() - nfe0, seconds: start.elapsed().as_secs_f64() })
    }

    /// The number of calibration samples.
    pub fn batch(&self) -> usize {
        self.end.dims().first().copied().unwrap_or(0)
    }
}
