//! DPM-Solver-fast (Lu et al. 2022, arXiv:2206.00927, Sec. 3.4 "DPM-Solver-fast" / Appendix D.1;
//! k-diffusion's `sample_dpm_fast`, ComfyUI's `dpm_fast`): singlestep DPM-Solver-3 steps on a
//! grid uniform in `lambda`, with the last one or two steps of lower order so that the step
//! orders add up to the evaluation budget exactly.
//!
//! For a budget of `K` evaluations ([`DpmFast::with_nfe`]) there are `m = floor(K/3) + 1` steps
//! with orders `[3, ..., 3, 2, 1]` when `3 | K`, else `[3, ..., 3, K mod 3]`, on k-diffusion's
//! grid ([`DpmFast::grid`]). Without a budget ([`DpmFast::default`], the registry's `dpm_fast`)
//! every step of the given grid is third order (3 evaluations). The order-3 step uses stages at
//! `r1 = 1/3, r2 = 2/3`, order 2 at `r1 = 1/2` (the updates of [`crate::math::dpm_stages`], noise
//! form); a step of order `k` costs `k` evaluations (order 3 is third-order accurate). A step into
//! `sigma = 0` (not in k-diffusion, which ends at `sigma_min`) is first order.

use candle_core::Tensor;

use super::{refuse_zero_alpha_start, Solver, StepContext};
use crate::error::{config_err, Error, Result};
use crate::grid::{Grid, Step};
use crate::math::dpm_stages::{first_order, second_order, third_order, StageCache};
use crate::schedule::Scheduler;

/// DPM-Solver-fast: k-diffusion's for a budget of `nfe` evaluations, or third-order steps on any
/// grid.
///
/// ```
/// use diffusion_samplers::{DiscreteVp, DpmFast};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let fast = DpmFast::with_nfe(10);
/// assert_eq!(fast.orders(), Some(vec![3, 3, 3, 1]));
/// let grid = fast.grid(&s, 999.0, 0.0)?; // 4 steps, uniform in lambda
/// assert_eq!(grid.len(), 4);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpmFast {
    /// The evaluation budget (k-diffusion's `n`), or `None`: order 3 on every step of the grid.
    pub nfe: Option<usize>,
}

impl DpmFast {
    /// k-diffusion's `sample_dpm_fast` with `n` evaluations.
    pub fn with_nfe(n: usize) -> DpmFast {
        DpmFast { nfe: Some(n) }
    }

    /// The number of grid steps of a budget, `floor(nfe / 3) + 1`.
    pub fn steps(&self) -> Option<usize> {
        self.nfe.map(|n| n / 3 + 1)
    }

    /// The order of each step of a budget.
    pub fn orders(&self) -> Option<Vec<usize>> {
        let (n, m) = (self.nfe?, self.steps()?);
        let mut orders = vec![3; m];
        if n % 3 == 0 {
            if m >= 2 {
                orders[m - 2] = 2;
            }
            orders[m - 1] = 1;
        } else {
            orders[m - 1] = n % 3;
        }
        Some(orders)
    }

    /// k-diffusion's grid for the budget: `steps()` steps uniform in `lambda` from time
    /// `t_start` to `t_end` (without a budget: an error).
    pub fn grid(&self, schedule: &dyn Scheduler, t_start: f64, t_end: f64) -> Result<Grid> {
        let m = match self.steps() {
            Some(_) if self.nfe == Some(0) => return Err(Error::ZeroSteps),
            Some(m) => m,
            None => return config_err("DpmFast::grid needs a budget: use DpmFast::with_nfe"),
        };
        let (l0, l1) = (schedule.lambda(t_start), schedule.lambda(t_end));
        if !(l0.is_finite() && l1.is_finite()) {
            return Err(Error::InvalidGrid(format!(
                "DPM-Solver-fast places its steps uniformly in lambda and needs finite log-SNR at both ends, got \
                 {l0} (t = {t_start}) and {l1} (t = {t_end})"
            )));
        }
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

    fn order_at(&self, step: &Step) -> usize {
        if step.to.is_clean() {
            return 1;
        }
        self.orders().and_then(|o| o.get(step.index).copied()).unwrap_or(3)
    }
}

impl Solver for DpmFast {
    type State = ();

    fn name(&self) -> &'static str {
        "DPM-Solver-fast"
    }

    fn order(&self) -> usize {
        3
    }

    fn nfe(&self, step: &Step) -> usize {
        self.order_at(step)
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        if let Some(m) = self.steps() {
            if self.nfe == Some(0) {
                return config_err("DPM-Solver-fast needs a budget of at least 1 evaluation");
            }
            let clean_extra = steps.last().is_some_and(|s| s.to.is_clean()) && steps.len() == m + 1;
            if steps.len() != m && !clean_extra {
                return Err(Error::InvalidGrid(format!(
                    "DPM-Solver-fast with {} evaluations takes {m} steps (plus an optional last step into sigma = 0), \
                     the grid has {}: build it with DpmFast::grid",
                    self.nfe.unwrap_or(0),
                    steps.len()
                )));
            }
        }
        refuse_zero_alpha_start(steps, "DPM-Solver-fast (noise form) cannot start at alpha = 0: start below t_max")
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        if to.is_clean() {
            return ctx.model.data(x, from);
        }
        let eps = ctx.model.noise(x, from)?;
        let mut cache = StageCache::default();
        match self.order_at(step) {
            1 => first_order(x, from, to, &eps),
            2 => second_order(ctx.model, x, from, to, &eps, 0.5, &mut cache),
            _ => third_order(ctx.model, x, from, to, &eps, 1.0 / 3.0, 2.0 / 3.0, &mut cache),
        }
    }
}
