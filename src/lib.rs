//! # diffusion-samplers
//!
//! Sample diffusion models by solving their probability-flow ODE (or the reverse SDE) in few
//! network evaluations, on [candle](https://docs.rs/candle-core) tensors, with numbers checked
//! against exact solutions and against diffusers.
//!
//! The pieces: a [`Scheduler`] (noise schedule: [`DiscreteVp`], [`ContinuousVp`], [`CosineVp`],
//! [`Edm`], [`RectifiedFlow`]) gives `alpha`, `sigma` and `lambda` at each time; a [`Spacing`]
//! places the sampling times into a validated [`Grid`]; a [`Model`] wraps your network (any
//! [`Denoiser`]), converts its output and counts evaluations (with classifier-free guidance and
//! clipping / dynamic thresholding as wrappers); a [`Solver`] advances one step; [`sample()`] /
//! [`sample_with`] is the one loop, which owns the noise of stochastic solvers (a
//! [`NoiseSource`]: [`SeededNoise`], [`TensorNoise`], a closure).
//!
//! The solvers, one file each: [`Ddim`], [`Ddpm`], [`Euler`](struct@Euler), [`EulerAncestral`],
//! [`Heun`] (EDM, with churn), [`DpmSolverMultistep`] (DPM-Solver++ and DPM-Solver, orders 1-3),
//! [`DpmSolverSinglestep`], [`SdeDpmSolverPP`], [`Deis`], [`UniPc`], [`Lms`], [`Pndm`] (PRK/PLMS)
//! and [`Ipndm`]; k-diffusion's and ComfyUI's [`Dpm2`], [`Dpm2Ancestral`], [`HeunPp2`],
//! [`DpmPp2sAncestral`] and [`DpmPpSde`] (with `euler`, `heun`, `lms`, `dpmpp_2m` and the
//! `dpmpp_*m_sde` family on the solvers above, each under its ComfyUI name); ComfyUI's own
//! samplers: [`Lcm`], [`DeisTab`] (`deis`), [`ResMultistep`], [`GradientEstimation`], [`ErSde`],
//! [`Seeds`], [`SaSolver`], the CFG++ samplers ([`Guidance::CfgPp`] on [`EulerAncestral`],
//! [`DpmPp2sAncestral`], [`ResMultistep`], [`GradientEstimation`], and [`DpmPP2mCfgPp`]) and
//! [`Restart`] sampling; the error-controlled [`DpmAdaptive`] and [`DpmFast`] of k-diffusion, and
//! [`Planned`] (a per-step solver plan). Each reports its
//! order, its network evaluations per step and whether it is
//! stochastic; [`AnySolver`] chooses one at run time by name ([`names`]), and [`steps_for_nfe`]
//! fits a step count to an evaluation budget. [`calibrate`] fits a step schedule (and a solver
//! plan) to your own model against an adaptive teacher and saves it as a small file.
//! [`diffusers`] maps a diffusers
//! `scheduler_config.json` onto these pieces and reproduces its numbers; [`testing`] has the
//! Gaussian mixture with its exact denoiser and exact ODE solution; the `unet` feature adds a
//! diffusers-compatible `UNet2DModel`.
//!
//! The sigma schedules people pick by name (ComfyUI's list, k-diffusion's, Align Your Steps) are
//! [`SigmaSchedule`]s in [`sigmas`]; [`BrownianPath`] gives stochastic samplers noise that is the
//! same for every step count.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use diffusion_samplers::{sample, testing::GaussianMixture, DiscreteVp, DpmSolverMultistep, End, Grid, Model, Prediction, Scheduler, Spacing};
//!
//! let schedule = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
//! let grid = Grid::new(&schedule, &Spacing::UniformLambda, 10, End::Min)?;
//! // your network goes here; this one is the exact denoiser of a Gaussian mixture
//! let gm = GaussianMixture::example(4, 3, 0)?;
//! let mut model = Model::new(gm.denoiser(&schedule, Prediction::Epsilon), &schedule, Prediction::Epsilon);
//! let noise = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(32), (8, 4), &Device::Cpu)?;
//! let x = sample(&DpmSolverMultistep::pp(3), &mut model, &grid, &noise)?;
//! let exact = gm.exact_endpoint(&noise, &grid.points()[0], &grid.points()[10])?;
//! let err = (x - exact)?.abs()?.max_all()?.to_scalar::<f64>()?;
//! assert!(err < 2e-2 && model.nfe() == 10);
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```

#![warn(missing_docs)]

pub mod brownian;
pub mod calibrate;
pub mod diffusers;
mod error;
pub mod grid;
pub mod limits;
pub mod math;
pub mod model;
pub mod names;
pub mod noise;
mod ops;
pub mod sample;
pub mod schedule;
#[cfg(feature = "stable-diffusion")]
pub mod sd;
pub mod sigmas;
pub mod solvers;
pub mod testing;
#[cfg(feature = "unet")]
pub mod unet;

pub use brownian::{BrownianPath, BrownianTime};
pub use error::{Error, Result};
pub use grid::{is_denoising, End, Grid, Spacing, Step, StepKind};
pub use math::multistep::MultistepWeights;
pub use math::{History, LowerOrderFinal, OrderPolicy};
pub use model::{
    ClassifierFreeGuidance, DataTransform, Denoiser, DynamicThresholding, Guidance, GuidedData, Linear, Model,
    Prediction,
};
pub use noise::{NoiseSource, SeededNoise, TensorNoise};
pub use ops::{lincomb, lincomb_reference};
pub use sample::{add_noise, invert, sample, sample_with, Progress};
pub use schedule::{
    BetaSchedule, ContinuousVp, CosineVp, DiscreteVp, Edm, EdmModelTime, Point, RectifiedFlow, Scheduler,
    TablePrecision,
};
pub use sigmas::{AysModel, SigmaSchedule};
pub use solvers::{nfe_of, steps_for_nfe, AnySolver, Solver, StepContext};
pub use solvers::{AdaptiveInfo, DpmAdaptive, DpmFast, PlanForm, PlanStep, Planned, SecondOrder, SolverPlan};
pub use solvers::{Algorithm, Churn, Ddim, DpmSolverMultistep, Euler, Heun, SolverType, ThirdOrder};
pub use solvers::{BVariant, Corrector, Deis, DpmSolverSinglestep, SdeDpmSolverPP, UniPc};
pub use solvers::{
    Ddpm, DdpmVariance, EulerAncestral, FinalNoise, Ipndm, Lms, Pndm, PndmCombine, PrkMidpoint, Warmup, ZeroAlphaStart,
};
// the k-diffusion / ComfyUI samplers (group KD)
pub use solvers::{CleanStepDraw, Dpm2, Dpm2Ancestral, DpmPp2sAncestral, DpmPpSde, HeunPp2, LmsFinal};
pub use solvers::{ConsistencyBoundary, FlowHeun, SaFlavor, Tcd, TcdTime};
// ComfyUI-only samplers (group CX)
pub use solvers::{
    CleanStep, DeisQuadrature, DeisTab, DpmPP2mCfgPp, ErSde, GradientEstimation, Lcm, NoiseScaler, ResMultistep,
    Restart, RestartSegment, SaMode, SaNoise, SaSolver, Seeds, SeedsStages, SeedsUpdate, UniPcEnd,
};
