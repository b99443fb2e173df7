//! # diffusion-samplers
//!
//! Sample diffusion models by solving their probability-flow ODE in few network evaluations, on
//! [candle](https://docs.rs/candle-core) tensors: DDIM, Euler, Heun and multistep
//! DPM-Solver / DPM-Solver++ today, with numbers checked against exact solutions and against
//! diffusers.
//!
//! The pieces: a [`Scheduler`] (noise schedule) gives `alpha`, `sigma` and `lambda` at each time;
//! a [`Spacing`] places the sampling times into a validated [`Grid`]; a [`Model`] wraps your
//! network (any [`Denoiser`]) and converts its output; a [`Solver`] advances one step; [`sample()`]
//! is the loop.
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

pub mod calibrate;
pub mod diffusers;
mod error;
pub mod grid;
pub mod math;
pub mod model;
pub mod noise;
mod ops;
pub mod sample;
pub mod schedule;
pub mod solvers;
pub mod testing;
#[cfg(feature = "unet")]
pub mod unet;

pub use error::{Error, Result};
pub use grid::{End, Grid, Spacing, Step};
pub use math::multistep::MultistepWeights;
pub use math::{History, LowerOrderFinal, OrderPolicy};
pub use model::{ClassifierFreeGuidance, DataTransform, Denoiser, DynamicThresholding, Linear, Model, Prediction};
pub use noise::{NoiseSource, SeededNoise};
pub use ops::{lincomb, lincomb_reference};
pub use sample::{add_noise, invert, sample, sample_with, sample_with_state, Progress};
pub use schedule::{
    BetaSchedule, ContinuousVp, CosineVp, DiscreteVp, Edm, EdmModelTime, Point, RectifiedFlow, Scheduler,
};
pub use solvers::{AdaptiveInfo, DpmAdaptive, DpmFast, PlanForm, PlanStep, Planned, SecondOrder, SolverPlan};
pub use solvers::{
    Algorithm, Churn, Ddim, DdimState, DpmSolverMultistep, Euler, Heun, HeunState, Solver, SolverType, ThirdOrder,
};
pub use solvers::{BVariant, Corrector, Deis, DpmSolverSinglestep, SdeDpmSolverPP, UniPc};
pub use solvers::{
    Ddpm, DdpmVariance, EulerAncestral, FinalNoise, Ipndm, Lms, Pndm, PndmCombine, PrkMidpoint, Warmup, ZeroAlphaStart,
};
