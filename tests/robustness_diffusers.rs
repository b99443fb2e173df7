//! Issue 9, the diffusers layer: defects 1, 5, 7 and the diffusers parts of 11, each with a test
//! that failed before its fix; and the property test over configs whose public fields are set
//! after parsing (`from_config` must re-validate them).

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::diffusers::{
    AlgorithmType, BetaScheduleName, DiffusersSampler, FinalSigmas, SchedulerClass, SchedulerConfig, SolverTypeName,
    TimestepSpacing,
};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::{limits, Error, Prediction, SeededNoise};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

fn noise(rows: usize, dim: usize, seed: u64) -> Tensor {
    Tensor::from_vec(SeededNoise::new(seed).normal_vec(rows * dim), (rows, dim), &Device::Cpu).unwrap()
}

/// Runs `steps` steps of `cfg` with a zero network; `Ok` must be finite.
fn run(cfg: &SchedulerConfig, steps: usize) -> Result<Tensor, Error> {
    let sampler = DiffusersSampler::from_config(cfg)?;
    let mut net = |x: &Tensor, _t: f64| x.zeros_like();
    let out = sampler.sample(&mut net, &noise(2, 3, 0).to_dtype(DType::F32)?, steps)?;
    let v: Vec<f32> = out.flatten_all()?.to_vec1()?;
    assert!(v.iter().all(|v| v.is_finite()), "{:?} {steps} steps: Ok with {v:?}", cfg.class);
    Ok(out)
}

fn names_key(err: &Error, key: &str) -> bool {
    matches!(err, Error::DiffusersConfig { key: k, .. } if k == key)
}

// -------------------------------------------------------------------------------------------------
// defect 1: public fields set after parsing are re-validated by from_config
// -------------------------------------------------------------------------------------------------

#[test]
fn defect_1_num_train_timesteps_set_after_parsing() {
    for class in SchedulerClass::ALL {
        for n in [0, 1, limits::MAX_TRAIN_TIMESTEPS + 1, 1_000_000_000, usize::MAX] {
            let mut cfg = SchedulerConfig::new(class);
            cfg.num_train_timesteps = Some(n);
            let err = DiffusersSampler::from_config(&cfg).unwrap_err();
            assert!(names_key(&err, "num_train_timesteps"), "{class:?} {n}: {err}");
            if n > limits::MAX_TRAIN_TIMESTEPS {
                assert!(err.to_string().contains(&limits::MAX_TRAIN_TIMESTEPS.to_string()), "{err}");
            }
        }
    }
}

#[test]
fn defect_1_other_fields_set_after_parsing() {
    let mut cases: Vec<(&str, SchedulerConfig)> = vec![];
    for class in SchedulerClass::ALL {
        let with = |key: &'static str, set: &dyn Fn(&mut SchedulerConfig)| {
            let mut cfg = SchedulerConfig::new(class);
            set(&mut cfg);
            (key, cfg)
        };
        cases.push(with("beta_start", &|c| c.beta_start = Some(f64::NAN)));
        cases.push(with("beta_end", &|c| c.beta_end = Some(f64::INFINITY)));
        cases.push(with("steps_offset", &|c| c.steps_offset = Some(usize::MAX)));
        cases.push(with("solver_order", &|c| c.solver_order = Some(0)));
        cases.push(with("trained_betas", &|c| c.trained_betas = Some(vec![f64::NAN; 1000])));
        cases.push(with("sigma_max", &|c| c.sigma_max = Some(-1.0)));
        cases.push(with("shift", &|c| c.shift = Some(f64::NAN)));
        cases.push(with("disable_corrector", &|c| c.disable_corrector = Some(vec![usize::MAX])));
    }
    for (key, cfg) in cases {
        match DiffusersSampler::from_config(&cfg) {
            // a key the class does not take is ignored, as diffusers ignores it
            Ok(_) => assert!(!cfg.class.accepts(key), "{:?} accepted a bad {key}", cfg.class),
            Err(e) => assert!(names_key(&e, key), "{:?} {key}: {e}", cfg.class),
        }
    }
}

// -------------------------------------------------------------------------------------------------
// defect 5: repeated timesteps
// -------------------------------------------------------------------------------------------------

#[test]
fn defect_5_more_steps_than_distinct_timesteps() {
    let singlestep = SchedulerConfig::new(SchedulerClass::DpmSolverSinglestep);
    let mut unipc = SchedulerConfig::new(SchedulerClass::UniPcMultistep);
    unipc.num_train_timesteps = Some(3);
    for (cfg, steps) in [(singlestep, 1001), (unipc, 4)] {
        match run(&cfg, steps) {
            Ok(_) => {}
            Err(e) => {
                assert!(!matches!(e.root(), Error::NonFinite { .. } | Error::NonFiniteSample { .. }), "{e}");
                let msg = e.to_string();
                assert!(msg.contains("repeat") || matches!(e, Error::TooManySteps { .. }), "{msg}");
            }
        }
    }
    // a typical count still works
    run(&SchedulerConfig::new(SchedulerClass::DpmSolverSinglestep), 20).unwrap();
}

