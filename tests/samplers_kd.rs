//! The k-diffusion / ComfyUI samplers (`euler`, `euler_ancestral`, `heun`, `heunpp2`, `dpm_2`,
//! `dpm_2_ancestral`, `lms`, `dpmpp_2s_ancestral`, `dpmpp_sde`, `dpmpp_2m`, `dpmpp_2m_sde`,
//! `dpmpp_2m_sde_heun`, `dpmpp_3m_sde`):
//! - elementwise parity with k-diffusion 0.1.1.post1 (`tools/fixtures_kdiffusion.py`, section
//!   `samplers`) with the caller-supplied noise, on EDM (k-diffusion's own coordinates) and on
//!   Stable Diffusion's VP table, checking the noise levels the model is called at and the
//!   intervals each noise draw is asked for;
//! - heunpp2 against a second formulation of ComfyUI's formula (a scalar loop written here);
//! - measured convergence orders of the deterministic ones (and of the SDE ones at `eta = 0`),
//!   `eta = 0` limits equal to the ODE samplers, the data distribution reproduced by the
//!   stochastic ones, strong convergence on one Brownian path;
//! - exact NFE metadata, finite results into `sigma = 0`, typed errors.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use candle_core::{Device, Tensor};
use common::{assert_moments, assert_order, max_abs, measure_order, median, noise, refinement_distances};
use diffusion_samplers::brownian::{BrownianPath, BrownianTime};
use diffusion_samplers::sigmas::SigmaSchedule;
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;

/// Stable Diffusion's table (ComfyUI's "linear").
fn sd() -> DiscreteVp {
    DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap()
}

fn karras() -> Spacing {
    Spacing::Sigmas(SigmaSchedule::Karras { rho: 7.0 })
}

/// A noise source replaying tensors and recording the noise levels of each requested interval.
struct Recorder {
    inner: TensorNoise,
    intervals: Rc<RefCell<Vec<(f64, f64)>>>,
}

impl NoiseSource for Recorder {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        self.inner.noise_like(like)
    }
    fn noise_between(&mut self, like: &Tensor, from: &Point, to: &Point) -> Result<Tensor> {
        self.intervals.borrow_mut().push((from.ksigma(), to.ksigma()));
        self.noise_like(like)
    }
}

/// The crate's solver for a fixture case label: the registered ComfyUI name where the case runs
/// k-diffusion's defaults, else the configuration with the case's arguments.
fn kd_solver(label: &str) -> AnySolver {
    let kd3 = SdeDpmSolverPP::k_diffusion(3);
    match label {
        "lms" => AnySolver::new(Lms::new(4)),
        "lms_comfy" => "lms".parse().unwrap(),
        "euler_churn" => AnySolver::new(Euler { churn: Some(Churn::k_diffusion(1.0)) }),
        "heun_churn" => AnySolver::new(Heun { churn: Some(Churn { s_noise: 1.003, ..Churn::k_diffusion(1.0) }) }),
        "dpm_2_churn" => AnySolver::new(Dpm2 { churn: Some(Churn::k_diffusion(0.5)) }),
        "euler_ancestral_eta" => AnySolver::new(EulerAncestral { eta: 0.5, s_noise: 0.9, ..EulerAncestral::default() }),
        "dpm_2_ancestral_eta" => AnySolver::new(Dpm2Ancestral { eta: 0.6, s_noise: 1.1 }),
        "dpmpp_2s_ancestral_eta" => {
            AnySolver::new(DpmPp2sAncestral { eta: 0.7, s_noise: 0.8, ..DpmPp2sAncestral::default() })
        }
        "dpmpp_sde_eta" => AnySolver::new(DpmPpSde { eta: 0.5, s_noise: 0.9, r: 1.0 / 3.0 }),
        "dpmpp_2m_sde_eta" => {
            AnySolver::new(SdeDpmSolverPP { eta: 0.5, s_noise: 0.9, ..SdeDpmSolverPP::k_diffusion(2) })
        }
        "dpmpp_3m_sde_eta" => AnySolver::new(SdeDpmSolverPP { eta: 0.5, s_noise: 0.9, ..kd3 }),
        name => name.parse().unwrap(),
    }
}

