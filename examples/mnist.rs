//! Sample handwritten digits from the bundled MNIST UNet (models/mnist-unet) and write them as a
//! PNG grid.
//!
//! ```text
//! cargo run --release --features unet --example mnist
//! cargo run --release --features unet --example mnist -- --solver dpmpp_3m_lof --steps 20 --seed 7 --n 100 --out digits.png
//! ```
//!
//! Default: 64 digits in 10 network evaluations with the calibrated schedule shipped beside the
//! model (`models/mnist-unet/schedule-10.json`, made by the `calibrate` example: a per-step
//! solver plan on calibrated time points), measured closer to a 500-step reference than the best
//! fixed setting, DPM-Solver++(2M) on a time-quadratic grid (RMSE 0.075 vs 0.119; BENCHMARKS.md
//! section 6). `--solver`, `--steps` or `--spacing` choose a fixed grid instead (then
//! DPM-Solver++(2M), 10 steps, time-quadratic unless given); a model folder without a
//! `schedule-10.json` gets that fixed default too. `--help` lists the flags.

mod unet_common;

use std::time::Instant;

use clap::Parser;
use diffusion_samplers::{sample_with, AnySolver, Model, Prediction, SeededNoise, Solver, Spacing};
use unet_common::*;

/// Sample handwritten digits from the bundled MNIST UNet and write them as a PNG grid.
#[derive(Parser, Debug)]
struct Cli {
    /// Solver name: ddim, euler, heun, dpmpp_2m_lof, dpmpp_3m_lof, dpmpp_3m, unipc_bh2_2_lof,
    /// unipc_bh2_3_lof, deis_3_lof, ... (any name of diffusion_samplers::names; default
    /// dpmpp_2m_lof, or the solver of --schedule)
    #[arg(long, value_parser = solver)]
    solver: Option<AnySolver>,
    /// A calibrated schedule file (from the `calibrate` example): its grid and solver replace
    /// --steps and --spacing (and --solver, which must then be the file's)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["steps", "spacing"])]
    schedule: Option<String>,
    /// Solver steps (NFE = steps, Heun 2 * steps - 1) [default: 10]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    steps: Option<u32>,
    /// Grid: quadratic, lambda, karras, uniform, trailing or leading [default: quadratic]
    #[arg(long, value_parser = parse_spacing)]
    spacing: Option<Spacing>,
    /// Noise seed
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of digits
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    n: u32,
    /// Digits per network call
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// PNG path
    #[arg(long, default_value = "mnist.png")]
    out: String,
    /// Also write the raw samples ([n,1,32,32] f32 in [-1, 1], key `samples`) for tools/eval_samples.py
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "samples.safetensors")]
    save_tensor: Option<String>,
    #[command(flatten)]
    model: ModelArg,
}

fn main() -> AnyResult<()> {
    let cli = Cli::parse();
    let (seed, out) = (cli.seed, &cli.out);
    let (n, batch) = (cli.n as usize, cli.batch as usize);

    let t0 = Instant::now();
    let (unet, schedule) = load(&cli.model.dir())?;
    // the shipped calibrated schedule unless a fixed grid is asked for
    let shipped = cli.model.dir().join("schedule-10.json");
    let fixed_asked = cli.solver.is_some() || cli.steps.is_some() || cli.spacing.is_some();
    let schedule_file = match &cli.schedule {
        Some(path) => Some(path.clone()),
        None if !fixed_asked && shipped.exists() => Some(shipped.display().to_string()),
        None => None,
    };
    let (solver, grid, grid_name) = match &schedule_file {
        Some(path) => {
            let (s, g, _) = calibrated::load_schedule(path, &cli.model.dir(), &schedule, cli.solver.as_ref())?;
            let shown =
                if cli.schedule.is_some() { path.clone() } else { "schedule-10.json beside the model".to_string() };
            (s, g, format!("calibrated ({shown})"))
        }
        None => {
            let s = cli.solver.clone().unwrap_or(solver("dpmpp_2m_lof")?);
            let spacing = cli.spacing.clone().unwrap_or(Spacing::TimeQuadratic);
            (s, grid(&schedule, &spacing, cli.steps.unwrap_or(10) as usize)?, spacing_name(&spacing).to_string())
        }
    };
    let (solver, steps) = (&solver, grid.len());
    let noise = noise(n, 1, 32, 32, seed)?;

    let mut samples = Vec::new();
    let mut nfe = 0;
    let bar = Bar::new((n.div_ceil(batch) * steps) as u64, &solver.to_string());
    let mut done = 0u64;
    for start in (0..n).step_by(batch) {
        let x = noise.narrow(0, start, batch.min(n - start))?;
        let mut model = Model::new(&unet, &schedule, Prediction::Epsilon);
        let y =
            sample_with(solver, &mut model, &grid, &x, &mut SeededNoise::new(0), |p| bar.set(done + p.step as u64))?;
        done += steps as u64;
        nfe = model.nfe();
        samples.push(y);
    }
    bar.done();
    let samples = candle_core::Tensor::cat(&samples, 0)?;
    let secs = t0.elapsed().as_secs_f64();

    let cols = (n as f64).sqrt().ceil() as usize;
    tile(&images(&samples)?, cols, 2, 0)?.save(out)?;
    if let Some(path) = &cli.save_tensor {
        samples.save_safetensors("samples", path)?;
        println!("raw samples written to {path}");
    }
    println!(
        "{n} digits, {} on a {} grid, {steps} steps, {nfe} network evaluations per batch of {}, seed {seed}: \
         {secs:.1} s (model load included) -> {out}",
        solver.name(),
        grid_name,
        batch.min(n),
    );
    Ok(())
}