// -------------------------------------------------------------------------------------------------
// defect 7: zero terminal SNR with linear betas
// -------------------------------------------------------------------------------------------------

#[test]
fn defect_7_zero_snr_with_linear_betas() {
    for class in [
        SchedulerClass::DpmSolverMultistep,
        SchedulerClass::UniPcMultistep,
        SchedulerClass::EulerDiscrete,
        SchedulerClass::EulerAncestralDiscrete,
    ] {
        let mut cfg = SchedulerConfig::new(class);
        cfg.rescale_betas_zero_snr = Some(true);
        cfg.prediction_type = Some(Prediction::VPrediction);
        let gm = GaussianMixture::example(3, 2, 0).unwrap();
        let result = DiffusersSampler::from_config(&cfg).and_then(|sampler| {
            let schedule = sampler.schedule()?;
            let mut net = gm.denoiser(schedule.as_ref(), Prediction::VPrediction);
            sampler.sample(&mut net, &noise(2, 3, 1).to_dtype(DType::F32)?, 20)
        });
        match result {
            Ok(out) => {
                let v: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
                assert!(v.iter().all(|v| v.is_finite()), "{class:?}: {v:?}");
            }
            // refused, naming the config key
            Err(e) => assert!(e.to_string().contains("rescale_betas_zero_snr"), "{class:?}: {e}"),
        }
    }
}

// -------------------------------------------------------------------------------------------------
// defect 11 (diffusers parts)
// -------------------------------------------------------------------------------------------------

#[test]
fn defect_11_huge_sigma_max_is_not_blamed_on_the_network() {
    for class in [SchedulerClass::EulerDiscrete, SchedulerClass::HeunDiscrete, SchedulerClass::LmsDiscrete] {
        let mut cfg = SchedulerConfig::new(class);
        cfg.use_karras_sigmas = Some(true);
        cfg.sigma_max = Some(1e300);
        cfg.sigma_min = Some(0.03);
        if let Err(e) = run(&cfg, 10) {
            assert!(!matches!(e.root(), Error::NonFinite { .. } | Error::NonFiniteSample { .. }), "{class:?}: {e}");
            assert!(e.to_string().contains("sigma_max"), "{class:?}: {e}");
        }
    }
}

#[test]
fn defect_11_step_cap_error_names_the_limit() {
    let flow = DiffusersSampler::from_config(&SchedulerConfig::new(SchedulerClass::FlowMatchEulerDiscrete)).unwrap();
    let err = flow.plan(limits::MAX_STEPS + 1).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("limit") && msg.contains(&limits::MAX_STEPS.to_string()), "{msg}");
    assert!(!msg.contains("training timesteps"), "{msg}");
    // a table class still names its table first
    let ddim = DiffusersSampler::from_config(&SchedulerConfig::new(SchedulerClass::Ddim)).unwrap();
    assert!(matches!(ddim.plan(usize::MAX), Err(Error::TooManySteps { max: 1000, .. })));
}

#[test]
fn defect_11_huge_class_names_and_keys_give_short_messages() {
    let long = "x".repeat(50 << 20);
    for text in [
        format!("{{\"_class_name\": \"{long}\"}}"),
        format!("{{\"_class_name\": \"DDIMScheduler\", \"{long}\": 1}}"),
        format!("{{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"{long}\"}}"),
    ] {
        let err = SchedulerConfig::from_json(&text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.len() < 2000, "a {} byte message", msg.len());
    }
}

// -------------------------------------------------------------------------------------------------
// the property test: random configs, fields set after parsing
// -------------------------------------------------------------------------------------------------

fn f64_field() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        6 => Just(None),
        3 => (0.0f64..1.0).prop_map(Some),
        1 => (0.0f64..100.0).prop_map(Some),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -1.0, 0.0, 1e300, 1e-300, 0.5, 0.999]).prop_map(Some),
    ]
}

fn usize_field() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        6 => Just(None),
        3 => (0usize..5).prop_map(Some),
        1 => prop::sample::select(vec![0, 1, 2, 3, 10, 999, 1000, 1001, usize::MAX, 1_000_000_000]).prop_map(Some),
    ]
}

fn bool_field() -> impl Strategy<Value = Option<bool>> {
    prop::option::of(any::<bool>())
}

#[derive(Clone, Debug)]
struct ConfigCase {
    cfg: SchedulerConfig,
    steps: usize,
    seed: u64,
}

