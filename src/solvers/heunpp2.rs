//! heunpp2: ComfyUI's `sample_heunpp2` (`comfy/k_diffusion/sampling.py`, from the MIT-licensed
//! sd-webui-samplers-scheduler extension; no paper), a Heun-type method in k-diffusion's
//! coordinates whose stages reach one grid point further and whose weights depend on the
//! first noise level `s_0` of the run.
//!
//! With `y = x / alpha`, the slope `d = (y - D) / s` and the step `i` from `s_i` to `s_{i+1}`
//! (`dt = s_{i+1} - s_i`):
//! - on the last step: Euler, `y_{i+1} = y_i + dt d_i` (1 NFE);
//! - on the second-to-last step: `y' = y_i + dt d_i`, `d' = d(y', s_{i+1})`,
//!   `y_{i+1} = y_i + dt ((1 - w) d_i + w d')` with `w = s_{i+1} / (2 s_0)` (2 NFE);
//! - otherwise ("Heun++"): `y' = y_i + dt d_i`, `d' = d(y', s_{i+1})`,
//!   `y'' = y' + (s_{i+2} - s_{i+1}) d'`, `d'' = d(y'', s_{i+2})`,
//!   `y_{i+1} = y_i + dt ((1 - w2 - w3) d_i + w2 d' + w3 d'')`, `w2 = s_{i+1} / (3 s_0)`,
//!   `w3 = s_{i+2} / (3 s_0)` (3 NFE).
//!
//! The weights are consistent (they sum to 1) but are the trapezoidal rule's only where
//! `s_{i+1} / s_0` is near 1, so the method is first order: on a fine grid most steps weigh the
//! later slopes by `s / s_0 -> 0` (measured in `tests/samplers_kd.rs`). It needs the point after
//! each step ([`Step::next`], set by [`Step::chain`] and every [`crate::Grid`]). With [`Churn`]
//! each step first raises the noise level (EDM Algorithm 2); the weights keep `s_0`, the grid's
//! first level.

use candle_core::Tensor;

use super::{refuse_zero_alpha_start, Solver, StepContext};
use crate::error::{Error, Result};
use crate::grid::Step;
use crate::math::churn::ChurnOption;
use crate::math::ksigma::{combine, euler, Slope};
use crate::math::Churn;

/// The heunpp2 solver (ComfyUI's `heunpp2` is `HeunPp2::default()`). Its state is the run's
/// first noise level `s_0`, taken at the first step.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{nfe_of, sample, DiscreteVp, End, Grid, HeunPp2, Model, Prediction, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&HeunPp2::default(), &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// // 3 evaluations per step, 2 on the second-to-last, 1 on the last
/// assert_eq!((model.nfe(), nfe_of(&HeunPp2::default(), grid.as_ref())), (27, 27));
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct HeunPp2 {
    /// Stochastic churn (EDM Algorithm 2; ComfyUI's `s_churn`, ...), off by default.
    pub churn: Option<Churn>,
}

impl Solver for HeunPp2 {
    type State = Option<f64>;

    fn name(&self) -> &'static str {
        "Heun++2"
    }

    fn order(&self) -> usize {
        1
    }

    fn nfe(&self, step: &Step) -> usize {
        if step.is_last() {
            1
        } else if step.index + 2 == step.count {
            2
        } else {
            3
        }
    }

    fn is_stochastic(&self) -> bool {
        self.churn.is_active()
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        self.churn.validate()?;
        refuse_zero_alpha_start(
            steps,
            "heunpp2 cannot start at alpha = 0 (infinite noise level): start the grid below t_max",
        )?;
        for (i, w) in steps.windows(2).enumerate() {
            if w[0].next != Some(w[1].to) {
                return Err(Error::InvalidGrid(format!(
                    "heunpp2 looks one step ahead, but step {i} does not know where step {} ends: build the steps \
                     with Step::chain or use a Grid",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    fn init_state(&self) -> Option<f64> {
        None
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, s0: &mut Option<f64>) -> Result<Tensor> {
        let s0 = *s0.get_or_insert(step.from.ksigma());
        let to = step.to;
        let (from, x) = self.churn.raise(ctx, step, x)?;
        let d0 = ctx.model.data_linear(&x, &from)?;
        if step.is_last() {
            return euler(&x, &from, &d0, &to);
        }
        let x1 = euler(&x, &from, &d0, &to)?;
        let d1 = ctx.model.data_linear(&x1, &to)?;
        let dt = to.ksigma() - from.ksigma();
        let slope0 = Slope { x: &x, at: &from, data: &d0 };
        let slope1 = Slope { x: &x1, at: &to, data: &d1 };
        if step.index + 2 == step.count {
            let w = to.ksigma() / (2.0 * s0);
            return combine(&x, &from, to.alpha, &[(dt * (1.0 - w), slope0), (dt * w, slope1)]);
        }
        let next = step.next.ok_or_else(|| {
            Error::InvalidGrid("heunpp2 needs the point after this step (Step::next): use Step::chain or a Grid".into())
        })?;
        let x2 = euler(&x1, &to, &d1, &next)?;
        let d2 = ctx.model.data_linear(&x2, &next)?;
        let (w2, w3) = (to.ksigma() / (3.0 * s0), next.ksigma() / (3.0 * s0));
        let slope2 = Slope { x: &x2, at: &next, data: &d2 };
        combine(&x, &from, to.alpha, &[(dt * (1.0 - w2 - w3), slope0), (dt * w2, slope1), (dt * w3, slope2)])
    }
}
