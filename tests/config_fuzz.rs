//! Property test of the diffusers config layer: random and malformed `scheduler_config.json`
//! text (wrong types, missing fields, huge and negative numbers, Python's NaN / Infinity tokens,
//! unknown keys, truncated and corrupted JSON, random option values) goes through parsing,
//! resolving, `timesteps(steps)` for random step counts (0, negative-as-huge, beyond the table)
//! and, for small step counts, a full sampling run with a trivial network. Every input must end in
//! `Ok` or a typed `Error`, never a panic.
//!
//! 100 000 inputs by default (7-8 s in release on one core), from a fixed seed; set
//! `CONFIG_FUZZ_CASES` to run more or fewer and `CONFIG_FUZZ_RANDOM=1` for a fresh seed.

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::diffusers::{DiffusersSampler, SchedulerClass, SchedulerConfig, OTHER_DIFFUSERS_KEYS};
use diffusion_samplers::Error;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

/// Option values diffusers uses (and some it does not).
const WORDS: &[&str] = &[
    "linear",
    "scaled_linear",
    "squaredcos_cap_v2",
    "exp",
    "laplace",
    "sigmoid",
    "epsilon",
    "sample",
    "v_prediction",
    "flow_prediction",
    "original_sample",
    "leading",
    "linspace",
    "trailing",
    "dpmsolver",
    "dpmsolver++",
    "sde-dpmsolver",
    "sde-dpmsolver++",
    "deis",
    "midpoint",
    "heun",
    "logrho",
    "bh1",
    "bh2",
    "zero",
    "sigma_min",
    "fixed_small",
    "fixed_large",
    "fixed_small_log",
    "fixed_large_log",
    "learned",
    "learned_range",
    "discrete",
    "continuous",
    "log_linear",
    "exponential",
    "NaN",
    "Infinity",
    "-Infinity",
    "",
    "DDIMScheduler",
];

fn known_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = SchedulerClass::ALL.iter().flat_map(|c| c.keys()).collect();
    keys.extend_from_slice(OTHER_DIFFUSERS_KEYS);
    keys.sort();
    keys.dedup();
    keys
}

