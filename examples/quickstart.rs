//! Sample a Gaussian mixture with two solvers at 10 network evaluations and print each one's
//! error against the exact ODE solution. Runs in about a second, downloads nothing.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::time::Instant;

use candle_core::{Device, Tensor};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::{
    sample, Ddim, DiscreteVp, DpmSolverMultistep, End, Grid, Model, Prediction, Result, SeededNoise, Solver, Spacing,
};

fn main() -> Result<()> {
    // Stable Diffusion's noise schedule and an 8-dimensional, 5-component mixture as the "data"
    let schedule = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
    let mixture = GaussianMixture::example(8, 5, 2024)?;
    let (samples, dim) = (256, mixture.dim());
    let noise = Tensor::from_vec(SeededNoise::new(0).normal_vec(samples * dim), (samples, dim), &Device::Cpu)?;

    println!("Gaussian mixture, {samples} samples in {dim} dimensions, scaled-linear schedule, 10 NFE");
    println!("{:<34} {:>6} {:>14} {:>10}", "solver and grid", "NFE", "RMSE vs exact", "seconds");
    run(
        "DDIM, diffusers 'leading' grid",
        &Ddim::default(),
        &schedule,
        &Spacing::Leading { steps_offset: 1, skip_zero: false },
        &mixture,
        &noise,
    )?;
    run(
        "DPM-Solver++(3M), uniform logSNR",
        &DpmSolverMultistep::pp(3),
        &schedule,
        &Spacing::UniformLambda,
        &mixture,
        &noise,
    )?;
    Ok(())
}

fn run<S: Solver>(
    name: &str,
    solver: &S,
    schedule: &DiscreteVp,
    spacing: &Spacing,
    mixture: &GaussianMixture,
    noise: &Tensor,
) -> Result<()> {
    let grid = Grid::new(schedule, spacing, 10, End::Clean)?;
    let start = Instant::now();
    let mut model = Model::new(mixture.denoiser(schedule, Prediction::Epsilon), schedule, Prediction::Epsilon);
    let x0 = sample(solver, &mut model, &grid, &(noise * grid.points()[0].sigma)?)?;
    let seconds = start.elapsed().as_secs_f64();
    // the exact probability-flow solution from the same starting point
    let points = grid.points();
    let exact = mixture.exact_endpoint(&(noise * points[0].sigma)?, &points[0], &points[points.len() - 1])?;
    let rmse = (x0 - exact)?.sqr()?.mean_all()?.sqrt()?.to_scalar::<f64>()?;
    println!("{name:<34} {:>6} {rmse:>14.5} {seconds:>10.3}", model.nfe());
    Ok(())
}
