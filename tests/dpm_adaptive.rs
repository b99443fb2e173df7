//! The adaptive DPM-Solver-12/23 and DPM-Solver-fast: elementwise parity with k-diffusion
//! 0.1.1.post1 (`tools/fixtures_kdiffusion_dpm.py`), exact evaluation counts, the VP form against
//! the VE form, tolerance behaviour and convergence order on the Gaussian mixture.

mod common;

use candle_core::Tensor;
use common::{load_fixture, max_abs, noise, order_slope, rms, NS};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::{
    sample, ContinuousVp, DiscreteVp, DpmAdaptive, DpmFast, Edm, EdmModelTime, End, Error, Grid, Model, Prediction,
    Scheduler, Spacing,
};

fn adaptive_from(kwargs: &serde_json::Value) -> DpmAdaptive {
    let get = |k: &str, d: f64| kwargs.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let d = DpmAdaptive::default();
    DpmAdaptive {
        order: kwargs["order"].as_u64().unwrap() as usize,
        rtol: get("rtol", d.rtol),
        atol: get("atol", d.atol),
        h_init: get("h_init", d.h_init),
        pcoeff: get("pcoeff", d.pcoeff),
        icoeff: get("icoeff", d.icoeff),
        dcoeff: get("dcoeff", d.dcoeff),
        accept_safety: get("accept_safety", d.accept_safety),
        ..d
    }
}

