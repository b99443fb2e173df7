//! Conformance of UniPC, DEIS, singlestep DPM-Solver(++) and SDE-DPM-Solver++ on the Gaussian
//! mixture: measured convergence order (uniform-lambda grids, 20..160 steps, `End::Min`, error
//! against the exact ODE endpoint; for the SDE solver the strong error against a fine solution on
//! the same Brownian path), exact NFE, finite output into `sigma = 0`, inversion round trip, the
//! identities that tie them to the existing solvers, and the SDE third-order weight.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{noise, order_slope, rms};
use diffusion_samplers::math::expint::Form;
use diffusion_samplers::math::phi::phi;

use diffusion_samplers::*;

use common::{order_problem as gm, order_schedules as schedules, NS};

/// Fitted order at least `min` on both schedules, one network evaluation per step.
fn assert_order<S: Solver>(solver: &S, prediction: Prediction, min: f64) {
    common::assert_order(solver, solver.name(), prediction, Some(1), min, None);
}

fn unipc(order: usize, variant: BVariant, form: Form, corrector: Corrector) -> UniPc {
    UniPc { policy: OrderPolicy::fixed(order), variant, form, corrector, end: UniPcEnd::Clean }
}

// ---------------------------------------------------------------------------------------------
// measured orders

#[test]
fn unipc_order_is_p_plus_one() {
    // UniPC-p: UniP-p plus UniC-p has order p + 1 (Zhao et al., Theorem 3.3)
    for variant in [BVariant::Bh1, BVariant::Bh2] {
        assert_order(&unipc(1, variant, Form::Data, Corrector::All), Prediction::Epsilon, 1.8);
        assert_order(&unipc(2, variant, Form::Data, Corrector::All), Prediction::Epsilon, 2.6);
        assert_order(&unipc(3, variant, Form::Data, Corrector::All), Prediction::Epsilon, 3.6);
    }
}

#[test]
fn unipc_noise_form_and_predictor_only_orders() {
    assert_order(&unipc(2, BVariant::Bh2, Form::Noise, Corrector::All), Prediction::Epsilon, 2.6);
    assert_order(&unipc(3, BVariant::Bh2, Form::Noise, Corrector::All), Prediction::VPrediction, 3.6);
    // UniP alone has order p
    assert_order(&unipc(2, BVariant::Bh1, Form::Data, Corrector::None), Prediction::Epsilon, 1.8);
    assert_order(&unipc(3, BVariant::Bh2, Form::Data, Corrector::None), Prediction::Epsilon, 2.6);
}

/// DEIS integrates the noise prediction, which converges more irregularly over 20..160 steps than
/// the data prediction (DEIS(3) is DPM-Solver(3M) in noise form with the Taylor weights, see
/// `identities_with_dpm_solver_multistep`; `tests/convergence.rs` measures 2.48 for that one too).
#[test]
fn deis_orders() {
    assert_order(&Deis::order(1), Prediction::Epsilon, 0.9);
    assert_order(&Deis::order(2), Prediction::Epsilon, 1.8);
    assert_order(&Deis::order(3), Prediction::Epsilon, 2.35);
}

#[test]
fn dpm_solver_singlestep_orders() {
    assert_order(&DpmSolverSinglestep::pp(2), Prediction::Epsilon, 1.8);
    assert_order(&DpmSolverSinglestep::pp(3), Prediction::Epsilon, 2.6);
    assert_order(&DpmSolverSinglestep::noise(2), Prediction::Epsilon, 1.8);
    assert_order(&DpmSolverSinglestep::noise(3), Prediction::VPrediction, 2.6);
    let heun = DpmSolverSinglestep { solver_type: SolverType::Heun, ..DpmSolverSinglestep::pp(3) };
    assert_order(&heun, Prediction::Epsilon, 2.6);
}

// ---------------------------------------------------------------------------------------------
// SDE-DPM-Solver++: strong order on one Brownian path

