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
use diffusion_samplers::diffusers::{solve_problem, DiffusersSampler, Problem, SolveOptions};

const USAGE: &str =
    "usage: solve --config scheduler_config.json --steps N --problem (FILE.safetensors|diffusers-dummy) \
--out OUT.safetensors [--dtype f64|f32] [--mu MU]";

struct Args {
    config: String,
    steps: usize,
    problem: String,
    out: String,
    dtype: DType,
    mu: Option<f64>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut config, mut steps, mut problem, mut out, mut dtype, mut mu) = (None, None, None, None, DType::F64, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => config = Some(value()?),
            "--steps" => {
                let v = value()?;
                let n: usize = v.parse().map_err(|_| format!("--steps must be a positive integer, got {v:?}"))?;
                if n == 0 {
                    return Err("--steps must be at least 1".into());
                }
                steps = Some(n);
            }
            "--problem" => problem = Some(value()?),
            "--out" => out = Some(value()?),
            "--dtype" => {
                dtype = match value()?.as_str() {
                    "f64" => DType::F64,
                    "f32" => DType::F32,
                    other => return Err(format!("--dtype must be f64 or f32, got {other:?}")),
                }
            }
            "--mu" => {
                let v = value()?;
                let m: f64 = v.parse().map_err(|_| format!("--mu must be a number, got {v:?}"))?;
                if !m.is_finite() {
                    return Err("--mu must be finite".into());
                }
                mu = Some(m);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let need = |v: Option<String>, name: &str| v.ok_or_else(|| format!("missing {name}"));
    Ok(Args {
        config: need(config, "--config")?,
        steps: steps.ok_or("missing --steps")?,
        problem: need(problem, "--problem")?,
        out: need(out, "--out")?,
        dtype,
        mu,
    })
}

fn run(args: &Args) -> diffusion_samplers::Result<usize> {
    let mut sampler = DiffusersSampler::from_file(&args.config)?;
    if let Some(mu) = args.mu {
        sampler = sampler.mu(mu)?;
    }
    let problem = Problem::parse(&args.problem)?;
    let out = solve_problem(&sampler, &problem, SolveOptions { steps: args.steps, dtype: args.dtype })?;
    out.save(&args.out)?;
    Ok(out.nfe)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("solve: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(nfe) => println!("wrote {} ({} steps, {nfe} model evaluations)", args.out, args.steps),
        Err(e) => {
            eprintln!("solve: {e}");
            std::process::exit(2);
        }
    }
}
