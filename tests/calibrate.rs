//! Calibration: the teacher, a small end-to-end calibration judged on held-out noises, saved
//! schedule files (bit-for-bit reload, and a typed error for every kind of bad input).

mod common;

use candle_core::Tensor;
use common::{noise, rms};
use diffusion_samplers::calibrate::{
    calibrate, gits, solver_plan, Calibration, CalibrationError, Expect, FinalStep, Reference, ScheduleFile, Teacher,
};
use diffusion_samplers::math::expint::Form;
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::{
    sample, BVariant, Corrector, DiscreteVp, DpmAdaptive, End, Error, Grid, Model, OrderPolicy, PlanStep, Planned,
    Prediction, Scheduler, Spacing, UniPc,
};

fn mixture() -> GaussianMixture {
    GaussianMixture::example(6, 4, 21).unwrap()
}

fn model<'a>(gm: &'a GaussianMixture, s: &'a DiscreteVp) -> Model<'a> {
    Model::new(gm.denoiser(s, Prediction::Epsilon), s, Prediction::Epsilon)
}

fn cal_error(e: Error) -> CalibrationError {
    match e {
        Error::Calibration(c) => c,
        other => panic!("expected a calibration error, got {other}"),
    }
}

/// The teacher's endpoint, with the final step extrapolated to sigma = 0, is within 1e-4 of the
/// exact ODE endpoint; with the first-order final step it carries the O(sigma_min^2) error.
#[test]
fn teacher_reaches_the_exact_endpoint() {
    let gm = mixture();
    let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let x = noise(32, 6, 4);
    let exact = gm.exact_endpoint(&x, &s.point(999.0), &s.clean_point()).unwrap();
    let solver = DpmAdaptive { rtol: 1e-5, atol: 1e-5, ..DpmAdaptive::default() };
    let extrap =
        Reference::new(&mut model(&gm, &s), &x, &Teacher { solver, final_step: FinalStep::Extrapolate { points: 3 } })
            .unwrap();
    let denoise = Reference::new(&mut model(&gm, &s), &x, &Teacher { solver, final_step: FinalStep::Denoise }).unwrap();
    let (e1, e0) = (rms(&extrap.end, &exact), rms(&denoise.end, &exact));
    println!(
        "teacher: {} points, NFE {}, RMSE extrapolated {e1:.2e}, denoised {e0:.2e}",
        extrap.points.len(),
        extrap.nfe
    );
    assert!(e1 < 1e-4 && e0 > 10.0 * e1, "{e1:e} {e0:e}");
    assert_eq!(extrap.points.len(), extrap.x.len());
    assert_eq!(extrap.points[0].t, 999.0);
    assert_eq!(extrap.points.last().unwrap().t, 0.0);
}

/// A small calibration of DPM-Solver++(2M) at 5 NFE: the calibrated grid beats the grid it
/// started from on held-out noises (judged against the exact endpoint), and its cost is
/// reported.
#[test]
fn calibration_improves_held_out_error() {
    let gm = mixture();
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let cal = noise(128, 6, 1);
    let held = noise(256, 6, 2);
    let exact = gm.exact_endpoint(&held, &s.point(999.0), &s.clean_point()).unwrap();
    let mut opts = Calibration::schedule("dpmpp_2m", 5);
    opts.teacher.final_step = FinalStep::Extrapolate { points: 3 };
    opts.search.placement.max_evals = 150;
    let mut m = model(&gm, &s);
    let out = calibrate(&mut m, &cal, &opts).unwrap();
    let plan = solver_plan("dpmpp_2m", 5).unwrap();
    let run = |grid: &Grid| sample(&Planned { plan: plan.clone() }, &mut model(&gm, &s), grid, &held).unwrap();
    let start = Grid::new(&s, &Spacing::TimeQuadratic, 5, End::Clean).unwrap();
    let (before, after) = (rms(&run(&start), &exact), rms(&run(&out.grid), &exact));
    println!(
        "held-out RMSE {before:.3e} -> {after:.3e}; calibration {:.3e} -> {:.3e}; cost {:?} ({})",
        out.rmse_start, out.rmse, out.cost, out.method
    );
    assert!(after < 0.8 * before, "{before:e} -> {after:e}");
    assert_eq!(out.grid.len(), 5);
    assert_eq!(out.solver, "dpmpp_2m");
    assert!(out.cost.teacher_nfe > 20 && out.cost.student_solves > 10);
    assert_eq!(out.cost.student_nfe, 5 * out.cost.student_solves);
    assert_eq!(m.nfe(), out.cost.teacher_nfe + out.cost.student_nfe);
}

