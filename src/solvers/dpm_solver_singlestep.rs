//! Singlestep DPM-Solver (noise prediction; Lu et al. 2022, arXiv:2206.00927, Algorithms 1-2)
//! and DPM-Solver++ (data prediction; Lu et al. 2022, arXiv:2211.01095, Algorithm 1), orders 1-3,
//! as diffusers' `DPMSolverSinglestepScheduler` runs them: 1 NFE per grid step.
//!
//! A singlestep method of order `k` takes `k` model evaluations for one step `s -> t`. As in
//! diffusers, the intermediate evaluations are the grid points themselves: the grid steps are
//! grouped (orders `[1, 2, 3, 1, 2, 3, ...]`, see [`DpmSolverSinglestep::orders`]) and the step of
//! order `k` in a group goes from the group's start `s` (its output `m_s`) to its own end `t`,
//! using the outputs at the group's `k - 1` later points. With `h = lambda_t - lambda_s`,
//! `r_i = (lambda_i - lambda_s)/h` and the exponential-integrator weights `c_x, c0, c1, c2` of
//! [`crate::math::expint`] for `s -> t`:
//! - order 1: `x_t = c_x x_s + c0 m_s` (DDIM);
//! - order 2 (outputs `m_s, m_1`): `D1 = (m_1 - m_s)/r_1`, `x_t = c_x x_s + c0 m_s + c0/2 D1`
//!   (midpoint) or `+ c1 D1` (heun);
//! - order 3 (outputs `m_s, m_1, m_2`): `D1_i = (m_i - m_s)/r_i`, midpoint
//!   `x_t = c_x x_s + c0 m_s + c1 D1_2`; heun `D1 = (r_2 D1_1 - r_1 D1_2)/(r_2 - r_1)`,
//!   `D2 = 2 (D1_2 - D1_1)/(r_2 - r_1)`, `x_t = c_x x_s + c0 m_s + c1 D1 + c2 D2`.
//!
//! Order 2 is second-order accurate for any node; order 3 is third order for heun and, for
//! midpoint, when `r_2 = 2/3` (uniform-lambda grids). The last step into `sigma = 0` is first
//! order. A group that would start at `alpha = 0` (a zero-terminal-SNR start, `lambda = -inf`)
//! has no finite divided differences; the next step starts a new group instead.

use candle_core::Tensor;

