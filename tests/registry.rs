//! Run-time solver choice and the loop's inputs: every registered name parses, prints back,
//! reports metadata that matches what it does (network evaluations, noise draws), and runs on
//! the Gaussian mixture; caller-supplied noise and explicit step lists behave as documented.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::Tensor;
use common::{max_abs, noise, rms};
use diffusion_samplers::names::solver_names;
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;

/// A noise source that counts its draws and records the intervals it was asked for.
struct Recorder {
    inner: SeededNoise,
    intervals: Rc<RefCell<Vec<(f64, f64)>>>,
}

impl NoiseSource for Recorder {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        self.inner.noise_like(like)
    }
    fn noise_between(&mut self, like: &Tensor, from: &Point, to: &Point) -> Result<Tensor> {
        self.intervals.borrow_mut().push((from.t, to.t));
        self.noise_like(like)
    }
}

/// Stochastic solvers whose noise draws do not all start at their step's start: SEEDS carries one
/// Brownian path across its stages and draws over the sub-intervals between them (each still
/// within one step). Every other stochastic solver draws for its step's interval, or for an
/// interval from the step's start to a stage inside it (`dpmpp_sde`).
const STAGE_DRAWS: &[&str] = &["seeds_2", "seeds_3"];

/// Stochastic solvers that may draw nothing on a whole grid: SA-Solver adds noise only on a band
/// of noise levels (its default `SaNoise::Percent`), so a grid with no step in the band is
/// deterministic. Every other stochastic solver draws on every grid that ends above `sigma = 0`.
const BAND_NOISE: &[&str] = &["sa_solver", "sa_solver_pece"];

#[test]
fn every_registered_name_round_trips_and_its_metadata_is_what_it_does() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let gm = GaussianMixture::example(3, 2, 1).unwrap();
    let x = noise(6, 3, 2);
    let names = solver_names();
    assert!(names.len() >= 25, "{names:?}");
    for listed in STAGE_DRAWS.iter().chain(BAND_NOISE) {
        assert!(names.contains(listed), "{listed} is not a registered name");
    }
    for name in &names {
        let solver: AnySolver = name.parse().unwrap();
        assert_eq!(solver.to_string(), *name);
        assert_eq!(solver.registry_name(), Some(*name));
        assert!((1..=4).contains(&solver.order()), "{name}: order {}", solver.order());
        // snake case (the ComfyUI names are their k-diffusion algorithms: tests/samplers_kd.rs)
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{name}");
        // what the exceptions above excuse, seen on this solver
        let (mut off_start, mut silent_grid, mut drew) = (false, false, false);
        for end in [End::Clean, End::Min] {
            for steps in [1, 2, 3, 7] {
                let grid = Grid::new(&s, &Spacing::UniformLambda, steps, end).unwrap();
                let intervals = Rc::new(RefCell::new(vec![]));
                let mut source = Recorder { inner: SeededNoise::new(0), intervals: intervals.clone() };
                // CFG++ samplers need a guided network (here both halves are the same denoiser)
                let mut model = if solver.needs_unconditional() {
                    let guided = ClassifierFreeGuidance {
                        denoiser: gm.denoiser(&s, Prediction::Epsilon),
                        scale: 1.5,
                        rescale: 0.0,
                    };
                    Model::new(guided, &s, Prediction::Epsilon)
                } else {
                    Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon)
                };
                let out = sample_with(&solver, &mut model, &grid, &x, &mut source, |_| {}).unwrap();
                assert!(out.flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().all(|v| v.is_finite()), "{name}");
                if solver.is_adaptive() {
                    // error control decides the evaluations; the metadata is a lower bound
                    assert!(model.nfe() >= nfe_of(&solver, grid.as_ref()), "{name}, {steps} steps to {end:?}: NFE");
                } else {
                    assert_eq!(model.nfe(), nfe_of(&solver, grid.as_ref()), "{name}, {steps} steps to {end:?}: NFE");
                }
                // a stochastic solver draws noise (at least on the steps before sigma = 0), a
                // deterministic one never does
                let drawn = intervals.borrow().clone();
                drew |= !drawn.is_empty();
                if !solver.is_stochastic() {
                    assert!(drawn.is_empty(), "{name}: a deterministic solver drew {} times", drawn.len());
                } else if end == End::Min && drawn.is_empty() {
                    assert!(BAND_NOISE.contains(name), "{name}: no draw on {steps} steps to {end:?}");
                    silent_grid = true;
                }
                // each draw names its step's interval, or one from the step's start to a point
                // inside it; SEEDS's draws lie between its stages
                for (from, to) in drawn {
                    if grid.steps().any(|st| st.from.t == from && (st.to.t == to || to > st.to.t)) {
                        continue;
                    }
                    assert!(STAGE_DRAWS.contains(name), "{name}: a draw for ({from}, {to}) off its step's start");
                    assert!(
                        grid.steps().any(|st| st.to.t <= to && to < from && from <= st.from.t),
                        "{name}: a draw for ({from}, {to}) outside every step"
                    );
                    off_start = true;
                }
            }
        }
        assert_eq!(drew, solver.is_stochastic(), "{name}: draws noise on no grid");
        // the listed solvers need their exception (the lists hold nothing else)
        assert_eq!(off_start, STAGE_DRAWS.contains(name), "{name}: draws off a step's start");
        assert_eq!(silent_grid, BAND_NOISE.contains(name), "{name}: a grid without draws");
        // the step count that fits a budget is the largest one whose grid costs at most that
        if solver.is_adaptive() {
            assert!(steps_for_nfe(&solver, 10, End::Clean).is_err(), "{name}: no step count fits an adaptive solver");
            continue;
        }
        for budget in [4, 5, 10] {
            let n = steps_for_nfe(&solver, budget, End::Clean).unwrap();
            let cost = |n| nfe_of(&solver, Grid::new(&s, &Spacing::UniformLambda, n, End::Clean).unwrap().as_ref());
            assert!(cost(n) <= budget && cost(n + 1) > budget, "{name}: {n} steps for {budget} NFE");
        }
    }
}

