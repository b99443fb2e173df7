//! diffusers' own scheduler test suite, reproduced: the full 10-step loops of
//! `tests/schedulers/test_scheduler_*.py` with their dummy model (`out = x * t / (t + 1)`) on the
//! deterministic sample, checked on mean |x| against the values diffusers' tests assert, with
//! their tolerance 1e-3. The configs (tests/fixtures/configs/dummy/*.json) are the test classes'
//! default configs, written by `tools/diffusers_dummy_check.py`, which also reruns the real
//! diffusers on them.

use candle_core::DType;
use diffusion_samplers::diffusers::{
    solve_problem, DiffusersSampler, Problem, SchedulerClass, SchedulerConfig, SolveOptions,
};

/// (config file, value asserted by diffusers' test)
const CASES: &[(&str, f64)] = &[
    ("ddim", 0.223967),
    ("ddim_v", 0.0684),
    ("dpm_multi", 0.3301),
    ("dpm_multi_v", 0.2251),
    ("dpm_multi_karras_v", 0.2096),
    ("dpm_multi_lu_v", 0.1554),
    ("dpm_multi_thres", 1.1364),
    ("dpm_single", 0.2791),
    ("deis", 0.23916),
    ("unipc", 0.2464),
    ("unipc_karras", 0.2925),
];

fn config(name: &str) -> SchedulerConfig {
    let path = format!("{}/tests/fixtures/configs/dummy/{name}.json", env!("CARGO_MANIFEST_DIR"));
    SchedulerConfig::from_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn mean_abs(cfg: &SchedulerConfig) -> f64 {
    let sampler = DiffusersSampler::from_config(cfg).unwrap_or_else(|e| panic!("{:?}: {e}", cfg.class));
    let out = solve_problem(&sampler, &Problem::DiffusersDummy, SolveOptions { steps: 10, dtype: DType::F32 })
        .unwrap_or_else(|e| panic!("{:?}: {e}", cfg.class));
    assert_eq!(out.nfe, 10);
    out.sample.to_dtype(DType::F64).unwrap().abs().unwrap().mean_all().unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn diffusers_test_suite_full_loops() {
    let mut failures = Vec::new();
    for &(name, want) in CASES {
        let got = mean_abs(&config(name));
        println!("{name:22} mean|x| = {got:.6}  diffusers' test: {want}");
        if (got - want).abs() >= 1e-3 {
            failures.push(format!("{name}: {got} vs {want}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// diffusers' `test_switch`: DPMSolverMultistep -> Singlestep -> UniPC -> DEIS -> Multistep via
/// `from_config` gives the same result again.
#[test]
fn switching_classes_round_trip() {
    let cfg = config("dpm_multi");
    let back = cfg
        .with_class(SchedulerClass::DpmSolverSinglestep)
        .with_class(SchedulerClass::UniPcMultistep)
        .with_class(SchedulerClass::DeisMultistep)
        .with_class(SchedulerClass::DpmSolverMultistep);
    assert!((mean_abs(&back) - 0.3301).abs() < 1e-3);
}
