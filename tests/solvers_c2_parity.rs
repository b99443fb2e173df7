//! Parity with diffusers 0.42.1 for LMSDiscreteScheduler, PNDMScheduler (skip_prk_steps both
//! ways), IPNDMScheduler, EulerAncestralDiscreteScheduler and DDPMScheduler on the Gaussian
//! mixture, from fixtures written by `tools/fixtures_solvers_c2.py` (diffusers' own noise draws
//! recorded and replayed through a `NoiseSource`).
//!
//! Each case is built by hand the diffusers way: the scheduler's coefficients come from
//! diffusers' float32 `alphas_cumprod` table, the network (the exact Gaussian-mixture denoiser)
//! maps its time argument through an f64 table, as the fixture's model does. The Euler-type
//! schedulers (LMS, Euler-ancestral) work on `x_ve = x / alpha` with float32 sigmas interpolated
//! linearly in sigma at fractional timesteps; the grid points here carry diffusers' timestep as
//! `t` (what the network is told) and diffusers' sigma as `alpha`, `sigma`.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use candle_core::Tensor;
use common::{load_fixture, max_abs, Fixture};
use diffusion_samplers::*;
use serde_json::Value;

const TOL: f64 = 1e-5;

fn vec1(fx: &Fixture, key: &str) -> Vec<f64> {
    fx.tensors[key].flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Euler-type grids (LMS, Euler-ancestral) with `timestep_spacing = "linspace"`: timesteps
/// `linspace(0, 999, n)` in float32, sigmas `np.interp` of the float32 sigma table (linear in
/// sigma) cast to float32, then 0.
fn euler_points(alphas_cumprod32: &[f64], n: usize) -> (Vec<Point>, Vec<f64>) {
    let table: Vec<f64> = alphas_cumprod32
        .iter()
        .map(|&a| {
            let a = a as f32;
            ((1.0f32 - a) / a).sqrt() as f64
        })
        .collect();
    let mut points = vec![];
    let mut sigmas = vec![];
    for i in (0..n).rev() {
        let t = (999.0 * i as f64 / (n - 1).max(1) as f64) as f32 as f64;
        let (lo, w) = (t.floor() as usize, t - t.floor());
        let ks = if lo + 1 < table.len() { (1.0 - w) * table[lo] + w * table[lo + 1] } else { table[lo] };
        let ks = ks as f32 as f64;
        let alpha = 1.0 / (1.0 + ks * ks).sqrt();
        points.push(Point::new(t, alpha, ks * alpha));
        sigmas.push(ks);
    }
    points.push(Point::clean(-1.0));
    sigmas.push(0.0);
    (points, sigmas)
}

/// Result of one case: final sample, model times called, noise draws used.
struct Run {
    sample: Tensor,
    times: Vec<f64>,
    draws: usize,
}

fn run(fx: &Fixture, case: &Value) -> Run {
    let name = case["name"].as_str().unwrap();
    let config = &case["config"];
    let steps = case["steps"].as_u64().unwrap() as usize;
    let class = case["class"].as_str().unwrap();
    let noise = &fx.tensors["noise"];
    let calls = Rc::new(RefCell::new(Vec::new()));
    let log = calls.clone();
    // the recorded diffusers noise, replayed in order
    let draws: Vec<Tensor> = match fx.tensors.get(&format!("{name}.noise_draws")) {
        Some(t) => (0..t.dim(0).unwrap()).map(|i| t.get(i).unwrap()).collect(),
        None => vec![],
    };
    let used = Rc::new(RefCell::new(0usize));
    let counter = used.clone();
    let mut replay = move |_like: &Tensor| {
        let i = *counter.borrow();
        *counter.borrow_mut() += 1;
        draws.get(i).cloned().ok_or_else(|| candle_core::Error::Msg(format!("diffusers drew only {} noise tensors", i)))
    };
    if class == "IPNDMScheduler" {
        let s = CosineVp::default();
        let mut inner = fx.gm.denoiser(&s, Prediction::VPrediction);
        let denoiser = move |x: &Tensor, t: f64| {
            log.borrow_mut().push(t);
            inner(x, t)
        };
        let points = Ipndm::diffusers_points(steps).unwrap();
        let sig: Vec<f64> = points.iter().map(|p| p.sigma).collect();
        let theirs = vec1(fx, &format!("{name}.sigmas"));
        assert!(sig.iter().zip(&theirs).all(|(a, b)| (a - b).abs() < 1e-6), "{name}: sigmas {sig:?} vs {theirs:?}");
        let grid = Grid::from_points(points).unwrap();
        let mut model = Model::new(denoiser, &s, Prediction::VPrediction);
        let out = sample(&Ipndm::diffusers_default(), &mut model, &grid, noise).unwrap();
        let times = calls.borrow().clone();
        return Run { sample: out, times, draws: 0 };
    }
    let (start, end) = (config["beta_start"].as_f64().unwrap(), config["beta_end"].as_f64().unwrap());
    let beta_schedule = config["beta_schedule"].as_str().unwrap();
    let sched64 = match beta_schedule {
        "linear" => DiscreteVp::linear(start, end, 1000).unwrap(),
        _ => DiscreteVp::scaled_linear(start, end, 1000).unwrap(),
    };
    let ac32 = vec1(fx, &format!("alphas_cumprod.{beta_schedule}"));
    let sched32 = DiscreteVp::new(BetaSchedule::AlphasCumprod(ac32.clone()), 1000).unwrap();
    let pred = match config["prediction_type"].as_str().unwrap() {
        "epsilon" => Prediction::Epsilon,
        _ => Prediction::VPrediction,
    };
    let mut inner = fx.gm.denoiser(&sched64, pred);
    let denoiser = move |x: &Tensor, t: f64| {
        log.borrow_mut().push(t);
        inner(x, t)
    };
    let mut model = Model::new(denoiser, &sched32, pred);
    let get_bool = |k: &str, default: bool| config.get(k).and_then(Value::as_bool).unwrap_or(default);
    let offset = config.get("steps_offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let out = match class {
        "LMSDiscreteScheduler" | "EulerAncestralDiscreteScheduler" => {
            let (points, sigmas) = euler_points(&ac32, steps);
            let theirs = vec1(fx, &format!("{name}.sigmas"));
            let worst = sigmas.iter().zip(&theirs).map(|(a, b)| (a - b).abs() / b.max(1e-3)).fold(0.0, f64::max);
            assert!(worst < 1e-6, "{name}: sigmas {sigmas:?} vs diffusers {theirs:?}");
            let grid = Grid::from_points(points).unwrap();
            // diffusers starts from x_ve = noise * init_noise_sigma (= the first sigma); in VP
            // terms x = alpha_0 x_ve = sigma_0 noise
            let x = noise.affine(grid.points()[0].sigma, 0.0).unwrap();
            if class == "LMSDiscreteScheduler" {
                sample(&Lms::diffusers_default(), &mut model, &grid, &x).unwrap()
            } else {
                let solver = EulerAncestral::diffusers_default();
                sample_with(&solver, &mut model, &grid, &x, &mut replay, |_| {}).unwrap()
            }
        }
        "PNDMScheduler" => {
            let grid = Pndm::diffusers_grid(&sched32, steps, offset, get_bool("set_alpha_to_one", false)).unwrap();
            sample(&Pndm::diffusers(get_bool("skip_prk_steps", false), 1000, steps), &mut model, &grid, noise).unwrap()
        }
        "DDPMScheduler" => {
            if get_bool("clip_sample", true) {
                model = model.with_data_transform(DataTransform::Clip { range: 1.0 }).unwrap();
            }
            let grid =
                Grid::new(&sched32, &Spacing::Leading { steps_offset: offset, skip_zero: false }, steps, End::Clean)
                    .unwrap();
            let variance = match config.get("variance_type").and_then(Value::as_str).unwrap_or("fixed_small") {
                "fixed_small" => DdpmVariance::FixedSmall,
                "fixed_small_log" => DdpmVariance::FixedSmallLog,
                "fixed_large" => DdpmVariance::FixedLarge,
                other => panic!("unexpected variance {other}"),
            };
            let solver = Ddpm { variance, ..Ddpm::diffusers_default() };
            sample_with(&solver, &mut model, &grid, noise, &mut replay, |_| {}).unwrap()
        }
        other => panic!("unexpected class {other}"),
    };
    let times = calls.borrow().clone();
    let draws = *used.borrow();
    Run { sample: out, times, draws }
}

#[test]
fn every_case_matches_diffusers() {
    let fx = load_fixture("solvers_c2");
    assert_eq!(fx.cases.len(), 70);
    let mut worst: HashMap<&str, f64> = HashMap::new();
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let class = case["class"].as_str().unwrap();
        let r = run(&fx, case);
        let theirs = &fx.tensors[&format!("{name}.sample")];
        let err = max_abs(&r.sample, theirs);
        let e = worst.entry(class).or_insert(0.0);
        *e = e.max(err);
        assert!(err <= TOL, "{name}: max |ours - diffusers| = {err:e}");
        // the network is called at diffusers' timesteps, in order; diffusers' PNDM grid with
        // steps_offset 0 ends with a no-op step at t = 0 whose network call this crate skips
        let mut ts = vec1(&fx, &format!("{name}.timesteps"));
        let offset0 = case["config"].get("steps_offset").and_then(Value::as_u64).unwrap_or(0) == 0;
        if class == "PNDMScheduler"
            && offset0
            && !case["config"].get("set_alpha_to_one").and_then(Value::as_bool).unwrap_or(false)
        {
            assert_eq!(ts.pop(), Some(0.0));
        }
        assert_eq!(r.times.len(), ts.len(), "{name}: {:?} vs {ts:?}", r.times);
        for (a, b) in r.times.iter().zip(&ts) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{name}: model times {:?} vs diffusers {ts:?}", r.times);
        }
        // every recorded noise draw is used, except diffusers' last one when it has zero scale
        if let Some(d) = fx.tensors.get(&format!("{name}.noise_draws")) {
            let n = d.dim(0).unwrap();
            assert!(r.draws == n || r.draws + 1 == n, "{name}: used {} of {n} draws", r.draws);
        }
    }
    let mut w: Vec<_> = worst.into_iter().collect();
    w.sort_by(|a, b| a.0.cmp(b.0));
    for (class, e) in w {
        println!("{class:<34} worst max-abs difference {e:.2e}");
    }
}

