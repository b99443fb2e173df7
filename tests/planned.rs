//! The plan-following solver: given the plans of DPM-Solver(++) multistep and UniPC it
//! reproduces them (to rounding), its final extrapolation to sigma = 0 removes the first-order
//! final step's error, and bad plans are refused.

mod common;

use common::{max_abs, noise, rms};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::{
    sample, Algorithm, BVariant, Corrector, DiscreteVp, DpmSolverMultistep, End, Error, Grid, LowerOrderFinal, Model,
    OrderPolicy, PlanForm, PlanStep, Planned, Prediction, Scheduler, SecondOrder, Solver, SolverPlan, SolverType,
    Spacing, UniPc, UniPcEnd,
};

fn run<S: Solver>(solver: &S, sched: &DiscreteVp, grid: &Grid, pred: Prediction) -> (candle_core::Tensor, usize) {
    let gm = GaussianMixture::example(5, 3, 4).unwrap();
    let mut model = Model::new(gm.denoiser(sched, pred), sched, pred);
    let x = sample(solver, &mut model, grid, &noise(8, 5, 9)).unwrap();
    (x, model.nfe())
}

fn plan_like(grid: &Grid, policy: OrderPolicy, step: PlanStep) -> SolverPlan {
    SolverPlan::from_fn(grid.len(), |i| {
        let st = grid.steps().nth(i).unwrap();
        PlanStep { order: policy.order_at(i + 1, &st), ..step }
    })
}

fn same<S: Solver>(label: &str, solver: &S, plan: SolverPlan, sched: &DiscreteVp, grid: &Grid, pred: Prediction) {
    let (want, n1) = run(solver, sched, grid, pred);
    let (got, n2) = run(&Planned { plan }, sched, grid, pred);
    let err = max_abs(&want, &got);
    println!("{label}: max abs {err:.2e}");
    assert!(err < 1e-11, "{label}: {err:e}");
    assert_eq!(n1, n2, "{label}: NFE");
}

#[test]
fn reproduces_dpm_solver_multistep() {
    let sched = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    for (n, end) in [(5, End::Clean), (10, End::Clean), (12, End::Min)] {
        let grid = Grid::new(&sched, &Spacing::UniformLambda, n, end).unwrap();
        for order in 1..=3 {
            for (algorithm, form) in [(Algorithm::DpmSolverPP, PlanForm::Data), (Algorithm::DpmSolver, PlanForm::Noise)]
            {
                for (solver_type, second) in
                    [(SolverType::Midpoint, SecondOrder::Bh2), (SolverType::Heun, SecondOrder::Taylor)]
                {
                    for lof in [LowerOrderFinal::Never, LowerOrderFinal::Always] {
                        let policy = OrderPolicy { order, lower_order_final: lof, euler_at_final: false };
                        let solver =
                            DpmSolverMultistep { algorithm, policy, solver_type, ..DpmSolverMultistep::pp(order) };
                        let step = PlanStep { order, form, second, corrector: false };
                        let label = format!("{} {solver_type:?} {lof:?} n={n} {end:?}", solver.name());
                        same(&label, &solver, plan_like(&grid, policy, step), &sched, &grid, Prediction::Epsilon);
                    }
                }
            }
        }
    }
}

#[test]
fn reproduces_unipc() {
    let sched = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    for (n, end) in [(5, End::Clean), (10, End::Clean), (8, End::Min)] {
        let grid = Grid::new(&sched, &Spacing::UniformLambda, n, end).unwrap();
        for order in 1..=3 {
            for (variant, second) in [(BVariant::Bh1, SecondOrder::Bh1), (BVariant::Bh2, SecondOrder::Bh2)] {
                for form in [PlanForm::Data, PlanForm::Noise] {
                    for lof in [LowerOrderFinal::Never, LowerOrderFinal::Always] {
                        let policy = OrderPolicy { order, lower_order_final: lof, euler_at_final: false };
                        let f = match form {
                            PlanForm::Data => diffusion_samplers::math::expint::Form::Data,
                            PlanForm::Noise => diffusion_samplers::math::expint::Form::Noise,
                        };
                        let solver =
                            UniPc { policy, variant, form: f, corrector: Corrector::All, end: UniPcEnd::Clean };
                        let step = PlanStep { order, form, second, corrector: true };
                        let label = format!("UniPC-{order} {variant:?} {form:?} {lof:?} n={n} {end:?}");
                        same(&label, &solver, plan_like(&grid, policy, step), &sched, &grid, Prediction::VPrediction);
                    }
                }
            }
        }
        // the corrector switched off on some steps
        let policy = OrderPolicy::fixed(2);
        let solver = UniPc { corrector: Corrector::Except(vec![0, 3]), ..UniPc::order(2) };
        let plan = SolverPlan::from_fn(grid.len(), |i| {
            let st = grid.steps().nth(i).unwrap();
            PlanStep { order: policy.order_at(i + 1, &st), corrector: i != 0 && i != 3, ..PlanStep::data(2) }
        });
        same(&format!("UniPC-2 except [0, 3] n={n}"), &solver, plan, &sched, &grid, Prediction::Epsilon);
    }
}

/// Into sigma = 0, extrapolating the last data predictions in ksigma^2 leaves an error far below
/// the first-order final step's on a fine grid (where the trajectory error is negligible).
#[test]
fn extrapolated_final_step_beats_the_first_order_one() {
    let sched = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let gm = GaussianMixture::example(5, 3, 4).unwrap();
    let x_t = noise(8, 5, 9);
    let grid = Grid::new(&sched, &Spacing::UniformLambda, 200, End::Clean).unwrap();
    let exact = gm.exact_endpoint(&x_t, &grid.points()[0], &sched.clean_point()).unwrap();
    let mut errs = vec![];
    for last in 1..=3 {
        let plan = SolverPlan::from_fn(200, |i| PlanStep::data(if i == 199 { last } else { 3 }));
        let mut model = Model::new(gm.denoiser(&sched, Prediction::Epsilon), &sched, Prediction::Epsilon);
        let y = sample(&Planned { plan }, &mut model, &grid, &x_t).unwrap();
        assert_eq!(model.nfe(), 200);
        errs.push(rms(&y, &exact));
    }
    println!("final step of order 1, 2, 3: {errs:?}");
    assert!(errs[1] < 0.2 * errs[0] && errs[2] < errs[1], "{errs:?}");
}

#[test]
fn refuses_bad_plans() {
    let sched = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let grid = Grid::new(&sched, &Spacing::UniformLambda, 5, End::Clean).unwrap();
    let gm = GaussianMixture::example(5, 3, 4).unwrap();
    let x = noise(2, 5, 9);
    let cases = [
        (SolverPlan::from_fn(4, |_| PlanStep::data(2)), "grid has 5"),
        (SolverPlan::from_fn(5, |i| PlanStep::data(if i == 2 { 4 } else { 2 })), "order 4"),
        (SolverPlan::from_fn(5, |i| PlanStep::data(if i == 2 { 0 } else { 2 })), "order 0"),
    ];
    for (plan, what) in cases {
        let mut model = Model::new(gm.denoiser(&sched, Prediction::Epsilon), &sched, Prediction::Epsilon);
        let err = sample(&Planned { plan }, &mut model, &grid, &x).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
        assert!(matches!(err.root(), Error::InvalidGrid(_) | Error::InvalidConfig(_)), "{err}");
        assert_eq!(model.nfe(), 0);
    }
}
