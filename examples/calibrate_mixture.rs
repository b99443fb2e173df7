//! The calibration benchmark (BENCHMARKS.md, section 6, "Calibrated schedules"): a Gaussian mixture with narrow
//! components, where the exact ODE endpoint is known, on DDPM's linear and Stable Diffusion's
//! scaled-linear betas. For each NFE budget it measures, on held-out noises:
//!
//! - every fixed configuration of this crate (each registered deterministic solver and the
//!   noise-form UniPC variants, on every built-in spacing, ending at `sigma = 0`);
//! - a calibrated DPM-Solver++(2M) schedule (GITS + Nelder-Mead over the log-SNR points);
//! - a calibrated solver plan (coordinate search over each step's order, data/noise form,
//!   second-order weight and UniC corrector, the final step's extrapolation order, alternating
//!   with the placement), started from the calibrated DPM-Solver++(2M) schedule (`--start
//!   calibrated-2m`), from the best fixed configuration of the cell that has a plan, on its own
//!   spacing, ranked against the teacher on the calibration noises (`--start best-fixed`; the
//!   2M schedule's starting spacing is ranked the same way), or from both, keeping the one with the lower calibration
//!   objective (`--start both`);
//! - DualFast-style extrapolated noise predictions (`eps + c (eps - eps_first)`) on the best
//!   DPM-Solver++(2M) grid, for a few `c`.
//!
//! Calibration uses only the teacher (the adaptive DPM-Solver-23 at rtol = atol = 1e-5, its
//! final step extrapolated to sigma = 0) on the calibration noises (seed 1); every RMSE reported
//! is against the exact endpoint on the held-out noises (seed 2). It writes
//! `target/calibration/mixture_problem.safetensors` (the mixture, the held-out noises and their
//! exact endpoints) for `tools/calibration_diffusers.py`, `bench_results/calibration_mixture.csv`,
//! and, when `bench_results/calibration_diffusers.csv` exists, the comparison with diffusers.
//!
//! ```text
//! cargo run --release --example calibrate_mixture -- --noises 2048 --rounds 2 --start both   # BENCHMARKS.md section 6
//! cargo run --release --example calibrate_mixture -- --nfe 4,5,6,8,10,15 --noises 2048
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use diffusion_samplers::calibrate::nelder_mead::NelderMead;
use diffusion_samplers::calibrate::search::{PlanSpace, SearchOptions};
use diffusion_samplers::calibrate::{calibrate, Calibration, FinalStep, Reference, Teacher, SOLVER_PLANS};
use diffusion_samplers::names::solver_names;
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::{
    sample, steps_for_nfe, AnySolver, BVariant, Corrector, DiscreteVp, DpmAdaptive, DpmSolverMultistep, End, Grid,
    Model, OrderPolicy, PlanForm, PlanStep, Planned, Prediction, Scheduler, SeededNoise, Solver, Spacing, UniPc,
};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Calibration benchmark on a Gaussian mixture with narrow components.
#[derive(Parser, Debug)]
struct Cli {
    /// Comma-separated NFE budgets
    #[arg(long, value_delimiter = ',', default_value = "5,10")]
    nfe: Vec<usize>,
    /// Calibration noises (seed 1)
    #[arg(long, default_value_t = 4096)]
    noises: usize,
    /// Held-out noises (seed 2)
    #[arg(long, default_value_t = 16384)]
    held_out: usize,
    /// Only this beta schedule (linear or scaled_linear)
    #[arg(long)]
    schedule: Option<String>,
    /// Plan sweeps of the plan search
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the plan search starts: `calibrated-2m` (the calibrated DPM-Solver++(2M) schedule
    /// and plan), `best-fixed` (the best fixed configuration of the cell that has a plan, on its
    /// own spacing, ranked on the calibration noises against the teacher), or `both` (both searches; the one with the lower calibration objective is
    /// kept: chosen on the calibration noises only)
    #[arg(long, default_value = "calibrated-2m")]
    start: String,
    /// With `best-fixed` / `both`: how many of the best-ranked fixed solvers with a plan (ranked
    /// on the calibration noises, each on its best spacing there) start a search
    #[arg(long, default_value_t = 1)]
    fixed_starts: usize,
}

/// The problem: 8 components in 64 dimensions, means uniform in [-0.8, 0.8], standard deviations
/// 0.05 * 6^(k/7) (0.05 .. 0.3, geometric), weights uniform in [0.2, 2.0] (normalised).
fn mixture() -> AnyResult<GaussianMixture> {
    let (k, d) = (8usize, 64usize);
    // splitmix64: a documented, reproducible stream for the parameters
    let mut z: u64 = 2024;
    let mut uniform = move || {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((x ^ (x >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let means = (0..k).map(|_| (0..d).map(|_| 1.6 * uniform() - 0.8).collect()).collect();
    let stds = (0..k).map(|i| 0.05 * 6f64.powf(i as f64 / (k - 1) as f64)).collect();
    let weights = (0..k).map(|_| 0.2 + 1.8 * uniform()).collect();
    Ok(GaussianMixture::new(means, stds, weights)?)
}

fn noise(n: usize, d: usize, seed: u64) -> AnyResult<Tensor> {
    Ok(Tensor::from_vec(SeededNoise::new(seed).normal_vec(n * d), (n, d), &Device::Cpu)?)
}

/// The exact endpoint at sigma = 0 from `t_max`, in chunks (each chunk's integrator adapts to its
/// own rows).
fn exact(gm: &GaussianMixture, x: &Tensor, s: &DiscreteVp) -> AnyResult<Tensor> {
    let (n, from, to) = (x.dim(0)?, s.point(999.0), s.clean_point());
    let parts = (0..n)
        .step_by(256)
        .map(|i| gm.exact_endpoint(&x.narrow(0, i, 256.min(n - i))?, &from, &to))
        .collect::<diffusion_samplers::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

fn rmse(a: &Tensor, b: &Tensor) -> AnyResult<f64> {
    Ok((a - b)?.sqr()?.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.sqrt())
}

fn run<S: Solver + ?Sized>(
    solver: &S,
    gm: &GaussianMixture,
    s: &DiscreteVp,
    grid: &Grid,
    x: &Tensor,
) -> AnyResult<Tensor> {
    let mut model = Model::new(gm.denoiser(s, Prediction::Epsilon), s, Prediction::Epsilon);
    Ok(sample(solver, &mut model, grid, x)?)
}

fn spacings() -> Vec<(&'static str, Spacing)> {
    vec![
        ("uniform_t", Spacing::UniformTime),
        ("lambda", Spacing::UniformLambda),
        ("quadratic", Spacing::TimeQuadratic),
        ("karras", Spacing::Karras { rho: 7.0 }),
        ("trailing", Spacing::Trailing),
        ("leading", Spacing::Leading { steps_offset: 1, skip_zero: false }),
        ("linspace", Spacing::Linspace { round: true, skip_zero: true }),
    ]
}

/// The fixed solvers: every registered deterministic, non-adaptive name, and UniPC in the noise
/// form (diffusers' `predict_x0=False`), which the registry does not name.
fn fixed_solvers() -> AnyResult<Vec<(String, AnySolver)>> {
    let mut out = vec![];
    for name in solver_names() {
        let s: AnySolver = name.parse()?;
        if !s.is_stochastic() && !s.is_adaptive() && !s.needs_unconditional() && name != "planned" {
            out.push((name.to_string(), s));
        }
    }
    for (vn, variant) in [("bh1", BVariant::Bh1), ("bh2", BVariant::Bh2)] {
        for order in [2, 3] {
            for lof in [false, true] {
                let policy = if lof { OrderPolicy::diffusers(order) } else { OrderPolicy::fixed(order) };
                let u = UniPc {
                    policy,
                    variant,
                    form: diffusion_samplers::math::expint::Form::Noise,
                    corrector: Corrector::All,
                    end: Default::default(),
                };
                out.push((format!("unipc_noise_{vn}_{order}{}", if lof { "_lof" } else { "" }), AnySolver::new(u)));
            }
        }
    }
    Ok(out)
}

struct Row {
    schedule: String,
    nfe: usize,
    kind: &'static str,
    solver: String,
    spacing: String,
    rmse: f64,
    extra: String,
}

fn main() -> AnyResult<()> {
    let cli = Cli::parse();
    if !["calibrated-2m", "best-fixed", "both"].contains(&cli.start.as_str()) {
        return Err(format!("--start {}: use calibrated-2m, best-fixed or both", cli.start).into());
    }
    let gm = mixture()?;
    let d = gm.dim();
    let t0 = Instant::now();
    let cal = noise(cli.noises, d, 1)?;
    let held = noise(cli.held_out, d, 2)?;
    let schedules = [
        ("linear", DiscreteVp::linear(1e-4, 0.02, 1000)?),
        ("scaled_linear", DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?),
    ];
    // the problem file for tools/calibration_diffusers.py
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/calibration");
    std::fs::create_dir_all(&dir)?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let (means, stds, weights) = gm.parameters();
    let k = stds.len();
    tensors.insert("means".into(), Tensor::from_vec(means.concat(), (k, d), &Device::Cpu)?);
    tensors.insert("stds".into(), Tensor::from_vec(stds.to_vec(), k, &Device::Cpu)?);
    tensors.insert("weights".into(), Tensor::from_vec(weights, k, &Device::Cpu)?);
    tensors.insert("held_out".into(), held.clone());
    let mut exact_held = HashMap::new();
    let problem_path = dir.join("mixture_problem.safetensors");
    // the exact endpoints take minutes: reuse a problem file of the same mixture and noises
    if let Some(old) = same_problem(&problem_path, &tensors)? {
        for (name, _) in &schedules {
            exact_held.insert(*name, old[&format!("exact_{name}")].clone());
        }
        println!("exact endpoints of {} held-out noises from {}", cli.held_out, problem_path.display());
    } else {
        for (name, s) in &schedules {
            let e = exact(&gm, &held, s)?;
            tensors.insert(format!("exact_{name}"), e.clone());
            exact_held.insert(*name, e);
        }
        candle_core::safetensors::save(&tensors, &problem_path)?;
        println!(
            "exact endpoints of {} held-out noises: {:.0} s -> {}",
            cli.held_out,
            t0.elapsed().as_secs_f64(),
            problem_path.display()
        );
    }

    let mut rows: Vec<Row> = vec![];
    for (sname, s) in &schedules {
        if cli.schedule.as_deref().is_some_and(|w| w != *sname) {
            continue;
        }
        let ex = &exact_held[sname];
        let teacher = Teacher {
            solver: DpmAdaptive { rtol: 1e-5, atol: 1e-5, ..DpmAdaptive::default() },
            final_step: FinalStep::Extrapolate { points: 3 },
        };
        // the teacher's endpoints of the calibration noises: the fixed configurations are ranked
        // on these to choose where a search starts (the held-out noises only judge)
        let teacher_cal = {
            let mut model = Model::new(gm.denoiser(s, Prediction::Epsilon), s, Prediction::Epsilon);
            Reference::new(&mut model, &cal, &teacher)?.end
        };
        for &nfe in &cli.nfe {
            // 1. every fixed configuration: (held-out RMSE, solver, spacing, calibration RMSE vs the teacher)
            let mut fixed: Vec<(f64, String, String, f64)> = vec![];
            for (name, solver) in fixed_solvers()? {
                let Ok(steps) = steps_for_nfe(&solver, nfe, End::Clean) else { continue };
                for (sp_name, sp) in spacings() {
                    let Ok(grid) = Grid::new(s, &sp, steps, End::Clean) else { continue };
                    if grid.points()[0].t != 999.0 {
                        continue; // leading spacing starts lower: another problem
                    }
                    if let (Ok(y), Ok(y_cal)) = (run(&solver, &gm, s, &grid, &held), run(&solver, &gm, s, &grid, &cal))
                    {
                        let (e, e_cal) = (rmse(&y, ex)?, rmse(&y_cal, &teacher_cal)?);
                        if e.is_finite() && e_cal.is_finite() {
                            fixed.push((e, name.clone(), sp_name.to_string(), e_cal));
                        }
                    }
                }
            }
            fixed.sort_by(|a, b| a.0.total_cmp(&b.0));
            // the baselines: best on the held-out noises
            let best_of = |solver: &str| fixed.iter().find(|r| r.1 == solver).cloned();
            // the starts: best on the calibration noises (against the teacher)
            let mut by_calibration = fixed.clone();
            by_calibration.sort_by(|a, b| a.3.total_cmp(&b.3));
            let start_of = |solver: &str| by_calibration.iter().find(|r| r.1 == solver).cloned();
            for r in &fixed {
                rows.push(Row {
                    schedule: sname.to_string(),
                    nfe,
                    kind: "fixed",
                    solver: r.1.clone(),
                    spacing: r.2.clone(),
                    rmse: r.0,
                    extra: String::new(),
                });
            }
            let best = fixed[0].clone();
            println!(
                "{sname} NFE {nfe}: best fixed {:.4e} ({} on {}); {} configurations",
                best.0,
                best.1,
                best.2,
                fixed.len()
            );
            let spacing_of = |name: &str| spacings().into_iter().find(|(n, _)| *n == name).map(|(_, s)| s);
            // 2. a calibrated DPM-Solver++(2M) schedule, 3. a calibrated plan (plan and placement
            // together), searched from the calibrated schedule and/or the best fixed configuration
            let mut calibrated_2m: Option<Grid> = None;
            // the best fixed configuration that has a plan (`_lof` differs only in the last
            // steps' orders, which the search sets anyway)
            let mut best_planned: Vec<String> = vec![];
            for r in &by_calibration {
                let name = r.1.trim_end_matches("_lof");
                if name != "dpmpp_2m" && SOLVER_PLANS.contains(&name) && !best_planned.iter().any(|b| b == name) {
                    best_planned.push(name.to_string());
                }
            }
            best_planned.truncate(cli.fixed_starts);
            let mut starts: Vec<(&str, String, Option<PlanSpace>)> = vec![("schedule", "dpmpp_2m".into(), None)];
            if cli.start != "best-fixed" {
                starts.push(("plan", "dpmpp_2m".into(), Some(PlanSpace::default())));
            }
            if cli.start != "calibrated-2m" {
                for b in &best_planned {
                    starts.push(("plan", b.clone(), Some(PlanSpace::default())));
                }
            }
            // (calibration RMSE, held-out RMSE, row) of each plan search, for `--start both`
            let mut plans: Vec<(f64, f64, Row)> = vec![];
            for (label, solver, space) in starts {
                let solver = solver.as_str();
                let Some(start_row) = start_of(solver).or_else(|| start_of(&format!("{solver}_lof"))) else { continue };
                let Some(baseline) = best_of(solver).or_else(|| best_of(&format!("{solver}_lof"))) else { continue };
                let mut opts = Calibration::schedule(solver, nfe);
                opts.teacher = teacher;
                opts.start = spacing_of(&start_row.2).unwrap_or(Spacing::TimeQuadratic);
                if space.is_some() && solver == "dpmpp_2m" {
                    opts.start_grid = calibrated_2m.clone();
                    opts.gits = calibrated_2m.is_none();
                } else if space.is_some() {
                    // the best fixed configuration itself: its plan on its spacing
                    opts.gits = false;
                }
                opts.space = space;
                let from = if opts.start_grid.is_some() {
                    "the calibrated schedule".to_string()
                } else if label == "plan" {
                    format!("{solver} on {}", start_row.2)
                } else {
                    start_row.2.clone()
                };
                opts.search = SearchOptions {
                    rounds: cli.rounds,
                    placement: NelderMead { max_evals: 400, step: 0.3, ftol: 1e-8 },
                };
                let mut model = Model::new(gm.denoiser(s, Prediction::Epsilon), s, Prediction::Epsilon);
                let c = calibrate(&mut model, &cal, &opts)?;
                if label == "schedule" {
                    calibrated_2m = Some(c.grid.clone());
                }
                let y = run(&Planned { plan: c.plan.clone() }, &gm, s, &c.grid, &held)?;
                let e = rmse(&y, ex)?;
                let plan: Vec<String> = c.plan.steps.iter().map(plan_code).collect();
                let lambdas: Vec<String> = c.grid.points().iter().map(|p| format!("{:.2}", p.lambda)).collect();
                println!(
                    "  calibrated {label} ({solver} from {}): held-out {e:.4e} = {:.2}x below the best fixed for {solver} \
                     ({:.4e}), {:.2}x below the best fixed overall; calibration RMSE vs teacher {:.3e} -> {:.3e}; \
                     teacher {} NFE, students {} NFE ({} solves), {:.0} s\n    plan {}\n    lambda {}",
                    from,
                    baseline.0 / e,
                    baseline.0,
                    best.0 / e,
                    c.rmse_start,
                    c.rmse,
                    c.cost.teacher_nfe,
                    c.cost.student_nfe,
                    c.cost.student_solves,
                    c.cost.seconds,
                    plan.join(" "),
                    lambdas.join(" ")
                );
                let row = Row {
                    schedule: sname.to_string(),
                    nfe,
                    kind: if label == "plan" { "calibrated_plan" } else { "calibrated_schedule" },
                    solver: c.solver.clone(),
                    spacing: format!("from {from}"),
                    rmse: e,
                    extra: format!(
                        "rmse_calibration={:.4e};teacher_nfe={};student_nfe={};solves={};seconds={:.1};noises={};plan={};lambda={}",
                        c.rmse,
                        c.cost.teacher_nfe,
                        c.cost.student_nfe,
                        c.cost.student_solves,
                        c.cost.seconds,
                        c.cost.noises,
                        plan.join(" "),
                        lambdas.join(" ")
                    ),
                };
                if label == "plan" {
                    plans.push((c.rmse, e, row));
                } else {
                    rows.push(row);
                }
            }
            // with several starts, the plan kept is the one with the lower calibration objective
            // (the held-out noises play no part in the choice)
            let chosen = plans.iter().enumerate().min_by(|a, b| a.1 .0.total_cmp(&b.1 .0)).map(|(i, _)| i);
            for (i, (_, e, mut row)) in plans.into_iter().enumerate() {
                if Some(i) != chosen {
                    row.kind = "calibrated_plan_other_start";
                } else if cli.start == "both" {
                    println!("  kept the plan {} (lower calibration RMSE): held-out {e:.4e}", row.spacing);
                }
                rows.push(row);
            }
            // 4. DualFast-style extrapolated noise predictions on the best 2M grid
            if let Some(r2m) = best_of("dpmpp_2m") {
                let grid = Grid::new(s, &spacing_of(&r2m.2).unwrap_or(Spacing::TimeQuadratic), nfe, End::Clean)?;
                for c in [-0.2, -0.1, 0.05, 0.1, 0.2] {
                    let e = rmse(&dualfast(&gm, s, &grid, &held, c)?, ex)?;
                    println!("  DualFast-style c = {c}: {e:.4e} (plain {:.4e})", r2m.0);
                    rows.push(Row {
                        schedule: sname.to_string(),
                        nfe,
                        kind: "dualfast",
                        solver: format!("dpmpp_2m c={c}"),
                        spacing: r2m.2.clone(),
                        rmse: e,
                        extra: String::new(),
                    });
                }
            }
        }
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench_results/calibration_mixture.csv");
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| {
            format!("{},{},{},{},{},{:.6e},\"{}\"", r.schedule, r.nfe, r.kind, r.solver, r.spacing, r.rmse, r.extra)
        })
        .collect();
    // with --schedule, the other schedule's rows of an earlier run stay (in the schedules' order)
    if let (Some(only), Ok(old)) = (cli.schedule.as_deref(), std::fs::read_to_string(&out)) {
        lines.extend(old.lines().skip(1).filter(|l| !l.starts_with(&format!("{only},"))).map(String::from));
    }
    let order = |l: &String| schedules.iter().position(|(n, _)| l.starts_with(&format!("{n},")));
    lines.sort_by_key(order);
    let mut csv = String::from("schedule,nfe,kind,solver,spacing,rmse_held_out,extra\n");
    for l in &lines {
        writeln!(csv, "{l}")?;
    }
    std::fs::write(&out, csv)?;
    println!("wrote {} ({:.0} s in all)", out.display(), t0.elapsed().as_secs_f64());
    summary(&rows)?;
    Ok(())
}

/// The tensors of `path` if it holds exactly `problem` (mixture and held-out noises, bit for bit)
/// and both exact endpoints.
fn same_problem(
    path: &std::path::Path,
    problem: &HashMap<String, Tensor>,
) -> AnyResult<Option<HashMap<String, Tensor>>> {
    let Ok(old) = candle_core::safetensors::load(path, &Device::Cpu) else { return Ok(None) };
    for (k, v) in problem {
        let Some(o) = old.get(k) else { return Ok(None) };
        if o.dims() != v.dims() || o.dtype() != v.dtype() {
            return Ok(None);
        }
        let (a, b) = (o.flatten_all()?.to_vec1::<f64>()?, v.flatten_all()?.to_vec1::<f64>()?);
        if a.iter().zip(&b).any(|(x, y)| x.to_bits() != y.to_bits()) {
            return Ok(None);
        }
    }
    let both = ["exact_linear", "exact_scaled_linear"].iter().all(|k| old.contains_key(*k));
    Ok(both.then_some(old))
}

fn plan_code(s: &PlanStep) -> String {
    let second = match s.second {
        diffusion_samplers::SecondOrder::Bh2 => "",
        diffusion_samplers::SecondOrder::Bh1 => "b",
        diffusion_samplers::SecondOrder::Taylor => "t",
    };
    format!(
        "{}{}{second}{}",
        s.order,
        if s.form == PlanForm::Data { "d" } else { "n" },
        if s.corrector { "c" } else { "" }
    )
}

/// DPM-Solver++(2M) on `grid` with every noise prediction replaced by `eps + c (eps - eps_first)`
/// (`eps_first` the prediction at the first step): our reading of DualFast's approximation-error
/// correction (arXiv:2506.13058), applied inside the network wrapper.
fn dualfast(gm: &GaussianMixture, s: &DiscreteVp, grid: &Grid, x: &Tensor, c: f64) -> AnyResult<Tensor> {
    let mut inner = gm.denoiser(s, Prediction::Epsilon);
    let mut first: Option<Tensor> = None;
    let wrapped = move |x: &Tensor, t: f64| -> candle_core::Result<Tensor> {
        let eps = inner(x, t)?;
        match &first {
            None => {
                first = Some(eps.clone());
                Ok(eps)
            }
            Some(f) => &eps + ((&eps - f)? * c)?,
        }
    };
    let mut model = Model::new(wrapped, s, Prediction::Epsilon);
    Ok(sample(&DpmSolverMultistep::pp(2), &mut model, grid, x)?)
}

/// The acceptance table: calibrated vs the best fixed configuration and, if its CSV exists, the
/// best diffusers option.
fn summary(rows: &[Row]) -> AnyResult<()> {
    let diffusers = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench_results/calibration_diffusers.csv");
    let mut best_diffusers: HashMap<(String, usize), (f64, String)> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(&diffusers) {
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            let n = cols.len();
            if n < 8 {
                continue;
            }
            let (Ok(nfe), Ok(e)) = (cols[1].parse::<usize>(), cols[n - 1].parse::<f64>()) else { continue };
            let key = (cols[0].to_string(), nfe);
            let label = format!("{} {}", cols[2], cols[3..n - 4].join(",").trim_matches('"'));
            if best_diffusers.get(&key).is_none_or(|(b, _)| e < *b) {
                best_diffusers.insert(key, (e, label));
            }
        }
    }
    println!("\n| schedule | NFE | best fixed (crate) | best 2M fixed | 2M calibrated | plan calibrated | best diffusers | plan vs fixed | plan vs diffusers |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut keys: Vec<(String, usize)> = rows.iter().map(|r| (r.schedule.clone(), r.nfe)).collect();
    keys.dedup();
    for (sched, nfe) in keys {
        let of = |kind: &str, solver: Option<&str>| {
            rows.iter()
                .filter(|r| {
                    r.schedule == sched && r.nfe == nfe && r.kind == kind && solver.is_none_or(|s| r.solver == s)
                })
                .map(|r| r.rmse)
                .fold(f64::INFINITY, f64::min)
        };
        let (best, best2m) = (of("fixed", None), of("fixed", Some("dpmpp_2m")));
        let (cal2m, plan) = (of("calibrated_schedule", None), of("calibrated_plan", None));
        let diff = best_diffusers.get(&(sched.clone(), nfe)).map(|(e, _)| *e).unwrap_or(f64::NAN);
        println!(
            "| {sched} | {nfe} | {best:.3e} | {best2m:.3e} | {cal2m:.3e} ({:.2}x) | {plan:.3e} | {diff:.3e} | {:.2}x | {:.2}x |",
            best2m / cal2m,
            best / plan,
            diff / plan
        );
    }
    Ok(())
}