fn class_names() -> Vec<Value> {
    let mut v: Vec<Value> = SchedulerClass::ALL.iter().map(|c| json!(c.name())).collect();
    v.extend([json!("FooScheduler"), json!(""), json!(3), Value::Null, json!(["DDIMScheduler"])]);
    v
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => Just(Value::Null),
        4 => any::<bool>().prop_map(Value::Bool),
        4 => (-3i64..1200).prop_map(|i| json!(i)),
        1 => any::<i64>().prop_map(|i| json!(i)),
        1 => any::<u64>().prop_map(|i| json!(i)),
        4 => (-2.0f64..2.0).prop_map(|f| json!(f)),
        1 => prop::sample::select(vec![1e-300, 1e300, f64::MAX, f64::MIN_POSITIVE, -0.0, 0.999999, 1.0, 0.5]).prop_map(|f| json!(f)),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        6 => prop::sample::select(WORDS).prop_map(|s| json!(s)),
        1 => "[a-zA-Z0-9_+.-]{0,10}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..3).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A config object: a class name (usually valid), known keys with random values, sometimes an
/// unknown key, sometimes betas of the right length.
fn config() -> impl Strategy<Value = Value> {
    let keys = known_keys();
    (
        prop::sample::select(class_names()),
        prop::collection::vec((prop::sample::select(keys), value()), 0..8),
        prop::option::weighted(0.1, ("[a-z_]{1,12}", value())),
        prop::option::weighted(0.05, (2usize..40, 0.0f64..0.9)),
        any::<bool>(),
    )
        .prop_map(|(class, kv, unknown, betas, drop_class)| {
            let mut m = Map::new();
            if !drop_class {
                m.insert("_class_name".into(), class);
            }
            for (k, v) in kv {
                m.insert(k.to_string(), v);
            }
            if let Some((k, v)) = unknown {
                m.insert(k, v);
            }
            if let Some((n, b)) = betas {
                m.insert("num_train_timesteps".into(), json!(n));
                m.insert(
                    "trained_betas".into(),
                    json!((0..n).map(|i| b * (i + 1) as f64 / n as f64).collect::<Vec<_>>()),
                );
            }
            Value::Object(m)
        })
}

/// A plausible value for `key` (the right type, a random value in or near its range).
fn typed(key: &'static str) -> BoxedStrategy<Value> {
    let words = |w: &'static [&'static str]| prop::sample::select(w).prop_map(|s| json!(s)).boxed();
    match key {
        "num_train_timesteps" => prop_oneof![Just(json!(1000)), (1usize..3000).prop_map(|n| json!(n))].boxed(),
        "steps_offset" | "solver_order" | "base_image_seq_len" | "max_image_seq_len" => {
            (0usize..6).prop_map(|n| json!(n)).boxed()
        }
        "beta_start" => (0.0f64..0.01).prop_map(|f| json!(f)).boxed(),
        "beta_end" => (0.005f64..0.05).prop_map(|f| json!(f)).boxed(),
        "beta_schedule" => words(&["linear", "scaled_linear", "squaredcos_cap_v2", "exp", "laplace", "sigmoid"]),
        "prediction_type" => words(&["epsilon", "sample", "v_prediction", "flow_prediction"]),
        "timestep_spacing" => words(&["leading", "linspace", "trailing"]),
        "algorithm_type" => words(&["dpmsolver", "dpmsolver++", "sde-dpmsolver++", "deis"]),
        "solver_type" => words(&["midpoint", "heun", "logrho", "bh1", "bh2"]),
        "final_sigmas_type" => words(&["zero", "sigma_min"]),
        "variance_type" => words(&["fixed_small", "fixed_large", "fixed_small_log"]),
        "timestep_type" => words(&["discrete", "continuous"]),
        "interpolation_type" => words(&["linear", "log_linear"]),
        "time_shift_type" => words(&["exponential", "linear"]),
        "lambda_min_clipped" => (-10.0f64..5.0).prop_map(|f| json!(f)).boxed(),
        "dynamic_thresholding_ratio" => (0.0f64..1.0).prop_map(|f| json!(f)).boxed(),
        "shift_terminal" => (0.0f64..0.5).prop_map(|f| json!(f)).boxed(),
        "clip_sample_range" | "sample_max_value" | "flow_shift" | "shift" | "sigma_min" | "sigma_max"
        | "base_shift" | "max_shift" => (0.01f64..20.0).prop_map(|f| json!(f)).boxed(),
        "disable_corrector" => prop::collection::vec(0usize..10, 0..3).prop_map(|v| json!(v)).boxed(),
        "trained_betas" | "solver_p" => Just(Value::Null).boxed(),
        _ => any::<bool>().prop_map(Value::Bool).boxed(),
    }
}

/// A well-typed config of one class: its own keys with plausible values.
fn plausible() -> impl Strategy<Value = Value> {
    prop::sample::select(SchedulerClass::ALL.to_vec())
        .prop_flat_map(|class| {
            let keys = class.keys();
            (Just(class), prop::collection::vec(prop::sample::select(keys), 0..7))
        })
        .prop_flat_map(|(class, keys)| {
            let values: Vec<BoxedStrategy<(String, Value)>> =
                keys.into_iter().map(|k| typed(k).prop_map(move |v| (k.to_string(), v)).boxed()).collect();
            (Just(class), values)
        })
        .prop_map(|(class, kv)| {
            let mut m: Map<String, Value> = kv.into_iter().collect();
            m.insert("_class_name".into(), json!(class.name()));
            Value::Object(m)
        })
}

