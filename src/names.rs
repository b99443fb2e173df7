//! Solver names for run-time choice ([`crate::AnySolver`]'s `FromStr` and `Display`), one line
//! per name.
//!
//! Names are lowercase snake case. Where the algorithm is the one ComfyUI / k-diffusion ship under
//! a name, that name is used (`euler`, `euler_ancestral`, `heun`, `lms`, `dpmpp_2m`,
//! `dpmpp_2m_sde`, `ipndm`, `ddim`, `ddpm`); otherwise the family gets an order or variant suffix
//! (`dpmpp_3m`, `unipc_bh2_3`, `deis_3`, `dpmpp_2s`, ...). `_lof` marks diffusers' lower order on
//! the last steps of grids under 15 steps ([`crate::OrderPolicy::diffusers`]); without it the
//! multistep methods keep their full order to the end (first order only into `sigma = 0`).
//! ComfyUI's `dpm_2`, `dpm_2_ancestral`, `dpmpp_2s_ancestral`, `dpmpp_sde` and `dpmpp_3m_sde`
//! are other algorithms and are not names of these solvers.
//!
//! ```
//! use diffusion_samplers::{names::solver_names, AnySolver};
//! for name in solver_names() {
//!     let solver: AnySolver = name.parse()?;
//!     assert_eq!(solver.to_string(), name); // names round-trip
//! }
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```

use crate::math::OrderPolicy;
use crate::solvers::*;

/// A registered name and how to make its solver.
pub(crate) type Entry = (&'static str, fn() -> AnySolver);

/// Every registered solver name, with its configuration.
#[rustfmt::skip]
pub(crate) const SOLVERS: &[Entry] = &[
    ("ddim", || AnySolver::unnamed(Ddim::default())),
    ("ddpm", || AnySolver::unnamed(Ddpm::default())),
    ("euler", || AnySolver::unnamed(Euler)),
    ("euler_ancestral", || AnySolver::unnamed(EulerAncestral::default())),
    ("heun", || AnySolver::unnamed(Heun::default())),
    ("lms", || AnySolver::unnamed(Lms::new(4))),
    ("ipndm", || AnySolver::unnamed(Ipndm::default())),
    ("pndm", || AnySolver::unnamed(Pndm::default())),
    ("plms", || AnySolver::unnamed(Pndm { warmup: Warmup::ImprovedEuler, ..Pndm::default() })),
    ("dpmpp_2m", || AnySolver::unnamed(DpmSolverMultistep::pp(2))),
    ("dpmpp_3m", || AnySolver::unnamed(DpmSolverMultistep::pp(3))),
    ("dpmpp_2m_lof", || AnySolver::unnamed(DpmSolverMultistep { policy: OrderPolicy::diffusers(2), ..DpmSolverMultistep::pp(2) })),
    ("dpmpp_3m_lof", || AnySolver::unnamed(DpmSolverMultistep { policy: OrderPolicy::diffusers(3), ..DpmSolverMultistep::pp(3) })),
    ("dpm_solver_2m", || AnySolver::unnamed(DpmSolverMultistep::noise(2))),
    ("dpm_solver_3m", || AnySolver::unnamed(DpmSolverMultistep::noise(3))),
    ("dpmpp_2m_sde", || AnySolver::unnamed(SdeDpmSolverPP::order(2))),
    ("dpmpp_2s", || AnySolver::unnamed(DpmSolverSinglestep::pp(2))),
    ("dpmpp_3s", || AnySolver::unnamed(DpmSolverSinglestep::pp(3))),
    ("dpm_solver_2s", || AnySolver::unnamed(DpmSolverSinglestep::noise(2))),
    ("dpm_solver_3s", || AnySolver::unnamed(DpmSolverSinglestep::noise(3))),
    ("deis_2", || AnySolver::unnamed(Deis::order(2))),
    ("deis_3", || AnySolver::unnamed(Deis::order(3))),
    ("deis_3_lof", || AnySolver::unnamed(Deis { policy: OrderPolicy::diffusers(3) })),
    ("unipc_bh1_2", || AnySolver::unnamed(UniPc { variant: BVariant::Bh1, ..UniPc::order(2) })),
    ("unipc_bh1_3", || AnySolver::unnamed(UniPc { variant: BVariant::Bh1, ..UniPc::order(3) })),
    ("unipc_bh2_2", || AnySolver::unnamed(UniPc::order(2))),
    ("unipc_bh2_3", || AnySolver::unnamed(UniPc::order(3))),
    ("unipc_bh2_2_lof", || AnySolver::unnamed(UniPc { policy: OrderPolicy::diffusers(2), ..UniPc::order(2) })),
    ("unipc_bh2_3_lof", || AnySolver::unnamed(UniPc { policy: OrderPolicy::diffusers(3), ..UniPc::order(3) })),
    ("dpm_fast", || AnySolver::unnamed(DpmFast::default())),
    ("dpm_adaptive", || AnySolver::unnamed(DpmAdaptive::default())),
    ("planned", || AnySolver::unnamed(Planned::default())),
];

/// The registered solver names, in registry order.
pub fn solver_names() -> Vec<&'static str> {
    SOLVERS.iter().map(|(n, _)| *n).collect()
}