/// The noise of the coarse steps of a uniform-lambda grid with `n` steps, built from the noise
/// `z` of the fine grid with `fine` steps (n divides fine) so both see the same Brownian path:
/// the step's noise integral `int sqrt(2) e^{-(lambda_b - l)} dW` is the sum of the fine ones
/// carried to `lambda_b`.
fn coarse_noise(lambdas: &[f64], z: &[Tensor], n: usize) -> Vec<Tensor> {
    let fine = z.len();
    let k = fine / n;
    (0..n)
        .map(|i| {
            let (a, b) = (i * k, (i + 1) * k);
            let terms: Vec<(f64, &Tensor)> = (a..b)
                .map(|j| {
                    let h = lambdas[j + 1] - lambdas[j];
                    ((-(lambdas[b] - lambdas[j + 1])).exp() * (-(-2.0 * h).exp_m1()).sqrt(), &z[j])
                })
                .collect();
            let total = (-(-2.0 * (lambdas[b] - lambdas[a])).exp_m1()).sqrt();
            lincomb(&terms).unwrap().affine(1.0 / total, 0.0).unwrap()
        })
        .collect()
}

fn sde_strong_errors(solver: &SdeDpmSolverPP, sched: &dyn Scheduler) -> Vec<f64> {
    const FINE: usize = 2560;
    let gm = gm();
    let x_t = noise(16, 4, 5);
    let fine_grid = Grid::new(sched, &Spacing::UniformLambda, FINE, End::Min).unwrap();
    let lambdas: Vec<f64> = fine_grid.points().iter().map(|p| p.lambda).collect();
    let z: Vec<Tensor> = (0..FINE).map(|j| noise(16, 4, 1000 + j as u64)).collect();
    let run = |grid: &Grid, zs: Vec<Tensor>| {
        let mut model = Model::new(gm.denoiser(sched, Prediction::Epsilon), sched, Prediction::Epsilon);
        sample_with(solver, &mut model, grid, &x_t, &mut TensorNoise::new(zs), |_| {}).unwrap()
    };
    let reference = run(&fine_grid, z.clone());
    NS.iter()
        .map(|&n| {
            let grid = Grid::new(sched, &Spacing::UniformLambda, n, End::Min).unwrap();
            rms(&run(&grid, coarse_noise(&lambdas, &z, n)), &reference)
        })
        .collect()
}

#[test]
fn sde_dpm_solver_pp_strong_order() {
    // additive noise, exact in the linear part and the noise: strong order 1 at every order
    for order in [1, 2, 3] {
        let solver = SdeDpmSolverPP::order(order);
        for (name, sched) in schedules() {
            let errs = sde_strong_errors(&solver, sched.as_ref());
            let slope = order_slope(&NS, &errs);
            println!("{:<24} {:<18} strong slope {:.3}  errors {:?}", solver.name(), name, slope, errs);
            assert!(slope >= 0.8, "{} on {name}: strong slope {slope:.3} ({errs:?})", solver.name());
        }
    }
}

/// The drift of SDE-DPM-Solver++(3M) with a data prediction that depends on lambda only,
/// `x0(lambda) = ((lambda - lambda_0)/H)^3`, and zero noise: the exact value at the end is
/// `(sigma_T/sigma_0) e^{-H} x + alpha_T 12 H phi_4(-2H)`. The Taylor weight of `D2` makes the
/// scheme third order; diffusers' weight (`ThirdOrder::Reference`) leaves it first order.
#[test]
fn sde_third_order_weight() {
    let sched = ContinuousVp::default();
    let slope_of = |third_order: ThirdOrder| {
        let solver = SdeDpmSolverPP { third_order, ..SdeDpmSolverPP::order(3) };
        let mut errs = vec![];
        for n in NS {
            let grid = Grid::new(&sched, &Spacing::UniformLambda, n, End::Min).unwrap();
            let (first, last) = (grid.points()[0], grid.points()[n]);
            let big_h = last.lambda - first.lambda;
            let s = &sched;
            let denoiser = move |x: &Tensor, t: f64| {
                let u = (s.lambda(t) - first.lambda) / big_h;
                x.ones_like()?.affine(u * u * u, 0.0)
            };
            let mut model = Model::new(denoiser, &sched, Prediction::Sample);
            let x0 = Tensor::zeros((2, 2), DType::F64, &Device::Cpu).unwrap();
            let x =
                sample_with(&solver, &mut model, &grid, &x0, &mut |like: &Tensor| like.zeros_like(), |_| {}).unwrap();
            let exact = last.alpha * 12.0 * big_h * phi(4, -2.0 * big_h);
            let got = x.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0];
            errs.push((got - exact).abs());
        }
        let slope = order_slope(&NS, &errs);
        println!("SDE-DPM-Solver++(3M) {third_order:?}: drift slope {slope:.3}  errors {errs:?}");
        slope
    };
    let taylor = slope_of(ThirdOrder::Taylor);
    let reference = slope_of(ThirdOrder::Reference);
    assert!(taylor >= 2.7, "Taylor drift slope {taylor:.3}");
    assert!(reference < 1.5, "diffusers' weight was expected to be first order, got {reference:.3}");
}

