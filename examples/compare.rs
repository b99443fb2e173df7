//! Compare solvers at equal network-evaluation budgets on the bundled MNIST UNet: one set of
//! initial noises, rows = solvers, columns = NFE 5 / 10 / 20 / reference, one PNG, and each
//! cell's RMSE against the reference printed as a table.
//!
//! ```text
//! cargo run --release --features unet --example compare
//! cargo run --release --features unet --example compare -- --rows dpmpp_2m_lof:lambda,dpmpp_2m_lof:karras,dpmpp_2m_lof:quadratic --n 32
//! ```
//!
//! The reference is a 500-step DPM-Solver++(3M) solve on a uniform-logSNR grid from the same
//! noise (its own error is far below every cell's). Each solver runs on its customary grid
//! (DDIM: diffusers' `trailing` timesteps; Euler, Heun: Karras sigmas; the exponential
//! integrators: time-quadratic, measured best for this model) unless a row names one as
//! `solver:spacing`. Every grid starts at
//! `t = 999` and ends at the clean point, so all rows solve the same ODE. Heun spends 2
//! evaluations per step (1 on the last), so it gets the largest step count within the budget.

mod text;
mod unet_common;

use std::time::Instant;

use candle_core::Tensor;
use clap::Parser;
use diffusion_samplers::{sample, sample_with, AnySolver, Model, Prediction, SeededNoise, Spacing};
use text::{annotate, register_font, Caption};
use unet_common::*;

/// Compare solvers at equal network-evaluation budgets on the bundled MNIST UNet.
#[derive(Parser, Debug)]
struct Cli {
    /// Comma-separated rows `solver[:spacing]` (solver names of diffusion_samplers::names;
    /// spacing quadratic, lambda, karras, uniform, trailing or leading; default: the solver's
    /// customary grid)
    #[arg(long, value_delimiter = ',', value_parser = row,
          default_value = "ddim,euler,heun,dpmpp_2m_lof,dpmpp_3m_lof,unipc_bh2_2_lof,unipc_bh2_3_lof,deis_3_lof")]
    rows: Vec<(AnySolver, Spacing)>,
    /// Comma-separated evaluation budgets
    #[arg(long, value_delimiter = ',', default_value = "5,10,20", value_parser = clap::value_parser!(u32).range(1..))]
    nfe: Vec<u32>,
    /// Samples per cell used for the RMSE
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    n: u32,
    /// Samples drawn per cell
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    show: u32,
    /// Noise seed
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steps of the DPM-Solver++(3M) reference
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    ref_steps: u32,
    /// PNG path
    #[arg(long, default_value = "compare.png")]
    out: String,
    /// Comma-separated schedule files (from the `calibrate` example): one extra row, each file
    /// run at its own NFE column with its solver (cells of other budgets stay empty)
    #[arg(long, value_delimiter = ',', value_name = "FILE")]
    schedule: Vec<String>,
    /// Keep the reference in this safetensors file: reused when it holds the reference of the
    /// same noises (--n, --seed) and --ref-steps, computed and written otherwise
    #[arg(long, value_name = "FILE")]
    reference_cache: Option<String>,
    #[command(flatten)]
    model: ModelArg,
}

/// `solver[:spacing]`.
fn row(r: &str) -> Result<(AnySolver, Spacing), String> {
    let mut it = r.splitn(2, ':');
    let solver = solver(it.next().unwrap_or(""))?;
    let spacing = match it.next() {
        Some(s) => parse_spacing(s)?,
        None => default_spacing(&solver, &Spacing::TimeQuadratic),
    };
    Ok((solver, spacing))
}

