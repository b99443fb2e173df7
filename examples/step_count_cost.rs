//! Wall time of one long run per registered solver (issue 9, defect 10: the cost of a run must
//! grow linearly with its step count). A trivial network on a 2-element tensor, so the time is
//! the sampler's own: grid building, validation, the loop and the solver's steps.
//!
//! ```sh
//! cargo run --release --example step_count_cost            # 100 000 steps
//! cargo run --release --example step_count_cost -- 20000   # another count
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::names::solver_names;
use diffusion_samplers::{sample, AnySolver, Edm, End, Grid, Model, Prediction, Spacing};

fn main() -> diffusion_samplers::Result<()> {
    let steps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let s = Edm::default();
    let x = Tensor::ones(2, DType::F32, &Device::Cpu)?;
    println!("| solver | {steps} steps (s) | per step (us) |");
    println!("|---|---|---|");
    for name in solver_names() {
        let solver: AnySolver = name.parse()?;
        let start = Instant::now();
        let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, steps, End::Min)?;
        let mut model = Model::new(|x: &Tensor, _t: f64| x.affine(0.5, 0.0), &s, Prediction::Sample);
        sample(&solver, &mut model, &grid, &x)?;
        let secs = start.elapsed().as_secs_f64();
        println!("| {name} | {secs:.2} | {:.1} |", 1e6 * secs / steps as f64);
    }
    Ok(())
}