/// JSON text: the config, sometimes with a number replaced by a Python token or an overflow, or
/// truncated, or with a byte replaced; sometimes not an object at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => plausible().prop_map(|v| v.to_string()),
        12 => config().prop_map(|v| v.to_string()),
        3 => (config(), prop::sample::select(vec!["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "01", "1e-400"]))
            .prop_map(|(v, tok)| {
                let s = v.to_string();
                // replace the first number after a colon
                match s.find(|c: char| c.is_ascii_digit()) {
                    Some(i) => format!("{}{}{}", &s[..i], tok, s[i..].trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')),
                    None => s,
                }
            }),
        2 => (config(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let s = v.to_string();
            let cut = i.index(s.len() + 1);
            s.char_indices().map(|(j, _)| j).filter(|&j| j <= cut).next_back().map_or(String::new(), |j| s[..j].to_string())
        }),
        2 => (config(), any::<prop::sample::Index>(), any::<char>()).prop_map(|(v, i, c)| {
            let mut chars: Vec<char> = v.to_string().chars().collect();
            if !chars.is_empty() {
                let k = i.index(chars.len());
                chars[k] = c;
            }
            chars.into_iter().collect()
        }),
        1 => value().prop_map(|v| v.to_string()),
        1 => ".{0,40}",
    ]
}

fn steps() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..30,
        2 => prop::sample::select(vec![49usize, 50, 100, 999, 1000, 1001]),
        1 => prop::sample::select(vec![100_001usize, 1 << 40, usize::MAX]),
    ]
}

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// How far inputs got: parsed, resolved, planned, sampled.
static REACHED: [AtomicUsize; 4] = [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)];

fn check(text: &str, steps: usize) -> Result<(), TestCaseError> {
    let cfg = match SchedulerConfig::from_json(text) {
        Ok(c) => c,
        Err(Error::DiffusersConfig { key, message }) => {
            prop_assert!(!key.is_empty() && !message.is_empty());
            return Ok(());
        }
        Err(e) => return Err(TestCaseError::fail(format!("parser returned a non-config error {e:?} for {text}"))),
    };
    REACHED[0].fetch_add(1, Relaxed);
    let sampler = match DiffusersSampler::from_config(&cfg) {
        Ok(s) => s,
        Err(_) => return Ok(()),
    };
    REACHED[1].fetch_add(1, Relaxed);
    let sampler = if cfg.use_dynamic_shifting == Some(true) { sampler.mu(0.7).unwrap() } else { sampler };
    let plan = match sampler.plan(steps) {
        Ok(p) => p,
        Err(_) => return Ok(()),
    };
    REACHED[2].fetch_add(1, Relaxed);
    prop_assert!(!plan.timesteps.is_empty());
    prop_assert!(plan.init_noise_sigma.is_finite() || plan.init_noise_sigma.is_nan());
    if steps <= 25 {
        let x = Tensor::ones((1, 2), DType::F32, &Device::Cpu).unwrap();
        let mut net = |x: &Tensor, _t: f64| x.affine(0.1, 0.0);
        if sampler.sample(&mut net, &x, steps).is_ok() {
            REACHED[3].fetch_add(1, Relaxed);
        }
    }
    Ok(())
}

