//! A solver that follows a per-step plan: the order (1-3), the prediction form (data or noise),
//! the second-order weight and the UniC corrector chosen step by step (the unified sampling
//! framework of Liu et al. 2023, "A Unified Sampling Framework for Solver Searching of Diffusion
//! Probabilistic Models" (USF / S^3), arXiv:2312.07243), on the predictor-corrector family of
//! UniPC (Zhao et al. 2023, arXiv:2302.04867), which contains DPM-Solver(++) multistep
//! (Lu et al. 2022, arXiv:2206.00927, arXiv:2211.01095). 1 NFE per step.
//!
//! Step `s -> t` with `h = lambda_t - lambda_s`, the model output `m0` at `s` and older outputs
//! `m_i` at `r_i = (lambda_i - lambda_s)/h < 0`, `D1_i = (m_i - m0)/r_i`, in the step's form
//! (outputs are data predictions `x0` or noise predictions `eps = (x - alpha x0)/sigma`) with the
//! exponential-integrator weights `c_x, c_k` of [`crate::math::expint`]:
//!
//! - predictor of order `p`: `x_t = c_x x_s + c0 m0 + sum_{i<p} g_i D1_i`, where the `g_i` solve
//!   `sum_i r_i^{k-1} g_i = k! c_k`, `k = 1..p-1` (UniP-p; for `p = 3` this is DPM-Solver++(3M)
//!   with the Taylor `D2` weight), except that order 2 may use UniPC's fixed weight
//!   `g = B(h)/2` ([`SecondOrder::Bh2`]: DPM-Solver(++)(2M) midpoint; [`SecondOrder::Bh1`]);
//! - corrector (UniC-p, after a step that asks for it): once `m_t` at `t` is known, the step
//!   `s -> t` is redone from the same `x_s` with the node `r = 1` added (moment conditions of order
//!   `p`; for `p = 1` the fixed `g = B(h)/2` unless [`SecondOrder::Taylor`]); the corrected `x_t`
//!   continues while `m_t` (taken at the predicted `x_t`) is reused, so it costs no evaluation;
//! - into `sigma = 0` the order-`p` step extrapolates the data predictions at the last `p`
//!   points to `ksigma = 0` with the polynomial of degree `p - 1` in `ksigma^2` through them
//!   (along the ODE trajectory the data prediction is a smooth function of `ksigma^2`, so order
//!   2 removes the `O(ksigma_last^2)` error of the usual first-order final step, which returns
//!   the data prediction at the last point; the form does not matter). Order 1 is the usual
//!   final step (in the noise form from the corrected sample, as UniPC takes it).
//!
//! The order is also limited by the outputs available (warm-up).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{refuse_zero_alpha_start, Solver, StepContext};
use crate::error::{Error, Result};
use crate::grid::Step;
use crate::math::expint::Form;
use crate::math::unified::{extrapolate_clean, output, update};
use crate::schedule::Point;

/// The prediction form of a plan step, as it is saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanForm {
    /// Data prediction (`x0`; DPM-Solver++, UniPC `predict_x0`).
    Data,
    /// Noise prediction (`eps`; DPM-Solver).
    Noise,
}

impl PlanForm {
    /// The integrator form.
    pub fn form(self) -> Form {
        match self {
            PlanForm::Data => Form::Data,
            PlanForm::Noise => Form::Noise,
        }
    }
}

/// How a step with a single difference node weighs it (the order-2 predictor and the order-1
/// corrector).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondOrder {
    /// UniPC's `B(h) = e^h - 1` with `rho = 1/2`: DPM-Solver(++)(2M)'s midpoint weight `c0/2`.
    Bh2,
    /// UniPC's `B(h) = h` with `rho = 1/2`.
    Bh1,
    /// The exponential integrator's exact second-order weight `c1` (DPM-Solver's `heun`).
    Taylor,
}

/// One step of a [`SolverPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Order 1-3 (limited by the outputs available; into `sigma = 0` the number of points the
    /// data predictions are extrapolated from).
    pub order: usize,
    /// Data or noise prediction.
    pub form: PlanForm,
    /// The single-node weight.
    pub second: SecondOrder,
    /// Correct this step's result with the next step's evaluation (UniC).
    pub corrector: bool,
}

impl PlanStep {
    /// A data-form step of `order` without corrector, midpoint (`bh2`) second-order weight: the
    /// steps of DPM-Solver++(2M) / (3M).
    pub fn data(order: usize) -> PlanStep {
        PlanStep { order, form: PlanForm::Data, second: SecondOrder::Bh2, corrector: false }
    }
}

/// What a [`Planned`] solver does at each step of its grid.
///
/// ```
/// use diffusion_samplers::{PlanStep, SolverPlan};
/// // DPM-Solver++(2M) on a 5-step grid ending at sigma = 0
/// let plan = SolverPlan::from_fn(5, |i| PlanStep::data(if i == 4 { 1 } else { 2 }));
/// assert_eq!(plan.steps.len(), 5);
/// assert_eq!(plan.orders(), vec![2, 2, 2, 2, 1]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolverPlan {
    /// One entry per grid step.
    pub steps: Vec<PlanStep>,
}

impl SolverPlan {
    /// A plan of `n` steps from a function of the step index.
    pub fn from_fn(n: usize, f: impl Fn(usize) -> PlanStep) -> SolverPlan {
        SolverPlan { steps: (0..n).map(f).collect() }
    }

    /// The planned orders.
    pub fn orders(&self) -> Vec<usize> {
        self.steps.iter().map(|s| s.order).collect()
    }

