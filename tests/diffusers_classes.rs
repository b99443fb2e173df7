//! Class-level parity with diffusers: every supported scheduler class and its main options, at 5,
//! 10 and 25 steps, linear and scaled_linear betas, epsilon and v-prediction, on the Gaussian
//! mixture of tools/make_fixtures.py. Each case loads `tests/fixtures/configs/classes/{variant}.json`
//! (plus the case's beta_schedule and prediction_type) through the public config parser, runs
//! `diffusers::solve_problem` (the `solve` example's code path) and compares the final sample with
//! diffusers' elementwise (max-abs <= 1e-4) and the model times called with diffusers' calls.
//! Fixtures: `tools/fixtures_diffusers_classes.py`; the classes added later and the custom
//! `timesteps` / `sigmas` lists of `set_timesteps`: `tools/fixtures_diffusers_classes2.py`.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::diffusers::{
    solve_problem, solve_problem_with, DiffusersSampler, Problem, SchedulerClass, SchedulerConfig, SetTimesteps,
    SolveOptions,
};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::Error;
use serde_json::Value;

const TOL: f64 = 1e-4;

fn fixtures() -> String {
    format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"))
}

struct Fixture {
    manifest: Value,
    tensors: std::collections::HashMap<String, Tensor>,
}

fn load() -> Fixture {
    load_named("diffusers_classes")
}

fn load_named(name: &str) -> Fixture {
    let text = std::fs::read_to_string(format!("{}/{name}.json", fixtures())).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    let tensors = candle_core::safetensors::load(format!("{}/{name}.safetensors", fixtures()), &Device::Cpu).unwrap();
    Fixture { manifest, tensors }
}

