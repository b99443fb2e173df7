//! Drop-in compatibility with Hugging Face diffusers' schedulers: load a model's
//! `scheduler/scheduler_config.json` and sample exactly as diffusers would, number for number.
//!
//! This module is the only code in the crate that knows diffusers. It maps a config
//! ([`SchedulerConfig`], parsed and validated field by field) onto the crate's pieces: a noise
//! schedule built from diffusers' float32 `alphas_cumprod` table, diffusers' timesteps and sigmas
//! for the configured spacing, and the solver the class runs ([`crate::Ddim`],
//! [`crate::DpmSolverMultistep`], [`crate::UniPc`], ...), wrapped in a [`DiffusersSampler`] whose
//! [`DiffusersSampler::sample`] runs the loop a diffusers pipeline runs
//! (`set_timesteps`, `x = noise * init_noise_sigma`, then `model(scale_model_input(x, t), t)` and
//! `step` per timestep).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use diffusion_samplers::diffusers::{DiffusersSampler, SchedulerClass, SchedulerConfig};
//! // Stable Diffusion 1.5's scheduler_config.json
//! let cfg = SchedulerConfig::from_json(r#"{
//!   "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
//!   "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
//!   "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null,
//!   "clip_sample": false}"#)?;
//! // switch solver in one line, as `DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)`
//! let sampler = DiffusersSampler::from_config(&cfg.with_class(SchedulerClass::DpmSolverMultistep))?;
//! assert_eq!(&sampler.timesteps(20)?[..3], &[999.0, 949.0, 899.0]); // as diffusers
//! let mut unet = |x: &Tensor, _t: f64| x.zeros_like(); // your network: (latents, timestep) -> eps
//! let latents = sampler.sample(&mut unet, &Tensor::ones((1, 4), candle_core::DType::F32, &Device::Cpu)?, 20)?;
//! assert_eq!(latents.dims(), &[1, 4]);
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```
//!
//! # What is reproduced
//!
//! diffusers' own numerics that change results are reproduced by default and each is a
//! [`Quirks`] option a user can turn off: float32 tables and sigmas
//! ([`TablePrecision`]); integer timesteps for Karras / Lu / exponential / flow sigmas
//! ([`TimestepRounding`]); DDIM's and PNDM's uniform-stride `prev_timestep`
//! ([`DdimTarget`]); FlowMatchEuler's doubled static shift ([`FlowShift`]). Options that change
//! numbers and are not implemented are errors naming them ([`crate::Error::DiffusersConfig`]);
//! see `docs/diffusers.md` for the complete list of classes and options.
//!
//! # Differences from diffusers, on purpose
//!
//! - `UniPCMultistepScheduler` with `solver_type="bh1"` and `final_sigmas_type="zero"`: diffusers'
//!   last step computes `-inf * 0` and returns NaN; here the last step into `sigma = 0` is the
//!   first-order predictor, which returns the (finite) data prediction.
//! - Stochastic classes draw their noise from a [`crate::NoiseSource`] (seeded by default):
//!   torch's generator is not reproduced, pass recorded noise to match a diffusers run.

mod classes;
mod config;
mod options;
mod problem;
mod resolve;
mod sampler;
mod tables;
mod timesteps;

pub use config::{
    AlgorithmType, BetaScheduleName, FinalSigmas, InterpolationType, SchedulerClass, SchedulerConfig, SolverTypeName,
    TimeShiftType, TimestepSpacing, TimestepType, VarianceType, MAX_TRAIN_TIMESTEPS, OTHER_DIFFUSERS_KEYS,
    PRIVATE_KEYS,
};
pub use problem::{solve_problem, Problem, SolveOptions, SolveOutput};
pub use sampler::{DiffusersRun, DiffusersSampler, Plan, MAX_STEPS};

pub use crate::schedule::TablePrecision;

/// How diffusers' sigma-derived timesteps reach the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestepRounding {
    /// As diffusers: Karras and Lu timesteps are rounded to integers (except for
    /// `squaredcos_cap_v2`), exponential, beta and flow timesteps truncated by the int64 cast of
    /// the multistep classes; the solver still uses the unrounded sigmas.
    #[default]
    Diffusers,
    /// The model gets the fractional timestep that matches the sigma the solver uses.
    Exact,
}

/// Where DDIM's (and PNDM's) step ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DdimTarget {
    /// As diffusers: at `t - num_train_timesteps // steps` whatever the spacing (with `linspace` or
    /// `trailing` spacing this is not the next timestep, so each step ends off the grid).
    #[default]
    UniformStride,
    /// At the next timestep of the grid (and the final point after the last).
    NextTimestep,
}

/// FlowMatchEulerDiscrete's static shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FlowShift {
    /// As diffusers: the smallest training sigma is shifted once in the constructor and the
    /// inference sigmas are spaced from it and shifted again.
    #[default]
    Doubled,
    /// Inference sigmas `linspace(1, 1/N, steps)` shifted once.
    Single,
}

/// diffusers behaviours that change numbers, each reproduced by default and each a choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Quirks {
    /// Table precision.
    pub precision: TablePrecision,
    /// Timesteps of sigma-derived grids.
    pub timestep_rounding: TimestepRounding,
    /// DDIM / PNDM step target.
    pub ddim_target: DdimTarget,
    /// FlowMatchEuler's shift.
    pub flow_shift: FlowShift,
}

impl Quirks {
    /// diffusers' behaviour (the default).
    pub fn diffusers() -> Quirks {
        Quirks::default()
    }

    /// Every quirk off: float64 tables, exact timesteps, DDIM on the grid, single flow shift.
    pub fn none() -> Quirks {
        Quirks {
            precision: TablePrecision::Float64,
            timestep_rounding: TimestepRounding::Exact,
            ddim_target: DdimTarget::NextTimestep,
            flow_shift: FlowShift::Single,
        }
    }
}
