//! The named sigma schedules (`src/sigmas/`) against their reference definitions at 1, 2, 3, 7, 10
//! and 30 steps: k-diffusion 0.1.1.post1 itself (karras, exponential, polyexponential, vp,
//! normal), diffusers 0.42.1 (beta_sigmas), numpy/scipy second formulations of ComfyUI's
//! schedules, Align Your Steps' published lists, and closed forms checked here. Fixture:
//! `tests/fixtures/kdiffusion_schedules.safetensors` (`tools/fixtures_kdiffusion.py`).

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use diffusion_samplers::sigmas::{AysModel, SigmaSchedule, NAMES};
use diffusion_samplers::{
    ContinuousVp, DiscreteVp, Edm, EdmModelTime, End, Error, Grid, RectifiedFlow, Scheduler, Spacing,
};

const STEPS: [usize; 6] = [1, 2, 3, 7, 10, 30];
const AYS_STEPS: [usize; 8] = [1, 2, 3, 7, 10, 30, 20, 40];

struct Fixture(HashMap<String, Tensor>);

impl Fixture {
    fn load() -> Fixture {
        let path = common::fixture("kdiffusion_schedules.safetensors");
        Fixture(candle_core::safetensors::load(path, &Device::Cpu).unwrap())
    }

    /// The lists stored under `key`, one per step count.
    fn lists(&self, key: &str) -> Vec<Vec<f64>> {
        let get = |k: &str| self.0.get(k).unwrap_or_else(|| panic!("fixture has no {k}")).to_vec1::<f64>().unwrap();
        let (values, lens) = (get(key), get(&format!("{key}.lens")));
        let mut out = vec![];
        let mut at = 0;
        for len in lens {
            out.push(values[at..at + len as usize].to_vec());
            at += len as usize;
        }
        assert_eq!(at, values.len());
        out
    }
}

