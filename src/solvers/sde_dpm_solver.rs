//! SDE-DPM-Solver++ multistep, orders 1-3 (Lu et al. 2022, "DPM-Solver++", arXiv:2211.01095,
//! Sec. 5 / Appendix; third order as in Gonzalez et al. 2023, "SEEDS", arXiv:2305.14267, and
//! diffusers' `DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")`), 1 NFE per step.
//!
//! The reverse SDE in data-prediction form is solved exactly in its linear part and its noise:
//!
//! `x_to = (sigma_to/sigma) e^{-h} x + 2 alpha_to int_0^h e^{-2(h - s)} x0(lambda + s) ds
//!          + sigma_to sqrt(1 - e^{-2h}) z`,
//!
//! with `x0` the data prediction interpolated from the newest outputs `m0, m1, m2`
//! (`D1_0 = (m0 - m1)/r0`, `D1_1 = (m1 - m2)/r1`, `r_i = h_i / h`, as in
//! [`crate::DpmSolverMultistep`]). The integral of the Taylor term of order `k` is
//! `alpha_to (1/k! - phi_k(-2h))`, the data-form weights at `2h`:
//! - order 1: `c_x x + alpha_to (1 - e^{-2h}) m0 + noise`;
//! - order 2: `+ 1/2 alpha_to (1 - e^{-2h}) D1` (midpoint) or `+ alpha_to 2h phi_2(-2h) D1` (heun);
//! - order 3: `D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1)`, `D2 = (D1_0 - D1_1)/(r0+r1)`,
//!   `+ alpha_to 2h phi_2(-2h) D1 + alpha_to 4h phi_3(-2h) D2` ([`ThirdOrder::Taylor`]).
//!
//! diffusers' third-order update weighs `D2` by `-alpha_to (phi_2(-2h) + 1/2)`
//! ([`ThirdOrder::Reference`]): a sign slip against k-diffusion's `sample_dpmpp_3m_sde`
//! (`+2h phi_3(-2h)`) and a factor 2 against the Taylor weight `4h phi_3(-2h)`, so its `D2`
//! term is `O(1) D2 = O(h^2)` wrong per step and the drift is only first-order accurate
//! (`tests/solvers_c1.rs` measures the drift on a quadratic data prediction).
//!
//! The noise `z` comes from the loop's [`crate::NoiseSource`], one draw per step (also on a step
//! into `sigma = 0`, where its weight is 0, so that caller-supplied noise lines up with diffusers'
//! `variance_noise` per step). Strong order about 1 (additive noise); it does not invert.

use candle_core::Tensor;

use super::{Solver, SolverType, StepContext, ThirdOrder};
use crate::error::Result;
use crate::grid::Step;
use crate::math::expint::multistep_weights;
use crate::math::phi::{phi, tail};
use crate::math::{History, OrderPolicy};
use crate::ops::lincomb;

/// SDE-DPM-Solver++ (multistep).
///
/// diffusers option -> field (`DPMSolverMultistepScheduler` with
/// `algorithm_type="sde-dpmsolver++"`): `solver_order` -> `policy.order`; `lower_order_final`
/// -> `policy.lower_order_final` (`true` = `LowerOrderFinal::BelowSteps(15)`); `euler_at_final`
/// -> `policy.euler_at_final`; `solver_type` -> `solver_type`; diffusers' third-order weights ->
/// `third_order = ThirdOrder::Reference`; the `generator` -> the loop's noise source (seeded
/// numbers differ from torch's generator: to replay diffusers' noise pass it as a
/// [`crate::TensorNoise`] to [`crate::sample_with`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, End, Grid, Model, Prediction, SdeDpmSolverPP, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean)?;
/// // a network that always predicts x0 = 0.25: every path ends there
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(6), (2, 3), &Device::Cpu)?;
/// let out = sample(&SdeDpmSolverPP::order(2), &mut model, &grid, &x)?;
/// for v in out.flatten_all()?.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SdeDpmSolverPP {
    /// Order (1-3) and when to lower it.
    pub policy: OrderPolicy,
    /// The second-order variant.
    pub solver_type: SolverType,
    /// The third-order weight of `D2`.
    pub third_order: ThirdOrder,
}

impl SdeDpmSolverPP {
    /// SDE-DPM-Solver++ of `order` (1-3), full order to the end, midpoint, Taylor third order.
    pub fn order(order: usize) -> SdeDpmSolverPP {
        SdeDpmSolverPP {
            policy: OrderPolicy::fixed(order),
            solver_type: SolverType::Midpoint,
            third_order: ThirdOrder::Taylor,
        }
    }

    /// diffusers' defaults for `algorithm_type="sde-dpmsolver++"`: order 2, midpoint, lower order
    /// on the last steps below 15 steps, diffusers' third-order weights if the order is raised.
    pub fn diffusers_default() -> SdeDpmSolverPP {
        SdeDpmSolverPP {
            policy: OrderPolicy::diffusers(2),
            solver_type: SolverType::Midpoint,
            third_order: ThirdOrder::Reference,
        }
    }
}

impl Default for SdeDpmSolverPP {
    fn default() -> Self {
        SdeDpmSolverPP::diffusers_default()
    }
}

impl Solver for SdeDpmSolverPP {
    type State = History;

    fn name(&self) -> &'static str {
        match self.policy.order {
            1 => "SDE-DPM-Solver++(1)",
            2 => "SDE-DPM-Solver++(2M)",
            _ => "SDE-DPM-Solver++(3M)",
        }
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        true
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        self.policy.validate(3, "SDE-DPM-Solver++")
    }

    fn init_state(&self) -> History {
        History::new(self.policy.order.saturating_sub(1))
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, hist: &mut History) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let m0 = ctx.model.data(x, from)?;
        let z = ctx.noise.noise_between(x, from, to)?;
        let h = step.h();
        let h2 = 2.0 * h;
        // (sigma_to / sigma) e^{-h}; 0 into sigma = 0 (h = inf)
        let c_x = if to.is_clean() { 0.0 } else { to.sigma / from.sigma * (-h).exp() };
        let c_z = to.sigma * (-(-h2).exp_m1()).max(0.0).sqrt();
        let c0 = to.alpha * tail(0, h2);
        let c1 = to.alpha * tail(1, h2);
        let order = self.policy.order_at(hist.len() + 1, step);
        let out = match (order, hist.get(0), hist.get(1)) {
            (3, Some((p1, m1)), Some((p2, m2))) => {
                let k2 = match self.third_order {
                    ThirdOrder::Taylor => 2.0 * to.alpha * tail(2, h2),
                    ThirdOrder::Reference => -to.alpha * (phi(2, -h2) + 0.5),
                };
                let m = multistep_weights(h, &[from.lambda, p1.lambda, p2.lambda], c0, c1, k2);
                lincomb(&[(c_x, x), (m[0], &m0), (m[1], m1), (m[2], m2), (c_z, &z)])
            }
            (2.., Some((p1, m1)), _) => {
                let k1 = match self.solver_type {
                    SolverType::Midpoint => 0.5 * c0,
                    SolverType::Heun => c1,
                };
                let m = multistep_weights(h, &[from.lambda, p1.lambda], c0, k1, 0.0);
                lincomb(&[(c_x, x), (m[0], &m0), (m[1], m1), (c_z, &z)])
            }
            _ => lincomb(&[(c_x, x), (c0, &m0), (c_z, &z)]),
        }?;
        hist.push(*from, m0);
        Ok(out)
    }
}