#[test]
fn any_solver_runs_as_its_concrete_solver() {
    let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let gm = GaussianMixture::example(4, 3, 3).unwrap();
    let grid = Grid::new(&s, &Spacing::UniformLambda, 12, End::Clean).unwrap();
    let x = noise(8, 4, 4);
    let run = |solver: &dyn Fn(&mut Model) -> Result<Tensor>| {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        solver(&mut model).unwrap()
    };
    let pairs: Vec<(&str, Tensor)> = vec![
        ("dpmpp_2m", run(&|m| sample(&DpmSolverMultistep::pp(2), m, &grid, &x))),
        ("unipc_bh1_3", run(&|m| sample(&UniPc { variant: BVariant::Bh1, ..UniPc::order(3) }, m, &grid, &x))),
        ("heun", run(&|m| sample(&Heun::default(), m, &grid, &x))),
        ("euler_ancestral", run(&|m| sample(&EulerAncestral::default(), m, &grid, &x))),
    ];
    for (name, want) in pairs {
        let any: AnySolver = name.parse().unwrap();
        let got = run(&|m| sample(&any, m, &grid, &x));
        assert_eq!(max_abs(&got, &want), 0.0, "{name}");
    }
    // a configuration built in code prints as its registry name when it has one, else its label
    assert_eq!(AnySolver::new(DpmSolverMultistep::pp(3)).to_string(), "dpmpp_3m");
    assert_eq!(AnySolver::new(DpmSolverMultistep::diffusers_default()).to_string(), "DPM-Solver++(2M)");
    assert_eq!(AnySolver::new(DpmSolverMultistep::diffusers_default()).registry_name(), None);
    assert_eq!("dpmpp_3m".parse::<AnySolver>().unwrap(), AnySolver::new(DpmSolverMultistep::pp(3)));
    assert_ne!("dpmpp_3m".parse::<AnySolver>().unwrap(), AnySolver::new(DpmSolverMultistep::pp(2)));
    let any: AnySolver = "deis_3".parse().unwrap();
    assert_eq!(any.downcast_ref::<Deis>(), Some(&Deis::order(3)));
    assert!(any.downcast_ref::<UniPc>().is_none());
    match "DPM++ 2M".parse::<AnySolver>() {
        Err(Error::UnknownSolver { name, known }) => {
            assert_eq!(name, "DPM++ 2M");
            assert_eq!(known, solver_names().join(", "));
        }
        other => panic!("expected UnknownSolver, got {other:?}"),
    }
}

