//! Bad input: every case is a typed error with an actionable message, never a panic.

mod common;

use candle_core::{DType, Tensor};
use common::noise;
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;

fn sched() -> DiscreteVp {
    DiscreteVp::linear(1e-4, 0.02, 1000).unwrap()
}

#[test]
fn zero_steps() {
    let s = sched();
    for spacing in [
        Spacing::UniformLambda,
        Spacing::Karras { rho: 7.0 },
        Spacing::Trailing,
        Spacing::Leading { steps_offset: 1, skip_zero: false },
    ] {
        let err = Grid::new(&s, &spacing, 0, End::Clean).unwrap_err();
        assert!(matches!(err, Error::ZeroSteps), "{spacing:?}: {err}");
        assert!(err.to_string().contains("at least one step"));
    }
    assert!(matches!(Grid::from_times(&s, &[500.0]).unwrap_err(), Error::ZeroSteps));
    let g = Grid::new(&s, &Spacing::UniformTime, 10, End::Clean).unwrap();
    assert!(matches!(g.img2img(0.05).unwrap_err(), Error::InvalidConfig(_)));
    assert!(matches!(g.img2img(1.5).unwrap_err(), Error::InvalidConfig(_)));
}

#[test]
fn more_steps_than_training_timesteps() {
    let s = sched();
    for spacing in [
        Spacing::Trailing,
        Spacing::Linspace { round: true, skip_zero: false },
        Spacing::Leading { steps_offset: 0, skip_zero: false },
    ] {
        let err = Grid::new(&s, &spacing, 1001, End::Clean).unwrap_err();
        assert!(matches!(err, Error::TooManySteps { steps: 1001, max: 1000 }), "{spacing:?}: {err}");
        assert!(err.to_string().contains("use at most 1000 steps"));
    }
    // the n+1-point leading spacing of DPM-Solver fits one step fewer
    let err = Grid::new(&s, &Spacing::Leading { steps_offset: 0, skip_zero: true }, 1000, End::Clean).unwrap_err();
    assert!(matches!(err, Error::TooManySteps { max: 999, .. }), "{err}");
    // a discrete spacing on a continuous schedule is unsupported, not a panic
    let err = Grid::new(&ContinuousVp::default(), &Spacing::Trailing, 10, End::Clean).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
}

#[test]
fn non_monotone_grid() {
    let s = sched();
    let err = Grid::from_times(&s, &[900.0, 950.0, 100.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidGrid(ref m) if m.contains("not strictly monotone")), "{err}");
    let err = Grid::from_times(&s, &[900.0, 500.0, 500.0, 0.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidGrid(_)), "{err}");
    let err = Grid::from_sigmas(&s, &[10.0, f64::NAN, 1.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidGrid(_)), "{err}");
}

#[test]
fn sigma_zero_before_the_end() {
    let s = sched();
    let err = Grid::from_sigmas(&s, &[10.0, 0.0, 1.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidGrid(ref m) if m.contains("only the last point")), "{err}");
    // inverting a grid that ends clean would start at sigma = 0
    let g = Grid::new(&s, &Spacing::UniformTime, 5, End::Clean).unwrap();
    assert!(matches!(g.reversed().unwrap_err(), Error::InvalidGrid(_)));
    let gm = GaussianMixture::example(2, 2, 0).unwrap();
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    assert!(invert(&Ddim::default(), &mut model, &g, &noise(2, 2, 0)).is_err());
}

#[test]
fn invalid_beta_range_and_schedule_parameters() {
    for (a, b) in [(0.0, 0.02), (-1e-4, 0.02), (1e-4, 1.5), (f64::NAN, 0.02), (1e-4, f64::INFINITY)] {
        let err = DiscreteVp::linear(a, b, 1000).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(ref m) if m.contains("beta range")), "({a}, {b}): {err}");
        assert!(DiscreteVp::scaled_linear(a, b, 1000).is_err());
    }
    assert!(DiscreteVp::linear(1e-4, 0.02, 1).is_err());
    assert!(DiscreteVp::new(BetaSchedule::Betas(vec![0.1, 2.0]), 2).is_err());
    assert!(DiscreteVp::new(BetaSchedule::AlphasCumprod(vec![0.9, 0.95]), 2).is_err());
    assert!(ContinuousVp::new(20.0, 0.1, 1e-3).is_err());
    assert!(Edm::new(1.0, 0.5, EdmModelTime::Sigma).is_err());
    assert!(RectifiedFlow::new(0.0, 1e-3, 1000.0).is_err());
    assert!(Grid::new(&sched(), &Spacing::Karras { rho: -1.0 }, 5, End::Clean).is_err());
    assert!(Grid::new(&sched(), &Spacing::UniformTime, 5, End::At(2000.0)).is_err());
}

