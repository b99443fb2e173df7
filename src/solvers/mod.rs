//! The solvers, one file each. A solver is an immutable config implementing [`Solver`]; its
//! mutable memory (multistep history, a singlestep group) is the explicit `State`. Noise is not
//! solver state: the loop owns the [`NoiseSource`] and hands it to each step in the
//! [`StepContext`]. [`AnySolver`] erases the type so a program can choose a solver at run time
//! (by name: [`crate::names`]).
//!
//! Adding a solver: one file here implementing [`Solver`] (`name`, `order`, `validate`,
//! `init_state`, `step`; `nfe` and `is_stochastic` where they differ from 1 and `false`), its
//! `mod` + `pub use` lines below, and a line in [`crate::names`] to choose it by name.

mod any;
mod ddim;
mod ddpm;
mod deis;
mod dpm_adaptive;
mod dpm_fast;
mod dpm_solver;
mod dpm_solver_singlestep;
mod euler;
mod euler_ancestral;
mod heun;
mod ipndm;
mod lms;
mod planned;
mod pndm;
mod sde_dpm_solver;
mod unipc;

pub use any::AnySolver;
pub use ddim::Ddim;
pub use ddpm::{Ddpm, DdpmVariance, FinalNoise};
pub use deis::Deis;
pub use dpm_adaptive::{Accepted, AdaptiveInfo, DpmAdaptive, DpmAdaptiveState};
pub use dpm_fast::DpmFast;
pub use dpm_solver::{Algorithm, DpmSolverMultistep, SolverType, ThirdOrder};
pub use dpm_solver_singlestep::{DpmSolverSinglestep, SinglestepState};
pub use euler::Euler;
pub use euler_ancestral::EulerAncestral;
pub use heun::{Churn, Heun};
pub use ipndm::{Ipndm, ZeroAlphaStart};
pub use lms::Lms;
pub use planned::{PlanForm, PlanStep, Planned, PlannedState, SecondOrder, SolverPlan};
pub(crate) use pndm::diffusers_points as pndm_points;
pub use pndm::{Pndm, PndmCombine, PrkMidpoint, Warmup};
pub use sde_dpm_solver::SdeDpmSolverPP;
pub use unipc::{BVariant, Corrector, UniPc, UniPcState};

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::grid::{End, Step, StepKind};
use crate::math::expint::Form;
use crate::math::OrderPolicy;
use crate::model::Model;
use crate::noise::NoiseSource;
use crate::schedule::Point;

/// What a step may use besides the sample and its own state: the model (network evaluations) and
/// the run's noise source (stochastic solvers draw with [`NoiseSource::noise_between`]).
pub struct StepContext<'a, 'm> {
    /// The network, bound to its schedule.
    pub model: &'a mut Model<'m>,
    /// The run's noise.
    pub noise: &'a mut dyn NoiseSource,
}

/// One step of an ODE/SDE solver for the probability-flow ODE, with the metadata a program needs
/// to choose and budget solvers at run time.
///
/// The loop ([`crate::sample_with`]) calls [`Solver::validate`] once with the steps it will take,
/// makes the initial state with [`Solver::init_state`], then calls [`Solver::step`] per step.
pub trait Solver {
    /// What the solver carries between steps.
    type State;

    /// A short label for progress and error messages (e.g. `"DPM-Solver++(2M)"`).
    fn name(&self) -> &'static str;

    /// The global order of accuracy of the method on smooth problems, on the grids it is
    /// designed for (stochastic solvers: their strong order).
    fn order(&self) -> usize;

    /// Network evaluations the solver spends on `step` (exact, where it varies: Heun's step into
    /// `sigma = 0` is 1, PNDM's Runge-Kutta warm-up steps 4). It may depend on the step's
    /// `index` and `count` and on whether it ends at `sigma = 0`, not on its times.
    fn nfe(&self, step: &Step) -> usize {
        let _ = step;
        1
    }

    /// True when the evaluations a step takes depend on error control (the adaptive DPM-Solver):
    /// [`Solver::nfe`] is then a lower bound, and [`steps_for_nfe`] refuses the solver.
    fn is_adaptive(&self) -> bool {
        false
    }