#[test]
fn config_layer_never_panics() {
    let cases: u32 = std::env::var("CONFIG_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let start = std::time::Instant::now();
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    // deterministic in CI; CONFIG_FUZZ_RANDOM=1 draws a fresh seed to explore further
    let mut runner = if std::env::var_os("CONFIG_FUZZ_RANDOM").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(
            config,
            proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        )
    };
    let result = runner.run(&(text(), steps()), |(t, n)| check(&t, n));
    let r: Vec<usize> = REACHED.iter().map(|a| a.load(Relaxed)).collect();
    println!(
        "{cases} inputs in {:.1} s: {} parsed, {} resolved, {} planned, {} sampled to the end",
        start.elapsed().as_secs_f64(),
        r[0],
        r[1],
        r[2],
        r[3]
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The corpus of hand-written malformed inputs, each with the key its error must name.
#[test]
fn malformed_inputs_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("", "<json>"),
        ("[]", "<json>"),
        ("{\"_class_name\": \"DDIMScheduler\",", "<json>"),
        ("{}", "_class_name"),
        ("{\"_class_name\": 7}", "_class_name"),
        ("{\"_class_name\": \"CMStochasticIterativeScheduler\"}", "_class_name"),
        ("{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 1e12}", "num_train_timesteps"),
        ("{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": -5}", "num_train_timesteps"),
        ("{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 1000.5}", "num_train_timesteps"),
        ("{\"_class_name\": \"DDIMScheduler\", \"beta_start\": NaN}", "beta_start"),
        ("{\"_class_name\": \"DDIMScheduler\", \"beta_end\": \"0.02\"}", "beta_end"),
        ("{\"_class_name\": \"DDIMScheduler\", \"steps_offset\": -1}", "steps_offset"),
        ("{\"_class_name\": \"DDIMScheduler\", \"trained_betas\": [0.1, \"x\"]}", "trained_betas"),
        ("{\"_class_name\": \"DDIMScheduler\", \"prediction_type\": \"noise\"}", "prediction_type"),
        ("{\"_class_name\": \"DDIMScheduler\", \"use_karras_sigma\": true}", "use_karras_sigma"),
        ("{\"_class_name\": \"UniPCMultistepScheduler\", \"disable_corrector\": [1, -2]}", "disable_corrector"),
        ("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"lambda_min_clipped\": Infinity}", "lambda_min_clipped"),
        ("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"solver_order\": 0}", "solver_order"),
        ("{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\", \"shift\": -3}", "shift"),
    ];
    for (text, key) in cases {
        match SchedulerConfig::from_json(text) {
            Err(Error::DiffusersConfig { key: k, .. }) => assert_eq!(&k, key, "{text}"),
            other => panic!("{text}: expected an error naming {key}, got {other:?}"),
        }
    }
    // accepted by the parser, refused when resolved for the class, naming the option
    let resolve: &[(&str, &str)] = &[
        ("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"solver_order\": 4}", "solver_order"),
        ("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"algorithm_type\": \"dpmsolver\"}", "final_sigmas_type"),
        ("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"variance_type\": \"learned_range\"}", "variance_type"),
        (
            "{\"_class_name\": \"EulerDiscreteScheduler\", \"use_karras_sigmas\": true, \"use_beta_sigmas\": true}",
            "use_karras_sigmas",
        ),
        ("{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"exp\"}", "beta_schedule"),
        ("{\"_class_name\": \"DDIMScheduler\", \"trained_betas\": [0.1, 0.2]}", "trained_betas"),
        (
            "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\", \"stochastic_sampling\": true}",
            "stochastic_sampling",
        ),
        ("{\"_class_name\": \"DDPMScheduler\", \"variance_type\": \"learned\"}", "variance_type"),
    ];
    for (text, key) in resolve {
        let cfg = SchedulerConfig::from_json(text).unwrap();
        match DiffusersSampler::from_config(&cfg) {
            Err(Error::DiffusersConfig { key: k, .. }) => assert_eq!(&k, key, "{text}"),
            other => panic!("{text}: expected an error naming {key}, got {other:?}"),
        }
    }
    // step counts
    let ddim = DiffusersSampler::from_json("{\"_class_name\": \"DDIMScheduler\"}").unwrap();
    assert!(matches!(ddim.timesteps(0), Err(Error::ZeroSteps)));
    assert!(matches!(ddim.timesteps(1001), Err(Error::TooManySteps { .. })));
    assert!(matches!(ddim.timesteps(usize::MAX), Err(Error::TooManySteps { .. })));
    // diffusers' trailing spacing gives a negative timestep for 61 steps of 1000
    let trailing =
        DiffusersSampler::from_json("{\"_class_name\": \"DDIMScheduler\", \"timestep_spacing\": \"trailing\"}")
            .unwrap();
    assert!(matches!(trailing.timesteps(61), Err(Error::DiffusersConfig { .. })));
}