fn run_with(denoiser: impl FnMut(&Tensor, f64) -> candle_core::Result<Tensor>) -> Error {
    let s = sched();
    let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean).unwrap();
    let mut model = Model::new(denoiser, &s, Prediction::Epsilon);
    sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &noise(4, 3, 1)).unwrap_err()
}

#[test]
fn denoiser_output_of_the_wrong_shape() {
    let err = run_with(|x: &Tensor, _t: f64| x.narrow(0, 0, 2));
    assert!(matches!(err.root(), Error::DenoiserShape { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("step 1/10") && msg.contains("shape"), "{msg}");
}

#[test]
fn denoiser_output_of_the_wrong_dtype() {
    let err = run_with(|x: &Tensor, _t: f64| x.to_dtype(DType::F32));
    assert!(matches!(err.root(), Error::DenoiserDType { expected: DType::F64, got: DType::F32, .. }), "{err}");
}

#[test]
fn non_finite_denoiser_output_names_step_and_model_time() {
    let mut calls = 0;
    let err = run_with(move |x: &Tensor, t: f64| {
        calls += 1;
        if calls == 3 {
            x.affine(f64::NAN, 0.0)
        } else {
            Ok(x.affine(0.1 * t / 1000.0, 0.0)?)
        }
    });
    match &err {
        Error::Step { step: 3, count: 10, source, .. } => match source.as_ref() {
            Error::NonFinite { model_time, .. } => assert!(*model_time > 0.0 && *model_time < 999.0),
            other => panic!("unexpected inner error {other}"),
        },
        other => panic!("unexpected error {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("step 3/10") && msg.contains("model time") && msg.contains("NaN"), "{msg}");
    // infinity too
    let err = run_with(|x: &Tensor, _t: f64| x.affine(f64::INFINITY, 0.0));
    assert!(matches!(err.root(), Error::NonFinite { .. }), "{err}");
}

#[test]
fn denoiser_error_is_passed_through_with_context() {
    let err = run_with(|_x: &Tensor, _t: f64| Err(candle_core::Error::Msg("network exploded".into())));
    assert!(err.to_string().contains("network exploded") && err.to_string().contains("step 1/10"), "{err}");
}

#[test]
fn invalid_solver_settings() {
    let s = sched();
    let grid = Grid::new(&s, &Spacing::UniformLambda, 5, End::Clean).unwrap();
    let gm = GaussianMixture::example(2, 2, 0).unwrap();
    let x = noise(2, 2, 0);
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    for order in [0, 4] {
        let err = sample(&DpmSolverMultistep::pp(order), &mut model, &grid, &x).unwrap_err();
        assert!(matches!(err.root(), Error::InvalidConfig(_)), "{err}");
    }
    let err = sample(&Ddim { eta: -1.0 }, &mut model, &grid, &x).unwrap_err();
    assert!(matches!(err.root(), Error::InvalidConfig(_)), "{err}");
    assert!(Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon)
        .with_data_transform(DataTransform::Clip { range: 0.0 })
        .is_err());
    assert_eq!(model.nfe(), 0, "no evaluation happens before validation");
}

#[test]
fn epsilon_model_at_alpha_zero_is_refused() {
    let s = RectifiedFlow::default();
    let grid = Grid::new(&s, &Spacing::UniformTime, 5, End::Clean).unwrap();
    let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
    let err = sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &noise(2, 2, 0)).unwrap_err();
    assert!(matches!(err.root(), Error::Unsupported(_)), "{err}");
    let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Flow);
    let err = sample(&Heun::default(), &mut model, &grid, &noise(2, 2, 0)).unwrap_err();
    assert!(matches!(err.root(), Error::Unsupported(_)), "{err}");
}

#[test]
fn exact_endpoint_of_a_non_finite_start_is_an_error() {
    let s = sched();
    let gm = GaussianMixture::example(2, 2, 0).unwrap();
    let x = Tensor::new(&[[f64::NAN, 0.0]], &candle_core::Device::Cpu).unwrap();
    let err = gm.exact_endpoint(&x, &s.point(999.0), &s.point(0.0)).unwrap_err();
    assert!(matches!(err, Error::NonFinite { .. }), "{err}");
}

#[test]
fn huge_steps_offset_is_an_error_not_an_overflow() {
    let err = Grid::new(&sched(), &Spacing::Leading { steps_offset: usize::MAX, skip_zero: false }, 10, End::Clean)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidGrid(_)), "{err}");
}
