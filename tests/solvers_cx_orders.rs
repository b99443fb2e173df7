//! Measured convergence orders of ComfyUI's own samplers (group CX) on the Gaussian mixture:
//! global error against the exact ODE endpoint at 20, 40, 80, 160 uniform-logSNR steps on two
//! schedules (`tests/common`), with the exact NFE checked. The stochastic samplers are measured in
//! their deterministic limit (`eta = 0`, the ODE noise scaler, `tau = 0`); their weak error is in
//! `tests/solvers_cx_sde.rs`. The CFG++ samplers are their base samplers when the guided and
//! unconditional predictions agree (`tests/solvers_cx.rs`), and have no ODE limit otherwise.

mod common;

use common::{noise, order_problem, order_slope, rms};
use diffusion_samplers::*;

/// Fitted slope at least `fitted`, last doubling at least `last`, `nfe` evaluations per step.
fn assert_order<S: Solver>(solver: &S, label: &str, nfe: Option<usize>, fitted: f64, last: f64) {
    common::assert_order(solver, label, Prediction::Epsilon, nfe, fitted, Some(last));
}

#[test]
fn res_multistep_is_second_order() {
    assert_order(&ResMultistep::default(), "res_multistep", Some(1), 1.9, 1.9);
}

#[test]
fn gradient_estimation_is_first_order() {
    // the extrapolation gamma d + (1 - gamma) d_prev is not the Adams-Bashforth weight: order 1
    // (measured 0.83 fitted, 0.99 over the last doubling; Euler, gamma = 1: 0.96)
    assert_order(&GradientEstimation::default(), "gradient_estimation", Some(1), 0.75, 0.9);
}

#[test]
fn er_sde_ode_limit_is_second_order() {
    // with phi(l) = l the ER-SDE solver is an ODE solver; its first-derivative estimate is a
    // backward difference, so stage 3 keeps order 2 (2.17 with exact integrals); ComfyUI's
    // 200-point Riemann sums add an O(h / 200) error visible at 160 steps (last pair 1.84)
    let exact = ErSde { noise_scaler: NoiseScaler::Ode, integration_points: 100_000, ..ErSde::default() };
    assert_order(&exact, "er_sde (ODE, 1e5 points)", Some(1), 2.05, 2.0);
    let comfy = ErSde { noise_scaler: NoiseScaler::Ode, ..ErSde::default() };
    assert_order(&comfy, "er_sde (ODE, 200 points)", Some(1), 1.9, 1.75);
}

#[test]
fn seeds_eta_zero_limits_have_their_stage_orders() {
    assert_order(&Seeds { eta: 0.0, ..Seeds::two() }, "seeds_2 (eta 0)", Some(2), 1.9, 1.9);
    assert_order(&Seeds { eta: 0.0, ..Seeds::exp_heun() }, "exp_heun_2_x0", Some(2), 1.9, 1.9);
    // third order, pre-asymptotic at 20 steps (2.57 fitted, 2.75 over the last doubling)
    assert_order(&Seeds { eta: 0.0, ..Seeds::three() }, "seeds_3 (eta 0)", Some(3), 2.5, 2.65);
}

#[test]
fn sa_solver_tau_zero_is_fourth_order() {
    // predictor order 3, corrector order 4: order min(p + 1, c) = 4 (4.3 measured)
    let ode = SaSolver { noise: SaNoise::Ode, lower_order_final: LowerOrderFinal::Never, ..SaSolver::default() };
    assert_order(&ode, "sa_solver (tau 0)", Some(1), 4.1, 4.2);
    // PECE: 2 evaluations per step after the first
    let pece = SaSolver { mode: SaMode::Pece, ..ode };
    assert_order(&pece, "sa_solver_pece (tau 0)", None, 4.1, 4.2);
}

#[test]
fn deis_tab_is_third_order_with_either_quadrature() {
    assert_order(&DeisTab::default(), "deis (ComfyUI quadrature)", Some(1), 2.7, 2.85);
    let gl = DeisTab { quadrature: DeisQuadrature::GaussLegendre { points: 8 }, ..DeisTab::default() };
    assert_order(&gl, "deis (Gauss-Legendre)", Some(1), 2.7, 2.85);
}

#[test]
fn comfyui_uni_pc_orders() {
    // order 3 predictor with corrector; the lower order on the last two steps costs the last
    // doubling (3.05-3.15)
    assert_order(&UniPc::comfy(BVariant::Bh1), "uni_pc", Some(1), 3.6, 2.9);
    assert_order(&UniPc::comfy(BVariant::Bh2), "uni_pc_bh2", Some(1), 3.6, 2.9);
}

/// RMS errors of `solver` at `ns` Karras steps (rho 7, ending at the table's smallest level).
fn karras_errors<S: Solver>(solver: &S, ns: &[usize]) -> Vec<f64> {
    let gm = order_problem();
    let x_t = noise(16, 4, 5);
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    ns.iter()
        .map(|&n| {
            let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, n, End::Min).unwrap();
            let pts = grid.points();
            let exact = gm.exact_endpoint(&x_t, &pts[0], &pts[n]).unwrap();
            let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
            rms(&sample(solver, &mut model, &grid, &x_t).unwrap(), &exact)
        })
        .collect()
}

#[test]
fn ipndm_v_orders_on_uniform_logsnr_and_karras_grids() {
    // the exact variable-step weights: fourth order
    let lagrange = Ipndm { weights: MultistepWeights::Lagrange, ..Ipndm::comfy() };
    assert_order(&lagrange, "iPNDM (Lagrange)", Some(1), 3.35, 3.7);
    // ComfyUI's ipndm_v on uniform-logSNR grids (constant step ratio: its weights are
    // consistent there): order about 2 (1.87 fitted, 2.6 over the last doubling)
    assert_order(&Ipndm::comfy_variable(), "ipndm_v (ComfyUI)", Some(1), 1.8, 2.4);
    // on Karras grids the step ratio varies and its fourth-order weights do not sum to one
    let ns = [20, 40, 80, 160];
    let comfy = karras_errors(&Ipndm::comfy_variable(), &ns);
    let exact = karras_errors(&lagrange, &ns);
    let (sc, se) = (order_slope(&ns, &comfy), order_slope(&ns, &exact));
    println!("Karras grids: ipndm_v slope {sc:.3} errors {comfy:?}; Lagrange slope {se:.3} errors {exact:?}");
    assert!(se > 3.0, "{se}");
    assert!(comfy[3] > 10.0 * exact[3], "{comfy:?} vs {exact:?}");
}