#[test]
fn adaptive_matches_kdiffusion() {
    let fx = load_fixture("kdiffusion_dpm");
    let noise = &fx.tensors["noise"];
    let mut checked = 0;
    for case in fx.cases.iter().filter(|c| c["kind"] == "adaptive") {
        let name = case["name"].as_str().unwrap();
        let (smin, smax) = (case["sigma_min"].as_f64().unwrap(), case["sigma_max"].as_f64().unwrap());
        let sched = Edm::new(smin, smax, EdmModelTime::Sigma).unwrap();
        let solver = adaptive_from(&case["kwargs"]);
        let mut model = Model::new(fx.gm.denoiser(&sched, Prediction::Sample), &sched, Prediction::Sample);
        let x = noise.affine(smax, 0.0).unwrap();
        let mut ends = vec![];
        let (out, info) = solver
            .solve_with(&mut model, &sched.point(smax), &sched.point(smin), &x, |a| ends.push(a.to.sigma))
            .unwrap();
        let want = &fx.tensors[&format!("{name}.sample")];
        let err = max_abs(&out, want);
        let kd = &case["info"];
        let (steps, kd_nfe) = (kd["steps"].as_u64().unwrap() as usize, kd["nfe"].as_u64().unwrap() as usize);
        let (acc, rej) = (kd["n_accept"].as_u64().unwrap() as usize, kd["n_reject"].as_u64().unwrap() as usize);
        println!("{name}: max abs {err:.2e}, info {info:?}, k-diffusion {kd}");
        assert!(err < 1e-10, "{name}: max abs difference {err:e}");
        assert_eq!((info.steps, info.n_accept, info.n_reject), (steps, acc, rej), "{name}");
        // k-diffusion evaluates the start of a rejected step again; this solver reuses it
        assert_eq!(info.nfe, kd_nfe - rej, "{name}");
        assert_eq!(model.nfe(), info.nfe, "{name}");
        let kd_ends = fx.tensors[&format!("{name}.accepted_sigmas")].to_vec1::<f64>().unwrap();
        assert_eq!(ends.len(), kd_ends.len(), "{name}");
        for (a, b) in ends.iter().zip(&kd_ends) {
            // the step sizes follow the error estimates, which agree to ~1e-12 relative
            assert!((a / b - 1.0).abs() < 1e-9, "{name}: accepted sigma {a} vs {b}");
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn fast_matches_kdiffusion() {
    let fx = load_fixture("kdiffusion_dpm");
    let noise = &fx.tensors["noise"];
    let mut checked = 0;
    for case in fx.cases.iter().filter(|c| c["kind"] == "fast") {
        let name = case["name"].as_str().unwrap();
        let (smin, smax) = (case["sigma_min"].as_f64().unwrap(), case["sigma_max"].as_f64().unwrap());
        let nfe = case["nfe"].as_u64().unwrap() as usize;
        let sched = Edm::new(smin, smax, EdmModelTime::Sigma).unwrap();
        let solver = DpmFast::with_nfe(nfe);
        let grid = solver.grid(&sched, smax, smin).unwrap();
        let mut model = Model::new(fx.gm.denoiser(&sched, Prediction::Sample), &sched, Prediction::Sample);
        let out = sample(&solver, &mut model, &grid, &noise.affine(smax, 0.0).unwrap()).unwrap();
        let err = max_abs(&out, &fx.tensors[&format!("{name}.sample")]);
        println!("{name}: max abs {err:.2e}, {} steps, NFE {}", grid.len(), model.nfe());
        assert!(err < 1e-10, "{name}: max abs difference {err:e}");
        assert_eq!(model.nfe(), nfe, "{name}");
        assert_eq!(case["calls"].as_u64().unwrap() as usize, nfe, "{name}: k-diffusion's own count");
        checked += 1;
    }
    assert_eq!(checked, 8);
}

/// The same solve on a variance-preserving schedule and on the variance-exploding one with the
/// same log-SNR range: the samples agree after scaling by `alpha` (a second formulation of the
/// k-diffusion coordinates the error control runs in).
#[test]
fn adaptive_vp_equals_ve() {
    let gm = GaussianMixture::example(5, 3, 2).unwrap();
    let vp = ContinuousVp::default();
    let (t0, t1) = (1.0, 1e-3);
    let (p0, p1) = (vp.point(t0), vp.point(t1));
    let ve = Edm::new(p1.ksigma(), p0.ksigma(), EdmModelTime::Sigma).unwrap();
    let x_vp = noise(6, 5, 3);
    let solver = DpmAdaptive { rtol: 1e-3, atol: 1e-3, ..DpmAdaptive::default() };
    let mut m_vp = Model::new(gm.denoiser(&vp, Prediction::Epsilon), &vp, Prediction::Epsilon);
    let (y_vp, info_vp) = solver.solve(&mut m_vp, &p0, &p1, &x_vp).unwrap();
    let mut m_ve = Model::new(gm.denoiser(&ve, Prediction::Epsilon), &ve, Prediction::Epsilon);
    let x_ve = x_vp.affine(1.0 / p0.alpha, 0.0).unwrap();
    let (y_ve, info_ve) = solver.solve(&mut m_ve, &ve.point(p0.ksigma()), &ve.point(p1.ksigma()), &x_ve).unwrap();
    assert_eq!(info_vp, info_ve);
    let err = max_abs(&y_vp.affine(1.0 / p1.alpha, 0.0).unwrap(), &y_ve);
    assert!(err < 1e-9, "VP vs VE: {err:e}");
}

/// Tighter tolerances cost more evaluations and give a smaller error against the exact ODE
/// endpoint (the numbers are in BENCHMARKS.md, section 6, "The adaptive DPM-Solver").
#[test]
fn adaptive_error_falls_with_tolerance() {
    let gm = GaussianMixture::example(8, 4, 5).unwrap();
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let (from, to) = (s.point(999.0), s.point(0.0));
    let x = noise(16, 8, 7);
    let exact = gm.exact_endpoint(&x, &from, &to).unwrap();
    let mut last = (0usize, f64::INFINITY);
    for tol in [1e-2, 1e-3, 1e-4, 1e-5, 1e-6] {
        for order in [2, 3] {
            let solver = DpmAdaptive { order, rtol: tol, atol: tol, ..DpmAdaptive::default() };
            let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
            let (y, info) = solver.solve(&mut model, &from, &to, &x).unwrap();
            let err = rms(&y, &exact);
            println!(
                "order {order} tol {tol:e}: NFE {:4} ({} accepted, {} rejected), RMSE {err:.3e}",
                info.nfe, info.n_accept, info.n_reject
            );
            if order == 3 {
                assert!(
                    info.nfe > last.0 && err < last.1,
                    "tol {tol:e}: NFE {} error {err:e} after {last:?}",
                    info.nfe
                );
                last = (info.nfe, err);
            }
        }
    }
    assert!(last.1 < 1e-5, "tightest tolerance: {last:?}");
}

#[test]
fn adaptive_as_a_solver_ends_clean_with_one_evaluation() {
    let gm = GaussianMixture::example(4, 3, 0).unwrap();
    let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let grid = Grid::new(&s, &Spacing::UniformLambda, 2, End::Clean).unwrap();
    assert_eq!(grid.len(), 2);
    let x = noise(4, 4, 1);
    let solver = DpmAdaptive { rtol: 1e-4, atol: 1e-4, ..DpmAdaptive::default() };
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let y = sample(&solver, &mut model, &grid, &x).unwrap();
    let pts = grid.points();
    let mut m2 = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let (y_min, info) = solver.solve(&mut m2, &pts[0], &pts[1], &x).unwrap();
    let x0 = m2.data(&y_min, &pts[1]).unwrap();
    assert_eq!(model.nfe(), info.nfe + 1);
    assert!(max_abs(&y, &x0) < 1e-12);
}

#[test]
fn adaptive_rejects_bad_options_and_gives_up_with_a_typed_error() {
    let gm = GaussianMixture::example(4, 3, 0).unwrap();
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let x = noise(4, 4, 1);
    let (from, to) = (s.point(999.0), s.point(0.0));
    for bad in [
        DpmAdaptive { order: 1, ..DpmAdaptive::default() },
        DpmAdaptive { rtol: 0.0, atol: 0.0, ..DpmAdaptive::default() },
        DpmAdaptive { rtol: f64::NAN, ..DpmAdaptive::default() },
        DpmAdaptive { h_init: 0.0, ..DpmAdaptive::default() },
    ] {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        let err = bad.solve(&mut model, &from, &to, &x).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{bad:?}: {err}");
        assert_eq!(model.nfe(), 0);
    }
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let tight = DpmAdaptive { rtol: 1e-8, atol: 1e-8, max_attempts: 3, ..DpmAdaptive::default() };
    let err = tight.solve(&mut model, &from, &to, &x).unwrap_err();
    assert!(matches!(err, Error::Adaptive(_)), "{err}");
    assert!(err.to_string().contains("max_attempts"), "{err}");
    // an interval into sigma = 0 is not an adaptive interval
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let err = DpmAdaptive::default().solve(&mut model, &from, &s.clean_point(), &x).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
}

/// DPM-Solver-fast with all-third-order steps (budget `3n - 1`: orders `[3, ..., 3, 2]` on `n`
/// uniform-lambda steps) converges with order 3.
#[test]
fn fast_converges_with_order_three() {
    let gm = common::order_problem();
    let x_t = noise(16, 4, 5);
    for (name, sched) in common::order_schedules() {
        let sched = sched.as_ref();
        let mut errs = vec![];
        for n in NS {
            let solver = DpmFast::with_nfe(3 * n - 1);
            let grid = Grid::new(sched, &Spacing::UniformLambda, n, End::Min).unwrap();
            let (t0, t1) = (grid.points()[0].t, grid.points()[n].t);
            let fast_grid = solver.grid(sched, t0, t1).unwrap();
            for (a, b) in grid.points().iter().zip(fast_grid.points()) {
                assert!((a.lambda - b.lambda).abs() < 1e-9, "{name}: the grids differ");
            }
            let exact = gm.exact_endpoint(&x_t, &grid.points()[0], &grid.points()[n]).unwrap();
            let mut model = Model::new(gm.denoiser(sched, Prediction::Epsilon), sched, Prediction::Epsilon);
            let y = sample(&solver, &mut model, &fast_grid, &x_t).unwrap();
            assert_eq!(model.nfe(), 3 * n - 1);
            errs.push(rms(&y, &exact));
        }
        let slope = order_slope(&NS, &errs);
        println!("DPM-Solver-fast {name}: slope {slope:.3}, errors {errs:?}");
        assert!(slope > 2.8, "{name}: slope {slope} ({errs:?})");
    }
}

#[test]
fn fast_refuses_a_grid_of_the_wrong_length() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let grid = Grid::new(&s, &Spacing::UniformLambda, 5, End::Min).unwrap();
    let gm = GaussianMixture::example(4, 3, 0).unwrap();
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let err = sample(&DpmFast::with_nfe(10), &mut model, &grid, &noise(2, 4, 0)).unwrap_err();
    assert!(matches!(err.root(), Error::InvalidGrid(_)), "{err}");
    assert!(err.to_string().contains("DpmFast::grid"), "{err}");
    let _ = Tensor::zeros(1, candle_core::DType::F64, &candle_core::Device::Cpu);
}
