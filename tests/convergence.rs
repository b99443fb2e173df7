//! Measured convergence order on the Gaussian mixture: error against the exact ODE endpoint for
//! 20..160 steps on uniform-lambda grids ending at a small sigma > 0, fitted log-log slope.

mod common;

use common::measure_order;
use diffusion_samplers::*;

/// Fitted order at least `min` on both schedules (NFE not checked here: solvers_c1/c2 do).
fn assert_order<S: Solver>(solver: &S, prediction: Prediction, min: f64) {
    common::assert_order(solver, solver.name(), prediction, None, min, None);
}

#[test]
fn ddim_is_first_order() {
    assert_order(&Ddim::default(), Prediction::Epsilon, 0.9);
}

#[test]
fn euler_is_first_order() {
    assert_order(&Euler, Prediction::VPrediction, 0.9);
}

#[test]
fn heun_is_second_order() {
    assert_order(&Heun::default(), Prediction::Epsilon, 1.8);
}

#[test]
fn dpm_solver_pp_2m_is_second_order() {
    assert_order(&DpmSolverMultistep::pp(2), Prediction::Epsilon, 1.8);
    let heun_variant = DpmSolverMultistep { solver_type: SolverType::Heun, ..DpmSolverMultistep::pp(2) };
    assert_order(&heun_variant, Prediction::Epsilon, 1.8);
}

#[test]
fn dpm_solver_pp_3m_is_third_order() {
    assert_order(&DpmSolverMultistep::pp(3), Prediction::Epsilon, 2.6);
}

/// The noise-prediction form converges more irregularly over 20..160 steps (measured slope 2.48
/// for 3M: the noise prediction varies fast in lambda near the small-sigma end); the data form
/// above is the one the acceptance bound of 2.6 is stated for.
#[test]
fn dpm_solver_noise_multistep_orders() {
    assert_order(&DpmSolverMultistep::noise(2), Prediction::Epsilon, 1.8);
    assert_order(&DpmSolverMultistep::noise(3), Prediction::Epsilon, 2.35);
}

/// The reference implementation's third-order weight (diffusers, k-diffusion) is measurably
/// only second order; this pins that finding so a change in either direction is noticed.
#[test]
fn reference_third_order_weight_is_only_second_order() {
    let reference = DpmSolverMultistep { third_order: ThirdOrder::Reference, ..DpmSolverMultistep::pp(3) };
    for o in measure_order(&reference, "DPM-Solver++(3M) reference", Prediction::Epsilon, None) {
        assert!((1.8..2.4).contains(&o.fitted), "reference 3M on {}: slope {:.3}", o.schedule, o.fitted);
    }
}