/// The UniPC plans a calibration can start from are UniPC itself (fixed order, corrector after
/// every step, data and noise form): a plan search started from one starts from that solver.
#[test]
fn unipc_plans_reproduce_unipc() {
    let gm = mixture();
    let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let x = noise(4, 6, 7);
    let grid = Grid::new(&s, &Spacing::UniformTime, 6, End::Clean).unwrap();
    let mut checked = 0;
    for (name, order, variant, form) in [
        ("unipc_bh2_2", 2, BVariant::Bh2, Form::Data),
        ("unipc_bh1_2", 2, BVariant::Bh1, Form::Data),
        ("unipc_noise_bh2_2", 2, BVariant::Bh2, Form::Noise),
        ("unipc_noise_bh1_2", 2, BVariant::Bh1, Form::Noise),
    ] {
        let unipc = UniPc {
            policy: OrderPolicy::fixed(order),
            variant,
            form,
            corrector: Corrector::All,
            end: Default::default(),
        };
        let want = sample(&unipc, &mut model(&gm, &s), &grid, &x).unwrap();
        let plan = solver_plan(name, 6).unwrap();
        let got = sample(&Planned { plan }, &mut model(&gm, &s), &grid, &x).unwrap();
        let err = rms(&want, &got);
        assert!(err < 1e-12, "{name}: {err:e}");
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn gits_needs_enough_teacher_points() {
    let gm = mixture();
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let teacher = Teacher { solver: DpmAdaptive::default(), final_step: FinalStep::Denoise };
    let reference = Reference::new(&mut model(&gm, &s), &noise(8, 6, 0), &teacher).unwrap();
    let n = reference.points.len();
    let ok = gits::search(&reference, &s, n.min(4), PlanStep::data(2), 1, None).unwrap();
    assert_eq!(ok.grid.len(), n.min(4));
    assert_eq!(ok.indices[0], 0);
    let err = gits::search(&reference, &s, n + 1, PlanStep::data(2), 1, None).unwrap_err();
    assert!(matches!(cal_error(err), CalibrationError::Budget { .. }));
}

#[test]
fn bad_calibration_inputs_are_typed_errors() {
    let gm = mixture();
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let empty = Tensor::zeros((0, 6), candle_core::DType::F64, &candle_core::Device::Cpu).unwrap();
    let err = calibrate(&mut model(&gm, &s), &empty, &Calibration::schedule("dpmpp_2m", 5)).unwrap_err();
    assert!(matches!(cal_error(err), CalibrationError::NoNoise));
    let mut m = model(&gm, &s);
    let err = calibrate(&mut m, &noise(4, 6, 0), &Calibration::schedule("dpmpp_2m", 1001)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(cal_error(err), CalibrationError::Budget { nfe: 1001, .. }), "{msg}");
    assert!(msg.contains("at most 1000"), "{msg}");
    assert_eq!(m.nfe(), 0, "refused before any evaluation");
    let err = calibrate(&mut model(&gm, &s), &noise(4, 6, 0), &Calibration::schedule("dpmpp_2m", 0)).unwrap_err();
    assert!(matches!(cal_error(err), CalibrationError::Budget { nfe: 0, .. }));
    let mut opts = Calibration::schedule("dpmpp_2m", 5);
    opts.start_grid = Some(Grid::new(&s, &Spacing::UniformLambda, 4, End::Clean).unwrap());
    let mut m = model(&gm, &s);
    let err = calibrate(&mut m, &noise(4, 6, 0), &opts).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)) && err.to_string().contains("nfe = 5"), "{err}");
    assert_eq!(m.nfe(), 0, "refused before any evaluation");
    let err = calibrate(&mut model(&gm, &s), &noise(4, 6, 0), &Calibration::schedule("euler_a", 5)).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)) && err.to_string().contains("dpmpp_2m"), "{err}");
}

fn saved(s: &DiscreteVp) -> (Grid, ScheduleFile) {
    // an irregular grid as a calibration would make it (points from log-SNR values)
    let lambdas = [-5.06, -1.3, 0.2, 1.7, 4.0];
    let mut pts: Vec<_> =
        lambdas.iter().enumerate().map(|(i, l)| if i == 0 { s.point(999.0) } else { s.point_of_lambda(*l) }).collect();
    pts.push(s.clean_point());
    let grid = Grid::from_points(pts).unwrap();
    let file = ScheduleFile::new("gm-test@1", s, "dpmpp_2m", &grid, None, "time-quadratic").unwrap();
    (grid, file)
}