fn case_config(case: &Value) -> String {
    let path = match case["config_file"].as_str() {
        Some(file) => format!("{}/{file}", fixtures()),
        None => format!("{}/configs/classes/{}.json", fixtures(), case["variant"].as_str().unwrap()),
    };
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in ["beta_schedule", "prediction_type"] {
        if !case[key].is_null() {
            cfg[key] = case[key].clone();
        }
    }
    cfg.to_string()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn every_class_matches_diffusers() {
    check_parity("diffusers_classes", 880);
}

/// The classes added later (KDPM2, KDPM2-ancestral, DPMSolverSDE, EDMEuler, EDMDPMSolverMultistep,
/// LCM, TCD, SASolver, IPNDM, FlowMatchHeun, CosineDPMSolverMultistep) and `set_timesteps` with
/// custom `timesteps` / `sigmas`.
#[test]
fn added_classes_and_custom_lists_match_diffusers() {
    check_parity("diffusers_classes2", 500);
}

/// Every case of fixture `file`: the crate's final sample within [`TOL`] of diffusers' and the
/// model times called equal.
fn check_parity(file: &str, min_cases: usize) {
    let fx = load_named(file);
    let t = &fx.tensors;
    let vec2 = |name: &str| t[name].to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
    let gm = GaussianMixture::new(
        vec2("means"),
        t["stds"].to_vec1::<f64>().unwrap(),
        t["weights"].to_vec1::<f64>().unwrap(),
    )
    .unwrap();
    let cases = fx.manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= min_cases, "{} cases", cases.len());
    let mut worst: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let shape: Vec<usize> =
            case["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let mut cfg = SchedulerConfig::from_json(&case_config(case)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(target) = case["switch_to"].as_str() {
            // diffusers' `Target.from_config(pipe.scheduler.config)`, in one line
            cfg = cfg.with_class(SchedulerClass::from_name(target).unwrap());
        }
        let mut sampler = match DiffusersSampler::from_config(&cfg) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        // the pipeline's eta: DDIM's (0 is its default) and TCD's gamma (any value, 0.3 by default)
        if let Some(eta) = case["eta"].as_f64().filter(|&e| e > 0.0 || cfg.class == SchedulerClass::Tcd) {
            sampler = sampler.eta(eta).unwrap();
        }
        if let Some(mu) = case["mu"].as_f64() {
            if let Some(seq_len) = case["image_seq_len"].as_u64() {
                assert!((sampler.flux_mu(seq_len as usize) - mu).abs() < 1e-12, "{name}: flux_mu");
            }
            sampler = sampler.mu(mu).unwrap();
        }
        let list = |key: &str| -> Option<Vec<f64>> {
            case["custom"][key].as_array().map(|a| a.iter().map(|v| v.as_f64().unwrap()).collect())
        };
        let request = match (list("timesteps"), list("sigmas")) {
            (Some(timesteps), Some(sigmas)) => SetTimesteps::Both { timesteps, sigmas },
            (Some(ts), None) => SetTimesteps::Timesteps(ts),
            (None, Some(sigmas)) => SetTimesteps::Sigmas(sigmas),
            (None, None) => SetTimesteps::Steps(steps),
        };
        let noise = t["noise"].reshape(shape.as_slice()).unwrap();
        // per case, or (diffusers_classes2) the first `draws` of the one shared stream
        let step_noise = match (t.get(&format!("{name}.step_noise")), case["draws"].as_u64()) {
            (Some(z), _) => Some(z.to_dtype(DType::F64).unwrap()),
            (None, Some(k)) if k > 0 => {
                Some(t["step_noise"].narrow(0, 0, k as usize).unwrap().to_dtype(DType::F64).unwrap())
            }
            _ => None,
        };
        let problem = Problem::GaussianMixture { gm: gm.clone(), noise, step_noise };
        let out = match solve_problem_with(&sampler, &problem, request, DType::F64) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}: error {e}"));
                continue;
            }
        };
        let want = t[&format!("{name}.sample")].reshape(shape.as_slice()).unwrap();
        let err = max_abs(&out.sample, &want);
        let calls = t[&format!("{name}.timesteps")].to_vec1::<f64>().unwrap();
        let variant = case["variant"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| name.rsplit_once('.').unwrap().0.to_string());
        let e = worst.entry(variant).or_insert((0.0, 0));
        e.0 = e.0.max(err);
        e.1 += 1;
        if !(err <= TOL) {
            failures.push(format!("{name}: max-abs error {err:.3e}"));
        }
        // KDPM2-ancestral's second stage sits at the geometric mean of sigma and sigma_down, which
        // diffusers computes in float32 as sqrt(sigma_next^2 - sigma_up^2): on the last two-stage
        // step that cancels to a few digits and moves the stage's time by up to ~1e-4 near t = 0
        // (the crate's split is exact); those calls get an absolute 1e-3
        let ancestral_stage = |i: usize| cfg.class == SchedulerClass::KDpm2AncestralDiscrete && i % 2 == 1;
        let times_ok = calls.len() == out.timesteps.len()
            && calls.iter().zip(&out.timesteps).enumerate().all(|(i, (a, b))| {
                (a - b).abs() <= 1e-6 * a.abs().max(1.0) || (ancestral_stage(i) && (a - b).abs() <= 1e-3)
            });
        if !times_ok {
            failures.push(format!("{name}: model times {:?} vs diffusers {:?}", out.timesteps, calls));
        }
    }
    for (variant, (err, n)) in &worst {
        println!("{variant:28} {n:3} cases  max-abs error {err:.2e}");
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Real models' configs load, with the keys diffusers ignores for their class reported.
#[test]
fn real_model_configs_load() {
    let load = |f: &str| SchedulerConfig::from_file(format!("{}/configs/models/{f}", fixtures())).unwrap();
    let sd15 = load("sd15_pndm.json");
    assert_eq!(sd15.class, SchedulerClass::Pndm);
    assert_eq!((sd15.steps_offset, sd15.skip_prk_steps, sd15.set_alpha_to_one), (Some(1), Some(true), Some(false)));
    assert_eq!(sd15.ignored_keys(), vec!["clip_sample"]); // a DDIM option in a PNDM config
    let pndm = DiffusersSampler::from_config(&sd15).unwrap();
    // leading spacing with steps_offset 1; PLMS calls the second timestep twice (diffusers 0.42.1)
    assert_eq!(&pndm.timesteps(50).unwrap()[..4], &[981.0, 961.0, 961.0, 941.0]);
    let sdxl = load("sdxl_base_euler.json");
    assert_eq!(sdxl.class, SchedulerClass::EulerDiscrete);
    assert_eq!(sdxl.ignored_keys(), vec!["clip_sample", "sample_max_value", "set_alpha_to_one", "skip_prk_steps"]);
    let euler = DiffusersSampler::from_config(&sdxl).unwrap();
    let plan = euler.plan(30).unwrap();
    assert_eq!(&plan.timesteps[..2], &[958.0, 925.0]); // diffusers 0.42.1
    assert!((plan.init_noise_sigma - 11.520334243774414).abs() < 1e-6);
    // leading spacing: init_noise_sigma = sqrt(sigma_max^2 + 1)
    assert!((plan.init_noise_sigma - (plan.sigmas[0].powi(2) + 1.0).sqrt()).abs() < 1e-5);
    for f in ["sd15_pndm_0.17.json", "sd3_flowmatch.json", "flux1_dev_flowmatch.json"] {
        DiffusersSampler::from_config(&load(f)).unwrap();
    }
    // Flux needs mu for its dynamic shifting, as diffusers' set_timesteps does
    let flux = DiffusersSampler::from_config(&load("flux1_dev_flowmatch.json")).unwrap();
    assert!(matches!(flux.timesteps(28), Err(Error::DiffusersConfig { ref key, .. }) if key == "use_dynamic_shifting"));
    let mu = flux.flux_mu(4096);
    assert!((mu - 1.15).abs() < 1e-12);
    assert_eq!(flux.mu(mu).unwrap().timesteps(28).unwrap().len(), 28);
}

/// diffusers' float32 `alphas_cumprod` tables reproduced bit for bit, and its timesteps / sigmas
/// / init_noise_sigma for DDIM, DPMSolverMultistep and EulerDiscrete at 1, 4, 7, 10, 30, 50 and
/// 999 steps with every spacing and sigma conversion (tests/fixtures/diffusers_grids.safetensors,
/// written by tools/make_fixtures.py).
#[test]
fn tables_and_grids_match_diffusers() {
    let t =
        candle_core::safetensors::load(format!("{}/diffusers_grids.safetensors", fixtures()), &Device::Cpu).unwrap();
    let v = |k: &str| t[k].to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    for (name, json) in [
        ("linear", r#""beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02"#),
        ("scaled_linear", r#""beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012"#),
        ("squaredcos_cap_v2", r#""beta_schedule": "squaredcos_cap_v2""#),
        ("linear_00085_012", r#""beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012"#),
    ] {
        let s = DiffusersSampler::from_json(&format!(r#"{{"_class_name": "DDIMScheduler", {json}}}"#)).unwrap();
        assert_eq!(s.alphas_cumprod(), v(&format!("alphas_cumprod.{name}")).as_slice(), "alphas_cumprod.{name}");
    }
    let base = r#""beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02"#;
    let variants: &[(&str, &str, &str)] = &[
        ("ddim", "leading0", r#""_class_name": "DDIMScheduler""#),
        ("ddim", "leading1", r#""_class_name": "DDIMScheduler", "steps_offset": 1"#),
        ("ddim", "linspace", r#""_class_name": "DDIMScheduler", "timestep_spacing": "linspace""#),
        ("ddim", "trailing", r#""_class_name": "DDIMScheduler", "timestep_spacing": "trailing""#),
        ("dpm", "leading0", r#""_class_name": "DPMSolverMultistepScheduler", "timestep_spacing": "leading""#),
        (
            "dpm",
            "leading1",
            r#""_class_name": "DPMSolverMultistepScheduler", "timestep_spacing": "leading", "steps_offset": 1"#,
        ),
        ("dpm", "linspace", r#""_class_name": "DPMSolverMultistepScheduler""#),
        ("dpm", "trailing", r#""_class_name": "DPMSolverMultistepScheduler", "timestep_spacing": "trailing""#),
        ("dpm", "karras", r#""_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true"#),
        ("dpm", "exponential", r#""_class_name": "DPMSolverMultistepScheduler", "use_exponential_sigmas": true"#),
        ("dpm", "lu_lambdas", r#""_class_name": "DPMSolverMultistepScheduler", "use_lu_lambdas": true"#),
        ("euler", "linspace", r#""_class_name": "EulerDiscreteScheduler""#),
        ("euler", "leading0", r#""_class_name": "EulerDiscreteScheduler", "timestep_spacing": "leading""#),
        (
            "euler",
            "leading1",
            r#""_class_name": "EulerDiscreteScheduler", "timestep_spacing": "leading", "steps_offset": 1"#,
        ),
        ("euler", "trailing", r#""_class_name": "EulerDiscreteScheduler", "timestep_spacing": "trailing""#),
        ("euler", "karras", r#""_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true"#),
        ("euler", "exponential", r#""_class_name": "EulerDiscreteScheduler", "use_exponential_sigmas": true"#),
    ];
    let mut checked = 0;
    for &(cls, variant, json) in variants {
        let s = DiffusersSampler::from_json(&format!("{{{json}, {base}}}")).unwrap();
        for n in [1usize, 4, 7, 10, 30, 50, 999] {
            let key = format!("{cls}.{variant}.{n}");
            let plan = s.plan(n).unwrap_or_else(|e| panic!("{key}: {e}"));
            let want = v(&format!("{key}.timesteps"));
            let close = |a: &[f64], b: &[f64], rel: f64| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= rel * y.abs().max(1.0))
            };
            // numpy's float32 log (Euler's sigma-derived timesteps) is not correctly rounded
            assert!(close(&plan.timesteps, &want, 1e-6), "{key}.timesteps: {:?} vs {want:?}", plan.timesteps);
            if cls != "ddim" {
                let sigmas = v(&format!("{key}.sigmas"));
                assert!(close(&plan.sigmas, &sigmas, 1e-6), "{key}.sigmas: {:?} vs {sigmas:?}", plan.sigmas);
            }
            if cls == "euler" {
                let ins = v(&format!("{key}.init_noise_sigma"))[0];
                assert!((plan.init_noise_sigma - ins).abs() <= 1e-6 * ins, "{key}.init_noise_sigma");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, variants.len() * 7);
}

/// Each of diffusers' quirks can be turned off, and then the layer computes this crate's own
/// answer: DDIM on its grid equals `sample(&Ddim, ..)` on the same timesteps; exact Karras
/// timesteps are the ones whose table sigma is the Karras sigma; float64 tables are the float64
/// DiscreteVp; a single flow shift is `shift(linspace(1, 1/N, n))`.
#[test]
fn quirks_can_be_turned_off() {
    use diffusion_samplers::diffusers::{DdimTarget, FlowShift, Quirks, TablePrecision, TimestepRounding};
    use diffusion_samplers::{sample, Ddim, Grid, Model, Prediction};
    let fx = load();
    let vec2 = |name: &str| fx.tensors[name].to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
    let gm = GaussianMixture::new(
        vec2("means"),
        fx.tensors["stds"].to_vec1::<f64>().unwrap(),
        fx.tensors["weights"].to_vec1::<f64>().unwrap(),
    )
    .unwrap();
    let noise = fx.tensors["noise"].clone();

    // DDIM, linspace spacing: uniform stride (diffusers) vs the next timestep
    let json = r#"{"_class_name": "DDIMScheduler", "timestep_spacing": "linspace", "clip_sample": false,
                   "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#;
    let cfg = SchedulerConfig::from_json(json).unwrap();
    let quirk = DiffusersSampler::from_config(&cfg).unwrap();
    let on_grid =
        DiffusersSampler::with_quirks(&cfg, Quirks { ddim_target: DdimTarget::NextTimestep, ..Quirks::default() })
            .unwrap();
    let table = on_grid.schedule().unwrap();
    let mut net = gm.denoiser(table.as_ref(), Prediction::Epsilon);
    let a = quirk.sample(&mut net, &noise, 10).unwrap();
    let b = on_grid.sample(&mut net, &noise, 10).unwrap();
    let ts = on_grid.timesteps(10).unwrap();
    let mut points: Vec<_> = ts.iter().map(|&t| table.point(t)).collect();
    points.push(table.clean_point());
    let grid = Grid::from_points(points).unwrap();
    let mut model = Model::new(gm.denoiser(table.as_ref(), Prediction::Epsilon), table.as_ref(), Prediction::Epsilon);
    let own = sample(&Ddim::default(), &mut model, &grid, &noise).unwrap();
    assert!(max_abs(&b, &own) < 1e-12, "DDIM on the grid: {}", max_abs(&b, &own));
    assert!(max_abs(&a, &b) > 1e-3, "the stride quirk changes the numbers");

    // exact Karras timesteps: the table's sigma at the model time is the Karras sigma
    let cfg =
        SchedulerConfig::from_json(r#"{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true}"#)
            .unwrap();
    let exact =
        DiffusersSampler::with_quirks(&cfg, Quirks { timestep_rounding: TimestepRounding::Exact, ..Quirks::default() })
            .unwrap();
    let plan = exact.plan(12).unwrap();
    let sched = exact.schedule().unwrap();
    assert!(plan.timesteps.iter().any(|t| t.fract() != 0.0));
    for (t, s) in plan.timesteps.iter().zip(&plan.sigmas) {
        let ks = sched.point(*t).ksigma();
        assert!((ks - s).abs() <= 1e-5 * s, "t {t}: table sigma {ks} vs karras {s}");
    }
    let rounded = DiffusersSampler::from_config(&cfg).unwrap().plan(12).unwrap();
    assert!(rounded.timesteps.iter().all(|t| t.fract() == 0.0));

    // float64 tables: the float64 DiscreteVp of the same betas
    let cfg = SchedulerConfig::from_json(r#"{"_class_name": "DDIMScheduler"}"#).unwrap();
    let f64s = DiffusersSampler::with_quirks(&cfg, Quirks { precision: TablePrecision::Float64, ..Quirks::default() })
        .unwrap();
    let reference = diffusion_samplers::DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let worst = f64s
        .alphas_cumprod()
        .iter()
        .zip(reference.alphas_cumprod())
        .map(|(a, b)| (a - b).abs() / b)
        .fold(0.0, f64::max);
    assert!(worst < 1e-13, "float64 table rel. error {worst}");
    let f32s = DiffusersSampler::from_config(&cfg).unwrap();
    assert!(f32s.alphas_cumprod().iter().all(|&a| a as f32 as f64 == a));

    // a single flow shift
    let cfg =
        SchedulerConfig::from_json(r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}"#).unwrap();
    let single =
        DiffusersSampler::with_quirks(&cfg, Quirks { flow_shift: FlowShift::Single, ..Quirks::default() }).unwrap();
    let sigmas = single.plan(4).unwrap().sigmas;
    let shift = |s: f64| 3.0 * s / (1.0 + 2.0 * s);
    for (i, want) in [1.0, 1.0 - 0.999 / 3.0, 1.0 - 2.0 * 0.999 / 3.0, 0.001].iter().enumerate() {
        assert!((sigmas[i] - shift(*want)).abs() < 1e-6, "{i}: {} vs {}", sigmas[i], shift(*want));
    }
    let doubled = DiffusersSampler::from_config(&cfg).unwrap().plan(4).unwrap().sigmas;
    assert!((doubled[3] - shift(shift(0.001))).abs() < 1e-6);
    // every quirk off at once still samples
    let none = DiffusersSampler::with_quirks(
        &SchedulerConfig::from_json(r#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true}"#).unwrap(),
        Quirks::none(),
    )
    .unwrap();
    let table = none.schedule().unwrap();
    let x = none.sample(&mut gm.denoiser(table.as_ref(), Prediction::Epsilon), &noise, 8).unwrap();
    assert!(x.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap().is_finite());
}

/// The `solve` contract's output file and problem-file errors.
#[test]
fn solve_output_and_problem_files() {
    let dir = std::env::temp_dir().join(format!("diffusers_solve_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sampler = DiffusersSampler::from_file(format!("{}/configs/classes/euler.json", fixtures())).unwrap();
    for dtype in [DType::F64, DType::F32] {
        let out = solve_problem(&sampler, &Problem::DiffusersDummy, SolveOptions { steps: 4, dtype }).unwrap();
        let path = dir.join("out.safetensors");
        out.save(&path).unwrap();
        let back = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back["sample"].dtype(), dtype);
        assert_eq!(back["sample"].dims(), &[4, 3, 8, 8]);
        assert_eq!(back["timesteps"].to_vec1::<f64>().unwrap(), out.timesteps);
        assert_eq!(back["nfe"].to_vec1::<u32>().unwrap(), vec![4]);
    }
    // a problem file: the fixture's mixture; wrong shapes are errors naming the tensor
    let t = load().tensors;
    let write = |name: &str, tensors: Vec<(&str, Tensor)>| {
        let path = dir.join(name);
        let map: std::collections::HashMap<String, Tensor> =
            tensors.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    };
    let good = write(
        "p.safetensors",
        vec![
            ("means", t["means"].clone()),
            ("stds", t["stds"].clone()),
            ("weights", t["weights"].clone()),
            ("noise", t["noise"].clone()),
        ],
    );
    let problem = Problem::parse(good.to_str().unwrap()).unwrap();
    let out = solve_problem(&sampler, &problem, SolveOptions { steps: 10, dtype: DType::F64 }).unwrap();
    let want = &t["euler.linear.epsilon.10.sample"];
    assert!(max_abs(&out.sample, want) < TOL);
    let bad = write(
        "bad.safetensors",
        vec![
            ("means", t["means"].clone()),
            ("stds", t["stds"].clone()),
            ("weights", t["weights"].clone()),
            ("noise", t["noise"].reshape(48).unwrap()),
        ],
    );
    let e = Problem::from_file(&bad).unwrap_err().to_string();
    assert!(e.contains("`noise`"), "{e}");
    let missing = write("missing.safetensors", vec![("means", t["means"].clone())]);
    assert!(Problem::from_file(&missing).unwrap_err().to_string().contains("`stds`"));
    assert!(Problem::parse("/nonexistent/problem.safetensors").is_err());
    std::fs::remove_dir_all(&dir).ok();
}

/// Timesteps placed by diffusers' float32 arithmetic (numpy's float32 `log` of the float32 sigma
/// table, float32 neighbour differences in `_sigma_to_t`, KDPM2-ancestral's float32
/// `sigma_up` / `sigma_down`), pinned from diffusers 0.42.1 by `tools/sweep_diffusers_timesteps.py
/// --pin` (`tests/fixtures/diffusers_f32_timesteps.json`): 58 cases the sweep harness reported
/// (times off by more than 1e-6 relative, 25 of them moved by whole steps) before that arithmetic
/// was reproduced, and, as guards, DPMSolverMultistep's exponential sigmas on scaled-linear betas,
/// whose first model call is at 998 (the float64 log of sigma_max lies just below the float32
/// table's last entry, so the interpolated time is 998.99999 and the int64 cast truncates it).
#[test]
fn float32_timesteps_match_diffusers() {
    let text = std::fs::read_to_string(format!("{}/diffusers_f32_timesteps.json", fixtures())).unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 64, "{} cases", cases.len());
    let list = |v: &Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6 * y.abs().max(1.0))
    };
    let mut failures = Vec::new();
    for case in cases {
        let steps = case["steps"].as_u64().unwrap() as usize;
        let name = format!("{} x {steps}", case["config"]);
        let plan = DiffusersSampler::from_json(&case["config"].to_string()).unwrap().plan(steps).unwrap();
        let want = list(&case["timesteps"]);
        if !close(&plan.timesteps, &want) {
            failures.push(format!("{name}: timesteps {:?} vs diffusers {want:?}", plan.timesteps));
        }
        // the two-stage classes' interleaved sigmas have their own layout (their timesteps are compared)
        let sigmas = if case["sigmas"].is_null() { Vec::new() } else { list(&case["sigmas"]) };
        if sigmas.len() == plan.sigmas.len() && !close(&plan.sigmas, &sigmas) {
            failures.push(format!("{name}: sigmas {:?}", plan.sigmas));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    let dpm = DiffusersSampler::from_json(
        r#"{"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "beta_end": 0.012, "use_exponential_sigmas": true}"#,
    )
    .unwrap();
    assert_eq!(dpm.timesteps(5).unwrap(), [998.0, 680.0, 233.0, 20.0, 0.0]); // diffusers 0.42.1
}