use super::dpm_solver::ZERO_ALPHA;
use super::{validate_expint, Algorithm, Solver, SolverType, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::limits;
use crate::math::expint::{weights, Form};
use crate::math::{LowerOrderFinal, OrderPolicy};
use crate::ops::lincomb;
use crate::schedule::Point;

/// Singlestep DPM-Solver / DPM-Solver++.
///
/// diffusers option -> field (`DPMSolverSinglestepScheduler`): `algorithm_type` -> `algorithm`
/// (`dpmsolver++` / `dpmsolver`); `solver_order` -> `policy.order`; `solver_type` ->
/// `solver_type`; `lower_order_final` -> `policy.lower_order_final` (`true` =
/// [`LowerOrderFinal::Always`], `false` = [`LowerOrderFinal::Never`]: diffusers switches to `true`
/// itself when the step count is not a multiple of the order or the grid ends at `sigma = 0`,
/// which gives the same orders as `Never` here, see [`DpmSolverSinglestep::orders`]).
///
/// ```
/// use diffusion_samplers::{DpmSolverSinglestep, Solver};
/// let s = DpmSolverSinglestep::pp(3);
/// assert_eq!(s.orders(10, false)?, vec![1, 2, 3, 1, 2, 3, 1, 2, 3, 1]);
/// assert_eq!(DpmSolverSinglestep::diffusers_default().name(), "DPM-Solver++(2S)");
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmSolverSinglestep {
    /// Data or noise prediction.
    pub algorithm: Algorithm,
    /// Order (1-3) and the final groups (`euler_at_final` makes the last step first order).
    pub policy: OrderPolicy,
    /// The second-order (and midpoint third-order) variant.
    pub solver_type: SolverType,
}

impl DpmSolverSinglestep {
    /// DPM-Solver++ singlestep of `order` (1-3), full groups to the end.
    pub fn pp(order: usize) -> DpmSolverSinglestep {
        DpmSolverSinglestep {
            algorithm: Algorithm::DpmSolverPP,
            policy: OrderPolicy::fixed(order),
            solver_type: SolverType::Midpoint,
        }
    }

    /// DPM-Solver (noise prediction) singlestep of `order` (1-3), full groups to the end.
    pub fn noise(order: usize) -> DpmSolverSinglestep {
        DpmSolverSinglestep {
            algorithm: Algorithm::DpmSolver,
            policy: OrderPolicy::fixed(order),
            solver_type: SolverType::Midpoint,
        }
    }

    /// diffusers' `DPMSolverSinglestepScheduler` defaults: DPM-Solver++(2S), midpoint,
    /// `lower_order_final=False`.
    pub fn diffusers_default() -> DpmSolverSinglestep {
        DpmSolverSinglestep::pp(2)
    }

    /// The order of each of `steps` grid steps (diffusers' `get_order_list`): groups
    /// `[1, 2, .., order]`, a shorter group at the end when `steps` is not a multiple of the order;
    /// with lower-order-final the last full group is split (`[.., 1, 2] + [1]` for order 3,
    /// `[.., 1] + [1]` for order 2); the last step is first order when `clean_end` (the grid ends
    /// at `sigma = 0`) or with `euler_at_final`. At most [`crate::limits::MAX_STEPS`] steps
    /// ([`crate::Error::TooLarge`] above); [`DpmSolverSinglestep::order_at`] gives one entry
    /// without the list.
    pub fn orders(&self, steps: usize, clean_end: bool) -> Result<Vec<usize>> {
        limits::check("steps", steps, limits::MAX_STEPS)?;
        Ok((0..steps).map(|i| self.order_at(i, steps, clean_end)).collect())
    }

    /// Entry `index` of [`DpmSolverSinglestep::orders`]`(steps, clean_end)` in constant time (1
    /// past the end).
    ///
    /// ```
    /// use diffusion_samplers::DpmSolverSinglestep;
    /// let s = DpmSolverSinglestep::pp(3);
    /// assert_eq!((0..10).map(|i| s.order_at(i, 10, true)).collect::<Vec<_>>(), s.orders(10, true)?);
    /// assert_eq!(s.order_at(usize::MAX - 2, usize::MAX, false), 2);
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn order_at(&self, index: usize, steps: usize, clean_end: bool) -> usize {
        let order = self.policy.order.clamp(1, 3);
        if index >= steps {
            return 1;
        }
        let lower = match self.policy.lower_order_final {
            LowerOrderFinal::Never => false,
            LowerOrderFinal::Always => true,
            LowerOrderFinal::BelowSteps(n) => steps < n,
        };
        // the last full group is split, or the last step goes into sigma = 0 / is forced to Euler
        let split_last = lower && order > 1 && steps % order == 0;
        if index + 1 == steps && (split_last || clean_end || self.policy.euler_at_final) {
            return 1;
        }
        index % order + 1
    }
}

impl Default for DpmSolverSinglestep {
    fn default() -> Self {
        DpmSolverSinglestep::diffusers_default()
    }
}

/// The state of [`DpmSolverSinglestep`]: the current group's start sample and its model outputs.
#[derive(Debug, Default)]
pub struct SinglestepState {
    start: Option<Tensor>,
    outputs: Vec<(Point, Tensor)>,
}

impl Solver for DpmSolverSinglestep {
    type State = SinglestepState;

    fn name(&self) -> &'static str {
        match (self.algorithm, self.policy.order) {
            (Algorithm::DpmSolverPP, 1) => "DPM-Solver++(1)",
            (Algorithm::DpmSolverPP, 2) => "DPM-Solver++(2S)",
            (Algorithm::DpmSolverPP, _) => "DPM-Solver++(3S)",
            (Algorithm::DpmSolver, 1) => "DPM-Solver(1)",
            (Algorithm::DpmSolver, 2) => "DPM-Solver-2",
            (Algorithm::DpmSolver, _) => "DPM-Solver-3",
        }
    }

    fn order(&self) -> usize {
        self.policy.order
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        validate_expint(&self.policy, "DPM-Solver singlestep", self.algorithm.form(), steps, ZERO_ALPHA)
    }

    fn init_state(&self) -> SinglestepState {
        SinglestepState::default()
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut SinglestepState) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let order = self.order_at(step.index, step.count, to.is_clean());
        // a group's step k needs the k - 1 earlier outputs of its group (a fresh state, e.g. a
        // grid cut for img2img, starts a new group, as diffusers does)
        let mut order = order.min(state.outputs.len() + 1);
        // a group starting at alpha = 0 (lambda = -inf) has no finite divided differences
        // (r = inf / inf): a new group starts here instead
        if order > 1 && state.outputs[state.outputs.len() + 1 - order].0.lambda == f64::NEG_INFINITY {
            order = 1;
        }
        let (form, m) = match self.algorithm {
            Algorithm::DpmSolverPP => (Form::Data, ctx.model.data(x, from)?),
            Algorithm::DpmSolver => (Form::Noise, ctx.model.noise(x, from)?),
        };
        if order == 1 {
            state.start = Some(x.clone());
            state.outputs.clear();
        } else {
            let keep = order - 1;
            let drop = state.outputs.len() - keep;
            state.outputs.drain(..drop);
        }
        state.outputs.push((*from, m));
        let x_s = state.start.as_ref().unwrap_or(x);
        let (s, m_s) = (&state.outputs[0].0, &state.outputs[0].1);
        let w = weights(form, s, to);
        let h = to.lambda - s.lambda;
        let r = |p: &Point| (p.lambda - s.lambda) / h;
        match state.outputs.as_slice() {
            [_, (p1, m1)] => {
                let k = match self.solver_type {
                    SolverType::Midpoint => 0.5 * w.c[0],
                    SolverType::Heun => w.c[1],
                } / r(p1);
                lincomb(&[(w.c_x, x_s), (w.c[0] - k, m_s), (k, m1)])
            }
            [_, (p1, m1), (p2, m2)] => {
                let (r1, r2) = (r(p1), r(p2));
                match self.solver_type {
                    SolverType::Midpoint => {
                        let k = w.c[1] / r2;
                        lincomb(&[(w.c_x, x_s), (w.c[0] - k, m_s), (k, m2)])
                    }
                    SolverType::Heun => {
                        // D1 = (r2 D1_1 - r1 D1_2)/(r2 - r1), D2 = 2 (D1_2 - D1_1)/(r2 - r1),
                        // D1_i = (m_i - m_s)/r_i
                        let dr = r2 - r1;
                        let (c1, c2) = (w.c[1], w.c[2]);
                        let k1 = c1 * r2 / (r1 * dr) - 2.0 * c2 / (r1 * dr);
                        let k2 = -c1 * r1 / (r2 * dr) + 2.0 * c2 / (r2 * dr);
                        lincomb(&[(w.c_x, x_s), (w.c[0] - k1 - k2, m_s), (k1, m1), (k2, m2)])
                    }
                }
            }
            _ => lincomb(&[(w.c_x, x_s), (w.c[0], m_s)]),
        }
    }
}
