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
mod flow_heun;
mod heun;
mod ipndm;
mod lms;
mod planned;
mod pndm;
mod sde_dpm_solver;
mod tcd;
mod unipc;
// the k-diffusion / ComfyUI samplers (group KD)
mod dpm_2;
mod dpm_2_ancestral;
mod dpmpp_2s_ancestral;
mod dpmpp_sde;
mod heunpp2;
// ComfyUI-only samplers (group CX)
mod deis_tab;
mod dpmpp_2m_cfg_pp;
mod er_sde;
mod gradient_estimation;
mod lcm;
mod res_multistep;
mod restart;
mod sa_solver;
mod seeds;

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
pub use flow_heun::FlowHeun;
pub use heun::Heun;
pub use ipndm::{CleanStep, Ipndm, ZeroAlphaStart};
pub use lms::{Lms, LmsFinal};
pub use planned::{PlanForm, PlanStep, Planned, PlannedState, SecondOrder, SolverPlan};
pub(crate) use pndm::diffusers_points as pndm_points;
pub use pndm::{Pndm, PndmCombine, PrkMidpoint, Warmup};
pub use sde_dpm_solver::{CleanStepDraw, SdeDpmSolverPP};
pub use tcd::{Tcd, TcdTime};
pub use unipc::{BVariant, Corrector, UniPc, UniPcEnd, UniPcState};
// the k-diffusion / ComfyUI samplers (group KD)
pub use crate::math::Churn;
pub use dpm_2::Dpm2;
pub use dpm_2_ancestral::Dpm2Ancestral;
pub use dpmpp_2s_ancestral::DpmPp2sAncestral;
pub use dpmpp_sde::DpmPpSde;
pub use heunpp2::HeunPp2;
// ComfyUI-only samplers (group CX)
pub use deis_tab::{DeisQuadrature, DeisTab};
pub use dpmpp_2m_cfg_pp::DpmPP2mCfgPp;
pub use er_sde::{ErSde, ErSdeState, NoiseScaler};
pub use gradient_estimation::GradientEstimation;
pub use lcm::{ConsistencyBoundary, Lcm};
pub use res_multistep::{ResMultistep, ResState};
pub use restart::{Restart, RestartSegment};
pub use sa_solver::{SaFlavor, SaMode, SaNoise, SaSolver, SaState};
pub use seeds::{Seeds, SeedsStages, SeedsUpdate};

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

impl StepContext<'_, '_> {
    /// A noise draw for the interval `from -> to` when its weight `c` is non-zero, `None`
    /// otherwise (a draw of weight 0 would still consume caller-supplied noise).
    pub fn noise_if(&mut self, c: f64, like: &Tensor, from: &Point, to: &Point) -> Result<Option<Tensor>> {
        if c == 0.0 {
            return Ok(None);
        }
        Ok(Some(self.noise.noise_between(like, from, to)?))
    }
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
    /// `index` and `count` and on whether it ends at `sigma = 0`, not on its times (one
    /// exception: an ancestral DPM-2 / DPM-Solver++(2S) step with `eta > 1` whose whole step is
    /// noise is an Euler step, 1 NFE).
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

    /// True when the solver needs the unconditional prediction of a guided network (the CFG++
    /// samplers, [`crate::Model::data_and_unconditional`]). The loop refuses to run it with a
    /// model whose denoiser has none ([`crate::Model::has_unconditional`]).
    fn needs_unconditional(&self) -> bool {
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

/// The evaluations of a step of a method with `stages` network calls per step that takes a
/// first-order step (one call) into `sigma = 0`, where its later stages would sit.
pub(crate) fn stages_unless_clean(step: &Step, stages: usize) -> usize {
    if step.to.is_clean() {
        1
    } else {
        stages
    }
}

/// The order of a method whose deterministic form has order `deterministic`; with noise on, its
/// strong order is 1.
pub(crate) fn order_unless_stochastic(stochastic: bool, deterministic: usize) -> usize {
    if stochastic {
        1
    } else {
        deterministic
    }
}

/// The error of a method that cannot take a step from `alpha = 0` (pure noise), when the first
/// of `steps` starts there; `message` says why and what to use instead.
pub(crate) fn refuse_zero_alpha_start(steps: &[Step], message: &str) -> Result<()> {
    match steps.first() {
        Some(s) if s.from.alpha == 0.0 => Err(Error::Unsupported(message.into())),
        _ => Ok(()),
    }
}

/// The configuration check of the samplers with ancestral or SDE noise: finite `eta >= 0` and
/// `s_noise >= 0`.
pub(crate) fn validate_noise(name: &str, eta: f64, s_noise: f64) -> Result<()> {
    if !(eta >= 0.0 && eta.is_finite() && s_noise >= 0.0 && s_noise.is_finite()) {
        return crate::error::config_err(format!(
            "{name} needs finite eta >= 0 and s_noise >= 0, got eta = {eta}, s_noise = {s_noise}"
        ));
    }
    Ok(())
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
/// evaluations, from the solver's metadata ([`Solver::nfe`]); at most
/// [`crate::limits::MAX_STEPS`] (the most steps a grid may have), whatever the budget.
///
/// The count is found by bisection over `1..=min(budget, MAX_STEPS)` (about 17 probe grids,
/// `O(n log n)` work): it is a count `n` whose run costs at most `budget` while `n + 1` steps cost
/// more, which is the largest such count whenever a run of more steps costs no fewer evaluations
/// (true of every registered solver; `tests/property.rs` checks it over the registry).
///
/// ```
/// use diffusion_samplers::{limits, steps_for_nfe, AnySolver, End};
/// let heun: AnySolver = "heun".parse()?;
/// assert_eq!(steps_for_nfe(&heun, 10, End::Clean)?, 5); // 2 per step, 1 into sigma = 0: 9 NFE
/// assert_eq!(steps_for_nfe(&heun, 10, End::Min)?, 5);
/// assert_eq!(steps_for_nfe(&"dpmpp_2m".parse::<AnySolver>()?, 10, End::Clean)?, 10);
/// assert_eq!(steps_for_nfe(&heun, usize::MAX, End::Clean)?, limits::MAX_STEPS);
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
    let cost = |n: usize| nfe_of(solver, &probe_steps(n, end));
    if budget == 0 || cost(1) > budget {
        return Err(Error::InvalidConfig(format!(
            "{} needs {} network evaluations for a single step, more than the budget of {budget}",
            solver.name(),
            cost(1)
        )));
    }
    let hi = budget.min(crate::limits::MAX_STEPS);
    if cost(hi) <= budget {
        return Ok(hi);
    }
    // cost(lo) <= budget < cost(hi)
    let (mut lo, mut hi) = (1, hi);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if cost(mid) <= budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
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
