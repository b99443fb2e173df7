//! Solver names for run-time choice ([`crate::AnySolver`]'s `FromStr` and `Display`), one line
//! per name.
//!
//! Names are lowercase snake case. Where the algorithm is the one ComfyUI / k-diffusion ship under
//! a name, that name is used (`euler`, `euler_ancestral`, `heun`, `heunpp2`, `dpm_2`,
//! `dpm_2_ancestral`, `lms`, `dpmpp_2s_ancestral`, `dpmpp_sde`, `dpmpp_2m`, `dpmpp_2m_sde`,
//! `dpmpp_2m_sde_heun`, `dpmpp_3m_sde`, `ipndm`, `ddim`, `ddpm`), with ComfyUI's defaults (its
//! `lms` takes the step into `sigma = 0` at first order, [`crate::Lms::comfyui`]; ComfyUI's
//! `_gpu` variants differ only in where torch draws the Brownian tree and have no names here);
//! otherwise the family gets an order or variant suffix (`dpmpp_3m`, `unipc_bh2_3`, `deis_3`,
//! `dpmpp_2s`, ...). `_lof` marks diffusers' lower order on the last steps of grids under 15 steps
//! ([`crate::OrderPolicy::diffusers`]); without it the multistep methods keep their full order to
//! the end (first order only into `sigma = 0`). `dpmpp_2s` and `dpmpp_3s` are diffusers'
//! singlestep solvers, not ComfyUI's `dpmpp_2s_ancestral`.
//!
//! ComfyUI's own samplers are registered by their ComfyUI names and run what ComfyUI runs:
//! `lcm`, `ipndm`, `ipndm_v`, `deis`, `res_multistep` (and `_cfg_pp`, `_ancestral`,
//! `_ancestral_cfg_pp`), `gradient_estimation` (and `_cfg_pp`), `er_sde`, `seeds_2`, `seeds_3`,
//! `exp_heun_2_x0` (and `_sde`), `sa_solver`, `sa_solver_pece`, `euler_cfg_pp`,
//! `euler_ancestral_cfg_pp`, `dpmpp_2m_cfg_pp`, `dpmpp_2s_ancestral_cfg_pp`, `uni_pc`,
//! `uni_pc_bh2`; `ddim` is ComfyUI's too (it runs Euler, which is deterministic DDIM on the same
//! grid) and so is `ddpm`. The `_cfg_pp` samplers need a guided network
//! ([`crate::ClassifierFreeGuidance`]). For `uni_pc*` ComfyUI's KSampler also drops the
//! penultimate noise level of its schedule, a grid rule. [`crate::Restart`] is not a name: it
//! runs on the step list [`crate::Restart::steps`] builds.
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
use crate::model::Guidance;
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
    ("lms", || AnySolver::unnamed(Lms::comfyui())),
    ("ipndm", || AnySolver::unnamed(Ipndm::comfy())),
    // the k-diffusion / ComfyUI samplers (group KD)
    ("heunpp2", || AnySolver::unnamed(HeunPp2::default())),
    ("dpm_2", || AnySolver::unnamed(Dpm2::default())),
    ("dpm_2_ancestral", || AnySolver::unnamed(Dpm2Ancestral::default())),
    ("dpmpp_2s_ancestral", || AnySolver::unnamed(DpmPp2sAncestral::default())),
    ("dpmpp_sde", || AnySolver::unnamed(DpmPpSde::default())),
    ("dpmpp_2m_sde_heun", || AnySolver::unnamed(SdeDpmSolverPP { solver_type: SolverType::Heun, ..SdeDpmSolverPP::k_diffusion(2) })),
    ("dpmpp_3m_sde", || AnySolver::unnamed(SdeDpmSolverPP::k_diffusion(3))),
    ("pndm", || AnySolver::unnamed(Pndm::default())),
    ("plms", || AnySolver::unnamed(Pndm { warmup: Warmup::ImprovedEuler, ..Pndm::default() })),
    ("dpmpp_2m", || AnySolver::unnamed(DpmSolverMultistep::pp(2))),
    ("dpmpp_3m", || AnySolver::unnamed(DpmSolverMultistep::pp(3))),
    ("dpmpp_2m_lof", || AnySolver::unnamed(DpmSolverMultistep { policy: OrderPolicy::diffusers(2), ..DpmSolverMultistep::pp(2) })),
    ("dpmpp_3m_lof", || AnySolver::unnamed(DpmSolverMultistep { policy: OrderPolicy::diffusers(3), ..DpmSolverMultistep::pp(3) })),
    ("dpm_solver_2m", || AnySolver::unnamed(DpmSolverMultistep::noise(2))),
    ("dpm_solver_3m", || AnySolver::unnamed(DpmSolverMultistep::noise(3))),
    ("dpmpp_2m_sde", || AnySolver::unnamed(SdeDpmSolverPP::k_diffusion(2))),
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
    // ComfyUI-only samplers (group CX), by their ComfyUI names
    ("lcm", || AnySolver::unnamed(Lcm::default())),
    ("ipndm_v", || AnySolver::unnamed(Ipndm::comfy_variable())),
    ("deis", || AnySolver::unnamed(DeisTab::default())),
    ("res_multistep", || AnySolver::unnamed(ResMultistep::default())),
    ("res_multistep_cfg_pp", || AnySolver::unnamed(ResMultistep { guidance: Guidance::CfgPp, ..ResMultistep::default() })),
    ("res_multistep_ancestral", || AnySolver::unnamed(ResMultistep::ancestral())),
    ("res_multistep_ancestral_cfg_pp", || AnySolver::unnamed(ResMultistep { guidance: Guidance::CfgPp, ..ResMultistep::ancestral() })),
    ("gradient_estimation", || AnySolver::unnamed(GradientEstimation::default())),
    ("gradient_estimation_cfg_pp", || AnySolver::unnamed(GradientEstimation { guidance: Guidance::CfgPp, ..GradientEstimation::default() })),
    ("er_sde", || AnySolver::unnamed(ErSde::default())),
    ("seeds_2", || AnySolver::unnamed(Seeds::two())),
    ("seeds_3", || AnySolver::unnamed(Seeds::three())),
    ("exp_heun_2_x0", || AnySolver::unnamed(Seeds { eta: 0.0, ..Seeds::exp_heun() })),
    ("exp_heun_2_x0_sde", || AnySolver::unnamed(Seeds::exp_heun())),
    ("sa_solver", || AnySolver::unnamed(SaSolver::default())),
    ("sa_solver_pece", || AnySolver::unnamed(SaSolver { mode: SaMode::Pece, ..SaSolver::default() })),
    ("euler_cfg_pp", || AnySolver::unnamed(EulerAncestral { eta: 0.0, ..EulerAncestral::cfg_pp() })),
    ("euler_ancestral_cfg_pp", || AnySolver::unnamed(EulerAncestral::cfg_pp())),
    ("dpmpp_2m_cfg_pp", || AnySolver::unnamed(DpmPP2mCfgPp)),
    ("dpmpp_2s_ancestral_cfg_pp", || AnySolver::unnamed(DpmPp2sAncestral::cfg_pp())),
    ("uni_pc", || AnySolver::unnamed(UniPc::comfy(BVariant::Bh1))),
    ("uni_pc_bh2", || AnySolver::unnamed(UniPc::comfy(BVariant::Bh2))),
];

/// The registered solver names, in registry order.
pub fn solver_names() -> Vec<&'static str> {
    SOLVERS.iter().map(|(n, _)| *n).collect()
}
