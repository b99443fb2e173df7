//! DEIS multistep, "log-rho" variant (Zhang & Chen 2022, "Fast Sampling of Diffusion Models with
//! Exponential Integrator", arXiv:2204.13902, Sec. 4; diffusers' `DEISMultistepScheduler` with
//! `algorithm_type="deis"`, `solver_type="logrho"`), orders 1-3, 1 NFE per step.
//!
//! In `rho = sigma / alpha` the probability-flow ODE is `d(x / alpha) / d rho = eps`. DEIS
//! interpolates the noise predictions `m_0, m_1, m_2` of the newest points by the Lagrange
//! polynomial in `log rho = -lambda` and integrates it exactly:
//!
//! `x_to = (alpha_to / alpha) x + alpha_to sum_j m_j int_{rho}^{rho_to} L_j(log r) dr`,
//!
//! which is the noise-form exponential integrator with weights from
//! [`crate::math::lagrange::lagrange_step`] (order 1 is DDIM). Order `p` is `p`-th order accurate;
//! the multistep order is chosen by the [`OrderPolicy`] (warm-up, lower-order-final, first order
//! into `sigma = 0`, where the higher-order terms vanish).

use candle_core::Tensor;

use super::{validate_expint, Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::expint::Form;
use crate::math::lagrange::lagrange_step;
use crate::math::{History, OrderPolicy};
use crate::ops::lincomb;

/// The DEIS multistep solver (log-rho).
///
/// diffusers option -> field: `solver_order` -> `policy.order`; `lower_order_final` (default
/// true) -> `policy.lower_order_final = LowerOrderFinal::BelowSteps(15)` (false:
/// `LowerOrderFinal::Never`); `algorithm_type="deis"` and `solver_type="logrho"` are the only
/// variants. Thresholding is a [`crate::DataTransform`] on the [`crate::Model`] (the noise prediction is
/// re-derived from the thresholded `x0`, as diffusers does).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, testing::GaussianMixture, Deis, DiscreteVp, End, Grid, Model, Prediction, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 20, End::Min)?;
/// let gm = GaussianMixture::example(3, 2, 0)?;
/// let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
/// let noise = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(12), (4, 3), &Device::Cpu)?;
/// let x = sample(&Deis::order(3), &mut model, &grid, &noise)?;
/// let exact = gm.exact_endpoint(&noise, &grid.points()[0], &grid.points()[20])?;
/// assert!((x - exact)?.abs()?.max_all()?.to_scalar::<f64>()? < 3e-2);
/// assert_eq!(model.nfe(), 20);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deis {
    /// Order (1-3) and when to lower it.
    pub policy: OrderPolicy,
}

impl Deis {
    /// DEIS of `order` (1-3), full order to the end.
    pub fn order(order: usize) -> Deis {
        Deis { policy: OrderPolicy::fixed(order) }
    }

    /// diffusers' `DEISMultistepScheduler` defaults: order 2, lower order on the last steps of
    /// grids under 15 steps.
    pub fn diffusers_default() -> Deis {
        Deis { policy: OrderPolicy::diffusers(2) }
    }
}

impl Default for Deis {
    fn default() -> Self {
        Deis::diffusers_default()
    }
}

impl Solver for Deis {
    type State = History;

    fn name(&self) -> &'static str {
        match self.policy.order {
            1 => "DEIS(1)",
            2 => "DEIS(2)",
            _ => "DEIS(3)",
        }
    }

    fn order(&self) -> usize {
        self.policy.order
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        let message = "DEIS (noise prediction) cannot step from alpha = 0: start below t_max or use DPM-Solver++";
        validate_expint(&self.policy, "DEIS", Form::Noise, steps, message)
    }

    fn init_state(&self) -> History {
        History::new(self.policy.order.saturating_sub(1))
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, hist: &mut History) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let m0 = ctx.model.noise(x, from)?;
        let order = self.policy.order_at(hist.len() + 1, step);
        let mut lambdas = vec![from.lambda];
        let mut outputs = vec![&m0];
        for i in 0..order - 1 {
            if let Some((p, m)) = hist.get(i) {
                lambdas.push(p.lambda);
                outputs.push(m);
            }
        }
        let (c_x, w) = lagrange_step(Form::Noise, from, to, &lambdas)?;
        let mut terms = vec![(c_x, x)];
        terms.extend(w.iter().copied().zip(outputs));
        let out = lincomb(&terms)?;
        hist.push(*from, m0);
        Ok(out)
    }
}