#[test]
fn comparison_detects_a_wrong_solver() {
    // the fixtures discriminate: LMS of order 3, PLMS with variable-step weights, and DDPM
    // without clipping all land far outside the tolerance
    let fx = load_fixture("solvers_c2");
    let noise = &fx.tensors["noise"];
    let sched = DiscreteVp::linear(0.00085, 0.012, 1000).unwrap();
    let ac32 = vec1(&fx, "alphas_cumprod.linear");
    let (points, _) = euler_points(&ac32, 10);
    let grid = Grid::from_points(points).unwrap();
    let x = noise.affine(grid.points()[0].sigma, 0.0).unwrap();
    let mut model = Model::new(fx.gm.denoiser(&sched, Prediction::Epsilon), &sched, Prediction::Epsilon);
    let wrong = sample(&Lms::new(3), &mut model, &grid, &x).unwrap();
    let err = max_abs(&wrong, &fx.tensors["lms_linear_epsilon_10.sample"]);
    assert!(err > 100.0 * TOL, "LMS(3) vs diffusers' LMS(4): {err:e}");
    let grid = Pndm::diffusers_grid(&sched, 10, 1, false).unwrap();
    let mut model = Model::new(fx.gm.denoiser(&sched, Prediction::Epsilon), &sched, Prediction::Epsilon);
    let solver = Pndm { weights: MultistepWeights::Lagrange, ..Pndm::diffusers(true, 1000, 10) };
    let err =
        max_abs(&sample(&solver, &mut model, &grid, noise).unwrap(), &fx.tensors["plms_linear_epsilon_10.sample"]);
    assert!(err > 100.0 * TOL, "PLMS with Lagrange weights vs diffusers: {err:e}");
}
