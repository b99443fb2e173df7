//! Gradient estimation (Permenter & Yuan 2023, "Interpreting and Improving Diffusion Models from
//! an Optimization Perspective", arXiv:2306.04848, Algorithm 2; ComfyUI's `gradient_estimation`
//! and `gradient_estimation_cfg_pp`).
//!
//! Euler's method in the noise level `s = sigma/alpha` on `y = x / alpha` with the derivative
//! `d = (y - x0) / s` (the noise prediction) replaced, from the second step on, by the
//! extrapolation `d_bar = gamma d + (1 - gamma) d_prev`:
//!
//! `y_to = y + (s_to - s) d_bar`,
//!
//! `gamma = 2` by default. Into `sigma = 0` the step returns `x0`. The extrapolation is not the
//! second-order Adams-Bashforth weight (`1 + (s_to - s) / (2 (s - s_prev))`), so the method is
//! first order with a smaller error than Euler on the grids diffusion models use (measured in
//! `tests/solvers_cx.rs`). With [`Guidance::CfgPp`] (CFG++, arXiv:2406.08070) `d` is the
//! unconditional noise prediction and the Euler part is `x0 + s_to d` (ComfyUI's form). 1 NFE per
//! step.

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::math::ksigma::euler_terms;
use crate::model::Guidance;
use crate::ops::lincomb;

/// The gradient-estimation sampler. ComfyUI's `gradient_estimation` is the default
/// (`gamma = 2`); `gradient_estimation_cfg_pp` has `guidance: Guidance::CfgPp`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, End, GradientEstimation, Grid, Model, Prediction, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&GradientEstimation::default(), &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// assert_eq!(model.nfe(), 10);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradientEstimation {
    /// The extrapolation weight `gamma` (1 = Euler).
    pub gamma: f64,
    /// Standard guidance or CFG++.
    pub guidance: Guidance,
}

impl Default for GradientEstimation {
    fn default() -> Self {
        GradientEstimation { gamma: 2.0, guidance: Guidance::Standard }
    }
}

impl Solver for GradientEstimation {
    type State = Option<Tensor>;

    fn name(&self) -> &'static str {
        match self.guidance {
            Guidance::Standard => "gradient estimation",
            Guidance::CfgPp => "gradient estimation CFG++",
        }
    }

    fn order(&self) -> usize {
        1
    }

    fn needs_unconditional(&self) -> bool {
        self.guidance.needs_unconditional()
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        if !self.gamma.is_finite() {
            return config_err(format!("gradient estimation needs a finite gamma, got {}", self.gamma));
        }
        Ok(())
    }

    fn init_state(&self) -> Option<Tensor> {
        None
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, d_prev: &mut Option<Tensor>) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let g = ctx.model.guided_data(self.guidance, x, from)?;
        // d = (y - D) / s = (x - alpha D) / sigma: the (unconditional) noise prediction
        let d = lincomb(&[
            (1.0 / from.sigma - from.alpha / from.sigma * g.data.c_x, x),
            (-from.alpha / from.sigma * g.data.c_out, &g.data.out),
        ])?;
        // the Euler step with D, plus the guidance under CFG++ (x0 into sigma = 0)
        let mut terms = euler_terms(x, from, &g.data, to).to_vec();
        terms.extend(g.guidance_terms(to.alpha));
        if let (Some(prev), false) = (d_prev.as_ref(), to.is_clean()) {
            let c = to.alpha * (self.gamma - 1.0) * (to.ksigma() - from.ksigma());
            terms.extend([(c, &d), (-c, prev)]);
        }
        let out = lincomb(&terms)?;
        *d_prev = Some(d);
        Ok(out)
    }
}