    /// True when the solver adds noise (draws from the [`StepContext`]'s noise source). The loop
    /// refuses to run a stochastic solver on an inversion grid.
    fn is_stochastic(&self) -> bool {
        false
    }

    /// Check the configuration against the steps of a run (once per run, before any step): option
    /// ranges, a start at `alpha = 0` the method cannot take, ... `steps` are the steps the loop
    /// will hand to [`Solver::step`].
    fn validate(&self, steps: &[Step]) -> Result<()>;

    /// The state before the first step.
    fn init_state(&self) -> Self::State;

    /// Advance `x` from `step.from` to `step.to`.
    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut Self::State) -> Result<Tensor>;
}

/// The error of a method that cannot take a step from `alpha = 0` (pure noise), when the first
/// of `steps` starts there; `message` says why and what to use instead.
pub(crate) fn refuse_zero_alpha_start(steps: &[Step], message: &str) -> Result<()> {
    match steps.first() {
        Some(s) if s.from.alpha == 0.0 => Err(Error::Unsupported(message.into())),
        _ => Ok(()),
    }
}

/// The validation of the exponential integrators: the order within `1..=3`, and a noise-form
/// method refuses a start at `alpha = 0` (its first step would divide by it) with `message`.
pub(crate) fn validate_expint(
    policy: &OrderPolicy,
    name: &str,
    form: Form,
    steps: &[Step],
    message: &str,
) -> Result<()> {
    policy.validate(3, name)?;
    match form {
        Form::Data => Ok(()),
        Form::Noise => refuse_zero_alpha_start(steps, message),
    }
}

/// Network evaluations of `solver` on `steps` (a [`StepKind::EvaluateOnly`] step costs 1).
///
/// ```
/// use diffusion_samplers::{nfe_of, DiscreteVp, End, Grid, Heun, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// assert_eq!(nfe_of(&Heun::default(), grid.as_ref()), 19); // the step into sigma = 0 is an Euler step
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn nfe_of<S: Solver + ?Sized>(solver: &S, steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|s| match s.kind {
            StepKind::Solve => solver.nfe(s),
            StepKind::EvaluateOnly => 1,
        })
        .sum()
}

/// The most steps whose grid (ending as `end` says) costs `solver` at most `budget` network
/// evaluations, from the solver's metadata ([`Solver::nfe`]).
///
/// ```
/// use diffusion_samplers::{steps_for_nfe, AnySolver, End};
/// let heun: AnySolver = "heun".parse()?;
/// assert_eq!(steps_for_nfe(&heun, 10, End::Clean)?, 5); // 2 per step, 1 into sigma = 0: 9 NFE
/// assert_eq!(steps_for_nfe(&heun, 10, End::Min)?, 5);
/// assert_eq!(steps_for_nfe(&"dpmpp_2m".parse::<AnySolver>()?, 10, End::Clean)?, 10);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn steps_for_nfe<S: Solver + ?Sized>(solver: &S, budget: usize, end: End) -> Result<usize> {
    if solver.is_adaptive() {
        return Err(Error::InvalidConfig(format!(
            "{} chooses its own steps: its evaluations follow its tolerance, not a step count (set rtol/atol)",
            solver.name()
        )));
    }
    // every step costs at least one evaluation, so no more than `budget` steps fit
    let mut best = None;
    for n in 1..=budget {
        if nfe_of(solver, &probe_steps(n, end)) <= budget {
            best = Some(n);
        }
    }
    best.ok_or_else(|| {
        Error::InvalidConfig(format!(
            "{} needs {} network evaluations for a single step, more than the budget of {budget}",
            solver.name(),
            nfe_of(solver, &probe_steps(1, end))
        ))
    })
}

/// `n` steps through made-up points (the metadata depends only on the steps' positions and on
/// whether the last one ends at `sigma = 0`).
fn probe_steps(n: usize, end: End) -> Vec<Step> {
    let mut points: Vec<Point> = (0..=n)
        .map(|i| {
            let lambda = -3.0 + 6.0 * i as f64 / n as f64;
            let alpha = 1.0 / (1.0 + (-2.0 * lambda).exp()).sqrt();
            Point::new(i as f64, alpha, alpha * (-lambda).exp())
        })
        .collect();
    if end == End::Clean {
        points[n] = Point::clean(n as f64);
    }
    Step::chain(&points)
}
