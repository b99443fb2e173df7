//! Drop-in compatibility with Hugging Face diffusers' schedulers: load a model's
//! `scheduler/scheduler_config.json` and sample exactly as diffusers would, number for number.
//!
//! This module is the only code in the crate that knows diffusers, and it is a mapping: a config
//! ([`SchedulerConfig`], deserialised with serde and validated) is resolved once for its class
//! (every default applied), then planned per step count into the crate's own pieces: a noise
//! schedule built from diffusers' float32 `alphas_cumprod` table (the crate's table builder),
//! diffusers' timesteps and sigmas as a list of steps (the crate's spacing functions), the solver
//! the class runs as an [`crate::AnySolver`] ([`crate::Ddim`], [`crate::DpmSolverMultistep`],
//! [`crate::UniPc`], ...), the model's prediction type and clipping, and the start and end
//! scaling ([`Plan`]). [`DiffusersSampler::sample`] / [`DiffusersSampler::sample_with`] run them
//! through the crate's one loop, [`crate::sample_with`], as a diffusers pipeline runs
//! (`set_timesteps`, `x = noise * init_noise_sigma`, then `model(scale_model_input(x, t), t)` and
//! `step` per timestep). Files: `config` (parsing), `resolve` (options, once), `timesteps`
//! (planning), `sampler` (the pieces and the run).
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
//!
//! Where diffusers would fail late, return NaN or call the network with a time outside its table,
//! this layer returns a typed error instead (issue 9; `tests/robustness_diffusers.rs`):
//!
//! - A [`SchedulerConfig`]'s public fields may be set after parsing: [`DiffusersSampler::from_config`]
//!   validates them again (the parser's checks, each error naming its key), so
//!   `num_train_timesteps` of 0, 1 or over [`crate::limits::MAX_TRAIN_TIMESTEPS`] is an error
//!   before any table is allocated. Step counts over [`crate::limits::MAX_STEPS`] are refused.
//! - More steps than a UniPC or singlestep DPM-Solver spacing has distinct timesteps repeat a
//!   timestep before the last: diffusers takes a step of length 0 there and divides by it (NaN);
//!   here it is an error saying to use fewer steps. (A repeated *final* sigma is a step diffusers
//!   takes finitely, and so does this layer; the other classes evaluate the network there and
//!   leave the sample, as diffusers does.)
//! - A timestep outside the table (trailing spacing with more steps than training timesteps gives
//!   -1, a leading `steps_offset` can give `num_train_timesteps`): [`DiffusersSampler::plan`]
//!   shows diffusers' timesteps; a run refuses to pass them to the network (key
//!   `timestep_spacing`).
//! - `sigma_min` must lie below `sigma_max`, and both at most 1e15 (a sample scaled by a larger
//!   noise level leaves float32's range).
//! - Zero terminal SNR with diffusers' default linear betas (its float32 table's entry 998 lies
//!   below the `2^-24` it writes into entry 999) runs exactly as diffusers runs it
//!   (`tools/fixtures_zero_snr_linear.py`).

mod classes;
mod config;
mod options;
mod problem;
mod resolve;
mod sampler;
pub(crate) mod tables;
mod timesteps;
mod timesteps_sigma;

pub use config::{
    AlgorithmType, BetaScheduleName, EdmSigmaSchedule, FinalSigmas, InterpolationType, SchedulerClass, SchedulerConfig,
    SolverTypeName, TimeShiftType, TimestepSpacing, TimestepType, VarianceType, MAX_TRAIN_TIMESTEPS,
    OTHER_DIFFUSERS_KEYS, PRIVATE_KEYS,
};
pub use problem::{solve_problem, solve_problem_with, Problem, SolveOptions, SolveOutput};
pub use sampler::{DiffusersRun, DiffusersSampler, Plan, SetTimesteps, MAX_STEPS};

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