/// What a run of a fixture case gives: the final sample in k-diffusion's coordinates
/// (`x / alpha`), the noise levels the model was called at, the noise levels of each draw's
/// interval, the draws left over.
struct Run {
    out: Vec<f64>,
    calls: Vec<f64>,
    intervals: Vec<(f64, f64)>,
    left: usize,
}

fn run_case(
    fx: &HashMap<String, Tensor>,
    case: &str,
    gm: &GaussianMixture,
    sched: &dyn Scheduler,
    pred: Prediction,
) -> Run {
    let label = case.split('.').next().unwrap();
    let sigmas = fx[&format!("{case}.sigmas")].to_vec1::<f64>().unwrap();
    let grid = Grid::from_sigmas(sched, &sigmas).unwrap();
    let points = grid.points();
    // k-diffusion's start, noise * sigma_0, is the scaled sample x / alpha at the first point
    let x = (&fx["noise"] * (sigmas[0] * points[0].alpha)).unwrap();
    let draws = match fx.get(&format!("{case}.noise")) {
        Some(t) => TensorNoise::stacked(t).unwrap(),
        None => TensorNoise::new([]),
    };
    let intervals = Rc::new(RefCell::new(vec![]));
    let mut source = Recorder { inner: draws, intervals: intervals.clone() };
    let calls = Rc::new(RefCell::new(vec![]));
    let mut inner = gm.denoiser(sched, pred);
    let seen = calls.clone();
    let denoiser = move |x: &Tensor, t: f64| {
        seen.borrow_mut().push(sched.point(sched.t_of_model_time(t)).ksigma());
        inner(x, t)
    };
    let mut model = Model::new(denoiser, sched, pred);
    let solver = kd_solver(label);
    let out = sample_with(&solver, &mut model, &grid, &x, &mut source, |_| {}).unwrap();
    assert_eq!(model.nfe(), nfe_of(&solver, grid.as_ref()), "{case}: NFE metadata");
    let alpha_end = points[points.len() - 1].alpha;
    let out = (out / alpha_end).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let calls = calls.borrow().clone();
    let intervals = intervals.borrow().clone();
    Run { out, calls, intervals, left: source.inner.remaining() }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn parity_with_k_diffusion() {
    let path = common::fixture("kdiffusion_samplers.safetensors");
    let fx = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let gm = GaussianMixture::new(
        fx["means"].to_vec2::<f64>().unwrap(),
        fx["stds"].to_vec1::<f64>().unwrap(),
        fx["weights"].to_vec1::<f64>().unwrap(),
    )
    .unwrap();
    let mut cases: Vec<&str> = fx.keys().filter_map(|k| k.strip_suffix(".out")).collect();
    cases.sort();
    assert_eq!(cases.len(), 57, "{cases:?}");
    let edm = Edm::default();
    let sd = sd();
    let mut worst: f64 = 0.0;
    for case in &cases {
        let want = fx[&format!("{case}.out")].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let calls = fx[&format!("{case}.calls")].to_vec1::<f64>().unwrap();
        let intervals = match fx.get(&format!("{case}.intervals")) {
            Some(t) => t.to_vec2::<f64>().unwrap(),
            None => vec![],
        };
        // k-diffusion's own coordinates (alpha = 1, the network called at sigma), and Stable
        // Diffusion's VP table with an epsilon model
        for (sched, pred, tol_calls) in
            [(&edm as &dyn Scheduler, Prediction::Sample, 1e-10), (&sd as &dyn Scheduler, Prediction::Epsilon, 1e-9)]
        {
            let run = run_case(&fx, case, &gm, sched, pred);
            let err = run.out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            worst = worst.max(err);
            assert!(err <= 1e-5, "{case} on {sched:?}: max |ours - k-diffusion| = {err:e}");
            assert_eq!(run.calls.len(), calls.len(), "{case}: model calls {:?} vs {calls:?}", run.calls);
            for (a, b) in run.calls.iter().zip(&calls) {
                assert!(rel(*a, *b) < tol_calls, "{case}: called at sigma {a} where k-diffusion calls {b}");
            }
            assert_eq!(run.left, 0, "{case}: {} supplied draws not used", run.left);
            assert_eq!(run.intervals.len(), intervals.len(), "{case}: draws");
            for (got, want) in run.intervals.iter().zip(&intervals) {
                if want[0] < 0.0 {
                    // k-diffusion's churn draws come from torch.randn_like, without an interval;
                    // here they are asked for the raise from sigma to sigma_hat
                    assert!(got.1 > got.0, "{case}: churn interval {got:?}");
                    continue;
                }
                assert!(
                    rel(got.0, want[0]) < tol_calls && rel(got.1, want[1]) < tol_calls,
                    "{case}: {got:?} vs {want:?}"
                );
            }
        }
    }
    println!("{} cases, worst max |ours - k-diffusion| = {worst:e}", cases.len());
}

/// ComfyUI's `sample_heunpp2`, transcribed as a scalar loop over rows of `x` (k-diffusion's
/// coordinates), with churn draws `z` (one per step with `gamma > 0`, as ComfyUI draws).
fn heunpp2_reference(gm: &GaussianMixture, sigmas: &[f64], x: &[f64], s_churn: f64, z: &[Vec<f64>]) -> Vec<f64> {
    let slope = |x: &[f64], s: f64| -> Vec<f64> {
        let den = gm.posterior(x, 1.0, s).0;
        x.iter().zip(&den).map(|(x, d)| (x - d) / s).collect()
    };
    let axpy = |x: &[f64], d: &[f64], c: f64| -> Vec<f64> { x.iter().zip(d).map(|(x, d)| x + c * d).collect() };
    let n = sigmas.len() - 1;
    let s_end = sigmas[n];
    let mut x = x.to_vec();
    let mut draws = z.iter();
    for i in 0..n {
        let gamma = if s_churn > 0.0 { (s_churn / n as f64).min(2f64.sqrt() - 1.0) } else { 0.0 };
        let s_hat = sigmas[i] * (gamma + 1.0);
        if gamma > 0.0 {
            let z = draws.next().unwrap();
            x = axpy(&x, z, (s_hat * s_hat - sigmas[i] * sigmas[i]).sqrt());
        }
        let d = slope(&x, s_hat);
        let dt = sigmas[i + 1] - s_hat;
        if sigmas[i + 1] == s_end {
            x = axpy(&x, &d, dt);
        } else if sigmas[i + 2] == s_end {
            let x2 = axpy(&x, &d, dt);
            let d2 = slope(&x2, sigmas[i + 1]);
            let w2 = sigmas[i + 1] / (2.0 * sigmas[0]);
            let dp: Vec<f64> = d.iter().zip(&d2).map(|(a, b)| (1.0 - w2) * a + w2 * b).collect();
            x = axpy(&x, &dp, dt);
        } else {
            let x2 = axpy(&x, &d, dt);
            let d2 = slope(&x2, sigmas[i + 1]);
            let x3 = axpy(&x2, &d2, sigmas[i + 2] - sigmas[i + 1]);
            let d3 = slope(&x3, sigmas[i + 2]);
            let (w2, w3) = (sigmas[i + 1] / (3.0 * sigmas[0]), sigmas[i + 2] / (3.0 * sigmas[0]));
            let dp: Vec<f64> = (0..x.len()).map(|k| (1.0 - w2 - w3) * d[k] + w2 * d2[k] + w3 * d3[k]).collect();
            x = axpy(&x, &dp, dt);
        }
    }
    x
}

#[test]
fn heunpp2_matches_a_second_formulation_of_comfyuis_formula() {
    let gm = GaussianMixture::example(3, 3, 9).unwrap();
    let x_unit = noise(5, 3, 17);
    let (edm, sd) = (Edm::default(), sd());
    for (label, end) in [("to 0", End::Clean), ("to sigma_min", End::Min)] {
        for steps in [1, 2, 3, 4, 9] {
            let karras = |n| SigmaSchedule::Karras { rho: 7.0 }.sigmas(&sd, n, end).unwrap();
            for s_churn in [0.0, 1.5] {
                // with churn, start one Karras level lower so that sigma_hat stays inside the table
                let sigmas: Vec<f64> = if s_churn > 0.0 { karras(steps + 1)[1..].to_vec() } else { karras(steps) };
                let draws: Vec<Tensor> = (0..steps).map(|k| noise(5, 3, 100 + k as u64)).collect();
                let z: Vec<Vec<f64>> = draws.iter().map(|t| t.flatten_all().unwrap().to_vec1().unwrap()).collect();
                let z = if s_churn > 0.0 { z } else { vec![] };
                let x_ve = (&x_unit * sigmas[0]).unwrap();
                let want =
                    heunpp2_reference(&gm, &sigmas, &x_ve.flatten_all().unwrap().to_vec1().unwrap(), s_churn, &z);
                let solver = HeunPp2 { churn: (s_churn > 0.0).then(|| Churn::k_diffusion(s_churn)) };
                for (sched, pred, tol) in [
                    (&edm as &dyn Scheduler, Prediction::Sample, 1e-11),
                    (&sd as &dyn Scheduler, Prediction::Epsilon, 1e-8),
                ] {
                    let grid = Grid::from_sigmas(sched, &sigmas).unwrap();
                    let pts = grid.points();
                    let mut model = Model::new(gm.denoiser(sched, pred), sched, pred);
                    let mut source = TensorNoise::new(if s_churn > 0.0 { draws.clone() } else { vec![] });
                    let x = (&x_ve * pts[0].alpha).unwrap();
                    let out = sample_with(&solver, &mut model, &grid, &x, &mut source, |_| {}).unwrap();
                    let got = (out / pts[steps].alpha).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                    assert!(err < tol, "heunpp2 {label}, {steps} steps, churn {s_churn}, {sched:?}: {err:e}");
                    let nfe = match steps {
                        1 => 1,
                        n => 3 * (n - 2) + 3,
                    };
                    assert_eq!((model.nfe(), nfe_of(&solver, grid.as_ref())), (nfe, nfe), "{steps} steps");
                    assert_eq!(source.remaining(), 0);
                }
            }
        }
    }
}

#[test]
fn heunpp2_refuses_steps_that_do_not_look_ahead() {
    let s = sd();
    let grid = Grid::new(&s, &karras(), 5, End::Clean).unwrap();
    // the same steps made one by one do not know their successors
    let alone: Vec<Step> = grid.steps().map(|st| Step::new(st.index, st.count, st.from, st.to)).collect();
    let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
    let x = noise(2, 3, 1);
    let err = sample(&HeunPp2::default(), &mut model, &alone, &x).unwrap_err();
    assert!(matches!(err.root(), Error::InvalidGrid(m) if m.contains("Step::chain")), "{err}");
    assert_eq!(model.nfe(), 0);
    // the chained steps of the same points run
    assert!(sample(&HeunPp2::default(), &mut model, &grid, &x).is_ok());
}

#[test]
fn registered_names_are_the_k_diffusion_samplers() {
    let name = |n: &str| n.parse::<AnySolver>().unwrap();
    assert_eq!(name("euler"), AnySolver::new(Euler));
    assert_eq!(
        name("euler_ancestral"),
        AnySolver::new(EulerAncestral { eta: 1.0, s_noise: 1.0, ..EulerAncestral::default() })
    );
    assert_eq!(name("heun"), AnySolver::new(Heun { churn: None }));
    assert_eq!(name("heunpp2"), AnySolver::new(HeunPp2 { churn: None }));
    assert_eq!(name("dpm_2"), AnySolver::new(Dpm2 { churn: None }));
    assert_eq!(name("dpm_2_ancestral"), AnySolver::new(Dpm2Ancestral { eta: 1.0, s_noise: 1.0 }));
    assert_eq!(name("lms"), AnySolver::new(Lms { order: 4, final_step: LmsFinal::Denoise }));
    assert_eq!(
        name("dpmpp_2s_ancestral"),
        AnySolver::new(DpmPp2sAncestral { eta: 1.0, s_noise: 1.0, ..DpmPp2sAncestral::default() })
    );
    assert_eq!(name("dpmpp_sde"), AnySolver::new(DpmPpSde { eta: 1.0, s_noise: 1.0, r: 0.5 }));
    assert_eq!(name("dpmpp_2m"), AnySolver::new(DpmSolverMultistep::pp(2)));
    let kd2 = SdeDpmSolverPP {
        policy: OrderPolicy::fixed(2),
        solver_type: SolverType::Midpoint,
        third_order: ThirdOrder::KDiffusion,
        eta: 1.0,
        s_noise: 1.0,
        clean_step: CleanStepDraw::Skip,
    };
    assert_eq!(name("dpmpp_2m_sde"), AnySolver::new(kd2));
    assert_eq!(name("dpmpp_2m_sde_heun"), AnySolver::new(SdeDpmSolverPP { solver_type: SolverType::Heun, ..kd2 }));
    let kd3 = SdeDpmSolverPP { policy: OrderPolicy::fixed(3), solver_type: SolverType::Heun, ..kd2 };
    assert_eq!(name("dpmpp_3m_sde"), AnySolver::new(kd3));
    // metadata
    for (n, order, stochastic) in [
        ("euler", 1, false),
        ("heun", 2, false),
        ("heunpp2", 1, false),
        ("dpm_2", 2, false),
        ("lms", 4, false),
        ("dpmpp_2m", 2, false),
        ("euler_ancestral", 1, true),
        ("dpm_2_ancestral", 1, true),
        ("dpmpp_2s_ancestral", 1, true),
        ("dpmpp_sde", 1, true),
        ("dpmpp_2m_sde", 1, true),
        ("dpmpp_2m_sde_heun", 1, true),
        ("dpmpp_3m_sde", 1, true),
    ] {
        assert_eq!((name(n).order(), name(n).is_stochastic()), (order, stochastic), "{n}");
    }
}

#[test]
fn deterministic_samplers_converge_at_their_order() {
    // uniform-lambda grids ending at t_min on two VP schedules, 20..160 steps (tests/common)
    assert_order(&Euler, "Euler", Prediction::Epsilon, Some(1), 0.9, Some(0.9));
    assert_order(&Heun::default(), "Heun", Prediction::Epsilon, Some(2), 1.9, Some(1.9));
    assert_order(&Dpm2::default(), "DPM-2", Prediction::Epsilon, Some(2), 1.9, Some(1.9));
    assert_order(&DpmSolverMultistep::pp(2), "DPM-Solver++(2M)", Prediction::Epsilon, Some(1), 1.9, Some(1.9));
    // the stochastic ones with eta = 0
    let ode_2s = DpmPp2sAncestral { eta: 0.0, ..Default::default() };
    assert_order(&ode_2s, "DPM++(2S) a, eta = 0", Prediction::Epsilon, Some(2), 1.9, Some(1.9));
    let ode_sde = DpmPpSde { eta: 0.0, ..Default::default() };
    assert_order(&ode_sde, "DPM++ SDE, eta = 0", Prediction::Epsilon, Some(2), 1.9, Some(1.9));
    let ode_sde3 = DpmPpSde { eta: 0.0, r: 1.0 / 3.0, ..Default::default() };
    assert_order(&ode_sde3, "DPM++ SDE r=1/3, eta = 0", Prediction::Epsilon, Some(2), 1.9, Some(1.9));
    let ode_2a = Dpm2Ancestral { eta: 0.0, ..Default::default() };
    assert_order(&ode_2a, "DPM-2 a, eta = 0", Prediction::Epsilon, Some(2), 1.9, Some(1.9));
    for (label, solver) in [
        ("DPM++(2M) SDE, eta = 0", SdeDpmSolverPP::k_diffusion(2)),
        (
            "DPM++(2M) SDE heun, eta = 0",
            SdeDpmSolverPP { solver_type: SolverType::Heun, ..SdeDpmSolverPP::k_diffusion(2) },
        ),
        ("DPM++(3M) SDE, eta = 0", SdeDpmSolverPP::k_diffusion(3)),
    ] {
        let solver = SdeDpmSolverPP { eta: 0.0, ..solver };
        assert_eq!(solver.order(), 2);
        assert_order(&solver, label, Prediction::Epsilon, Some(1), 1.9, Some(1.9));
    }
    // heunpp2: its weights s_{i+1} / (3 s_0) are the trapezoidal rule's only near the start
    // (module docs), so it converges at first order, faster in error than Euler
    let pp2 = measure_order(&HeunPp2::default(), "heunpp2", Prediction::Epsilon, None);
    let euler = measure_order(&Euler, "Euler", Prediction::Epsilon, None);
    for (o, e) in pp2.iter().zip(&euler) {
        assert!(o.fitted > 0.9 && o.fitted < 1.5, "{}: heunpp2 slope {}", o.schedule, o.fitted);
        assert!(o.errors[3] < e.errors[3], "{}: heunpp2 {:?} vs Euler {:?}", o.schedule, o.errors, e.errors);
    }
}

#[test]
fn eta_zero_is_the_ode_sampler() {
    let s = sd();
    let gm = GaussianMixture::example(4, 3, 2).unwrap();
    let x = noise(6, 4, 3);
    let run = |solver: &dyn Fn(&mut Model, &Grid) -> Result<Tensor>, grid: &Grid| {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        // no noise may be drawn: an empty source fails on the first draw
        solver(&mut model, grid).unwrap()
    };
    for end in [End::Clean, End::Min] {
        for steps in [1, 2, 3, 8] {
            let grid = Grid::new(&s, &karras(), steps, end).unwrap();
            let none = || TensorNoise::new([]);
            let go = |solver: &AnySolver| run(&|m, g| sample_with(solver, m, g, &x, &mut none(), |_| {}), &grid);
            let pairs: Vec<(&str, AnySolver, AnySolver)> = vec![
                (
                    "euler_ancestral",
                    AnySolver::new(EulerAncestral { eta: 0.0, s_noise: 1.0, ..EulerAncestral::default() }),
                    AnySolver::new(Euler),
                ),
                (
                    "dpm_2_ancestral",
                    AnySolver::new(Dpm2Ancestral { eta: 0.0, s_noise: 1.0 }),
                    AnySolver::new(Dpm2::default()),
                ),
                (
                    "dpmpp_sde (r = 1/2) vs dpmpp_2s_ancestral",
                    AnySolver::new(DpmPpSde { eta: 0.0, ..Default::default() }),
                    AnySolver::new(DpmPp2sAncestral { eta: 0.0, s_noise: 1.0, ..DpmPp2sAncestral::default() }),
                ),
                (
                    "dpmpp_2m_sde",
                    AnySolver::new(SdeDpmSolverPP { eta: 0.0, ..SdeDpmSolverPP::k_diffusion(2) }),
                    AnySolver::new(DpmSolverMultistep::pp(2)),
                ),
                (
                    "dpmpp_2m_sde_heun",
                    AnySolver::new(SdeDpmSolverPP {
                        eta: 0.0,
                        solver_type: SolverType::Heun,
                        ..SdeDpmSolverPP::k_diffusion(2)
                    }),
                    AnySolver::new(DpmSolverMultistep { solver_type: SolverType::Heun, ..DpmSolverMultistep::pp(2) }),
                ),
                (
                    "dpmpp_3m_sde",
                    AnySolver::new(SdeDpmSolverPP { eta: 0.0, ..SdeDpmSolverPP::k_diffusion(3) }),
                    AnySolver::new(DpmSolverMultistep {
                        solver_type: SolverType::Heun,
                        third_order: ThirdOrder::Reference,
                        ..DpmSolverMultistep::pp(3)
                    }),
                ),
            ];
            for (name, sde, ode) in pairs {
                assert!(!sde.is_stochastic(), "{name}");
                let d = max_abs(&go(&sde), &go(&ode));
                assert!(d < 1e-12, "{name}, {steps} steps to {end:?}: eta = 0 vs the ODE sampler {d:e}");
            }
        }
    }
}

#[test]
fn stochastic_samplers_reproduce_the_data_distribution() {
    // 2000 paths from the exact marginal at the first point, 100 Karras steps on Stable
    // Diffusion's table: the mean and variance per dimension within 4 standard errors
    let means = vec![vec![-0.6, 0.2, 0.5], vec![0.5, -0.4, 0.0], vec![0.1, 0.6, -0.5]];
    let (stds, weights) = (vec![0.15, 0.25, 0.2], vec![0.5, 0.3, 0.2]);
    let gm = GaussianMixture::new(means.clone(), stds.clone(), weights.clone()).unwrap();
    let s = sd();
    let grid = Grid::new(&s, &karras(), 100, End::Clean).unwrap();
    let start = grid.points()[0];
    let n = 2000;
    let x0 = Tensor::from_vec(gm.sample_data(n, 5), (n, 3), &Device::Cpu).unwrap();
    let x = add_noise(&x0, &noise(n, 3, 6), &start).unwrap();
    let solvers: Vec<(&str, AnySolver)> = vec![
        ("dpm_2_ancestral", "dpm_2_ancestral".parse().unwrap()),
        ("dpmpp_2s_ancestral", "dpmpp_2s_ancestral".parse().unwrap()),
        ("dpmpp_sde", "dpmpp_sde".parse().unwrap()),
        ("dpmpp_2m_sde", "dpmpp_2m_sde".parse().unwrap()),
        ("dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun".parse().unwrap()),
        ("dpmpp_3m_sde", "dpmpp_3m_sde".parse().unwrap()),
        // churn around a second-order step (around Euler or heunpp2, first order, the variance
        // is 3-4 standard errors low at 100 steps: discretization error, not noise)
        ("dpm_2 churn", AnySolver::new(Dpm2 { churn: Some(Churn::k_diffusion(40.0)) })),
        ("heun churn", AnySolver::new(Heun { churn: Some(Churn::k_diffusion(40.0)) })),
    ];
    for (seed, (name, solver)) in solvers.iter().enumerate() {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        let out = sample_with(solver, &mut model, &grid, &x, &mut SeededNoise::new(40 + seed as u64), |_| {}).unwrap();
        assert_moments(name, &out, &means, &stds, &weights, 4.0);
    }
}

#[test]
fn sde_samplers_converge_on_one_brownian_path() {
    // On one Brownian path the results at 25, 50, 100, 200 steps approach one pathwise solution
    // (strong convergence); with iid noise per step they are independent random samples. The
    // median over 64 samples is used: a sample near the boundary between two mixture components
    // may switch component between two step counts on any path.
    let brownian =
        || -> Box<dyn NoiseSource> { Box::new(BrownianPath::for_schedule(21, &sd(), BrownianTime::KSigma).unwrap()) };
    let iid = || -> Box<dyn NoiseSource> { Box::new(SeededNoise::new(21)) };
    for name in
        ["dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde"]
    {
        let solver: AnySolver = name.parse().unwrap();
        let path: Vec<f64> = refinement_distances(&solver, brownian).iter().map(|d| median(d)).collect();
        let fresh: Vec<f64> = refinement_distances(&solver, iid).iter().map(|d| median(d)).collect();
        println!(
            "{name}: median distance 25/50, 50/100, 100/200 steps: Brownian path {path:.4?}, iid noise {fresh:.4?}"
        );
        // three doublings: a factor 3 is a strong order above 1/2 (measured 3.6 to 5)
        assert!(path[2] < path[0] / 3.0, "{name}: refining does not converge on one path: {path:?}");
        assert!(path[2] < fresh[2] / 10.0, "{name}: Brownian {path:?} vs iid {fresh:?}");
    }
}

/// Every k-diffusion sampler configuration these tests touch, registered or not.
fn variants() -> Vec<AnySolver> {
    let mut v: Vec<AnySolver> = [
        "euler",
        "euler_ancestral",
        "heun",
        "heunpp2",
        "dpm_2",
        "dpm_2_ancestral",
        "lms",
        "dpmpp_2s_ancestral",
        "dpmpp_sde",
        "dpmpp_2m",
        "dpmpp_2m_sde",
        "dpmpp_2m_sde_heun",
        "dpmpp_3m_sde",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .collect();
    for label in [
        "euler_churn",
        "heun_churn",
        "dpm_2_churn",
        "euler_ancestral_eta",
        "dpm_2_ancestral_eta",
        "dpmpp_2s_ancestral_eta",
        "dpmpp_sde_eta",
        "dpmpp_2m_sde_eta",
        "dpmpp_3m_sde_eta",
    ] {
        v.push(kd_solver(label));
    }
    v.push(AnySolver::new(HeunPp2 { churn: Some(Churn::k_diffusion(2.0)) }));
    v.push(AnySolver::new(Dpm2Ancestral { eta: 3.0, s_noise: 1.0 })); // the whole step is noise
    v.push(AnySolver::new(DpmPp2sAncestral { eta: 3.0, s_noise: 1.0, ..DpmPp2sAncestral::default() }));
    v
}

#[test]
fn finite_into_sigma_zero_with_exact_nfe_metadata() {
    let s = sd();
    let gm = GaussianMixture::example(4, 3, 8).unwrap();
    let x = noise(4, 4, 9);
    for solver in variants() {
        for spacing in [karras(), Spacing::UniformLambda] {
            for steps in [1, 2, 3, 7] {
                for end in [End::Clean, End::Min] {
                    let grid = Grid::new(&s, &spacing, steps, end).unwrap();
                    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
                    let out = sample_with(&solver, &mut model, &grid, &x, &mut SeededNoise::new(1), |_| {}).unwrap();
                    let v = out.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                    assert!(v.iter().all(|v| v.is_finite()), "{solver}: {steps} steps to {end:?}");
                    assert_eq!(model.nfe(), nfe_of(&solver, grid.as_ref()), "{solver}: {steps} steps to {end:?}");
                }
            }
        }
    }
}

#[test]
fn lms_takes_comfyuis_last_step() {
    // ComfyUI's lms equals k-diffusion's except on the step into sigma = 0, which returns the data
    // prediction at the last noise level
    let s = sd();
    let gm = GaussianMixture::example(4, 3, 8).unwrap();
    let x = noise(4, 4, 9);
    let grid = Grid::new(&s, &karras(), 6, End::Clean).unwrap();
    let mut trace = vec![];
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let comfy =
        sample_with(&Lms::comfyui(), &mut model, &grid, &x, &mut SeededNoise::new(0), |p| trace.push(p.x.clone()))
            .unwrap();
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let kd = sample(&Lms::new(4), &mut model, &grid, &x).unwrap();
    let last = grid.points()[5];
    let d = Tensor::from_vec(
        gm.posterior(&trace[4].flatten_all().unwrap().to_vec1::<f64>().unwrap(), last.alpha, last.sigma).0,
        (4, 4),
        &Device::Cpu,
    )
    .unwrap();
    assert!(max_abs(&comfy, &d) < 1e-12);
    assert!(max_abs(&comfy, &kd) > 1e-4, "the two last steps differ");
}

#[test]
fn invalid_settings_are_typed_errors() {
    let s = sd();
    let grid = Grid::new(&s, &karras(), 4, End::Clean).unwrap();
    let x = noise(2, 3, 1);
    let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
    let bad: Vec<AnySolver> = vec![
        AnySolver::new(Dpm2Ancestral { eta: -1.0, s_noise: 1.0 }),
        AnySolver::new(DpmPp2sAncestral { eta: 1.0, s_noise: f64::NAN, ..DpmPp2sAncestral::default() }),
        AnySolver::new(DpmPpSde { r: 0.0, ..Default::default() }),
        AnySolver::new(DpmPpSde { eta: f64::INFINITY, ..Default::default() }),
        AnySolver::new(SdeDpmSolverPP { eta: -0.5, ..SdeDpmSolverPP::k_diffusion(2) }),
        AnySolver::new(Euler { churn: Some(Churn { s_tmin: 2.0, s_tmax: 1.0, ..Churn::k_diffusion(1.0) }) }),
        AnySolver::new(Dpm2 { churn: Some(Churn::k_diffusion(-1.0)) }),
        AnySolver::new(HeunPp2 { churn: Some(Churn { s_noise: -1.0, ..Churn::k_diffusion(1.0) }) }),
    ];
    for solver in bad {
        let err = sample(&solver, &mut model, &grid, &x).unwrap_err();
        assert!(matches!(err.root(), Error::InvalidConfig(_)), "{solver:?}: {err}");
    }
    assert_eq!(model.nfe(), 0);
    // a start at alpha = 0 (zero terminal SNR) is refused by the methods that need a finite noise
    // level there, with a message naming a way out
    let zsnr = sd().rescale_zero_terminal_snr().unwrap();
    let grid = Grid::new(&zsnr, &Spacing::Trailing, 5, End::Clean).unwrap();
    assert_eq!(grid.points()[0].alpha, 0.0);
    let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &zsnr, Prediction::VPrediction);
    for name in ["heunpp2", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde"] {
        let err = sample(&name.parse::<AnySolver>().unwrap(), &mut model, &grid, &x).unwrap_err();
        assert!(matches!(err.root(), Error::Unsupported(m) if m.contains("alpha = 0")), "{name}: {err}");
    }
    // the multistep SDE solvers and the ancestral Euler start there
    for name in ["euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde"] {
        let out = sample(&name.parse::<AnySolver>().unwrap(), &mut model, &grid, &x).unwrap();
        assert!(out.flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().all(|v| v.is_finite()), "{name}");
    }
}
