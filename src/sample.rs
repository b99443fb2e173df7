//! The sampling loop, written once: [`sample`], [`sample_with`], [`invert`], and the helpers for
//! image-to-image ([`add_noise`], [`Grid::img2img`]).

use candle_core::Tensor;

use crate::error::Result;
use crate::grid::Grid;
use crate::model::Model;
use crate::ops::lincomb;
use crate::schedule::Point;
use crate::solvers::Solver;

/// What the loop reports after each step.
#[derive(Debug)]
pub struct Progress<'a> {
    /// Steps done (1-based).
    pub step: usize,
    /// Steps in the grid.
    pub count: usize,
    /// Time reached.
    pub t: f64,
    /// Noise scale reached.
    pub sigma: f64,
    /// The current sample.
    pub x: &'a Tensor,
    /// Network evaluations so far.
    pub nfe: usize,
}

/// Run `solver` over `grid` from `x` (a sample at `grid.points()[0]`) and return the sample at
/// the grid's end.
///
/// Errors name the solver and the step ([`crate::Error::Step`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, DpmSolverMultistep, End, Grid, Model, Prediction, Spacing};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean)?;
/// // a network that always predicts x0 = 0.25
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(6), (2, 3), &Device::Cpu)?;
/// let out = sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &x)?;
/// for v in out.flatten_all()?.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn sample<S: Solver>(solver: &S, model: &mut Model, grid: &Grid, x: &Tensor) -> Result<Tensor> {
    sample_with(solver, model, grid, x, |_| {})
}

/// [`sample`] with a callback after every step (progress bars, previews, trajectories).
pub fn sample_with<S: Solver>(
    solver: &S,
    model: &mut Model,
    grid: &Grid,
    x: &Tensor,
    on_step: impl FnMut(&Progress),
) -> Result<Tensor> {
    let mut state = solver.init_state(grid).map_err(|e| e.at_step(solver.name(), 0, grid.len()))?;
    sample_with_state(solver, model, grid, x, &mut state, on_step)
}

/// [`sample_with`] from a caller-made solver state (e.g. a stochastic solver's state holding
/// caller-supplied noise).
pub fn sample_with_state<S: Solver>(
    solver: &S,
    model: &mut Model,
    grid: &Grid,
    x: &Tensor,
    state: &mut S::State,
    mut on_step: impl FnMut(&Progress),
) -> Result<Tensor> {
    let mut x = x.clone();
    for step in grid.steps() {
        x = solver.step(model, &step, &x, state).map_err(|e| e.at_step(solver.name(), step.index, step.count))?;
        on_step(&Progress {
            step: step.index + 1,
            count: step.count,
            t: step.to.t,
            sigma: step.to.sigma,
            x: &x,
            nfe: model.nfe(),
        });
    }
    Ok(x)
}

/// Deterministic encoding: run `solver` over `grid` backwards, from a sample at the grid's end
/// to the noise at its start (DDIM inversion, generalised to every deterministic solver).
/// `grid` must end at `sigma > 0` ([`crate::End::Min`]); decode with [`sample`] on the same grid.
pub fn invert<S: Solver>(solver: &S, model: &mut Model, grid: &Grid, x: &Tensor) -> Result<Tensor> {
    sample(solver, model, &grid.reversed()?, x)
}

/// Noise clean data to `point`: `alpha x0 + sigma noise` (diffusers' `add_noise`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{add_noise, Point};
/// let x0 = Tensor::new(&[1.0f64], &Device::Cpu)?;
/// let n = Tensor::new(&[2.0f64], &Device::Cpu)?;
/// let x = add_noise(&x0, &n, &Point::new(3.0, 0.6, 0.8))?;
/// assert!((x.to_vec1::<f64>()?[0] - 2.2).abs() < 1e-12);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn add_noise(x0: &Tensor, noise: &Tensor, point: &Point) -> Result<Tensor> {
    lincomb(&[(point.alpha, x0), (point.sigma, noise)])
}
