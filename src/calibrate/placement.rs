//! The free parameters of an optimised grid: the log-SNR points between the schedule's start and
//! the last point before `sigma = 0`, and that last point itself.
//!
//! A grid of `n` steps ending clean has points `p_0` (the schedule's `t_max`, fixed),
//! `p_1 .. p_{n-1}` (free, `lambda` increasing, `p_{n-1}` at most the schedule's `t_min`) and the
//! clean point. The `n - 1` parameters are unconstrained reals: `theta_0` places the last point
//! at the fraction `sigmoid(theta_0)` of the log-SNR span `[lambda(t_max), lambda(t_min)]`, and
//! `theta_1 .. theta_{n-2}` are the logits of the first `n - 2` of the `n - 1` increments in
//! `lambda` (the last increment's logit is 0): every parameter vector is a valid grid.

use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::schedule::{Point, Scheduler};

/// Maps parameters to grids of `steps` steps on `schedule` ending at `sigma = 0`.
#[derive(Clone, Copy, Debug)]
pub struct Placement<'a> {
    schedule: &'a dyn Scheduler,
    steps: usize,
    lambda_start: f64,
    lambda_max: f64,
}

impl<'a> Placement<'a> {
    /// Grids of `steps` steps (at least 1) from `schedule`'s `t_max` to `sigma = 0`.
    pub fn new(schedule: &'a dyn Scheduler, steps: usize) -> Result<Placement<'a>> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        let (t_min, t_max) = schedule.t_range();
        let (lambda_start, lambda_max) = (schedule.lambda(t_max), schedule.lambda(t_min));
        if !(lambda_start.is_finite() && lambda_max.is_finite() && lambda_max > lambda_start) {
            return Err(Error::InvalidGrid(format!(
                "calibrated grids need a finite, increasing log-SNR range, got {lambda_start} (t_max) .. {lambda_max} (t_min)"
            )));
        }
        Ok(Placement { schedule, steps, lambda_start, lambda_max })
    }

    /// The number of parameters, `steps - 1`.
    pub fn dim(&self) -> usize {
        self.steps - 1
    }

    /// The number of steps.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The log-SNR range `(lambda(t_max), lambda(t_min))`.
    pub fn lambda_range(&self) -> (f64, f64) {
        (self.lambda_start, self.lambda_max)
    }

    /// The `lambda` of the non-clean points `p_0 .. p_{n-1}` for `theta`.
    pub fn lambdas(&self, theta: &[f64]) -> Result<Vec<f64>> {
        if theta.len() != self.dim() || theta.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidConfig(format!(
                "a {}-step placement takes {} finite parameters, got {theta:?}",
                self.steps,
                self.dim()
            )));
        }
        let n = self.steps;
        let mut out = vec![self.lambda_start];
        if n == 1 {
            return Ok(out);
        }
        let frac = 1.0 / (1.0 + (-theta[0]).exp());
        let span = (self.lambda_max - self.lambda_start) * frac;
        let logits: Vec<f64> = theta[1..].iter().copied().chain(std::iter::once(0.0)).collect();
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        for (k, wk) in w.iter().enumerate() {
            acc += wk / total;
            out.push(if k + 1 == w.len() { self.lambda_start + span } else { self.lambda_start + span * acc });
        }
        Ok(out)
    }

    /// The grid for `theta` (ending at the clean point).
    pub fn grid(&self, theta: &[f64]) -> Result<Grid> {
        let lambdas = self.lambdas(theta)?;
        let (_, t_max) = self.schedule.t_range();
        let mut points: Vec<Point> = Vec::with_capacity(lambdas.len() + 1);
        for (i, l) in lambdas.iter().enumerate() {
            points.push(if i == 0 { self.schedule.point(t_max) } else { self.schedule.point_of_lambda(*l) });
        }
        points.push(self.schedule.clean_point());
        Grid::from_points(points)
    }

    /// Parameters reproducing `grid` (which must start at `t_max`, end clean and have `steps`
    /// steps; a last point at `t_min` is placed a hair above it).
    pub fn theta_of(&self, grid: &Grid) -> Result<Vec<f64>> {
        let pts = grid.points();
        if grid.len() != self.steps || !pts.last().is_some_and(|p| p.is_clean()) {
            return Err(Error::InvalidGrid(format!(
                "a {}-step placement needs a {}-step grid ending at sigma = 0, got {} steps",
                self.steps,
                self.steps,
                grid.len()
            )));
        }
        let n = self.steps;
        if n == 1 {
            return Ok(vec![]);
        }
        let l: Vec<f64> = pts[..n].iter().map(|p| p.lambda).collect();
        let frac = ((l[n - 1] - self.lambda_start) / (self.lambda_max - self.lambda_start)).clamp(1e-12, 1.0 - 1e-12);
        let mut theta = vec![(frac / (1.0 - frac)).ln()];
        let last = l[n - 1] - l[n - 2];
        for k in 1..n - 1 {
            let inc = l[k] - l[k - 1];
            if !(inc > 0.0 && last > 0.0) {
                return Err(Error::InvalidGrid("the grid's log-SNR must increase".into()));
            }
            theta.push((inc / last).ln());
        }
        Ok(theta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DiscreteVp, End, Spacing};

    #[test]
    fn round_trips_a_grid_and_always_gives_valid_ones() {
        let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
        for n in 1..=10 {
            let p = Placement::new(&s, n).unwrap();
            let g = Grid::new(&s, &Spacing::TimeQuadratic, n, End::Clean).unwrap();
            let theta = p.theta_of(&g).unwrap();
            let back = p.grid(&theta).unwrap();
            for (a, b) in g.points().iter().zip(back.points()).take(n.saturating_sub(1)) {
                assert!((a.lambda - b.lambda).abs() < 1e-6, "n = {n}: {a:?} vs {b:?}");
            }
            // arbitrary parameters give valid grids
            let wild: Vec<f64> = (0..p.dim()).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
            let g = p.grid(&wild).unwrap();
            assert_eq!(g.len(), n);
            assert!(g.points()[n - 1].lambda <= s.lambda(0.0) + 1e-12);
        }
        assert!(Placement::new(&s, 0).is_err());
        assert!(Placement::new(&s, 3).unwrap().grid(&[0.0]).is_err());
    }
}
