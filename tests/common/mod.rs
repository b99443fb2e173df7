//! Shared helpers for the integration tests.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::{
    sample, ContinuousVp, DiscreteVp, End, Grid, Model, Prediction, Scheduler, SeededNoise, Solver, Spacing,
};

/// Step counts of the convergence-order measurements.
pub const NS: [usize; 4] = [20, 40, 80, 160];

/// The two schedules orders are measured on.
pub fn order_schedules() -> Vec<(&'static str, Box<dyn Scheduler>)> {
    vec![
        ("ContinuousVp", Box::new(ContinuousVp::default())),
        ("DiscreteVp linear", Box::new(DiscreteVp::linear(1e-4, 0.02, 1000).unwrap())),
    ]
}

/// The mixture orders are measured on.
pub fn order_problem() -> GaussianMixture {
    GaussianMixture::example(4, 3, 11).unwrap()
}

/// RMS errors against the exact ODE endpoint of `solver` at `NS` steps on uniform-lambda grids
/// ending at the schedule's smallest time, per schedule. With `nfe_per_step`, also checks the
/// exact evaluation count.
pub fn convergence_errors<S: Solver>(
    solver: &S,
    prediction: Prediction,
    nfe_per_step: Option<usize>,
) -> Vec<(&'static str, Vec<f64>)> {
    let gm = order_problem();
    let x_t = noise(16, 4, 5);
    let mut out = vec![];
    for (name, sched) in order_schedules() {
        let sched = sched.as_ref();
        let mut errs = vec![];
        for n in NS {
            let grid = Grid::new(sched, &Spacing::UniformLambda, n, End::Min).unwrap();
            let pts = grid.points();
            let exact = gm.exact_endpoint(&x_t, &pts[0], &pts[n]).unwrap();
            let mut model = Model::new(gm.denoiser(sched, prediction), sched, prediction);
            let x = sample(solver, &mut model, &grid, &x_t).unwrap();
            if let Some(k) = nfe_per_step {
                assert_eq!(model.nfe(), k * n, "{}: NFE", solver.name());
            }
            errs.push(rms(&x, &exact));
        }
        out.push((name, errs));
    }
    out
}

/// One solver's measured convergence on one schedule.
pub struct Order {
    pub schedule: &'static str,
    /// Least-squares slope of log2(error) over the `NS` step counts.
    pub fitted: f64,
    /// Slope over the last doubling of the step count.
    pub last: f64,
    pub errors: Vec<f64>,
}

/// Measure (and print, under `label`) `solver`'s convergence order on both order schedules;
/// with `nfe_per_step`, also check the exact evaluation count.
pub fn measure_order<S: Solver>(
    solver: &S,
    label: &str,
    prediction: Prediction,
    nfe_per_step: Option<usize>,
) -> Vec<Order> {
    let mut out = vec![];
    for (schedule, errors) in convergence_errors(solver, prediction, nfe_per_step) {
        let fitted = order_slope(&NS, &errors);
        let last = (errors[errors.len() - 2] / errors[errors.len() - 1]).log2();
        let sci: Vec<String> = errors.iter().map(|e| format!("{e:.3e}")).collect();
        println!("{label:<24} {schedule:<18} slope {fitted:.3} (last pair {last:.3})  errors {}", sci.join(" "));
        out.push(Order { schedule, fitted, last, errors });
    }
    out
}

/// Fitted slope at least `fitted` (and, when given, the last doubling's at least `last`) on both
/// schedules, with the error falling from the first to the last step count.
pub fn assert_order<S: Solver>(
    solver: &S,
    label: &str,
    prediction: Prediction,
    nfe_per_step: Option<usize>,
    fitted: f64,
    last: Option<f64>,
) {
    for o in measure_order(solver, label, prediction, nfe_per_step) {
        let (sched, errs) = (o.schedule, &o.errors);
        assert!(o.fitted >= fitted, "{label} on {sched}: slope {:.3} < {fitted} (errors {errs:?})", o.fitted);
        if let Some(last) = last {
            assert!(o.last >= last, "{label} on {sched}: last-pair slope {:.3} < {last} (errors {errs:?})", o.last);
        }
        assert!(errs[errs.len() - 1] < errs[0], "{label} on {sched}: error does not fall (errors {errs:?})");
    }
}

/// Seeded standard normal `[n, d]` f64 tensor.
pub fn noise(n: usize, d: usize, seed: u64) -> Tensor {
    Tensor::from_vec(SeededNoise::new(seed).normal_vec(n * d), (n, d), &Device::Cpu).unwrap()
}

pub fn rms(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt()
}

pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Least-squares slope of ln(err) against ln(n), negated (the convergence order).
pub fn order_slope(ns: &[usize], errs: &[f64]) -> f64 {
    let xs: Vec<f64> = ns.iter().map(|&n| (n as f64).ln()).collect();
    let ys: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
    let mx = xs.iter().sum::<f64>() / xs.len() as f64;
    let my = ys.iter().sum::<f64>() / ys.len() as f64;
    let num: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    -num / den
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A parity fixture written by a script in `tools/`: its tensors, its JSON case list and the
/// Gaussian mixture it was run on.
pub struct Fixture {
    pub tensors: std::collections::HashMap<String, Tensor>,
    pub cases: Vec<serde_json::Value>,
    pub gm: GaussianMixture,
}

/// Loads `tests/fixtures/{stem}.safetensors` and `{stem}.json`.
pub fn load_fixture(stem: &str) -> Fixture {
    let tensors = candle_core::safetensors::load(fixture(&format!("{stem}.safetensors")), &Device::Cpu).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{stem}.json"))).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap().clone();
    let gm = GaussianMixture::new(
        tensors["means"].to_vec2::<f64>().unwrap(),
        tensors["stds"].to_vec1::<f64>().unwrap(),
        tensors["weights"].to_vec1::<f64>().unwrap(),
    )
    .unwrap();
    Fixture { tensors, cases, gm }
}

/// The f64 table a fixture case's `beta_schedule` names (1000 training steps).
pub fn fixture_schedule(config: &serde_json::Value) -> DiscreteVp {
    let (start, end) = (config["beta_start"].as_f64().unwrap(), config["beta_end"].as_f64().unwrap());
    match config["beta_schedule"].as_str().unwrap() {
        "linear" => DiscreteVp::linear(start, end, 1000).unwrap(),
        "scaled_linear" => DiscreteVp::scaled_linear(start, end, 1000).unwrap(),
        other => panic!("unexpected beta schedule {other}"),
    }
}

/// A fixture case's prediction type.
pub fn fixture_prediction(case: &serde_json::Value) -> Prediction {
    match case["prediction_type"].as_str().unwrap() {
        "epsilon" => Prediction::Epsilon,
        "v_prediction" => Prediction::VPrediction,
        other => panic!("unexpected prediction {other}"),
    }
}

/// Mean and variance per dimension of `n` samples against the mixture's, within `k` standard
/// errors (from the samples' own fourth moment for the variance).
pub fn assert_moments(name: &str, out: &Tensor, means: &[Vec<f64>], stds: &[f64], weights: &[f64], k: f64) {
    let v = out.to_vec2::<f64>().unwrap();
    let n = v.len() as f64;
    let dim = means[0].len();
    let wsum: f64 = weights.iter().sum();
    for d in 0..dim {
        let mu: f64 = means.iter().zip(weights).map(|(m, w)| w * m[d]).sum::<f64>() / wsum;
        let second: f64 =
            means.iter().zip(stds).zip(weights).map(|((m, s), w)| w * (s * s + m[d] * m[d])).sum::<f64>() / wsum;
        let var = second - mu * mu;
        let xs: Vec<f64> = v.iter().map(|r| r[d]).collect();
        let m = xs.iter().sum::<f64>() / n;
        let sv = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        let m4 = xs.iter().map(|x| (x - m).powi(4)).sum::<f64>() / n;
        let (se_m, se_v) = ((var / n).sqrt(), ((m4 - sv * sv) / n).sqrt());
        println!(
            "{name:<16} dim {d}: mean {m:+.4} (exact {mu:+.4}, {:.1} se)  var {sv:.4} (exact {var:.4}, {:.1} se)",
            (m - mu) / se_m,
            (sv - var) / se_v
        );
        assert!((m - mu).abs() < k * se_m, "{name} dim {d}: mean {m} vs {mu} (se {se_m})");
        assert!((sv - var).abs() < k * se_v, "{name} dim {d}: variance {sv} vs {var} (se {se_v})");
    }
}

/// Per-sample distances between an SDE sampler's results at 25/50, 50/100 and 100/200 steps
/// (Karras grids on Stable Diffusion's table; 64 samples of a 6-dimensional mixture), all with
/// noise from `source()` (a fresh source per run, as a user would): on one Brownian path they
/// shrink as the grid is refined (strong convergence).
pub fn refinement_distances<S: Solver>(
    solver: &S,
    source: impl Fn() -> Box<dyn diffusion_samplers::NoiseSource>,
) -> Vec<Vec<f64>> {
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let gm = GaussianMixture::example(6, 3, 4).unwrap();
    let noise = Tensor::from_vec(SeededNoise::new(8).normal_vec(64 * 6), (64, 6), &Device::Cpu).unwrap();
    let karras = Spacing::Sigmas(diffusion_samplers::sigmas::SigmaSchedule::Karras { rho: 7.0 });
    let run = |steps: usize| {
        let grid = Grid::new(&sd, &karras, steps, End::Clean).unwrap();
        let mut model = Model::new(gm.denoiser(&sd, Prediction::Epsilon), &sd, Prediction::Epsilon);
        let x = (&noise * grid.points()[0].sigma).unwrap(); // start at the first level's noise
        let mut src = source();
        let out = diffusion_samplers::sample_with(solver, &mut model, &grid, &x, src.as_mut(), |_| {}).unwrap();
        out.to_vec2::<f64>().unwrap()
    };
    let xs: Vec<Vec<Vec<f64>>> = [25, 50, 100, 200].iter().map(|&n| run(n)).collect();
    xs.windows(2)
        .map(|w| {
            w[0].iter()
                .zip(&w[1])
                .map(|(a, b)| a.iter().zip(b).map(|(u, v)| (u - v).powi(2)).sum::<f64>().sqrt())
                .collect()
        })
        .collect()
}

/// RMS over all elements of [`refinement_distances`]' windows (25/50, 50/100, 100/200 steps).
pub fn refinement_gaps<S: Solver>(
    solver: &S,
    source: impl Fn() -> Box<dyn diffusion_samplers::NoiseSource>,
) -> Vec<f64> {
    refinement_distances(solver, source)
        .iter()
        .map(|d| (d.iter().map(|v| v * v).sum::<f64>() / (6 * d.len()) as f64).sqrt())
        .collect()
}

/// The median of `v`.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