// ---------------------------------------------------------------------------------------------
// NFE, sigma = 0, inversion

fn clean_end_check<S: Solver>(solver: &S, prediction: Prediction, tol: f64) {
    let gm = gm();
    let x_t = noise(16, 4, 9);
    for (name, sched) in schedules() {
        let sched = sched.as_ref();
        let n = 25;
        let grid = Grid::new(sched, &Spacing::UniformLambda, n, End::Clean).unwrap();
        assert!(grid.points()[n].is_clean());
        let mut model = Model::new(gm.denoiser(sched, prediction), sched, prediction);
        let x = sample(solver, &mut model, &grid, &x_t).unwrap();
        assert_eq!(model.nfe(), n, "{} on {name}: NFE", solver.name());
        let v = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(v.iter().all(|v| v.is_finite()), "{} on {name}: not finite", solver.name());
        let exact = gm.exact_endpoint(&x_t, &grid.points()[0], &grid.points()[n]).unwrap();
        let err = rms(&x, &exact);
        println!("{:<24} {:<18} into sigma = 0: rms error {err:.3e}", solver.name(), name);
        assert!(err < tol, "{} on {name}: error {err} into sigma = 0", solver.name());
    }
}

#[test]
fn finite_and_accurate_into_sigma_zero() {
    for variant in [BVariant::Bh1, BVariant::Bh2] {
        for order in [1, 2, 3] {
            clean_end_check(&unipc(order, variant, Form::Data, Corrector::All), Prediction::Epsilon, 2e-2);
        }
        clean_end_check(&unipc(3, variant, Form::Noise, Corrector::All), Prediction::Epsilon, 2e-2);
    }
    for order in [1, 2, 3] {
        // first order (DDIM) is 3e-2 off at 25 steps on this problem
        let tol = if order == 1 { 5e-2 } else { 2e-2 };
        clean_end_check(&Deis::order(order), Prediction::Epsilon, tol);
        clean_end_check(&DpmSolverSinglestep::pp(order), Prediction::VPrediction, tol);
        clean_end_check(&DpmSolverSinglestep::noise(order), Prediction::Epsilon, tol);
    }
    clean_end_check(&UniPc::diffusers_default(), Prediction::VPrediction, 2e-2);
    clean_end_check(&Deis::diffusers_default(), Prediction::Epsilon, 2e-2);
    clean_end_check(&DpmSolverSinglestep::diffusers_default(), Prediction::Epsilon, 2e-2);
    // stochastic: finite, and its sample lands near the data (within the mixture's spread)
    for order in [1, 2, 3] {
        let gm = gm();
        let sched = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
        let grid = Grid::new(&sched, &Spacing::UniformLambda, 25, End::Clean).unwrap();
        let mut model = Model::new(gm.denoiser(&sched, Prediction::Epsilon), &sched, Prediction::Epsilon);
        let solver = SdeDpmSolverPP::order(order);
        let x = sample_with(&solver, &mut model, &grid, &noise(16, 4, 9), &mut SeededNoise::new(3), |_| {}).unwrap();
        assert_eq!(model.nfe(), 25);
        let v = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(v.iter().all(|v| v.is_finite() && v.abs() < 3.0), "SDE order {order}: {v:?}");
    }
}

