//! Run a sampler on a problem and write the result (a stable command-line contract; benchmarks
//! and outside checks use it). Two modes:
//!
//! ```text
//! # a diffusers scheduler_config.json, as a diffusers pipeline runs it
//! cargo run --release --example solve -- --config scheduler_config.json --steps N \
//!     --problem PROBLEM --out out.safetensors [--dtype f64|f32] [--mu MU]
//! # a ComfyUI sampler and scheduler, as ComfyUI's KSampler runs them
//! cargo run --release --example solve -- --sampler NAME --scheduler NAME --steps N \
//!     --problem FILE --out out.safetensors [--betas linear|scaled_linear] [--step-noise FILE] [--seed S]
//! ```
//!
//! `PROBLEM` is a safetensors file with `means [K,D]`, `stds [K]`, `weights [K]` (a Gaussian
//! mixture, f64) and `noise [N, ...]` (f64, trailing dims multiply to D), optionally
//! `step_noise [S, N, ...]` (the noise of a stochastic sampler, one slice per draw, replayed in
//! order); or, in the diffusers mode, the word `diffusers-dummy` (diffusers' scheduler-test sample
//! and dummy model `out = x * t / (t + 1)`).
//!
//! **diffusers mode** (`--config`): the sampler starts from `noise * init_noise_sigma` as a
//! diffusers pipeline does and runs the configured scheduler for N inference steps.
//! `out.safetensors` holds `sample` (the final x, f64 unless `--dtype f32`), `timesteps` (the
//! model times called, in order, f64) and `nfe` (u32, shape [1]). `--mu` is
//! `set_timesteps(mu=...)` for configs with dynamic shifting. The work is
//! `diffusion_samplers::diffusers::solve_problem`.
//!
//! **ComfyUI mode** (`--sampler`, `--scheduler`: ComfyUI's names, e.g. `dpmpp_2m_sde` and
//! `karras`; its `_gpu` sampler variants are the same samplers here): ComfyUI's `KSampler` at
//! full denoise for an epsilon model with a discrete 1000-step table, `--betas` in diffusers'
//! sense (ComfyUI's own "linear" is diffusers' `scaled_linear`, the default; `linear` is
//! ComfyUI's `sqrt_linear`) from `--beta-start` 0.00085 to `--beta-end` 0.012 (ComfyUI's model
//! defaults). The schedule's sigmas come from the float64 table (ComfyUI rounds its table to
//! float32, which moves them by up to about 1e-6 relative) (N steps; for `dpm_2`,
//! `dpm_2_ancestral`, `uni_pc`, `uni_pc_bh2` ComfyUI takes N + 1 and drops the penultimate
//! sigma, and so does this); the sampler runs in k-diffusion's coordinates from
//! `x = noise * sqrt(1 + sigma_0^2)` (`noise * sigma_0` when `sigma_0` is below the table's
//! largest sigma, ComfyUI's `max_denoise` rule) with the mixture's exact denoiser called as
//! `D(x, sigma)` at the continuous sigma the sampler asks for (no timestep rounding). The noise of
//! a stochastic sampler is `--step-noise FILE`'s `step_noise [S, N, ...]` (else the problem's
//! `step_noise`), one slice per call of ComfyUI's noise sampler in its order, so the result
//! compares elementwise with ComfyUI's; without it a seeded Brownian path (`dpmpp_sde` and the
//! `dpmpp_*m_sde*` samplers, ComfyUI's Brownian-tree noise) or seeded normal noise (`--seed`,
//! default 0). `out.safetensors` holds `sample` (f64), `sigmas` (the schedule used, f64) and
//! `nfe` (u32, shape [1]). Every name of `diffusion_samplers::names` that ComfyUI has runs here,
//! ComfyUI's own samplers (`lcm`, `deis`, `res_multistep`, `seeds_2`, `sa_solver`, ...)
//! included, except the `_cfg_pp` samplers: CFG++ needs a guided network's conditional and
//! unconditional predictions, and a problem file holds one denoiser, so they are refused with
//! an error naming the sampler to use instead.
//!
//! A bad flag or file prints an error and exits with status 2.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use clap::{Parser, ValueEnum};
use diffusion_samplers::brownian::{BrownianPath, BrownianTime};
use diffusion_samplers::diffusers::{solve_problem, DiffusersSampler, Problem, SolveOptions};
use diffusion_samplers::sigmas::SigmaSchedule;
use diffusion_samplers::{
    sample_with, AnySolver, BetaSchedule, DiscreteVp, Edm, EdmModelTime, End, Error, Grid, Model, NoiseSource,
    Prediction, Scheduler, SeededNoise, Solver, TensorNoise,
};

