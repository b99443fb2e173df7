//! Run a diffusers `scheduler_config.json` on a problem and write the result (a stable
//! command-line contract; benchmarks and outside checks use it):
//!
//! ```text
//! cargo run --release --example solve -- --config scheduler_config.json --steps N \
//!     --problem PROBLEM --out out.safetensors [--dtype f64|f32] [--mu MU]
//! ```
//!
//! `PROBLEM` is a safetensors file with `means [K,D]`, `stds [K]`, `weights [K]` (a Gaussian
//! mixture, f64) and `noise [N, ...]` (f64, trailing dims multiply to D), optionally
//! `step_noise [S, N, ...]` (the per-step noise of a stochastic class, replayed in order); or the
//! word `diffusers-dummy` (diffusers' scheduler-test sample and dummy model
//! `out = x * t / (t + 1)`). The sampler starts from `noise * init_noise_sigma` as a diffusers
//! pipeline does and runs the configured scheduler for N inference steps. `out.safetensors`
//! holds `sample` (the final x, f64 unless `--dtype f32`), `timesteps` (the model times called,
//! in order, f64) and `nfe` (u32, shape [1]). `--mu` is `set_timesteps(mu=...)` for configs with
//! dynamic shifting. A bad flag or file prints an error and exits with status 2.
//! The work is `diffusion_samplers::diffusers::solve_problem`.

use candle_core::DType;
use clap::{Parser, ValueEnum};
use diffusion_samplers::diffusers::{solve_problem, DiffusersSampler, Problem, SolveOptions};

/// Run a diffusers scheduler_config.json on a problem and write the final sample, the model
/// times called and the NFE to a safetensors file.
#[derive(Parser, Debug)]
struct Args {
    /// The scheduler_config.json
    #[arg(long, value_name = "FILE")]
    config: String,
    /// Inference steps
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// A safetensors Gaussian-mixture problem, or `diffusers-dummy`
    #[arg(long, value_name = "FILE|diffusers-dummy")]
    problem: String,
    /// Output safetensors file
    #[arg(long, value_name = "FILE")]
    out: String,
    /// Working dtype of the sample
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    dtype: Dtype,
    /// `mu` of `set_timesteps(mu=...)` for configs with dynamic shifting
    #[arg(long, value_parser = finite)]
    mu: Option<f64>,
}

/// The working dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dtype {
    F64,
    F32,
}

fn finite(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m.is_finite() => Ok(m),
        _ => Err(format!("must be a finite number, got {s:?}")),
    }
}

fn run(args: &Args) -> diffusion_samplers::Result<usize> {
    let mut sampler = DiffusersSampler::from_file(&args.config)?;
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

fn main() {
    // a bad or misspelled flag is an error with a suggestion, exit status 2
    let args = Args::parse();
    match run(&args) {
        Ok(nfe) => println!("wrote {} ({} steps, {nfe} model evaluations)", args.out, args.steps),
        Err(e) => {
            eprintln!("solve: {e}");
            std::process::exit(2);
        }
    }
}
