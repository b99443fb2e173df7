//! The solvers, one file each. A solver is an immutable config implementing [`Solver`]; its
//! mutable memory (multistep history, noise generator) is the explicit `State`.

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

pub use ddim::{Ddim, DdimState};
pub use ddpm::{Ddpm, DdpmState, DdpmVariance, FinalNoise};
pub use deis::Deis;
pub use dpm_adaptive::{Accepted, AdaptiveInfo, DpmAdaptive, DpmAdaptiveState};
pub use dpm_fast::DpmFast;
pub use dpm_solver::{Algorithm, DpmSolverMultistep, SolverType, ThirdOrder};
pub use dpm_solver_singlestep::{DpmSolverSinglestep, SinglestepState};
pub use euler::Euler;
pub use euler_ancestral::{EulerAncestral, EulerAncestralState};
pub use heun::{Churn, Heun, HeunState};
pub use ipndm::{Ipndm, ZeroAlphaStart};
pub use lms::Lms;
pub use planned::{PlanForm, PlanStep, Planned, PlannedState, SecondOrder, SolverPlan};
pub use pndm::{Pndm, PndmCombine, PrkMidpoint, Warmup};
pub use sde_dpm_solver::{SdeDpmSolverPP, SdeState};
pub use unipc::{BVariant, Corrector, UniPc, UniPcState};

use candle_core::Tensor;

use crate::error::Result;
use crate::grid::{Grid, Step};
use crate::model::Model;

/// One step of an ODE/SDE solver for the probability-flow ODE.
pub trait Solver {
    /// What the solver carries between steps.
    type State;

    /// A short name for progress and error messages.
    fn name(&self) -> &'static str;

    /// Validate the configuration against `grid` and make the initial state.
    fn init_state(&self, grid: &Grid) -> Result<Self::State>;

    /// Advance `x` from `step.from` to `step.to`.
    fn step(&self, model: &mut Model, step: &Step, x: &Tensor, state: &mut Self::State) -> Result<Tensor>;
}
