//! SDE-DPM-Solver++ multistep, orders 1-3 (Lu et al. 2022, "DPM-Solver++", arXiv:2211.01095,
//! Sec. 5 / Appendix; third order as in Gonzalez et al. 2023, "SEEDS", arXiv:2305.14267,
//! diffusers' `DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")` and k-diffusion's
//! `sample_dpmpp_2m_sde` / `sample_dpmpp_3m_sde`), 1 NFE per step.
//!
//! The reverse SDE in data-prediction form, with k-diffusion's `eta` scaling the noise
//! (`eta = 1` the reverse SDE, `eta = 0` the probability-flow ODE), is solved exactly in its
//! linear part and its noise; with `H = (1 + eta) h`:
//!
//! `x_to = (sigma_to/sigma) e^{-eta h} x + (1 + eta) alpha_to int_0^h e^{-(1 + eta)(h - s)} x0(lambda + s) ds
//!          + sigma_to sqrt(1 - e^{-2 eta h}) s_noise z`,
//!
//! (the first-order part is [`crate::math::sde::sde_weights`]) with `x0` the data prediction
//! interpolated from the newest outputs `m0, m1, m2`
//! (`D1_0 = (m0 - m1)/r0`, `D1_1 = (m1 - m2)/r1`, `r_i = h_i / h`, as in
//! [`crate::DpmSolverMultistep`]). The integral of the Taylor term of order `k` is
//! `alpha_to (1/k! - phi_k(-H))`, the data-form weights at `H`:
//! - order 1: `c_x x + alpha_to (1 - e^{-H}) m0 + noise`;
//! - order 2: `+ 1/2 alpha_to (1 - e^{-H}) D1` (midpoint) or `+ alpha_to H phi_2(-H) D1` (heun);
//! - order 3: `D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1)`, `D2 = (D1_0 - D1_1)/(r0+r1)`,
//!   `+ alpha_to H phi_2(-H) D1 + alpha_to 2H phi_3(-H) D2` ([`ThirdOrder::Taylor`]).
//!
//! k-diffusion's `sample_dpmpp_3m_sde` weighs `D2` by `alpha_to H phi_3(-H)`
//! ([`ThirdOrder::KDiffusion`], Lu et al.'s weight, half the Taylor weight). diffusers' third-order
//! update weighs it by `-alpha_to (phi_2(-2h) + 1/2)` ([`ThirdOrder::Reference`]; `eta = 1`):
//! a sign slip against k-diffusion's (`+2h phi_3(-2h)`) and a factor 2 against the Taylor weight
//! `4h phi_3(-2h)`, so its `D2` term is `O(1) D2 = O(h^2)` wrong per step and the drift is only
//! first-order accurate (`tests/solvers_c1.rs` measures the drift on a quadratic data prediction).
//!
//! The noise `z` comes from the loop's [`crate::NoiseSource`], one draw per step for the step's
//! interval. On the step into `sigma = 0` (where its weight is 0) diffusers draws, so that
//! caller-supplied noise lines up with its `variance_noise` per step, and k-diffusion / ComfyUI
//! do not ([`CleanStepDraw`]). Strong order about 1 (additive noise); it does not invert. With
//! `eta = 0` it is the ODE solver [`crate::DpmSolverMultistep`] with the same order options.

use candle_core::Tensor;

use super::{validate_noise, Solver, SolverType, StepContext, ThirdOrder};
use crate::error::Result;
use crate::grid::Step;
use crate::math::expint::multistep_weights;
use crate::math::phi::{phi, tail};
use crate::math::sde::{eta_h, sde_weights};
use crate::math::{History, OrderPolicy};
use crate::ops::lincomb;

/// Whether a stochastic multistep solver draws noise on the step into `sigma = 0`, where the
/// noise has weight 0 (it only matters for caller-supplied noise, which is consumed per draw).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CleanStepDraw {
    /// One draw on every step, also into `sigma = 0` (diffusers: its `variance_noise` per step).
    #[default]
    Draw,
    /// No draw on the step into `sigma = 0` (k-diffusion, ComfyUI).
    Skip,
}

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
/// k-diffusion / ComfyUI -> [`SdeDpmSolverPP::k_diffusion`]: `sample_dpmpp_2m_sde` (ComfyUI
/// `dpmpp_2m_sde`) is `k_diffusion(2)`, with `solver_type='heun'` (ComfyUI
/// `dpmpp_2m_sde_heun`) `SdeDpmSolverPP { solver_type: SolverType::Heun, ..k_diffusion(2) }`,
/// `sample_dpmpp_3m_sde` (ComfyUI `dpmpp_3m_sde`) `k_diffusion(3)`; their `eta` and `s_noise`
/// are the fields of the same names, their noise sampler the loop's noise source (a
/// [`crate::BrownianPath`] for k-diffusion's `BrownianTreeNoiseSampler`), asked for the
/// interval of each step.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, End, Grid, Model, Prediction, SdeDpmSolverPP, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean)?;
/// // a network that always predicts x0 = 0.25: every path ends there
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(6), (2, 3), &Device::Cpu)?;
/// for solver in [SdeDpmSolverPP::order(2), SdeDpmSolverPP::k_diffusion(3)] {
///     let out = sample(&solver, &mut model, &grid, &x)?;
///     for v in out.flatten_all()?.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// }
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
    /// k-diffusion's `eta`: 1 the reverse SDE, 0 the probability-flow ODE (no noise), values in
    /// between interpolate the noise (`>= 0`).
    pub eta: f64,
    /// Scale of the added noise (k-diffusion's `s_noise`, `>= 0`).
    pub s_noise: f64,
    /// Whether the step into `sigma = 0` draws (zero-weight) noise.
    pub clean_step: CleanStepDraw,
}