/// Run a diffusers scheduler_config.json, or a ComfyUI sampler and scheduler, on a problem and
/// write the final sample to a safetensors file.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// The scheduler_config.json (diffusers mode)
    #[arg(long, value_name = "FILE", required_unless_present = "sampler", conflicts_with = "sampler")]
    config: Option<String>,
    /// ComfyUI sampler name (ComfyUI mode), e.g. euler_ancestral, dpmpp_2m_sde
    #[arg(long, value_name = "NAME", requires = "scheduler")]
    sampler: Option<String>,
    /// ComfyUI scheduler name (ComfyUI mode), e.g. karras, normal, simple
    #[arg(long, value_name = "NAME", requires = "sampler")]
    scheduler: Option<String>,
    /// Inference steps
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// A safetensors Gaussian-mixture problem, or `diffusers-dummy` (diffusers mode)
    #[arg(long, value_name = "FILE|diffusers-dummy")]
    problem: String,
    /// Output safetensors file
    #[arg(long, value_name = "FILE")]
    out: String,
    /// Working dtype of the sample (diffusers mode)
    #[arg(long, value_enum, default_value_t = Dtype::F64, conflicts_with = "sampler")]
    dtype: Dtype,
    /// `mu` of `set_timesteps(mu=...)` for configs with dynamic shifting (diffusers mode)
    #[arg(long, value_parser = finite, conflicts_with = "sampler")]
    mu: Option<f64>,
    /// The model's beta schedule, in diffusers' sense (ComfyUI mode)
    #[arg(long, value_enum, default_value_t = Betas::ScaledLinear, requires = "sampler")]
    betas: Betas,
    /// First beta of the table (ComfyUI mode)
    #[arg(long, value_parser = finite, default_value_t = 0.00085, requires = "sampler")]
    beta_start: f64,
    /// Last beta of the table (ComfyUI mode)
    #[arg(long, value_parser = finite, default_value_t = 0.012, requires = "sampler")]
    beta_end: f64,
    /// A safetensors file with `step_noise [S, N, ...]`: the stochastic sampler's noise, one slice
    /// per call of ComfyUI's noise sampler (ComfyUI mode)
    #[arg(long, value_name = "FILE", requires = "sampler")]
    step_noise: Option<String>,
    /// Seed of the noise when no step noise is given (ComfyUI mode)
    #[arg(long, default_value_t = 0, requires = "sampler")]
    seed: u64,
}

/// The working dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dtype {
    F64,
    F32,
}

/// diffusers' beta schedules of a discrete table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Betas {
    /// `linspace(beta_start, beta_end)` (ComfyUI's `sqrt_linear`)
    Linear,
    /// `linspace(sqrt(beta_start), sqrt(beta_end))^2` (ComfyUI's `linear`)
    ScaledLinear,
}

fn finite(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m.is_finite() => Ok(m),
        _ => Err(format!("must be a finite number, got {s:?}")),
    }
}

/// ComfyUI's samplers whose KSampler takes one step more and drops the penultimate sigma.
const DISCARD_PENULTIMATE_SIGMA: [&str; 4] = ["dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"];
/// ComfyUI's samplers whose default noise is a Brownian tree.
const BROWNIAN: [&str; 4] = ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde"];

fn run_diffusers(args: &Args, config: &str) -> diffusion_samplers::Result<usize> {
    let mut sampler = DiffusersSampler::from_file(config)?;
    if let Some(mu) = args.mu {
        sampler = sampler.mu(mu)?;
    }
    let problem = Problem::parse(&args.problem)?;
    let dtype = match args.dtype {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
    };
    let out = solve_problem(&sampler, &problem, SolveOptions { steps: args.steps as usize, dtype })?;
    out.save(&args.out)?;
    Ok(out.nfe)
}

