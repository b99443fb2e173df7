//! Heun's second-order method (Karras et al. 2022, "EDM", arXiv:2206.00364, Algorithm 1) in
//! the rectified-flow coordinates: diffusers' `FlowMatchHeunDiscreteScheduler`.
//!
//! [`crate::Heun`] integrates the probability-flow ODE in k-diffusion's coordinates
//! (`x / alpha` against `sigma / alpha`); Heun's method is not invariant under a change of
//! coordinates, and flow-matching schedulers take the same steps in the flow ones:
//! `y = x / (alpha + sigma)` against `s = sigma / (alpha + sigma)` (on a rectified-flow schedule,
//! `alpha = 1 - sigma`, these are `x` and `sigma` themselves). There `y = (1 - s) D + s eps` and
//! the ODE is `dy/ds = d = (y - D) / s` (the flow velocity `eps - x0`). With `h = s_to - s`:
//!
//! `y' = y + h d0`,  `d1 = (y' - D(y', to)) / s_to`,  `y_to = y + h (d0 + d1) / 2`.
//!
//! Second order, 2 NFE per step; the step into `sigma = 0` is an Euler step (1 NFE, `y_to = D0`).
//! `s` stays finite at `alpha = 0`, so a run may start from pure noise (flow-matching schedules
//! start at `sigma = 1`).

use candle_core::Tensor;

use super::{stages_unless_clean, Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::ops::lincomb;
use crate::schedule::Point;

/// Heun's method in the rectified-flow coordinates (see the module docs).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{nfe_of, sample, End, FlowHeun, Grid, Model, Prediction, RectifiedFlow, Spacing};
/// let s = RectifiedFlow::default();
/// let grid = Grid::new(&s, &Spacing::UniformTime, 8, End::Clean)?;
/// // a network whose data prediction is always 0.25: the run ends there
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&FlowHeun, &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// assert_eq!((model.nfe(), nfe_of(&FlowHeun, grid.as_ref())), (15, 15));
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowHeun;

/// The flow frame of a point: the scale `c = alpha + sigma` and the level `s = sigma / c`.
fn frame(p: &Point) -> (f64, f64) {
    let c = p.alpha + p.sigma;
    (c, p.sigma / c)
}

impl Solver for FlowHeun {
    type State = ();

    fn name(&self) -> &'static str {
        "Heun (flow coordinates)"
    }

    fn order(&self) -> usize {
        2
    }

    fn nfe(&self, step: &Step) -> usize {
        stages_unless_clean(step, 2)
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let (c, s) = frame(from);
        let (c_to, s_to) = frame(to);
        let h = s_to - s;
        // D0 = d0.c_x x + d0.c_out out: one pass over memory per stage
        let d0 = ctx.model.data_linear(x, from)?;
        // y' = y (1 + h/s) - (h/s) D0, in x: x' = c_to y'
        let (k_x, k_d) = (c_to * (1.0 + h / s) / c, -c_to * h / s);
        let euler = lincomb(&[(k_x + k_d * d0.c_x, x), (k_d * d0.c_out, &d0.out)])?;
        if to.is_clean() {
            return Ok(euler);
        }
        let d1 = ctx.model.data_linear(&euler, to)?;
        // y_to = y + h/2 ((y - D0)/s + (y' - D1)/s_to)
        let a_x = c_to / c * (1.0 + 0.5 * h / s);
        let a_d0 = -c_to * 0.5 * h / s;
        let a_e = 0.5 * h / s_to; // on x' = c_to y'
        let a_d1 = -c_to * 0.5 * h / s_to;
        lincomb(&[
            (a_x + a_d0 * d0.c_x, x),
            (a_d0 * d0.c_out, &d0.out),
            (a_e + a_d1 * d1.c_x, &euler),
            (a_d1 * d1.c_out, &d1.out),
        ])
    }
}
