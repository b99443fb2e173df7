//! Parity with diffusers 0.42.1 on the Gaussian mixture: DDIMScheduler and
//! DPMSolverMultistepScheduler final samples and the model times they call, from fixtures written
//! by `tools/make_fixtures.py`. diffusers keeps float32 tables and upcasts the sample to float32
//! inside its steps, so agreement is to 1e-5, not to f64 rounding.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::Tensor;
use common::{fixture_prediction as prediction, fixture_schedule as schedule, load_fixture, max_abs, Fixture};
use diffusion_samplers::*;
use serde_json::Value;

/// Runs one case the way the fixture script ran diffusers; returns (sample, model times).
fn run(fx: &Fixture, case: &Value) -> (Tensor, Vec<f64>) {
    let config = &case["config"];
    let steps = case["steps"].as_u64().unwrap() as usize;
    let sched = schedule(config);
    let pred = prediction(case);
    let calls = Rc::new(RefCell::new(Vec::new()));
    let mut inner = fx.gm.denoiser(&sched, pred);
    let log = calls.clone();
    let denoiser = move |x: &Tensor, t: f64| {
        log.borrow_mut().push(t);
        inner(x, t)
    };
    let noise = &fx.tensors["noise"];
    let out = match case["class"].as_str().unwrap() {
        "DDIMScheduler" => {
            let grid =
                Grid::new(&sched, &Spacing::Leading { steps_offset: 0, skip_zero: false }, steps, End::Clean).unwrap();
            let mut model =
                Model::new(denoiser, &sched, pred).with_data_transform(DataTransform::Clip { range: 1.0 }).unwrap();
            sample(&Ddim::default(), &mut model, &grid, noise).unwrap()
        }
        "DPMSolverMultistepScheduler" => {
            let end = match config.get("final_sigmas_type").and_then(Value::as_str) {
                Some("sigma_min") => End::Min,
                _ => End::Clean,
            };
            let grid = Grid::new(&sched, &Spacing::Linspace { round: true, skip_zero: true }, steps, end).unwrap();
            let mut solver = DpmSolverMultistep::diffusers_default();
            solver.policy.order = config["solver_order"].as_u64().unwrap() as usize;
            if config["algorithm_type"] == "dpmsolver" {
                solver.algorithm = Algorithm::DpmSolver;
            }
            if config["solver_type"] == "heun" {
                solver.solver_type = SolverType::Heun;
            }
            let mut model = Model::new(denoiser, &sched, pred);
            sample(&solver, &mut model, &grid, noise).unwrap()
        }
        other => panic!("unexpected class {other}"),
    };
    let times = calls.borrow().clone();
    (out, times)
}

#[test]
fn every_case_matches_diffusers() {
    let fx = load_fixture("diffusers_parity");
    assert_eq!(fx.cases.len(), 28);
    let mut worst: f64 = 0.0;
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let (x, times) = run(&fx, case);
        let expected = &fx.tensors[&format!("{name}.sample")];
        let err = max_abs(&x, expected);
        let expected_times = fx.tensors[&format!("{name}.timesteps")].to_vec1::<f64>().unwrap();
        println!("{name:<40} max |ours - diffusers| = {err:.2e}");
        assert_eq!(times, expected_times, "{name}: model times differ");
        assert!(err <= 1e-5, "{name}: max abs difference {err:e} > 1e-5");
        worst = worst.max(err);
    }
    println!("worst case: {worst:.2e}");
}

/// The same cases with the order forced wrong must fail: the comparison is sensitive.
#[test]
fn comparison_detects_a_wrong_solver() {
    let fx = load_fixture("diffusers_parity");
    let case = fx.cases.iter().find(|c| c["name"] == "dpmpp3m_linear_epsilon_25").unwrap();
    let sched = schedule(&case["config"]);
    let grid = Grid::new(&sched, &Spacing::Linspace { round: true, skip_zero: true }, 25, End::Clean).unwrap();
    let mut model = Model::new(fx.gm.denoiser(&sched, Prediction::Epsilon), &sched, Prediction::Epsilon);
    // the Taylor third-order weight differs from diffusers' reference weight
    let mut solver = DpmSolverMultistep::diffusers_default();
    solver.policy.order = 3;
    solver.third_order = ThirdOrder::Taylor;
    let x = sample(&solver, &mut model, &grid, &fx.tensors["noise"]).unwrap();
    let err = max_abs(&x, &fx.tensors["dpmpp3m_linear_epsilon_25.sample"]);
    println!("Taylor vs diffusers' reference 3M weight: {err:.2e}");
    assert!(err > 1e-4);
}

/// Our exact denoiser equals the fixture script's numpy one.
#[test]
fn gaussian_mixture_denoiser_matches_python() {
    let fx = load_fixture("diffusers_parity");
    let sched = DiscreteVp::linear(0.00085, 0.012, 1000).unwrap();
    let x = &fx.tensors["gm_check.x"];
    let ts = fx.tensors["gm_check.t"].to_vec1::<f64>().unwrap();
    for (pred, key) in [(Prediction::Sample, "x0"), (Prediction::Epsilon, "eps"), (Prediction::VPrediction, "v")] {
        let expected = &fx.tensors[&format!("gm_check.{key}")];
        let mut den = fx.gm.denoiser(&sched, pred);
        for (i, &t) in ts.iter().enumerate() {
            let ours = den(x, t).unwrap();
            let err = max_abs(&ours, &expected.get(i).unwrap());
            assert!(err < 1e-12, "{key} at t = {t}: {err:e}");
        }
    }
}