    /// Check the plan: orders 1-3.
    pub fn validate(&self) -> Result<()> {
        if self.steps.is_empty() {
            return Err(Error::ZeroSteps);
        }
        if let Some((i, s)) = self.steps.iter().enumerate().find(|(_, s)| !(1..=3).contains(&s.order)) {
            return Err(Error::InvalidConfig(format!("plan step {i} has order {}: use orders 1 to 3", s.order)));
        }
        Ok(())
    }
}

/// The solver that follows a [`SolverPlan`]: one plan entry per grid step, or a single entry
/// for every step (a uniform plan; first order into `sigma = 0`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, testing::GaussianMixture, DiscreteVp, DpmSolverMultistep, End, Grid, Model};
/// use diffusion_samplers::{PlanStep, Planned, Prediction, SolverPlan, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 6, End::Clean)?;
/// let gm = GaussianMixture::example(3, 2, 0)?;
/// let noise = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(12), (4, 3), &Device::Cpu)?;
/// let plan = SolverPlan::from_fn(6, |i| PlanStep::data(if i == 5 { 1 } else { 2 }));
/// let mut m1 = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
/// let a = sample(&Planned { plan }, &mut m1, &grid, &noise)?;
/// let mut m2 = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
/// let b = sample(&DpmSolverMultistep::pp(2), &mut m2, &grid, &noise)?;
/// assert!((a - b)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The plan.
    pub plan: SolverPlan,
}

/// The state of [`Planned`]: the last outputs (point, sample they were made at, data prediction)
/// and the pending corrector input.
#[derive(Debug, Default)]
pub struct PlannedState {
    history: Vec<(Point, Tensor, Tensor)>,
    pending: Option<(Tensor, usize, PlanStep)>,
}

impl Planned {
    /// The plan entry of `step`: its own, or with a one-entry (uniform) plan that entry, first
    /// order into `sigma = 0`.
    fn entry(&self, step: &Step) -> Result<PlanStep> {
        match self.plan.steps.as_slice() {
            [only] if step.count != 1 => {
                Ok(if step.to.is_clean() { PlanStep { order: 1, corrector: false, ..*only } } else { *only })
            }
            steps => steps.get(step.index).copied().ok_or_else(|| {
                Error::InvalidConfig(format!("the plan has {} steps, the grid more", self.plan.steps.len()))
            }),
        }
    }
}

impl Default for Planned {
    /// The uniform plan of UniPC-2 (bh2, data form, corrector after every step): what the
    /// registry's `planned` runs; a calibrated plan comes from a schedule file.
    fn default() -> Self {
        Planned {
            plan: SolverPlan {
                steps: vec![PlanStep { order: 2, form: PlanForm::Data, second: SecondOrder::Bh2, corrector: true }],
            },
        }
    }
}

impl Solver for Planned {
    type State = PlannedState;

    fn name(&self) -> &'static str {
        "planned"
    }

    /// The smallest order of the plan's steps before the last (UniC adds one order).
    fn order(&self) -> usize {
        let n = self.plan.steps.len();
        let interior = &self.plan.steps[..n.saturating_sub(1).max(1).min(n)];
        interior.iter().map(|s| s.order + usize::from(s.corrector)).min().unwrap_or(1).clamp(1, 4)
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        self.plan.validate()?;
        let n = self.plan.steps.len();
        if n != 1 && n != steps.len() {
            return Err(Error::InvalidGrid(format!(
                "the solver plan has {n} steps but the grid has {}: use the grid the plan was made for",
                steps.len()
            )));
        }
        if self.plan.steps.iter().any(|s| s.form == PlanForm::Noise) {
            refuse_zero_alpha_start(
                steps,
                "a noise-form plan step cannot start at alpha = 0: plan the data form for the first step",
            )?;
        }
        Ok(())
    }

    fn init_state(&self) -> PlannedState {
        PlannedState::default()
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut PlannedState) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let plan = self.entry(step)?;
        let d = ctx.model.data(x, from)?;
        // UniC: redo the previous step with the new output at its end
        let corrected;
        let x_c = match state.pending.take() {
            Some((x_prev, order, prev)) if prev.corrector => {
                let form = prev.form.form();
                let (s, xs, ds) = state
                    .history
                    .first()
                    .ok_or_else(|| Error::InvalidConfig("planned solver state lost its history".into()))?;
                let m_s = output(form, s, xs, ds)?;
                let mut nodes = Vec::with_capacity(order);
                for (p, xp, dp) in state.history.iter().skip(1).take(order - 1) {
                    nodes.push((*p, output(form, p, xp, dp)?));
                }
                nodes.push((*from, output(form, from, x, &d)?));
                corrected = update(form, prev.second, &x_prev, s, from, &m_s, &nodes)?;
                &corrected
            }
            _ => x,
        };
        state.history.insert(0, (*from, x.clone(), d));
        state.history.truncate(3);
        let order = plan.order.min(state.history.len()).max(1);
        let out = if to.is_clean() && order > 1 {
            let nodes: Vec<(&Point, &Tensor)> = state.history.iter().take(order).map(|(p, _, d)| (p, d)).collect();
            extrapolate_clean(to.alpha, &nodes)?
        } else {
            let form = plan.form.form();
            let (p0, x0, d0) = &state.history[0];
            let m0 = output(form, p0, x0, d0)?;
            let mut nodes = Vec::with_capacity(order);
            for (p, xp, dp) in state.history.iter().skip(1).take(order - 1) {
                nodes.push((*p, output(form, p, xp, dp)?));
            }
            update(form, plan.second, x_c, from, to, &m0, &nodes)?
        };
        // a step into sigma = 0 has no next evaluation to correct it with
        state.pending = if to.is_clean() { None } else { Some((x_c.clone(), order, plan)) };
        Ok(out)
    }
}