fn run_comfyui(args: &Args, sampler: &str, scheduler: &str) -> diffusion_samplers::Result<usize> {
    // ComfyUI's `_gpu` samplers differ only in where torch keeps the Brownian tree
    let name = sampler.strip_suffix("_gpu").unwrap_or(sampler);
    let solver: AnySolver = name.parse()?;
    if solver.needs_unconditional() {
        return Err(Error::Unsupported(format!(
            "{name} is a CFG++ sampler: it needs the conditional and unconditional predictions of a guided network, \
             and a problem file holds one denoiser (the Gaussian mixture); run `{}` for the same sampler without \
             CFG++",
            name.replace("_cfg_pp", "")
        )));
    }
    let schedule: SigmaSchedule = scheduler.parse()?;
    let betas = match args.betas {
        Betas::Linear => BetaSchedule::Linear { beta_start: args.beta_start, beta_end: args.beta_end },
        Betas::ScaledLinear => BetaSchedule::ScaledLinear { beta_start: args.beta_start, beta_end: args.beta_end },
    };
    let table = DiscreteVp::new(betas, 1000)?;
    let steps = args.steps as usize;
    let sigmas = if DISCARD_PENULTIMATE_SIGMA.contains(&name) {
        let mut s = schedule.sigmas(&table, steps + 1, End::Clean)?;
        let n = s.len();
        s.remove(n - 2);
        s
    } else {
        schedule.sigmas(&table, steps, End::Clean)?
    };
    let problem = Problem::from_file(&args.problem)?;
    let Problem::GaussianMixture { gm, noise, step_noise } = problem else {
        return Err(Error::InvalidConfig("the ComfyUI mode needs a Gaussian-mixture problem file".into()));
    };
    // k-diffusion's coordinates: alpha = 1, sigma = k-sigma, the network called at sigma
    let (sigma_min, sigma_max) = (table.point(0.0).ksigma(), table.point(999.0).ksigma());
    let ve = Edm::new(sigma_min, sigma_max, EdmModelTime::Sigma)?;
    let grid = Grid::from_sigmas(&ve, &sigmas)?;
    let sigma_0 = sigmas[0];
    let max_denoise = (sigma_0 - sigma_max).abs() <= 1e-5 * sigma_0.abs().max(sigma_max.abs()) || sigma_0 > sigma_max;
    let x = (&noise * if max_denoise { (1.0 + sigma_0 * sigma_0).sqrt() } else { sigma_0 })?;
    let mut model = Model::new(gm.denoiser(&ve, Prediction::Sample), &ve, Prediction::Sample);
    let replay = match &args.step_noise {
        Some(path) => Some(load_step_noise(path, &noise)?),
        None => step_noise,
    };
    let mut replayed = replay.as_ref().map(TensorNoise::stacked).transpose()?;
    let mut seeded: Box<dyn NoiseSource> = if BROWNIAN.contains(&name) {
        Box::new(BrownianPath::for_schedule(args.seed, &table, BrownianTime::KSigma)?)
    } else {
        Box::new(SeededNoise::new(args.seed))
    };
    let source: &mut dyn NoiseSource = match replayed.as_mut() {
        Some(t) => t,
        None => seeded.as_mut(),
    };
    let sample = sample_with(&solver, &mut model, &grid, &x, source, |_| {})?;
    if let (Some(t), Some(supplied)) = (&replayed, &replay) {
        if t.remaining() > 0 {
            eprintln!(
                "solve: note: {} of {} step-noise slices were not used by {name}",
                t.remaining(),
                supplied.dim(0)?
            );
        }
    }
    let mut map: HashMap<String, Tensor> = HashMap::new();
    map.insert("sample".into(), sample.to_dtype(DType::F64)?);
    map.insert("sigmas".into(), Tensor::new(sigmas.as_slice(), &Device::Cpu)?);
    map.insert("nfe".into(), Tensor::new(&[model.nfe() as u32], &Device::Cpu)?);
    candle_core::safetensors::save(&map, &args.out)?;
    Ok(model.nfe())
}

/// The `step_noise [S, N, ...]` tensor of a safetensors file, checked against the noise's shape.
fn load_step_noise(path: &str, noise: &Tensor) -> diffusion_samplers::Result<Tensor> {
    let bad = |what: String| Error::InvalidConfig(format!("step-noise file {path}: {what}"));
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| bad(format!("cannot read it as safetensors ({e})")))?;
    let t = tensors.get("step_noise").ok_or_else(|| bad("missing tensor `step_noise`".into()))?;
    let t = t.to_dtype(DType::F64)?;
    if t.rank() != noise.rank() + 1 || t.dims()[1..] != *noise.dims() {
        return Err(bad(format!("`step_noise` must be [S, {:?}], got {:?}", noise.dims(), t.dims())));
    }
    Ok(t)
}

fn main() {
    // a bad or misspelled flag is an error with a suggestion, exit status 2
    let args = Args::parse();
    let result = match (&args.config, &args.sampler, &args.scheduler) {
        (Some(config), _, _) => run_diffusers(&args, config),
        (None, Some(sampler), Some(scheduler)) => run_comfyui(&args, sampler, scheduler),
        _ => Err(Error::InvalidConfig("give --config, or --sampler and --scheduler".into())),
    };
    match result {
        Ok(nfe) => println!("wrote {} ({} steps, {nfe} model evaluations)", args.out, args.steps),
        Err(e) => {
            eprintln!("solve: {e}");
            std::process::exit(2);
        }
    }
}
