//! First-order identities: deterministic DDIM, DPM-Solver++(1), DPM-Solver(1) and Euler are one
//! method written four ways, so on the same grid they agree to rounding (1e-10 in f64).

mod common;

use common::{max_abs, noise};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;

fn check(sched: &dyn Scheduler, grid: &Grid, prediction: Prediction, include_noise_form: bool) {
    let gm = GaussianMixture::example(3, 4, 2).unwrap();
    let x = noise(8, 3, 9);
    let run = |which: usize| {
        let mut model = Model::new(gm.denoiser(sched, prediction), sched, prediction);
        let out = match which {
            0 => sample(&Ddim::default(), &mut model, grid, &x),
            1 => sample(&DpmSolverMultistep::pp(1), &mut model, grid, &x),
            2 => sample(&Euler, &mut model, grid, &x),
            _ => sample(&DpmSolverMultistep::noise(1), &mut model, grid, &x),
        }
        .unwrap();
        assert_eq!(model.nfe(), grid.len());
        out
    };
    let ddim = run(0);
    let pp1 = run(1);
    let euler = run(2);
    let d1 = max_abs(&ddim, &pp1);
    let d2 = max_abs(&ddim, &euler);
    println!("{sched:?} {prediction:?}: |DDIM - DPM++1| = {d1:.2e}, |DDIM - Euler| = {d2:.2e}");
    assert!(d1 < 1e-10 && d2 < 1e-10, "{d1} {d2}");
    if include_noise_form {
        let dpm1 = run(3);
        let d3 = max_abs(&ddim, &dpm1);
        assert!(d3 < 1e-10, "DPM-Solver(1) differs by {d3}");
    }
    // and they are not trivially equal to the start
    assert!(max_abs(&ddim, &x) > 0.1);
}

#[test]
fn discrete_vp_clean_end() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let g = Grid::new(&s, &Spacing::UniformLambda, 17, End::Clean).unwrap();
    check(&s, &g, Prediction::Epsilon, true);
    check(&s, &g, Prediction::VPrediction, true);
}

#[test]
fn continuous_vp_small_sigma_end() {
    let s = ContinuousVp::default();
    let g = Grid::new(&s, &Spacing::TimeQuadratic, 12, End::Min).unwrap();
    check(&s, &g, Prediction::Sample, true);
}

#[test]
fn edm_karras() {
    let s = Edm::default();
    let g = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 9, End::Clean).unwrap();
    check(&s, &g, Prediction::Epsilon, true);
}

#[test]
fn rectified_flow_from_pure_noise() {
    // starts at alpha = 0: only the data-prediction forms are defined there
    let s = RectifiedFlow { shift: 3.0, ..Default::default() };
    let g = Grid::new(&s, &Spacing::UniformTime, 8, End::Clean).unwrap();
    assert_eq!(g.points()[0].alpha, 0.0);
    check(&s, &g, Prediction::Flow, false);
}
