//! Encode 16 MNIST test digits to noise by running the ODE backwards
//! ([`diffusion_samplers::invert`]), decode them again, and measure how well they come back.
//!
//! ```text
//! cargo run --release --features unet --example invert
//! cargo run --release --features unet --example invert -- --solvers dpmpp_2m_lof,ddim --steps 10,20,50 --out invert.png
//! ```
//!
//! The digits come from `models/mnist-unet/test16.safetensors` (made by tools/mnist_test16.py).
//! The grid runs from `t = 999` down to the schedule's smallest trained time `t_min = 0`
//! (`End::Min`, sigma = 0.01): a digit is taken as the sample at `t_min`, encoded to `t = 999`
//! and decoded back to `t_min`. The PNG has the originals in the first row, then for each
//! solver and step count the encoded noise (scaled by 1/3) and the reconstruction.

mod text;
mod unet_common;

use std::time::Instant;

use candle_core::Device;
use clap::Parser;
use diffusion_samplers::{invert, sample_with, AnySolver, End, Grid, Model, Prediction, SeededNoise, Spacing};
use text::{annotate, register_font, Caption};
use unet_common::*;

/// Encode MNIST test digits to noise with the ODE run backwards, decode them, and measure how
/// well they come back.
#[derive(Parser, Debug)]
struct Cli {
    /// Comma-separated deterministic solver names (ddim, euler, heun, dpmpp_2m_lof, dpmpp_3m_lof,
    /// unipc_bh2_2_lof, ...)
    #[arg(long, value_delimiter = ',', default_value = "ddim,dpmpp_2m_lof,dpmpp_3m_lof", value_parser = solver)]
    solvers: Vec<AnySolver>,
    /// Comma-separated step counts
    #[arg(long, value_delimiter = ',', default_value = "10,20,50", value_parser = clap::value_parser!(u32).range(1..))]
    steps: Vec<u32>,
    /// Grid: lambda, karras, quadratic or uniform
    #[arg(long, default_value = "lambda", value_parser = parse_spacing)]
    spacing: Spacing,
    /// PNG path
    #[arg(long, default_value = "invert.png")]
    out: String,
    #[command(flatten)]
    model: ModelArg,
}

fn main() -> AnyResult<()> {
    let cli = Cli::parse();
    let (solvers, spacing, out) = (&cli.solvers, &cli.spacing, &cli.out);
    let steps: Vec<usize> = cli.steps.iter().map(|&s| s as usize).collect();

    let dir = cli.model.dir();
    let (unet, schedule) = load(&dir)?;
    let data = candle_core::safetensors::load(dir.join("test16.safetensors"), &Device::Cpu).map_err(|e| {
        format!("{}: {e} (regenerate with tools/mnist_test16.py)", dir.join("test16.safetensors").display())
    })?;
    let digits = data.get("images").ok_or("test16.safetensors has no `images` tensor")?;

    let mut rows = images(digits)?;
    let mut row_names = vec!["originals (MNIST test)".to_string()];
    println!("{:<18} {:>6} {:>5} {:>9} {:>10} {:>8}", "solver", "steps", "NFE", "RMSE", "max |err|", "seconds");
    for solver in solvers {
        for &n in &steps {
            let t0 = Instant::now();
            let grid = Grid::new(&schedule, spacing, n, End::Min)?;
            let bar = Bar::new(2 * n as u64, &solver.to_string());
            let mut model = Model::new(&unet, &schedule, Prediction::Epsilon);
            // encode: t_min -> t_max (the grid reversed), decode: t_max -> t_min
            let latent = invert(solver, &mut model, &grid, digits)?;
            bar.set(n as u64);
            let back = sample_with(solver, &mut model, &grid, &latent, &mut SeededNoise::new(0), |p| {
                bar.set((n + p.step) as u64)
            })?;
            bar.done();
            let err = rmse(&back, digits)?;
            let max = (&back - digits)?.abs()?.max_all()?.to_scalar::<f32>()?;
            println!(
                "{:<18} {:>6} {:>5} {:>9.5} {:>10.4} {:>8.2}",
                solver.to_string(),
                n,
                model.nfe(),
                err,
                max,
                t0.elapsed().as_secs_f64()
            );
            rows.extend(images(&(latent / 3.0)?)?);
            rows.extend(images(&back)?);
            row_names.push(format!("{solver}, {n} steps: noise / 3"));
            row_names.push(format!("{solver}, {n} steps: back (RMSE {err:.4})"));
        }
    }
    let grid = tile(&rows, 16, 2, 0)?;
    let (left, row_height) = (330u32, 32 + 2);
    let captions: Vec<Caption> = row_names
        .iter()
        .enumerate()
        .map(|(r, text)| Caption { x: 6, y: (2 + r as u32 * row_height + 9) as i32, text: text.clone(), size: 14 })
        .collect();
    annotate(&grid, left, 0, &captions, register_font(None)).save(out)?;
    println!(
        "RMSE on [-1, 1] pixels over 16 digits; grid {} from t=999 to t_min, encode + decode. \
         {out}: row 1 originals, then per solver and step count: latent noise / 3, reconstruction.",
        spacing_name(spacing)
    );
    Ok(())
}