#[test]
fn a_saved_schedule_reloads_bit_for_bit() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let (grid, file) = saved(&s);
    let dir = std::env::temp_dir().join(format!("ds-cal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("schedule.json");
    file.save(&path).unwrap();
    let back = ScheduleFile::load(&path).unwrap();
    assert_eq!(back, file);
    let expect = Expect { model: "gm-test@1", schedule: &s, solver: "dpmpp_2m" };
    let g = back.grid(&expect).unwrap();
    assert_eq!(g, grid, "the reloaded grid differs");
    for (a, b) in g.points().iter().zip(grid.points()) {
        assert_eq!(a.t.to_bits(), b.t.to_bits());
        assert_eq!(a.lambda.to_bits(), b.lambda.to_bits());
    }
    // a planned solver's file carries its plan
    let plan = diffusion_samplers::SolverPlan::from_fn(5, |i| PlanStep { corrector: i % 2 == 0, ..PlanStep::data(2) });
    let f = ScheduleFile::new("gm-test@1", &s, "planned", &grid, Some(plan.clone()), "lambda").unwrap();
    let back = ScheduleFile::from_json(&f.to_json().unwrap(), "x").unwrap();
    assert_eq!(back.plan, Some(plan));
    std::fs::remove_dir_all(&dir).ok();
}

/// Every kind of bad file gives its own typed error naming what is wrong.
#[test]
fn bad_schedule_files_are_typed_errors() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let (_, file) = saved(&s);
    let expect = Expect { model: "gm-test@1", schedule: &s, solver: "dpmpp_2m" };
    let load = |f: &ScheduleFile| f.grid(&expect).map_err(cal_error);

    // another model, another solver, another noise schedule
    let e = file.grid(&Expect { model: "other-model", ..expect }).map_err(cal_error).unwrap_err();
    assert!(matches!(&e, CalibrationError::WrongModel { found, .. } if found == "gm-test@1"), "{e}");
    let e = file.grid(&Expect { solver: "unipc_bh2_2", ..expect }).map_err(cal_error).unwrap_err();
    assert!(matches!(&e, CalibrationError::WrongSolver { found, .. } if found == "dpmpp_2m"), "{e}");
    let sl = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let e = file.grid(&Expect { schedule: &sl, ..expect }).map_err(cal_error).unwrap_err();
    assert!(matches!(e, CalibrationError::WrongNoiseSchedule { .. }), "{e}");

    // hand edits: non-monotone, out of range, sigma that disagrees with the time, NaN via null
    let mut f = file.clone();
    f.times.swap(1, 2);
    f.sigmas.swap(1, 2);
    f.model_times.swap(1, 2);
    let e = load(&f).unwrap_err();
    assert!(matches!(&e, CalibrationError::InvalidSchedule { reason, .. } if reason.contains("decrease")), "{e}");
    let mut f = file.clone();
    f.times[2] = 1500.0;
    let e = load(&f).unwrap_err();
    assert!(matches!(&e, CalibrationError::InvalidSchedule { reason, .. } if reason.contains("outside")), "{e}");
    let mut f = file.clone();
    f.sigmas[1] *= 1.01;
    let e = load(&f).unwrap_err();
    assert!(matches!(&e, CalibrationError::InvalidSchedule { reason, .. } if reason.contains("sigma")), "{e}");
    let mut f = file.clone();
    f.times[1] = f64::NAN;
    let e = load(&f).unwrap_err();
    assert!(matches!(&e, CalibrationError::InvalidSchedule { reason, .. } if reason.contains("finite")), "{e}");
    let mut f = file.clone();
    f.nfe = 7;
    assert!(matches!(load(&f).unwrap_err(), CalibrationError::InvalidSchedule { .. }));
    let mut f = file.clone();
    f.sigmas[5] = 0.01;
    assert!(matches!(load(&f).unwrap_err(), CalibrationError::InvalidSchedule { .. }));
    let mut f = file.clone();
    f.solver = "planned".into();
    let e = f.grid(&Expect { solver: "planned", ..expect }).map_err(cal_error).unwrap_err();
    assert!(matches!(&e, CalibrationError::InvalidSchedule { reason, .. } if reason.contains("plan")), "{e}");

    // corrupt text: truncated, NaN literal, unknown field, wrong format, wrong field type
    let text = file.to_json().unwrap();
    let broken = [
        text[..text.len() / 2].to_string(),
        text.replacen("999.0", "NaN", 1),
        text.replacen("\"nfe\"", "\"extra\": 1, \"nfe\"", 1),
        text.replacen("diffusion-samplers/schedule", "something-else", 1),
        text.replacen("\"nfe\": 5", "\"nfe\": \"five\"", 1),
    ];
    for (i, t) in broken.iter().enumerate() {
        let e = ScheduleFile::from_json(t, "bad.json").map_err(cal_error).unwrap_err();
        assert!(matches!(&e, CalibrationError::FileFormat { path, .. } if path == "bad.json"), "case {i}: {e}");
    }
    let e = ScheduleFile::load("/nonexistent/dir/schedule.json").map_err(cal_error).unwrap_err();
    assert!(matches!(e, CalibrationError::FileRead { .. }), "{e}");
    assert!(Error::from(e).to_string().contains("/nonexistent/dir/schedule.json"));
}