fn main() -> AnyResult<()> {
    let cli = Cli::parse();
    let rows = &cli.rows;
    let budgets: Vec<usize> = cli.nfe.iter().map(|&b| b as usize).collect();
    let (n, seed, ref_steps, out) = (cli.n as usize, cli.seed, cli.ref_steps as usize, &cli.out);
    let show = (cli.show as usize).min(n);

    let (unet, schedule) = load(&cli.model.dir())?;
    let x_t = noise(n, 1, 32, 32, seed)?;

    // the reference
    let t0 = Instant::now();
    let key = Tensor::new(&[n as f64, seed as f64, ref_steps as f64], &candle_core::Device::Cpu)?;
    let cached = cli
        .reference_cache
        .as_ref()
        .and_then(|p| candle_core::safetensors::load(p, &candle_core::Device::Cpu).ok())
        .and_then(|t| {
            let same = t.get("key")?.to_vec1::<f64>().ok()? == key.to_vec1::<f64>().ok()?;
            if same {
                t.get("reference").cloned()
            } else {
                None
            }
        });
    let reference = match cached {
        Some(r) => {
            println!(
                "reference: {ref_steps}-step DPM-Solver++(3M) from {}",
                cli.reference_cache.as_deref().unwrap_or("")
            );
            r
        }
        None => {
            let bar = Bar::new(ref_steps as u64, "reference (3M)");
            let mut model = Model::new(&unet, &schedule, Prediction::Epsilon);
            let ref_grid = grid(&schedule, &Spacing::UniformLambda, ref_steps)?;
            let reference =
                sample_with(&solver("dpmpp_3m_lof")?, &mut model, &ref_grid, &x_t, &mut SeededNoise::new(0), |p| {
                    bar.set(p.step as u64)
                })?;
            bar.done();
            println!(
                "reference: DPM-Solver++(3M), {ref_steps} steps on a uniform-logSNR grid, {} NFE, {:.1} s",
                model.nfe(),
                t0.elapsed().as_secs_f64()
            );
            if let Some(p) = &cli.reference_cache {
                let t: std::collections::HashMap<String, Tensor> =
                    [("reference".to_string(), reference.clone()), ("key".to_string(), key)].into_iter().collect();
                candle_core::safetensors::save(&t, p)?;
            }
            reference
        }
    };

    // the cells
    let mut cells: Vec<Vec<Tensor>> = Vec::new();
    let mut table = Vec::new();
    let total: usize = rows.len() * budgets.iter().sum::<usize>();
    let bar = Bar::new(total as u64, "solvers");
    let mut done = 0u64;
    let t0 = Instant::now();
    for (solver, spacing) in rows {
        let mut row_cells = Vec::new();
        let mut errs = Vec::new();
        let row_start = Instant::now();
        for &nfe in &budgets {
            let steps = steps_within(solver, nfe)?;
            let mut model = Model::new(&unet, &schedule, Prediction::Epsilon);
            let y = sample(solver, &mut model, &grid(&schedule, spacing, steps)?, &x_t)?;
            done += nfe as u64;
            bar.set(done);
            errs.push((model.nfe(), rmse(&y, &reference)?));
            row_cells.push(y.narrow(0, 0, show)?);
        }
        row_cells.push(reference.narrow(0, 0, show)?);
        cells.push(row_cells);
        let row_secs = row_start.elapsed().as_secs_f64();
        table.push((format!("{solver} [{}]", spacing_name(spacing)), errs, row_secs));
    }
    if !cli.schedule.is_empty() {
        let dir = cli.model.dir();
        let files = cli
            .schedule
            .iter()
            .map(|p| calibrated::load_schedule(p, &dir, &schedule, None))
            .collect::<AnyResult<Vec<_>>>()?;
        let (mut row_cells, mut errs, mut names) = (vec![], vec![], vec![]);
        let row_start = Instant::now();
        for &nfe in &budgets {
            match files.iter().find(|(_, grid, _)| grid.len() == nfe) {
                Some((solver, grid, _)) => {
                    let mut model = Model::new(&unet, &schedule, Prediction::Epsilon);
                    let y = sample(solver, &mut model, grid, &x_t)?;
                    errs.push((model.nfe(), rmse(&y, &reference)?));
                    row_cells.push(y.narrow(0, 0, show)?);
                    names.push(solver.to_string());
                }
                None => {
                    errs.push((0, f64::NAN));
                    row_cells.push(reference.narrow(0, 0, show)?.ones_like()?);
                }
            }
        }
        row_cells.push(reference.narrow(0, 0, show)?);
        cells.push(row_cells);
        names.dedup();
        table.push((format!("{} [calibrated]", names.join("/")), errs, row_start.elapsed().as_secs_f64()));
    }
    bar.done();
    let secs = t0.elapsed().as_secs_f64();

    // the table
    print!("{:<30}", "RMSE vs reference");
    for b in &budgets {
        print!("{:>14}", format!("NFE {b}"));
    }
    println!("{:>10}", "seconds");
    for (name, errs, row_secs) in &table {
        print!("{name:<30}");
        for (nfe, e) in errs {
            print!("{:>14}", if e.is_finite() { format!("{e:.4} ({nfe})") } else { "-".to_string() });
        }
        println!("{row_secs:>10.1}");
    }
    println!(
        "RMSE on [-1, 1] pixels over {n} samples (seed {seed}); (k) = network evaluations actually used \
         (= steps, except Heun: 2 per step, 1 on the last); seconds = the row's runs together. \
         {} solver runs in {secs:.1} s.",
        rows.len() * budgets.len()
    );

    // the picture: one strip of `show` digits per cell, its RMSE under it, solver names on the
    // left, budgets on top
    let cell_imgs: Vec<Vec<image::GrayImage>> = cells
        .iter()
        .map(|row| row.iter().map(|c| tile(&images(c)?, show, 1, 40)).collect::<AnyResult<Vec<_>>>())
        .collect::<AnyResult<_>>()?;
    let (cw, ch) = (cell_imgs[0][0].width(), cell_imgs[0][0].height());
    let (gap, caption) = (8u32, 18u32);
    let ncol = cell_imgs[0].len() as u32;
    let mut img = image::GrayImage::from_pixel(
        ncol * (cw + gap) + gap,
        cell_imgs.len() as u32 * (ch + gap + caption) + gap,
        image::Luma([255]),
    );
    let (left, top) = (230u32, 26u32);
    let mut captions = Vec::new();
    let header: Vec<String> = budgets.iter().map(|b| format!("NFE {b}")).chain(["reference".to_string()]).collect();
    for (c, text) in header.iter().enumerate() {
        let x = left + gap + c as u32 * (cw + gap);
        captions.push(Caption { x: x as i32, y: 6, text: text.clone(), size: 16 });
    }
    for (r, row) in cell_imgs.iter().enumerate() {
        let y = gap + r as u32 * (ch + gap + caption);
        captions.push(Caption { x: 8, y: (top + y + ch / 2) as i32 - 8, text: table[r].0.clone(), size: 15 });
        for (c, cell) in row.iter().enumerate() {
            let x = gap + c as u32 * (cw + gap);
            image::imageops::replace(&mut img, cell, x as i64, y as i64);
            if let Some((nfe, e)) = table[r].1.get(c).filter(|(_, e)| e.is_finite()) {
                captions.push(Caption {
                    x: (left + x) as i32,
                    y: (top + y + ch + 3) as i32,
                    text: format!("RMSE {e:.3} ({nfe} NFE)"),
                    size: 12,
                });
            }
        }
    }
    let font = register_font(None);
    annotate(&img, left, top, &captions, font).save(out)?;
    println!(
        "{out}: rows {}; columns {}",
        table.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>().join(" / "),
        header.join(" / ")
    );
    Ok(())
}