/// The schedules of these names with their reference defaults (the fixture's parameters).
fn named(names: &[&'static str]) -> Vec<(&'static str, SigmaSchedule)> {
    names.iter().map(|&n| (n, n.parse().unwrap())).collect()
}

fn tables() -> Vec<(&'static str, DiscreteVp)> {
    vec![
        ("sd", DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap()),
        ("ddpm", DiscreteVp::linear(1e-4, 0.02, 1000).unwrap()),
    ]
}

/// Largest `|got / want - 1|` (`|got - want|` where `want` is 0); panics on a length mismatch.
fn max_rel(got: &[f64], want: &[f64], what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    got.iter().zip(want).map(|(g, w)| if *w == 0.0 { (g - w).abs() } else { (g / w - 1.0).abs() }).fold(0.0, f64::max)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) -> f64 {
    let e = max_rel(got, want, what);
    assert!(e <= tol, "{what}: max relative error {e:e} > {tol:e}\n got  {got:?}\n want {want:?}");
    e
}

#[test]
fn kdiffusion_schedules_match_kdiffusion() {
    let fx = Fixture::load();
    let cases: Vec<(&str, SigmaSchedule)> = vec![
        ("karras", SigmaSchedule::Karras { rho: 7.0 }),
        ("karras_rho5", SigmaSchedule::Karras { rho: 5.0 }),
        ("exponential", SigmaSchedule::Exponential),
        ("polyexponential", SigmaSchedule::Polyexponential { rho: 1.0 }),
        ("polyexponential_rho2", SigmaSchedule::Polyexponential { rho: 2.0 }),
        // diffusers' _convert_to_beta (use_beta_sigmas) on the same f64 table
        ("beta_sigmas", SigmaSchedule::BetaSigmas { alpha: 0.6, beta: 0.6 }),
    ];
    for (table, sched) in tables() {
        for (key, s) in &cases {
            for (n, want) in STEPS.iter().zip(fx.lists(&format!("{table}.{key}"))) {
                // both sides f64 from the same table: a few ulp (Karras' power 7 amplifies 7x)
                assert_close(&s.sigmas(&sched, *n, End::Clean).unwrap(), &want, 1e-13, &format!("{table} {key} n={n}"));
            }
        }
    }
}

#[test]
fn vp_matches_kdiffusion() {
    let fx = Fixture::load();
    let cases = [
        ("vp", SigmaSchedule::Vp { beta_d: 19.9, beta_min: 0.1, eps_s: 1e-3 }),
        ("vp_custom", SigmaSchedule::Vp { beta_d: 10.0, beta_min: 0.5, eps_s: 1e-2 }),
    ];
    let sched = ContinuousVp::default();
    for (key, s) in &cases {
        for (n, want) in STEPS.iter().zip(fx.lists(key)) {
            // k-diffusion computes exp(z) - 1 (z = 1.1e-4 at eps_s = 1e-3): f64 cancellation costs
            // up to 2.2e-16 / 1.1e-4 = 2e-12 relative, halved by the square root; ours uses exp_m1
            assert_close(&s.sigmas(&sched, *n, End::Clean).unwrap(), &want, 2e-12, &format!("{key} n={n}"));
        }
    }
    // k-diffusion's default vp is the continuous VP schedule beta_0 = 0.1, beta_1 = 20: its grid
    // lies on ContinuousVp::default() at times linspace(1, 1e-3, n)
    let grid = Grid::new(&sched, &Spacing::Sigmas(cases[0].1.clone()), 6, End::Min).unwrap();
    for (p, t) in grid.points().iter().zip([1.0, 0.8335, 0.667, 0.5005, 0.334, 0.1675, 0.001]) {
        assert!((p.t - t).abs() < 1e-9, "{} vs {t}", p.t);
    }
}

#[test]
fn normal_matches_kdiffusion_discrete_schedule() {
    let fx = Fixture::load();
    for (table, sched) in tables() {
        // the table's largest step in ln(sigma) per training index, and largest |ln(sigma)|
        let slope = (0..999)
            .map(|i| (sched.point(i as f64 + 1.0).ksigma().ln() - sched.point(i as f64).ksigma().ln()).abs())
            .fold(0.0, f64::max);
        let max_log = (0..1000).map(|i| sched.point(i as f64).ksigma().ln().abs()).fold(0.0, f64::max);
        let ours: Vec<Vec<f64>> =
            STEPS.iter().map(|&n| SigmaSchedule::Normal.sigmas(&sched, n, End::Clean).unwrap()).collect();
        let kd = fx.lists(&format!("{table}.normal"));
        let t32 = fx.lists(&format!("{table}.normal_t32"));
        let numpy = fx.lists(&format!("{table}.normal_np"));
        for (i, &n) in STEPS.iter().enumerate() {
            // a second formulation: np.exp(np.interp(np.linspace(999, 0, n), arange, ln sigma))
            assert_close(&ours[i], &numpy[i], 1e-13, &format!("{table} normal n={n} vs numpy"));
            // k-diffusion's t_to_sigma casts t to float32 and forms the weight 1 - w in float32
            // (|error| <= 2^-24, times |ln sigma|); at its float32 times our table interpolation
            // gives its values up to that rounding (the same interpolation in ln(sigma)) ...
            let weight_rounding = 2f64.powi(-24) * max_log;
            let at_t32: Vec<f64> = t32[i].iter().map(|&t| sched.point(t).ksigma()).chain([0.0]).collect();
            assert_close(&at_t32, &kd[i], weight_rounding + 1e-13, &format!("{table} normal n={n} at k-diffusion's t"));
            // ... and the f64 schedule differs from it by that plus the float32 rounding of t
            // itself (|dt| <= 999 * 2^-24) times the table's steepest ln(sigma) slope
            let tol = weight_rounding + 999.0 * 2f64.powi(-24) * slope + 1e-13;
            let e = assert_close(&ours[i], &kd[i], tol, &format!("{table} normal n={n} vs k-diffusion"));
            if n <= 10 {
                // linspace(999, 0, n) is exact in float32 for these n and w is 0 or 1/2
                assert!(e < 1e-13, "{table} n={n}: {e:e}");
            }
        }
    }
}

#[test]
fn comfyui_schedules_match_second_formulations() {
    let fx = Fixture::load();
    let cases = named(&["sgm_uniform", "simple", "ddim_uniform", "beta", "kl_optimal", "linear_quadratic", "laplace"]);
    for (table, sched) in tables() {
        for (key, s) in &cases {
            for (n, want) in STEPS.iter().zip(fx.lists(&format!("{table}.{key}"))) {
                let got = s.sigmas(&sched, *n, End::Clean).unwrap();
                // linear_quadratic's second formulation solves a 3x3 system: 1e-12 relative near
                // its small last levels; the others agree to a few ulp
                let tol = if *key == "linear_quadratic" { 1e-12 } else { 1e-13 };
                assert_close(&got, &want, tol, &format!("{table} {key} n={n}"));
            }
        }
    }
}

#[test]
fn comfyui_float32_precision() {
    // ComfyUI rounds its sigma and log-sigma tables to float32 and computes normal, sgm_uniform,
    // kl_optimal, linear_quadratic, karras and exponential in float32. Ours are f64; the
    // difference is float32 rounding (unit roundoff 6e-8) times each formula's condition number:
    // 7 for Karras' power rho = 7, |ln sigma| <= 3.6 for the float32 log table, sigma_max = 14.6
    // for tan near atan(sigma_max). 2e-6 bounds them all (measured worst: karras 1.06e-6).
    let fx = Fixture::load();
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let cases = named(&[
        "normal",
        "sgm_uniform",
        "simple",
        "ddim_uniform",
        "beta",
        "kl_optimal",
        "linear_quadratic",
        "karras",
        "exponential",
    ]);
    let mut worst = 0.0f64;
    for (key, s) in &cases {
        for (n, want) in STEPS.iter().zip(fx.lists(&format!("sd.f32.{key}"))) {
            if want.is_empty() {
                continue; // ComfyUI's kl_optimal at one step is NaN (0 / 0)
            }
            let e = assert_close(&s.sigmas(&sd, *n, End::Clean).unwrap(), &want, 2e-6, &format!("f32 {key} n={n}"));
            worst = worst.max(e);
        }
    }
    println!("worst relative difference to ComfyUI's float32 sigmas: {worst:e}");
}

#[test]
fn comfyui_beta_picks_scipy_timesteps() {
    // ComfyUI's beta: rint(scipy.stats.beta.ppf(1 - i/n, 0.6, 0.6) * 999), repeats dropped; the
    // indices must agree exactly at every step count 1..60 (a rounding boundary would show here)
    let fx = Fixture::load();
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let s = SigmaSchedule::Beta { alpha: 0.6, beta: 0.6 };
    for (i, idx) in fx.lists("beta_index").into_iter().enumerate() {
        let n = i + 1;
        let mut want: Vec<f64> = idx.clone();
        want.dedup();
        let grid = s.grid(&sd, n, End::Clean).unwrap();
        let got: Vec<f64> = grid.points().iter().filter(|p| !p.is_clean()).map(|p| p.t).collect();
        assert_eq!(got, want, "n = {n}");
    }
}

#[test]
fn align_your_steps_published_lists() {
    let fx = Fixture::load();
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    // NVIDIA's quickstart publishes the same schedules as training timesteps of SD's table; the
    // sigma lists are those entries to 10 decimals (5e-11 absolute, 1.7e-9 relative at 0.029)
    let published_t = [
        (AysModel::Sd15, [999.0, 850.0, 736.0, 645.0, 545.0, 455.0, 343.0, 233.0, 124.0, 24.0, 0.0]),
        (AysModel::Sdxl, [999.0, 845.0, 730.0, 587.0, 443.0, 310.0, 193.0, 116.0, 53.0, 13.0, 0.0]),
    ];
    for (model, ts) in published_t {
        let from_table: Vec<f64> = ts.iter().map(|&t| sd.point(t).ksigma()).collect();
        assert_close(&model.ten_step_sigmas(), &from_table, 2e-9, &format!("{model} vs SD table"));
        // the 10-step grid lands on those timesteps
        let grid = Grid::new(&sd, &Spacing::Sigmas(SigmaSchedule::AlignYourSteps(model)), 10, End::Min).unwrap();
        for (p, t) in grid.points().iter().zip(ts) {
            assert!((p.t - t).abs() < 1e-6, "{model}: t = {} vs {t}", p.t);
        }
    }
    for (model, key) in [(AysModel::Sd15, "ays.sd1"), (AysModel::Sdxl, "ays.sdxl"), (AysModel::Svd, "ays.svd")] {
        let s = SigmaSchedule::AlignYourSteps(model);
        let list = model.ten_step_sigmas();
        // 10 steps: the published list itself (ComfyUI ends clean: the last level becomes 0)
        assert_eq!(s.sigmas(&sd, 10, End::Min).unwrap(), list.to_vec());
        let mut clean = list.to_vec();
        clean[10] = 0.0;
        assert_eq!(s.sigmas(&sd, 10, End::Clean).unwrap(), clean);
        // other step counts: numpy's np.interp of ln(sigma) over linspace positions
        for (n, want) in AYS_STEPS.iter().zip(fx.lists(key)) {
            assert_close(&s.sigmas(&sd, *n, End::Min).unwrap(), &want, 1e-14, &format!("{key} n={n}"));
            let mut want_clean = want.clone();
            *want_clean.last_mut().unwrap() = 0.0;
            assert_close(&s.sigmas(&sd, *n, End::Clean).unwrap(), &want_clean, 1e-14, &format!("{key} clean n={n}"));
        }
    }
    // valid only for their model family: SVD's levels (700 .. 0.002) do not fit SD's table ...
    let svd = Spacing::Sigmas(SigmaSchedule::AlignYourSteps(AysModel::Svd));
    let err = Grid::new(&sd, &svd, 10, End::Clean).unwrap_err();
    assert!(matches!(err, Error::InvalidGrid(ref m) if m.contains("700") && m.contains("model family")), "{err}");
    // ... but fit SVD's EDM schedule
    let edm = Edm::new(0.002, 700.0, EdmModelTime::Sigma).unwrap();
    let grid = Grid::new(&edm, &svd, 10, End::Min).unwrap();
    assert_close(
        &grid.points().iter().map(|p| p.ksigma()).collect::<Vec<_>>(),
        &AysModel::Svd.ten_step_sigmas(),
        1e-14,
        "svd grid",
    );
}

#[test]
fn closed_forms() {
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let (smin, smax) = (sd.point(0.0).ksigma(), sd.point(999.0).ksigma());
    // Stable Diffusion's table ends, as ComfyUI and diffusers print them
    assert!((smin - 0.0291671582).abs() < 1e-10 && (smax - 14.6146412293).abs() < 1e-9, "{smin} {smax}");
    let sigma_range = [
        SigmaSchedule::Karras { rho: 7.0 },
        SigmaSchedule::Exponential,
        SigmaSchedule::Polyexponential { rho: 3.0 },
        SigmaSchedule::Laplace { mu: 0.0, beta: 0.5 },
        SigmaSchedule::KlOptimal,
        SigmaSchedule::BetaSigmas { alpha: 0.6, beta: 0.6 },
    ];
    for s in &sigma_range {
        // one step: sigma_max then 0; not ending clean, two levels from sigma_max to sigma_min
        // (to rounding: kl_optimal's tan(atan(14.6)) amplifies an ulp about 20 times)
        assert_close(&s.sigmas(&sd, 1, End::Clean).unwrap(), &[smax, 0.0], 1e-14, &format!("{s} 1 step"));
        let two = s.sigmas(&sd, 1, End::Min).unwrap();
        assert!((two[0] / smax - 1.0).abs() < 1e-14 && (two[1] / smin - 1.0).abs() < 1e-14, "{s}: {two:?}");
        // End::At(t) moves sigma_min to the level at t
        let at = s.sigmas(&sd, 3, End::At(100.0)).unwrap();
        assert!((at[3] / sd.point(100.0).ksigma() - 1.0).abs() < 1e-14, "{s}: {at:?}");
    }
    // kl_optimal: atan(sigma) uniform from atan(sigma_max) to atan(sigma_min)
    let kl = SigmaSchedule::KlOptimal.sigmas(&sd, 7, End::Min).unwrap();
    for (i, s) in kl.iter().enumerate() {
        let want = smax.atan() + (smin.atan() - smax.atan()) * i as f64 / 7.0;
        assert!((s.atan() - want).abs() < 1e-14, "kl_optimal {i}");
    }
    // Laplace: ln(sigma) is odd about x = 1/2 (mu = 0) where it is not clamped
    let lap = SigmaSchedule::Laplace { mu: 0.0, beta: 0.5 }.sigmas(&sd, 6, End::Min).unwrap();
    for i in 1..6 {
        assert!((lap[i].ln() + lap[6 - i].ln()).abs() < 1e-12, "laplace {i}: {lap:?}");
    }
    assert_eq!(lap[3], 1.0); // x = 1/2: sign(0) = 0, sigma = exp(mu)
                             // polyexponential with rho = 1 is exponential
    let (p1, e) = (
        SigmaSchedule::Polyexponential { rho: 1.0 }.sigmas(&sd, 10, End::Clean).unwrap(),
        SigmaSchedule::Exponential.sigmas(&sd, 10, End::Clean).unwrap(),
    );
    assert_close(&p1, &e, 1e-15, "polyexponential(1) = exponential");
    // linear_quadratic at 10 steps: 1 - sigma/sigma_max rises by 0.025/5 per step for 5 steps,
    // then along a quadratic (third differences 0) reaching 1 at step 10 with the linear slope
    let lq = SigmaSchedule::LinearQuadratic { threshold_noise: 0.025, linear_steps: None }
        .sigmas(&sd, 10, End::Clean)
        .unwrap();
    let x: Vec<f64> = lq.iter().map(|s| 1.0 - s / smax).collect();
    for (i, xi) in x.iter().enumerate().take(6) {
        assert!((xi - 0.005 * i as f64).abs() < 1e-15, "linear part {i}: {xi}");
    }
    for i in 5..8 {
        let third = x[i + 3] - 3.0 * x[i + 2] + 3.0 * x[i + 1] - x[i];
        assert!(third.abs() < 1e-14, "quadratic part {i}: {third}");
    }
    let slope_at_5 = (4.0 * x[6] - 3.0 * x[5] - x[7]) / 2.0; // exact for a quadratic
    assert!((slope_at_5 - 0.005).abs() < 1e-12 && x[10] == 1.0);
}

#[test]
fn table_schedules_pick_the_comfyui_indices() {
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let times = |s: &SigmaSchedule, n: usize| -> Vec<f64> {
        s.grid(&sd, n, End::Clean).unwrap().points().iter().filter(|p| !p.is_clean()).map(|p| p.t).collect()
    };
    // simple: 999 - floor(i * 1000 / n)
    assert_eq!(times(&SigmaSchedule::Simple, 3), vec![999.0, 666.0, 333.0]);
    assert_eq!(times(&SigmaSchedule::Simple, 7), vec![999.0, 857.0, 714.0, 571.0, 428.0, 285.0, 142.0]);
    // ddim_uniform: 1 + k * (1000 / n) descending; 1000 / 7 = 142 leaves room for an 8th step
    let ten: Vec<f64> = (0..10).rev().map(|k| 1.0 + 100.0 * k as f64).collect();
    assert_eq!(times(&SigmaSchedule::DdimUniform, 10), ten);
    assert_eq!(times(&SigmaSchedule::DdimUniform, 7), vec![995.0, 853.0, 711.0, 569.0, 427.0, 285.0, 143.0, 1.0]);
    // ... and equals diffusers' `leading` spacing with steps_offset = 1 when 1000 / n divides 1000
    for n in [1, 2, 4, 5, 10, 20, 25, 50] {
        let leading = Grid::new(&sd, &Spacing::Leading { steps_offset: 1, skip_zero: false }, n, End::Clean).unwrap();
        let ddim = SigmaSchedule::DdimUniform.grid(&sd, n, End::Clean).unwrap();
        assert_eq!(leading.points(), ddim.points(), "n = {n}");
    }
    // beta: ppf(1) = 1 -> the last training index
    assert_eq!(times(&SigmaSchedule::Beta { alpha: 0.6, beta: 0.6 }, 1), vec![999.0]);
    // normal is the uniform-time spacing; karras and exponential the crate's existing spacings
    for end in [End::Clean, End::Min, End::At(20.0)] {
        for n in [1, 3, 10, 30] {
            let pairs = [
                (SigmaSchedule::Normal, Spacing::UniformTime),
                (SigmaSchedule::Karras { rho: 7.0 }, Spacing::Karras { rho: 7.0 }),
                (SigmaSchedule::Exponential, Spacing::Exponential),
            ];
            for (named, spacing) in pairs {
                let a = Grid::new(&sd, &Spacing::Sigmas(named.clone()), n, end).unwrap();
                let b = Grid::new(&sd, &spacing, n, end).unwrap();
                let (ka, kb): (Vec<f64>, Vec<f64>) =
                    (a.points().iter().map(|p| p.ksigma()).collect(), b.points().iter().map(|p| p.ksigma()).collect());
                assert_close(&ka, &kb, 1e-12, &format!("{named} vs {spacing:?}, n = {n}, {end:?}"));
            }
        }
    }
    // sgm_uniform differs from normal only in where the clean step starts
    let sgm = SigmaSchedule::SgmUniform.sigmas(&sd, 4, End::Clean).unwrap();
    let want: Vec<f64> = [999.0, 749.25, 499.5, 249.75].iter().map(|&t| sd.point(t).ksigma()).chain([0.0]).collect();
    assert_close(&sgm, &want, 1e-15, "sgm_uniform 4");
    assert_eq!(
        SigmaSchedule::SgmUniform.sigmas(&sd, 4, End::Min).unwrap(),
        SigmaSchedule::Normal.sigmas(&sd, 4, End::Min).unwrap()
    );
}

#[test]
fn names_round_trip() {
    let mut seen = std::collections::HashSet::new();
    for name in NAMES {
        assert!(seen.insert(name), "duplicate name {name}");
        let s: SigmaSchedule = name.parse().unwrap();
        assert_eq!(s.to_string(), name);
        assert_eq!(s.name(), name);
        assert_eq!(s.to_string().parse::<SigmaSchedule>().unwrap(), s);
    }
    let err = "Karras".parse::<SigmaSchedule>().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::UnknownSchedule { .. }), "{err:?}");
    assert!(msg.contains("`Karras`"), "{msg}");
    for name in NAMES {
        assert!(msg.contains(name), "{msg} lacks {name}");
    }
    // every name makes a grid on Stable Diffusion's table, except the two made for other models
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    for name in NAMES {
        let spacing = Spacing::Sigmas(name.parse().unwrap());
        let grid = Grid::new(&sd, &spacing, 10, End::Clean);
        match name {
            // vp starts at sigma(1) = 152 (a continuous VP model), AYS SVD at 700 (an EDM model)
            "vp" | "ays_svd" => assert!(matches!(grid, Err(Error::InvalidGrid(_))), "{name}: {grid:?}"),
            _ => {
                let grid = grid.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(grid.points().last().unwrap().is_clean(), "{name}");
                let n = if name == "ddim_uniform" { 10 } else { grid.len() };
                assert_eq!(n, 10, "{name}");
            }
        }
    }
}

