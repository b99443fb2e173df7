//! DPM-Solver-fast (Lu et al. 2022, arXiv:2206.00927, Sec. 3.4 "DPM-Solver-fast" / Appendix D.1;
//! k-diffusion's `sample_dpm_fast`, ComfyUI's `dpm_fast`): singlestep DPM-Solver-3 steps on a
//! grid uniform in `lambda`, with the last one or two steps of lower order so that the step
//! orders add up to the evaluation budget exactly.
//!
//! For a budget of `K` evaluations there are `m = floor(K/3) + 1` steps with orders
//! `[3, ..., 3, 2, 1]` when `3 | K`, else `[3, ..., 3, K mod 3]`. The order-3 step uses stages at
//! `r1 = 1/3, r2 = 2/3`, order 2 at `r1 = 1/2` (the updates of [`crate::math::dpm_stages`], noise
//! form); a step of order `k` costs `k` evaluations (order 3 is third-order accurate). A step into
//! `sigma = 0` (not in k-diffusion, which ends at `sigma_min`) is first order.

use candle_core::Tensor;

use super::Solver;
use crate::error::{config_err, Error, Result};
use crate::grid::{Grid, Step};
use crate::math::dpm_stages::{first_order, second_order, third_order, StageCache};
use crate::model::Model;
use crate::schedule::Scheduler;

/// DPM-Solver-fast for a budget of `nfe` evaluations.
///
/// ```
/// use diffusion_samplers::{DiscreteVp, DpmFast};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let fast = DpmFast { nfe: 10 };
/// assert_eq!(fast.orders(), vec![3, 3, 3, 1]);
/// let grid = fast.grid(&s, 999.0, 0.0)?; // 4 steps, uniform in lambda
/// assert_eq!(grid.len(), 4);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpmFast {
    /// The evaluation budget (at least 1).
    pub nfe: usize,
}

impl DpmFast {
    /// The number of grid steps, `floor(nfe / 3) + 1`.
    pub fn steps(&self) -> usize {
        self.nfe / 3 + 1
    }

    /// The order of each step.
    pub fn orders(&self) -> Vec<usize> {
        let m = self.steps();
        let mut orders = vec![3; m];
        if self.nfe % 3 == 0 {
            if m >= 2 {
                orders[m - 2] = 2;
            }
            orders[m - 1] = 1;
        } else {
            orders[m - 1] = self.nfe % 3;
        }
        orders
    }

    /// k-diffusion's grid: `steps()` steps uniform in `lambda` from time `t_start` to `t_end`.
    pub fn grid(&self, schedule: &dyn Scheduler, t_start: f64, t_end: f64) -> Result<Grid> {
        if self.nfe == 0 {
            return Err(Error::ZeroSteps);
        }
        let (l0, l1) = (schedule.lambda(t_start), schedule.lambda(t_end));
        if !(l0.is_finite() && l1.is_finite()) {
            return Err(Error::InvalidGrid(format!(
                "DPM-Solver-fast places its steps uniformly in lambda and needs finite log-SNR at both ends, got \
                 {l0} (t = {t_start}) and {l1} (t = {t_end})"
            )));
        }
        let m = self.steps();
        let mut points = Vec::with_capacity(m + 1);
        for i in 0..=m {
            points.push(if i == 0 {
                schedule.point(t_start)
            } else if i == m {
                schedule.point(t_end)
            } else {
                schedule.point_of_lambda(l0 + (l1 - l0) * i as f64 / m as f64)
            });
        }
        Grid::from_points(points)
    }
}

impl Solver for DpmFast {
    type State = ();

    fn name(&self) -> &'static str {
        "DPM-Solver-fast"
    }

    fn init_state(&self, grid: &Grid) -> Result<()> {
        let m = self.steps();
        if self.nfe == 0 {
            return config_err("DPM-Solver-fast needs a budget of at least 1 evaluation");
        }
        let clean_extra = grid.points().last().is_some_and(|p| p.is_clean()) && grid.len() == m + 1;
        if grid.len() != m && !clean_extra {
            return Err(Error::InvalidGrid(format!(
                "DPM-Solver-fast with {} evaluations takes {m} steps (plus an optional last step into sigma = 0), \
                 the grid has {}: build it with DpmFast::grid",
                self.nfe,
                grid.len()
            )));
        }
        Ok(())
    }

    fn step(&self, model: &mut Model, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        if to.is_clean() {
            return model.data(x, from);
        }
        let order = self.orders().get(step.index).copied().unwrap_or(1);
        let eps = model.noise(x, from)?;
        let mut cache = StageCache::default();
        match order {
            1 => first_order(x, from, to, &eps),
            2 => second_order(model, x, from, to, &eps, 0.5, &mut cache),
            _ => third_order(model, x, from, to, &eps, 1.0 / 3.0, 2.0 / 3.0, &mut cache),
        }
    }
}