#[test]
fn supplied_noise_is_consumed_in_order_and_checked() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let gm = GaussianMixture::example(2, 2, 5).unwrap();
    let grid = Grid::new(&s, &Spacing::UniformLambda, 6, End::Clean).unwrap();
    let x = noise(4, 2, 1);
    let draws: Vec<Tensor> = (0..5).map(|i| noise(4, 2, 10 + i)).collect();
    let run = |noise: &mut dyn NoiseSource| {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        sample_with(&Ddpm::default(), &mut model, &grid, &x, noise, |_| {})
    };
    // the same draws through a list and through a closure give the same sample
    let mut list = TensorNoise::new(draws.clone());
    let a = run(&mut list).unwrap();
    assert_eq!(list.remaining(), 0);
    let mut i = 0;
    let b = run(&mut |_: &Tensor| {
        i += 1;
        Ok(draws[i - 1].clone())
    })
    .unwrap();
    assert_eq!(max_abs(&a, &b), 0.0);
    // too few draws, or draws of the wrong shape: typed errors naming the step
    let err = run(&mut TensorNoise::new(draws[..3].to_vec())).unwrap_err();
    assert!(matches!(err, Error::Step { step: 4, .. }), "{err}");
    assert!(matches!(err.root(), Error::NoiseExhausted { supplied: 3 }), "{err}");
    let err = run(&mut TensorNoise::new(vec![noise(2, 4, 0)])).unwrap_err();
    assert!(matches!(err.root(), Error::NoiseShape { draw: 0, .. }), "{err}");
    // stacked [draws, ...] form
    let stacked = Tensor::stack(&draws, 0).unwrap();
    let c = run(&mut TensorNoise::stacked(&stacked).unwrap()).unwrap();
    assert_eq!(max_abs(&a, &c), 0.0);
    // the default noise of `sample` is seed 0
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let d = sample(&Ddpm::default(), &mut model, &grid, &x).unwrap();
    assert_eq!(max_abs(&d, &run(&mut SeededNoise::new(0)).unwrap()), 0.0);
    assert!(rms(&d, &a) > 1e-3);
}

#[test]
fn explicit_step_lists_and_evaluate_only_steps() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let gm = GaussianMixture::example(2, 2, 5).unwrap();
    let grid = Grid::new(&s, &Spacing::UniformLambda, 5, End::Min).unwrap();
    let x = noise(4, 2, 1);
    let model = || Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let solver = DpmSolverMultistep::pp(2);
    let mut m = model();
    let want = sample(&solver, &mut m, &grid, &x).unwrap();
    // a grid's steps as a plain list run the same
    let list: Vec<Step> = grid.steps().collect();
    let mut m = model();
    assert_eq!(max_abs(&sample(&solver, &mut m, &list, &x).unwrap(), &want), 0.0);
    // a repeated last point as an evaluate-only step: one more evaluation, the same sample
    let last = grid.points()[5];
    let mut with_hold = list.clone();
    with_hold.push(Step { kind: StepKind::EvaluateOnly, ..Step::new(5, 6, last, last) });
    with_hold.iter_mut().for_each(|st| st.count = 6);
    let mut m = model();
    let mut seen = vec![];
    let got = sample_with(&solver, &mut m, &with_hold, &x, &mut SeededNoise::new(0), |p| seen.push(p.nfe)).unwrap();
    assert_eq!(max_abs(&got, &want), 0.0);
    assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
    assert_eq!(nfe_of(&solver, &with_hold), 6);
    // malformed lists are typed errors
    let mut m = model();
    assert!(matches!(sample(&solver, &mut m, &list[1..], &x).unwrap_err().root(), Error::InvalidGrid(_)));
    assert!(matches!(sample(&solver, &mut m, &[] as &[Step], &x).unwrap_err().root(), Error::ZeroSteps));
    let mut back_and_forth = list.clone();
    back_and_forth[2] = Step { from: list[2].to, to: list[2].from, ..list[2] };
    assert!(matches!(sample(&solver, &mut m, &back_and_forth, &x).unwrap_err().root(), Error::InvalidGrid(_)));
}