#[test]
fn errors_are_typed() {
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let cvp = ContinuousVp::default();
    let unsupported = |r: Result<Vec<f64>, Error>, what: &str| {
        assert!(matches!(r, Err(Error::Unsupported(_))), "{what}: {r:?}");
    };
    // table-based schedules need a discrete schedule and end clean
    for s in [SigmaSchedule::Simple, SigmaSchedule::DdimUniform, SigmaSchedule::Beta { alpha: 0.6, beta: 0.6 }] {
        unsupported(s.sigmas(&cvp, 5, End::Clean), "continuous");
        unsupported(s.sigmas(&sd, 5, End::Min), "End::Min");
    }
    unsupported(
        SigmaSchedule::LinearQuadratic { threshold_noise: 0.025, linear_steps: None }.sigmas(&sd, 5, End::Min),
        "lq",
    );
    unsupported(SigmaSchedule::Vp { beta_d: 19.9, beta_min: 0.1, eps_s: 1e-3 }.sigmas(&cvp, 5, End::At(0.5)), "vp at");
    unsupported(SigmaSchedule::AlignYourSteps(AysModel::Sd15).sigmas(&sd, 5, End::At(10.0)), "ays at");
    // bad parameters
    let config = |s: SigmaSchedule| {
        let r = s.sigmas(&sd, 5, End::Clean);
        assert!(matches!(r, Err(Error::InvalidConfig(_))), "{s:?}: {r:?}");
    };
    config(SigmaSchedule::Karras { rho: 0.0 });
    config(SigmaSchedule::Karras { rho: f64::NAN });
    config(SigmaSchedule::Polyexponential { rho: -1.0 });
    config(SigmaSchedule::Laplace { mu: f64::INFINITY, beta: 0.5 });
    config(SigmaSchedule::Laplace { mu: 0.0, beta: 0.0 });
    config(SigmaSchedule::Beta { alpha: 0.0, beta: 0.6 });
    config(SigmaSchedule::BetaSigmas { alpha: 0.6, beta: f64::NAN });
    config(SigmaSchedule::Vp { beta_d: 19.9, beta_min: 0.1, eps_s: 1.0 });
    config(SigmaSchedule::LinearQuadratic { threshold_noise: 1.5, linear_steps: None });
    config(SigmaSchedule::LinearQuadratic { threshold_noise: 0.025, linear_steps: Some(0) });
    config(SigmaSchedule::LinearQuadratic { threshold_noise: 0.025, linear_steps: Some(5) });
    // zero steps, too many steps, a flow schedule with an infinite sigma_max, an end outside
    assert!(matches!(SigmaSchedule::Normal.sigmas(&sd, 0, End::Clean), Err(Error::ZeroSteps)));
    assert!(matches!(SigmaSchedule::Simple.sigmas(&sd, 1001, End::Clean), Err(Error::TooManySteps { max: 1000, .. })));
    let flow = RectifiedFlow::default();
    let r = SigmaSchedule::Karras { rho: 7.0 }.sigmas(&flow, 5, End::Clean);
    assert!(matches!(r, Err(Error::InvalidGrid(ref m)) if m.contains("alpha = 0")), "{r:?}");
    assert!(matches!(SigmaSchedule::Normal.sigmas(&sd, 5, End::At(2000.0)), Err(Error::InvalidGrid(_))));
    // a Laplace schedule that clamps more than its ends repeats a level: the grid refuses it
    let wide = SigmaSchedule::Laplace { mu: 0.0, beta: 4.0 };
    assert!(matches!(wide.grid(&sd, 10, End::Clean), Err(Error::InvalidGrid(_))));
}
