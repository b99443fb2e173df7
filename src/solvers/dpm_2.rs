//! DPM-2: k-diffusion's `sample_dpm_2` (ComfyUI `dpm_2`), "a sampler inspired by DPM-Solver-2
//! (Lu et al. 2022, arXiv:2206.00927) and Algorithm 2 from Karras et al. (2022)"
//! (arXiv:2206.00364): the explicit midpoint method on the probability-flow ODE in
//! k-diffusion's coordinates, with the midpoint at the geometric mean of the noise levels.
//!
//! With `y = x / alpha`, `s = ksigma`, the slope `d = (y - D) / s` and the midpoint
//! `s_mid = sqrt(s s_to)` (`lambda_mid = (lambda + lambda_to) / 2`):
//!
//! `y_mid = y + (s_mid - s) d0`, `d1 = (y_mid - D(y_mid, s_mid)) / s_mid`, `y_to = y + (s_to - s) d1`.
//!
//! Second order, 2 NFE per step; the step into `sigma = 0` is an Euler step (1 NFE). With
//! [`Churn`] (k-diffusion's `s_churn`, ...) each step first raises the noise level as EDM's
//! Algorithm 2 does. The step of [`crate::Dpm2Ancestral`] is the same step to its `down` point.

use candle_core::Tensor;

use super::{order_unless_stochastic, refuse_zero_alpha_start, stages_unless_clean, Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::churn::ChurnOption;
use crate::math::ksigma::{combine_terms, euler, euler_terms, Slope};
use crate::math::Churn;
use crate::model::Linear;
use crate::ops::lincomb;
use crate::schedule::Point;

/// The DPM-2 solver (ComfyUI's `dpm_2` is `Dpm2::default()`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{nfe_of, sample, DiscreteVp, Dpm2, End, Grid, Model, Prediction, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// // a network that always predicts x0 = 0.25: the step into sigma = 0 returns it
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&Dpm2::default(), &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// assert_eq!(model.nfe(), 19);
/// assert_eq!(nfe_of(&Dpm2::default(), grid.as_ref()), 19);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Dpm2 {
    /// Stochastic churn (EDM Algorithm 2; k-diffusion's `s_churn`), off by default.
    pub churn: Option<Churn>,
}

/// The DPM-2 step from `(x, from)` with the data prediction `d0` there to `target` (a schedule
/// point, or an ancestral step's `down` point): an Euler step into a clean target, else the
/// midpoint step through the schedule's point at `lambda_mid = (lambda + lambda_target) / 2`.
/// `extra` terms (fresh noise) are added in the same pass.
pub(crate) fn dpm2_step(
    ctx: &mut StepContext,
    x: &Tensor,
    from: &Point,
    d0: &Linear,
    target: &Point,
    extra: &[(f64, &Tensor)],
) -> Result<Tensor> {
    if target.is_clean() {
        let mut terms = euler_terms(x, from, d0, target).to_vec();
        terms.extend_from_slice(extra);
        return lincomb(&terms);
    }
    let mid = ctx.model.schedule().point_of_lambda(0.5 * (from.lambda + target.lambda));
    let x_mid = euler(x, from, d0, &mid)?;
    let d1 = ctx.model.data_linear(&x_mid, &mid)?;
    let ds = target.ksigma() - from.ksigma();
    let mut terms = combine_terms(x, from, target.alpha, &[(ds, Slope { x: &x_mid, at: &mid, data: &d1 })]);
    terms.extend_from_slice(extra);
    lincomb(&terms)
}

impl Solver for Dpm2 {
    type State = ();

    fn name(&self) -> &'static str {
        "DPM-2"
    }

    fn order(&self) -> usize {
        order_unless_stochastic(self.is_stochastic(), 2)
    }

    fn nfe(&self, step: &Step) -> usize {
        stages_unless_clean(step, 2)
    }

    fn is_stochastic(&self) -> bool {
        self.churn.is_active()
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        self.churn.validate()?;
        refuse_zero_alpha_start(
            steps,
            "DPM-2 cannot start at alpha = 0 (infinite noise level): start the grid below t_max or use \
             euler_ancestral or a multistep DPM-Solver++",
        )
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, x) = self.churn.raise(ctx, step, x)?;
        let d0 = ctx.model.data_linear(&x, &from)?;
        dpm2_step(ctx, &x, &from, &d0, &step.to, &[])
    }
}
