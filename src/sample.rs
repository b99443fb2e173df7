//! The sampling loop, written once: [`sample`], [`sample_with`], [`invert`], and the helpers for
//! image-to-image ([`add_noise`], [`Grid::img2img`]).

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::grid::{check_time, is_denoising, validate_steps, Grid, Step, StepKind};
use crate::model::Model;
use crate::noise::{NoiseSource, SeededNoise};
use crate::ops::{all_finite, lincomb};
use crate::schedule::Point;
use crate::solvers::{Solver, StepContext};

/// What the loop reports after each step.
#[derive(Debug)]
pub struct Progress<'a> {
    /// Steps done (1-based).
    pub step: usize,
    /// Steps in the run.
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

/// Run `solver` over `steps` (a [`Grid`], or any list of [`Step`]s) from `x` (a sample at the
/// first step's start) and return the sample at the last step's end. Stochastic solvers draw
/// from `SeededNoise::new(0)`; [`sample_with`] takes another noise source and a progress callback.
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
pub fn sample<S, G>(solver: &S, model: &mut Model, steps: &G, x: &Tensor) -> Result<Tensor>
where
    S: Solver + ?Sized,
    G: AsRef<[Step]> + ?Sized,
{
    sample_with(solver, model, steps, x, &mut SeededNoise::new(0), |_| {})
}

/// The sampling loop: [`sample`] with the noise of the stochastic solvers from `noise` (seeded,
/// caller-supplied tensors, a closure, a Brownian path) and a callback after every step
/// (progress bars, previews, trajectories).
///
/// It checks the steps (monotone in `lambda`, finite times inside the model's schedule range at
/// every point the network is called at, a zero-length solver step only last), the sample's and
/// the network's dtypes (F16, BF16, F32 or F64) and the schedule's settings, lets the solver
/// validate its configuration against the steps once ([`Solver::validate`]; a stochastic solver
/// is refused on an inversion grid), then takes each step: [`StepKind::Solve`] steps through the
/// solver, [`StepKind::EvaluateOnly`] steps by one network evaluation that leaves the sample as it
/// is. With the model's finite check on (the default) the result is checked too, so no run
/// returns `Ok` with NaN or infinity ([`crate::Error::NonFiniteSample`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample_with, DiscreteVp, End, EulerAncestral, Grid, Model, Prediction, Spacing, TensorNoise};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 4, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
/// let x = Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?;
/// // the noise of each step supplied by the caller (e.g. recorded from another implementation)
/// let mut noise = TensorNoise::new((0..3).map(|_| x.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?);
/// let mut seen = vec![];
/// sample_with(&EulerAncestral::default(), &mut model, &grid, &x, &mut noise, |p| seen.push(p.step))?;
/// assert_eq!(seen, [1, 2, 3, 4]);
/// assert_eq!(noise.remaining(), 0); // no noise is added on the step into sigma = 0
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn sample_with<S, G>(
    solver: &S,
    model: &mut Model,
    steps: &G,
    x: &Tensor,
    noise: &mut dyn NoiseSource,
    mut on_step: impl FnMut(&Progress),
) -> Result<Tensor>
where
    S: Solver + ?Sized,
    G: AsRef<[Step]> + ?Sized,
{
    let steps = steps.as_ref();
    let at = |e: Error, index: usize| e.at_step(solver.name(), index, steps.len());
    validate_steps(steps).map_err(|e| at(e, 0))?;
    model.validate(x.dtype()).map_err(|e| at(e, 0))?;
    for (i, st) in steps.iter().enumerate() {
        // the network is evaluated at every step's start, and some solvers (Heun, PNDM) at its end:
        // finite times in the schedule's range (a list's very last end may lie off the table, as
        // diffusers' DDIM final point does, since no solver evaluates the network there but Heun,
        // whose grids end on the table)
        check_time(model.schedule(), st.from.t).map_err(|e| at(e, st.index))?;
        if i + 1 < steps.len() && !st.to.is_clean() {
            check_time(model.schedule(), st.to.t).map_err(|e| at(e, st.index))?;
        }
    }
    let solve: Vec<Step> = steps.iter().filter(|s| s.kind == StepKind::Solve).copied().collect();
    if solver.is_stochastic() && !is_denoising(&solve) {
        return Err(at(
            Error::InvalidConfig(format!(
                "{} is stochastic and cannot run on an inversion grid: invert with a deterministic solver (ddim, \
                 dpmpp_2m, unipc_bh2_2, deis_2, ...) or the solver's deterministic setting",
                solver.name()
            )),
            0,
        ));
    }
    if solver.needs_unconditional() && !model.has_unconditional() {
        return Err(at(
            Error::Unsupported(format!(
                "{} is a CFG++ sampler and needs the unconditional prediction of a guided network: wrap the \
                 network in ClassifierFreeGuidance, or use the sampler without the _cfg_pp suffix",
                solver.name()
            )),
            0,
        ));
    }
    solver.validate(&solve).map_err(|e| at(e, 0))?;
    let mut state = solver.init_state();
    let mut ctx = StepContext { model, noise };
    let mut x = x.clone();
    for step in steps {
        match step.kind {
            StepKind::Solve => x = solver.step(&mut ctx, step, &x, &mut state).map_err(|e| at(e, step.index))?,
            StepKind::EvaluateOnly => {
                ctx.model.raw(&x, &step.from).map_err(|e| at(e, step.index))?;
            }
        }
        on_step(&Progress {
            step: step.index + 1,
            count: step.count,
            t: step.to.t,
            sigma: step.to.sigma,
            x: &x,
            nfe: ctx.model.nfe(),
        });
    }
    // every network input was checked with its output; the result of the last step is checked
    // here (one read per run), so no run returns Ok with NaN
    if ctx.model.checks_finite() && !all_finite(&x)? {
        let e = Error::NonFiniteSample { when: "at the end of the run".into() };
        return Err(at(e, steps.len() - 1));
    }
    Ok(x)
}

/// Deterministic encoding: run `solver` over `grid` backwards, from a sample at the grid's end
/// to the noise at its start (DDIM inversion, generalised to every deterministic solver).
/// `grid` must end at `sigma > 0` ([`crate::End::Min`]); decode with [`sample`] on the same grid.
pub fn invert<S: Solver + ?Sized>(solver: &S, model: &mut Model, grid: &Grid, x: &Tensor) -> Result<Tensor> {
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