/// `sample` then `invert` then `sample` on a 50-step grid: (noise rms, data rms).
fn round_trip<S: Solver>(solver: &S) -> (f64, f64) {
    let gm = gm();
    let sched = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let grid = Grid::new(&sched, &Spacing::UniformLambda, 50, End::Min).unwrap();
    let x_t = noise(16, 4, 21);
    let mut model = Model::new(gm.denoiser(&sched, Prediction::Epsilon), &sched, Prediction::Epsilon);
    let x0 = sample(solver, &mut model, &grid, &x_t).unwrap();
    let back = invert(solver, &mut model, &grid, &x0).unwrap();
    let again = sample(solver, &mut model, &grid, &back).unwrap();
    let (e_noise, e_data) = (rms(&back, &x_t), rms(&again, &x0));
    println!("{:<24} round trip: noise rms {e_noise:.3e}, data rms {e_data:.3e}", solver.name());
    (e_noise, e_data)
}

#[test]
fn inversion_round_trip() {
    let mut failures = vec![];
    let mut check = |name: &str, (e_noise, e_data): (f64, f64), tol: f64| {
        if !(e_noise < tol && e_data < tol) {
            failures.push(format!("{name}: {e_noise:.3e} / {e_data:.3e} (tol {tol})"));
        }
    };
    for order in [1, 2, 3] {
        // first order (DDIM inversion) keeps an O(h) error
        let tol: f64 = [0.15, 1e-2, 5e-3][order - 1];
        check("UniPC", round_trip(&unipc(order, BVariant::Bh2, Form::Data, Corrector::All)), tol.min(1e-2));
        check("DEIS", round_trip(&Deis::order(order)), tol);
        check("singlestep", round_trip(&DpmSolverSinglestep::pp(order)), tol);
    }
    check("UniPC noise", round_trip(&unipc(2, BVariant::Bh1, Form::Noise, Corrector::All)), 1e-2);
    check("singlestep noise", round_trip(&DpmSolverSinglestep::noise(3)), 5e-3);
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn sde_refuses_inversion() {
    let sched = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let grid = Grid::new(&sched, &Spacing::UniformLambda, 10, End::Min).unwrap();
    let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &sched, Prediction::Epsilon);
    let err = invert(&SdeDpmSolverPP::order(2), &mut model, &grid, &noise(2, 2, 0)).unwrap_err();
    assert!(matches!(err.root(), Error::InvalidConfig(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------
// identities with the existing solvers (same numbers by construction of the formulas)

fn same<A: Solver, B: Solver>(a: &A, b: &B, prediction: Prediction, end: End) {
    let gm = gm();
    let x_t = noise(16, 4, 3);
    for (name, sched) in schedules() {
        let sched = sched.as_ref();
        let grid = Grid::new(sched, &Spacing::UniformLambda, 17, end).unwrap();
        let mut ma = Model::new(gm.denoiser(sched, prediction), sched, prediction);
        let mut mb = Model::new(gm.denoiser(sched, prediction), sched, prediction);
        let xa = sample(a, &mut ma, &grid, &x_t).unwrap();
        let xb = sample(b, &mut mb, &grid, &x_t).unwrap();
        let d = common::max_abs(&xa, &xb);
        assert!(d < 1e-11, "{} vs {} on {name}: {d:e}", a.name(), b.name());
    }
}

#[test]
fn identities_with_dpm_solver_multistep() {
    // DEIS-k is the noise-form exponential integrator of the Lagrange interpolant, i.e.
    // DPM-Solver(kM) with the exact Taylor weights
    // (the second-order warm-up step of DEIS(3) is the heun variant too)
    let heun = |order| DpmSolverMultistep { solver_type: SolverType::Heun, ..DpmSolverMultistep::noise(order) };
    same(&Deis::order(2), &heun(2), Prediction::Epsilon, End::Min);
    same(&Deis::order(3), &heun(3), Prediction::VPrediction, End::Clean);
    // UniP-2 (bh2, rho = 1/2) is DPM-Solver++(2M) midpoint; UniP-3 is DPM-Solver++(3M) (Taylor)
    same(
        &unipc(2, BVariant::Bh2, Form::Data, Corrector::None),
        &DpmSolverMultistep::pp(2),
        Prediction::Epsilon,
        End::Clean,
    );
    same(
        &unipc(3, BVariant::Bh2, Form::Data, Corrector::None),
        &DpmSolverMultistep::pp(3),
        Prediction::Epsilon,
        End::Min,
    );
    // first order everywhere: all of them are DDIM
    same(&DpmSolverSinglestep::pp(1), &Ddim::default(), Prediction::Epsilon, End::Clean);
    same(&unipc(1, BVariant::Bh2, Form::Noise, Corrector::None), &Ddim::default(), Prediction::Epsilon, End::Min);
    same(&Deis::order(1), &Ddim::default(), Prediction::Epsilon, End::Clean);
}

#[test]
fn sde_order_one_matches_its_formula() {
    // one step of SDE-DPM-Solver++(1) with given noise, against the formula written out
    let sched = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let grid = Grid::from_times(&sched, &[700.0, 400.0]).unwrap();
    let (s, t) = (grid.points()[0], grid.points()[1]);
    let h = t.lambda - s.lambda;
    let x = noise(3, 2, 1);
    let z = noise(3, 2, 2);
    let x0 = Tensor::new(&[[0.1f64, -0.2], [0.3, 0.0], [0.5, -0.4]], &Device::Cpu).unwrap();
    let x0c = x0.clone();
    let mut model = Model::new(move |_x: &Tensor, _t: f64| Ok(x0c.clone()), &sched, Prediction::Sample);
    let solver = SdeDpmSolverPP::order(1);
    let zc = z.clone();
    let got = sample_with(&solver, &mut model, &grid, &x, &mut move |_: &Tensor| Ok(zc.clone()), |_| {}).unwrap();
    let want = lincomb(&[
        (t.sigma / s.sigma * (-h).exp(), &x),
        (t.alpha * (1.0 - (-2.0 * h).exp()), &x0),
        (t.sigma * (1.0 - (-2.0 * h).exp()).sqrt(), &z),
    ])
    .unwrap();
    assert!(common::max_abs(&got, &want) < 1e-14);
}

#[test]
fn singlestep_order_lists_match_diffusers() {
    // diffusers' get_order_list (lower_order_final) and its switches
    let lof = |order| DpmSolverSinglestep {
        policy: OrderPolicy { order, lower_order_final: LowerOrderFinal::Always, euler_at_final: false },
        ..DpmSolverSinglestep::pp(order)
    };
    assert_eq!(lof(3).orders(9, false).unwrap(), vec![1, 2, 3, 1, 2, 3, 1, 2, 1]);
    assert_eq!(lof(3).orders(10, false).unwrap(), vec![1, 2, 3, 1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(lof(3).orders(8, false).unwrap(), vec![1, 2, 3, 1, 2, 3, 1, 2]);
    assert_eq!(lof(2).orders(6, false).unwrap(), vec![1, 2, 1, 2, 1, 1]);
    assert_eq!(lof(2).orders(5, false).unwrap(), vec![1, 2, 1, 2, 1]);
    assert_eq!(DpmSolverSinglestep::pp(3).orders(9, false).unwrap(), vec![1, 2, 3, 1, 2, 3, 1, 2, 3]);
    assert_eq!(DpmSolverSinglestep::pp(3).orders(9, true).unwrap(), vec![1, 2, 3, 1, 2, 3, 1, 2, 1]);
    assert_eq!(DpmSolverSinglestep::pp(2).orders(6, true).unwrap(), vec![1, 2, 1, 2, 1, 1]);
}

#[test]
fn invalid_orders_are_refused() {
    let sched = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let grid = Grid::new(&sched, &Spacing::UniformLambda, 5, End::Min).unwrap();
    let x = noise(2, 2, 0);
    let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &sched, Prediction::Epsilon);
    for order in [0, 4] {
        assert!(matches!(
            sample(&Deis::order(order), &mut model, &grid, &x).unwrap_err().root(),
            Error::InvalidConfig(_)
        ));
        assert!(matches!(
            sample(&UniPc::order(order), &mut model, &grid, &x).unwrap_err().root(),
            Error::InvalidConfig(_)
        ));
        assert!(matches!(
            sample(&DpmSolverSinglestep::pp(order), &mut model, &grid, &x).unwrap_err().root(),
            Error::InvalidConfig(_)
        ));
        assert!(matches!(
            sample(&SdeDpmSolverPP::order(order), &mut model, &grid, &x).unwrap_err().root(),
            Error::InvalidConfig(_)
        ));
    }
}