fn config_case() -> impl Strategy<Value = ConfigCase> {
    let classes = SchedulerClass::ALL.to_vec();
    (
        (prop::sample::select(classes), usize_field(), f64_field(), f64_field(), usize_field()),
        (
            prop::option::of(prop::sample::select(vec![
                BetaScheduleName::Linear,
                BetaScheduleName::ScaledLinear,
                BetaScheduleName::SquaredCosCapV2,
            ])),
            prop::option::of(prop::sample::select(vec![
                Prediction::Epsilon,
                Prediction::Sample,
                Prediction::VPrediction,
                Prediction::Flow,
            ])),
            prop::option::of(prop::sample::select(vec![
                TimestepSpacing::Leading,
                TimestepSpacing::Linspace,
                TimestepSpacing::Trailing,
            ])),
            usize_field(),
        ),
        (bool_field(), bool_field(), bool_field(), bool_field(), bool_field(), bool_field()),
        (f64_field(), f64_field(), f64_field(), f64_field(), f64_field()),
        (
            prop::option::of(prop::sample::select(vec![
                AlgorithmType::DpmSolverPP,
                AlgorithmType::DpmSolver,
                AlgorithmType::SdeDpmSolverPP,
            ])),
            prop::option::of(prop::sample::select(vec![
                SolverTypeName::Midpoint,
                SolverTypeName::Heun,
                SolverTypeName::Bh1,
                SolverTypeName::Bh2,
            ])),
            prop::option::of(prop::sample::select(vec![FinalSigmas::Zero, FinalSigmas::SigmaMin])),
            prop::option::of(prop::collection::vec(prop_oneof![0usize..10, Just(usize::MAX)], 0..3)),
            prop::option::of(prop::collection::vec(prop_oneof![0.0f64..0.05, Just(f64::NAN), Just(2.0)], 0..30)),
        ),
        prop_oneof![10 => 1usize..30, 1 => 30usize..1100, 1 => prop::sample::select(vec![0, 100_001, usize::MAX])],
        any::<u64>(),
    )
        .prop_map(|(a, b, c, d, e, steps, seed)| {
            let (class, n_train, beta_start, beta_end, steps_offset) = a;
            let (beta_schedule, prediction_type, timestep_spacing, solver_order) = b;
            let (karras, exponential, beta_sigmas, lu, zero_snr, lof) = c;
            let (sigma_min, sigma_max, shift, flow_shift, clip_range) = d;
            let (algorithm, solver_type, final_sigmas, disable_corrector, trained_betas) = e;
            let mut cfg = SchedulerConfig::new(class);
            // fields set after parsing: nothing here passed a validation pass
            cfg.num_train_timesteps = n_train;
            cfg.beta_start = beta_start;
            cfg.beta_end = beta_end;
            cfg.steps_offset = steps_offset;
            cfg.beta_schedule = beta_schedule;
            cfg.prediction_type = prediction_type;
            cfg.timestep_spacing = timestep_spacing;
            cfg.solver_order = solver_order;
            cfg.use_karras_sigmas = karras;
            cfg.use_exponential_sigmas = exponential;
            cfg.use_beta_sigmas = beta_sigmas;
            cfg.use_lu_lambdas = lu;
            cfg.rescale_betas_zero_snr = zero_snr;
            cfg.lower_order_final = lof;
            cfg.sigma_min = sigma_min;
            cfg.sigma_max = sigma_max;
            cfg.shift = shift;
            cfg.flow_shift = flow_shift;
            cfg.clip_sample_range = clip_range;
            cfg.algorithm_type = algorithm;
            cfg.solver_type = solver_type;
            cfg.final_sigmas_type = final_sigmas;
            cfg.disable_corrector = disable_corrector;
            cfg.trained_betas = trained_betas;
            ConfigCase { cfg, steps, seed }
        })
}

fn check_config(c: &ConfigCase) -> Result<(), TestCaseError> {
    let Ok(sampler) = DiffusersSampler::from_config(&c.cfg) else { return Ok(()) };
    let Ok(plan) = sampler.plan(c.steps) else { return Ok(()) };
    prop_assert!(plan.steps.len() <= limits::MAX_STEPS + 1);
    let Ok(schedule) = sampler.schedule() else { return Ok(()) };
    let gm = GaussianMixture::example(3, 2, c.seed).unwrap();
    let prediction = sampler.prediction();
    let mut exact = gm.denoiser(schedule.as_ref(), prediction);
    let times = std::cell::RefCell::new(vec![]);
    let mut net = |x: &Tensor, t: f64| {
        times.borrow_mut().push(t);
        exact(x, t)
    };
    let x = noise(2, 3, c.seed).to_dtype(DType::F32).unwrap();
    if let Ok(out) = sampler.sample(&mut net, &x, c.steps.min(60)) {
        let v: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        prop_assert!(v.iter().all(|v| v.is_finite()), "Ok with {v:?}");
    }
    prop_assert!(times.borrow().iter().all(|t| t.is_finite()), "{:?}", times.borrow());
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse::<u32>().ok()).map_or(3_000, |n| (n / 5).max(1))
}

/// Random configs with their public fields set after parsing (no validation pass ran), random
/// step counts: `from_config`, `plan` and `sample` end in `Ok` (finite) or a typed error, never a
/// panic; the network never sees a non-finite time. 3 000 cases by default (a fifth of
/// `PROPTEST_CASES` when set).
#[test]
fn configs_with_fields_set_after_parsing() {
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = if std::env::var("PROPERTY_RANDOM").is_ok() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let start = std::time::Instant::now();
    let result = runner.run(&config_case(), |c| check_config(&c));
    println!("{} configs in {:.1} s", cases(), start.elapsed().as_secs_f64());
    if let Err(e) = result {
        panic!("{e}");
    }
}