impl SdeDpmSolverPP {
    /// SDE-DPM-Solver++ of `order` (1-3), full order to the end, midpoint, Taylor third order,
    /// `eta = 1`, one draw per step.
    pub fn order(order: usize) -> SdeDpmSolverPP {
        SdeDpmSolverPP {
            policy: OrderPolicy::fixed(order),
            solver_type: SolverType::Midpoint,
            third_order: ThirdOrder::Taylor,
            eta: 1.0,
            s_noise: 1.0,
            clean_step: CleanStepDraw::Draw,
        }
    }

    /// diffusers' defaults for `algorithm_type="sde-dpmsolver++"`: order 2, midpoint, lower order
    /// on the last steps below 15 steps, diffusers' third-order weights if the order is raised.
    pub fn diffusers_default() -> SdeDpmSolverPP {
        SdeDpmSolverPP {
            policy: OrderPolicy::diffusers(2),
            third_order: ThirdOrder::Reference,
            ..SdeDpmSolverPP::order(2)
        }
    }

    /// k-diffusion's (and ComfyUI's) DPM-Solver++(2M) SDE (`order = 2`: `sample_dpmpp_2m_sde`,
    /// midpoint) or (3M) SDE (`order = 3`: `sample_dpmpp_3m_sde`, whose second-order warm-up step
    /// uses the heun weight and whose third-order step [`ThirdOrder::KDiffusion`]): full order
    /// to the end, first order (the data prediction) into `sigma = 0` without a noise draw,
    /// `eta = 1`, `s_noise = 1`.
    pub fn k_diffusion(order: usize) -> SdeDpmSolverPP {
        SdeDpmSolverPP {
            solver_type: if order >= 3 { SolverType::Heun } else { SolverType::Midpoint },
            third_order: ThirdOrder::KDiffusion,
            clean_step: CleanStepDraw::Skip,
            ..SdeDpmSolverPP::order(order)
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
        if self.is_stochastic() {
            return 1;
        }
        // eta = 0: the ODE solver; the reference third-order weights lose order (see ThirdOrder)
        match (self.policy.order, self.third_order) {
            (3, ThirdOrder::KDiffusion) => 2,
            (3, ThirdOrder::Reference) => 1,
            (order, _) => order,
        }
    }

    fn is_stochastic(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        validate_noise("SDE-DPM-Solver++", self.eta, self.s_noise)?;
        self.policy.validate(3, "SDE-DPM-Solver++")
    }

    fn init_state(&self) -> History {
        History::new(self.policy.order.saturating_sub(1))
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, hist: &mut History) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let m0 = ctx.model.data(x, from)?;
        let draw = self.is_stochastic() && (!to.is_clean() || self.clean_step == CleanStepDraw::Draw);
        let z = if draw { Some(ctx.noise.noise_between(x, from, to)?) } else { None };
        let h = step.h();
        let big_h = h + eta_h(h, self.eta);
        // the first-order SDE step (math::sde), then the higher-order terms at the scaled step
        let (c_x, c0, c_z) = sde_weights(from, to, self.eta);
        let c1 = to.alpha * tail(1, big_h);
        let order = self.policy.order_at(hist.len() + 1, step);
        let mut terms: Vec<(f64, &Tensor)> = vec![(c_x, x)];
        match (order, hist.get(0), hist.get(1)) {
            (3, Some((p1, m1)), Some((p2, m2))) => {
                let k2 = match self.third_order {
                    ThirdOrder::Taylor => 2.0 * to.alpha * tail(2, big_h),
                    ThirdOrder::KDiffusion => to.alpha * tail(2, big_h),
                    ThirdOrder::Reference => -to.alpha * (phi(2, -big_h) + 0.5),
                };
                let m = multistep_weights(h, &[from.lambda, p1.lambda, p2.lambda], c0, c1, k2);
                terms.extend([(m[0], &m0), (m[1], m1), (m[2], m2)]);
            }
            (2.., Some((p1, m1)), _) => {
                let k1 = match self.solver_type {
                    SolverType::Midpoint => 0.5 * c0,
                    SolverType::Heun => c1,
                };
                let m = multistep_weights(h, &[from.lambda, p1.lambda], c0, k1, 0.0);
                terms.extend([(m[0], &m0), (m[1], m1)]);
            }
            _ => terms.push((c0, &m0)),
        }
        if let Some(z) = &z {
            terms.push((self.s_noise * c_z, z));
        }
        let out = lincomb(&terms)?;
        hist.push(*from, m0);
        Ok(out)
    }
}
