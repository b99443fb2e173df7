//! NFE-vs-error curves: run solver settings at NFE in {4, 5, 6, 8, 10, 15, 20, 25, 50} on a
//! problem with a known answer, write a CSV and log-log PNG plots, and overlay diffusers' curves
//! from `tools/nfe_curve_diffusers.py` (same problem, same noise, same CSV format).
//!
//! ```text
//! python -m venv .venv && .venv/bin/pip install -r tools/requirements.txt
//! .venv/bin/python tools/nfe_curve_diffusers.py                # -> bench_results/nfe_diffusers.csv
//! cargo run --release --example nfe_curve                      # -> bench_results/nfe_ours.csv,
//!                                                              #    nfe_*.png, nfe_tables.md
//! ```
//!
//! `--help` lists the options (output folder, diffusers' CSV, font, NFE list, problem; without a
//! font, e.g. Debian's `fonts-dejavu-core`, the plots have no text). For the bundled MNIST UNet, which has no exact answer, the
//! same measurement (RMSE against a 500-step DPM-Solver++(3M) solve from the same noise, at any
//! NFE list) is `cargo run --release --features unet --example compare -- --nfe 4,5,6,8,10,15,20`.
//!
//! The problem: the Gaussian mixture of `tools/make_fixtures.py` (K = 3, D = 6, 8 noise rows, read
//! from `tests/fixtures/diffusers_parity.safetensors`), epsilon prediction, on DDPM's linear betas
//! (1e-4..0.02) and Stable Diffusion's scaled-linear betas (0.00085..0.012). The reference is the
//! exact ODE endpoint from each run's start point (`GaussianMixture::exact_endpoint`).
//!
//! CSV columns: `problem, schedule, source, solver, settings, nfe, steps, rmse, rmse_last_call,
//! wall_s`. `rmse` is the RMSE of the final sample against the exact endpoint; `rmse_last_call`
//! the RMSE of the sample at the grid's last point before the end (where the last network call is
//! made) against the exact solution there; `wall_s` the sampling time. Rows with
//! `settings = diffusers` run diffusers' grid and options and must match diffusers' rows.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;
use plotters::prelude::*;

mod text;
use text::register_font;

type Res<T> = std::result::Result<T, Box<dyn StdError>>;

/// Which problem to sample.
enum Problem {
    /// The Gaussian mixture with its exact denoiser and exact endpoint.
    Gm { gm: GaussianMixture, noise: Tensor },
}

/// NFE-vs-error curves of the solvers on the Gaussian mixture, with diffusers' curves overlaid.
#[derive(Parser, Debug)]
struct Args {
    /// Output folder
    #[arg(long, default_value = "bench_results")]
    out: PathBuf,
    /// diffusers' curves (tools/nfe_curve_diffusers.py); default OUT/nfe_diffusers.csv, skipped if missing
    #[arg(long, value_name = "CSV")]
    diffusers: Option<PathBuf>,
    /// TrueType font for the plot text (default: DejaVu Sans from the usual system paths)
    #[arg(long, value_name = "TTF")]
    font: Option<PathBuf>,
    /// Comma-separated NFE budgets
    #[arg(long, value_delimiter = ',', default_value = "4,5,6,8,10,15,20,25,50", value_parser = clap::value_parser!(u32).range(1..))]
    nfe: Vec<u32>,
    /// The problem (gm: the Gaussian mixture of tests/fixtures/diffusers_parity.safetensors)
    #[arg(long, default_value = "gm")]
    problem: String,
}

fn load_problem(name: &str) -> Res<Problem> {
    match name {
        "gm" => {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusers_parity.safetensors");
            let t = candle_core::safetensors::load(&path, &Device::Cpu)?;
            let get = |k: &str| t.get(k).cloned().ok_or_else(|| format!("{} lacks tensor {k}", path.display()));
            let gm =
                GaussianMixture::new(get("means")?.to_vec2()?, get("stds")?.to_vec1()?, get("weights")?.to_vec1()?)?;
            Ok(Problem::Gm { gm, noise: get("noise")?.to_dtype(DType::F64)? })
        }
        "mnist-unet" | "mnist" => Err("the MNIST UNet has no exact answer; its NFE-vs-error table is the `compare` \
                                       example: cargo run --release --features unet --example compare -- --nfe 4,5,6,8,10,15,20"
            .into()),
        other => Err(format!("unknown problem {other}: use gm").into()),
    }
}

/// One run's output.
struct Run {
    x_end: Tensor,
    /// The sample at the grid's second-to-last point (where the last network call is made).
    x_last: Tensor,
    start: Point,
    last: Point,
    end: Point,
    nfe: usize,
    steps: usize,
    wall: f64,
}

fn go(solver: &AnySolver, mut model: Model, grid: &Grid, noise: &Tensor) -> Res<Run> {
    let count = grid.len();
    let mut x_last = noise.clone();
    let t0 = Instant::now();
    let x_end = sample_with(solver, &mut model, grid, noise, &mut SeededNoise::new(0), |p| {
        if p.step + 1 == p.count {
            x_last = p.x.clone();
        }
    })?;
    let wall = t0.elapsed().as_secs_f64();
    let pts = grid.points();
    Ok(Run {
        x_end,
        x_last,
        start: pts[0],
        last: pts[count - 1],
        end: pts[count],
        nfe: model.nfe(),
        steps: count,
        wall,
    })
}

/// Where a setting's sampling times come from.
enum Times {
    /// `Grid::new` with this spacing and end.
    Spacing(Spacing, End),
    /// EulerDiscrete's and HeunDiscrete's grid and start ([`k_diffusion_grid`], [`k_diffusion_start`]).
    KDiffusion,
}

/// A solver setting: a label pair, the solver (its NFE per step comes from its metadata), its
/// grid and whether the model clips `x0` (diffusers' DDIM default).
struct Setting {
    solver: &'static str,
    settings: &'static str,
    make: fn() -> AnySolver,
    times: Times,
    clip: bool,
}

impl Setting {
    fn end(&self) -> End {
        match self.times {
            Times::Spacing(_, end) => end,
            Times::KDiffusion => End::Clean,
        }
    }

    fn run(&self, s: &DiscreteVp, gm: &GaussianMixture, x: &Tensor, steps: usize) -> Res<Run> {
        let mut model = Model::new(gm.denoiser(s, Prediction::Epsilon), s, Prediction::Epsilon);
        if self.clip {
            model = model.with_data_transform(DataTransform::Clip { range: 1.0 })?;
        }
        let solver = (self.make)();
        match &self.times {
            Times::Spacing(spacing, end) => go(&solver, model, &Grid::new(s, spacing, steps, *end)?, x),
            Times::KDiffusion => {
                let grid = k_diffusion_grid(s, steps)?;
                go(&solver, model, &grid, &k_diffusion_start(&grid, x)?)
            }
        }
    }
}

const LINSPACE_ROUND: Spacing = Spacing::Linspace { round: true, skip_zero: true };
const KARRAS: Spacing = Spacing::Karras { rho: 7.0 };

/// EulerDiscrete's and HeunDiscrete's grid: `t = linspace(0, N - 1, n)` reversed (fractional),
/// with the k-sigma at fractional `t` interpolated *linearly* over the training index
/// (`np.interp(t, arange(N), sigmas)`), then `sigma = 0`. The network is still called at `t`, so
/// (as in diffusers) it sees the schedule's own, log-interpolated, noise level there; a plain
/// `Spacing::Linspace { round: false, .. }` grid would place log-interpolated points instead, which
/// differs by up to ~1.5 % in sigma between the first training indices of scaled-linear betas.
fn k_diffusion_grid(s: &DiscreteVp, n: usize) -> Res<Grid> {
    let ks: Vec<f64> = s.alphas_cumprod().iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
    let last = (ks.len() - 1) as f64;
    let mut points: Vec<Point> = (0..n)
        .map(|i| {
            let t = if n == 1 { 0.0 } else { last * (n - 1 - i) as f64 / (n - 1) as f64 };
            let (lo, frac) = (t.floor() as usize, t - t.floor());
            let k = if frac == 0.0 { ks[lo] } else { ks[lo] + frac * (ks[lo + 1] - ks[lo]) };
            let alpha = 1.0 / (1.0 + k * k).sqrt();
            Point::new(t, alpha, k * alpha)
        })
        .collect();
    points.push(s.clean_point());
    Ok(Grid::from_points(points)?)
}

/// EulerDiscrete's and HeunDiscrete's start with `linspace` / `trailing` spacing:
/// `init_noise_sigma` is `sigma_max`, not `sqrt(sigma_max^2 + 1)`, so the first sample is
/// `noise * ksigma_0`, i.e. `noise * sigma_0` in VP coordinates (0.2 % too small for
/// scaled-linear betas, whose `ksigma_0 = 14.6`). The error is still measured against the exact
/// solution from `noise`, so this start error is part of those rows' error, as in diffusers.
fn k_diffusion_start(grid: &Grid, noise: &Tensor) -> Res<Tensor> {
    Ok(noise.affine(grid.points()[0].sigma, 0.0)?)
}

fn dpm(order: usize, third: ThirdOrder, diffusers_policy: bool) -> DpmSolverMultistep {
    let mut s = if diffusers_policy { DpmSolverMultistep::diffusers_default() } else { DpmSolverMultistep::pp(order) };
    s.policy.order = order;
    s.third_order = third;
    s
}

fn settings() -> Vec<Setting> {
    let row = |solver, settings, make, times| Setting { solver, settings, make, times, clip: false };
    let lin = |end| Times::Spacing(LINSPACE_ROUND, end);
    vec![
        // --- diffusers' schedulers, reproduced (parity rows: settings = "diffusers") ---
        Setting {
            clip: true,
            ..row(
                "DDIM",
                "diffusers",
                || AnySolver::new(Ddim::default()),
                Times::Spacing(Spacing::Leading { steps_offset: 0, skip_zero: false }, End::Clean),
            )
        },
        row("Euler", "diffusers", || AnySolver::new(Euler), Times::KDiffusion),
        row("Heun", "diffusers", || AnySolver::new(Heun::default()), Times::KDiffusion),
        row("DPM++2M", "diffusers", || AnySolver::new(DpmSolverMultistep::diffusers_default()), lin(End::Clean)),
        row("DPM++3M", "diffusers", || AnySolver::new(dpm(3, ThirdOrder::Reference, true)), lin(End::Clean)),
        row("UniPC-bh2", "diffusers", || AnySolver::new(UniPc::diffusers_default()), lin(End::Clean)),
        // diffusers' DEIS has no final_sigmas_type: it ends at sigma(t = 0), not at sigma = 0
        row("DEIS-2", "diffusers", || AnySolver::new(Deis::diffusers_default()), lin(End::Min)),
        row("DEIS-3", "diffusers", || AnySolver::new(Deis { policy: OrderPolicy::diffusers(3) }), lin(End::Min)),
        // --- this crate's choices ---
        row(
            "DPM++3M",
            "Taylor D2; diffusers grid",
            || AnySolver::new(dpm(3, ThirdOrder::Taylor, true)),
            lin(End::Clean),
        ),
        row(
            "DPM++2M",
            "uniform lambda",
            || AnySolver::new(dpm(2, ThirdOrder::Taylor, false)),
            Times::Spacing(Spacing::UniformLambda, End::Clean),
        ),
        row(
            "DPM++2M",
            "Karras rho=7",
            || AnySolver::new(dpm(2, ThirdOrder::Taylor, false)),
            Times::Spacing(KARRAS, End::Clean),
        ),
        row(
            "DPM++3M",
            "Taylor D2; uniform lambda",
            || AnySolver::new(dpm(3, ThirdOrder::Taylor, false)),
            Times::Spacing(Spacing::UniformLambda, End::Clean),
        ),
        row(
            "DPM++3M",
            "Taylor D2; Karras rho=7",
            || AnySolver::new(dpm(3, ThirdOrder::Taylor, false)),
            Times::Spacing(KARRAS, End::Clean),
        ),
        row(
            "DPM++3M",
            "Taylor D2; time-quadratic",
            || AnySolver::new(dpm(3, ThirdOrder::Taylor, false)),
            Times::Spacing(Spacing::TimeQuadratic, End::Clean),
        ),
        row(
            "UniPC-bh2",
            "uniform lambda",
            || AnySolver::new(UniPc::order(2)),
            Times::Spacing(Spacing::UniformLambda, End::Clean),
        ),
        row(
            "UniPC-bh2 order 3",
            "uniform lambda",
            || AnySolver::new(UniPc::order(3)),
            Times::Spacing(Spacing::UniformLambda, End::Clean),
        ),
        row("Heun", "Karras rho=7", || AnySolver::new(Heun::default()), Times::Spacing(KARRAS, End::Clean)),
    ]
}

/// One CSV row.
#[derive(Clone, Debug)]
struct Row {
    problem: String,
    schedule: String,
    source: String,
    solver: String,
    settings: String,
    nfe: usize,
    steps: usize,
    rmse: f64,
    rmse_last_call: f64,
    wall_s: f64,
}

const HEADER: &str = "problem,schedule,source,solver,settings,nfe,steps,rmse,rmse_last_call,wall_s";

impl Row {
    fn csv(&self) -> String {
        let f = |s: &str| s.replace(',', ";"); // keep the CSV one field per column
        format!(
            "{},{},{},{},{},{},{},{:.6e},{:.6e},{:.4e}",
            f(&self.problem),
            f(&self.schedule),
            f(&self.source),
            f(&self.solver),
            f(&self.settings),
            self.nfe,
            self.steps,
            self.rmse,
            self.rmse_last_call,
            self.wall_s
        )
    }

    fn parse(line: &str) -> Option<Row> {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 10 {
            return None;
        }
        Some(Row {
            problem: f[0].into(),
            schedule: f[1].into(),
            source: f[2].into(),
            solver: f[3].into(),
            settings: f[4].into(),
            nfe: f[5].parse().ok()?,
            steps: f[6].parse().ok()?,
            rmse: f[7].parse().ok()?,
            rmse_last_call: f[8].parse().ok()?,
            wall_s: f[9].parse().ok()?,
        })
    }
}

fn rmse(a: &Tensor, b: &Tensor) -> Res<f64> {
    Ok((a - b)?.sqr()?.mean_all()?.sqrt()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

fn main() -> Res<()> {
    let args = Args::parse();
    let Problem::Gm { gm, noise } = load_problem(&args.problem)?;
    std::fs::create_dir_all(&args.out)?;
    let schedules = [
        ("linear", DiscreteVp::linear(1e-4, 0.02, 1000)?),
        ("scaled_linear", DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?),
    ];
    let mut rows = Vec::new();
    // exact solutions keyed by (schedule, from t, to t)
    let mut exact: HashMap<(usize, u64, u64), Tensor> = HashMap::new();
    let mut exact_at = |si: usize, from: &Point, to: &Point| -> Res<Tensor> {
        let key = (si, from.t.to_bits(), to.t.to_bits());
        if let Some(t) = exact.get(&key) {
            return Ok(t.clone());
        }
        let t = gm.exact_endpoint(&noise, from, to)?;
        exact.insert(key, t.clone());
        Ok(t)
    };
    for (si, (sname, sched)) in schedules.iter().enumerate() {
        for setting in settings() {
            let mut done = Vec::new();
            for nfe in args.nfe.iter().map(|&n| n as usize) {
                let steps = steps_for_nfe(&(setting.make)(), nfe, setting.end())?;
                if done.contains(&steps) {
                    continue;
                }
                done.push(steps);
                // a solver bug must not take the whole harness down: report it and go on
                let attempt =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setting.run(sched, &gm, &noise, steps)));
                let run = match attempt {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        eprintln!("FAILED {sname} {} {} at {steps} steps: {e}", setting.solver, setting.settings);
                        continue;
                    }
                    Err(_) => {
                        eprintln!(
                            "PANICKED {sname} {} {} at {steps} steps (solver bug)",
                            setting.solver, setting.settings
                        );
                        continue;
                    }
                };
                let end = exact_at(si, &run.start, &run.end)?;
                let last = exact_at(si, &run.start, &run.last)?;
                let row = Row {
                    problem: args.problem.clone(),
                    schedule: sname.to_string(),
                    source: "ours".into(),
                    solver: setting.solver.into(),
                    settings: setting.settings.into(),
                    nfe: run.nfe,
                    steps: run.steps,
                    rmse: rmse(&run.x_end, &end)?,
                    rmse_last_call: rmse(&run.x_last, &last)?,
                    wall_s: run.wall,
                };
                println!("{}", row.csv());
                rows.push(row);
            }
        }
    }
    let csv = args.out.join("nfe_ours.csv");
    std::fs::write(
        &csv,
        std::iter::once(HEADER.to_string()).chain(rows.iter().map(Row::csv)).collect::<Vec<_>>().join("\n") + "\n",
    )?;
    println!("wrote {}", csv.display());

    let dpath = args.diffusers.clone().unwrap_or_else(|| args.out.join("nfe_diffusers.csv"));
    let theirs: Vec<Row> = match std::fs::read_to_string(&dpath) {
        Ok(text) => text.lines().skip(1).filter_map(Row::parse).filter(|r| r.problem == args.problem).collect(),
        Err(_) => {
            eprintln!(
                "no diffusers curves at {} (run tools/nfe_curve_diffusers.py): plotting ours only",
                dpath.display()
            );
            Vec::new()
        }
    };

    let has_font = register_font(args.font.as_deref());
    for (sname, _) in &schedules {
        let ours: Vec<&Row> = rows.iter().filter(|r| r.schedule == *sname).collect();
        let dif: Vec<&Row> = theirs.iter().filter(|r| r.schedule == *sname).collect();
        let parity: Vec<&Row> =
            ours.iter().copied().filter(|r| r.settings == "diffusers").chain(dif.iter().copied()).collect();
        let mine: Vec<&Row> =
            ours.iter().copied().filter(|r| r.settings != "diffusers" || r.solver == "DPM++2M").collect();
        let figures = [
            ("nfe_parity", "ours (solid, dots) vs diffusers (dashed, crosses)", &parity, Metric::End),
            ("nfe_solvers", "solvers and grids, final sample", &mine, Metric::End),
            ("nfe_solvers_last_call", "solvers and grids, at the last network call", &mine, Metric::LastCall),
        ];
        for (stem, what, rows, metric) in figures {
            let path = args.out.join(format!("{stem}_{sname}.png"));
            plot(&path, &format!("Gaussian mixture, {sname} betas: {what}"), rows, metric, has_font)?;
            println!("wrote {}", path.display());
        }
    }
    let tables = args.out.join("nfe_tables.md");
    std::fs::write(&tables, tables_md(&rows, &theirs, &schedules.iter().map(|(n, _)| *n).collect::<Vec<_>>()))?;
    println!("wrote {}", tables.display());
    Ok(())
}

/// Relative difference of two RMSEs and whether they agree to 3 significant digits.
fn agree3(a: f64, b: f64) -> (f64, bool) {
    let rel = (a - b).abs() / b.abs().max(1e-300);
    let r3 = |v: f64| format!("{v:.2e}");
    (rel, r3(a) == r3(b) || rel < 5e-4)
}

fn tables_md(ours: &[Row], theirs: &[Row], schedules: &[&str]) -> String {
    let mut s = String::new();
    s += "### Parity with diffusers (RMSE vs exact endpoint; ours / diffusers / relative difference)\n\n";
    s += "| schedule | solver | NFE | ours | diffusers | rel. diff | 3 s.f. |\n|---|---|---|---|---|---|---|\n";
    let mut summary = Vec::new();
    for sched in schedules {
        let mut solvers: Vec<&str> =
            theirs.iter().filter(|r| r.schedule == *sched).map(|r| r.solver.as_str()).collect();
        solvers.dedup();
        let mut seen = Vec::new();
        for solver in solvers {
            if seen.contains(&solver) {
                continue;
            }
            seen.push(solver);
            let mut worst: f64 = 0.0;
            let mut n_ok = 0;
            let mut n = 0;
            for d in theirs.iter().filter(|r| r.schedule == *sched && r.solver == solver) {
                let Some(o) = ours.iter().find(|r| {
                    r.schedule == *sched && r.solver == solver && r.settings == "diffusers" && r.nfe == d.nfe
                }) else {
                    s += &format!("| {sched} | {solver} | {} | (no run) | {:.4e} | | |\n", d.nfe, d.rmse);
                    continue;
                };
                let (rel, ok) = agree3(o.rmse, d.rmse);
                worst = worst.max(rel);
                n += 1;
                n_ok += ok as usize;
                s += &format!(
                    "| {sched} | {solver} | {} | {:.4e} | {:.4e} | {:.1e} | {} |\n",
                    d.nfe,
                    o.rmse,
                    d.rmse,
                    rel,
                    if ok { "yes" } else { "no" }
                );
            }
            summary.push(format!("| {sched} | {solver} | {n_ok}/{n} | {worst:.1e} |"));
        }
    }
    s += "\n### Parity summary\n\n| schedule | solver | NFE values agreeing to 3 s.f. | worst rel. diff |\n|---|---|---|---|\n";
    s += &summary.join("\n");
    s += "\n\n### RMSE at 5, 10, 20 NFE (ours; Heun: the largest odd NFE not above)\n\n";
    s += "| schedule | solver | settings | NFE 5 | NFE 10 | NFE 20 |\n|---|---|---|---|---|---|\n";
    for sched in schedules {
        let mut curves: Vec<(&str, &str)> = Vec::new();
        for r in ours.iter().filter(|r| r.schedule == *sched) {
            if !curves.contains(&(r.solver.as_str(), r.settings.as_str())) {
                curves.push((r.solver.as_str(), r.settings.as_str()));
            }
        }
        let at = |solver: &str, settings: &str, nfe: usize| {
            ours.iter()
                .filter(|r| r.schedule == *sched && r.solver == solver && r.settings == settings && r.nfe <= nfe)
                .max_by_key(|r| r.nfe)
                .filter(|r| nfe - r.nfe <= 1)
                .map(|r| r.rmse)
        };
        let best: Vec<f64> = [5, 10, 20]
            .iter()
            .map(|&n| curves.iter().filter_map(|(a, b)| at(a, b, n)).fold(f64::INFINITY, f64::min))
            .collect();
        for (solver, settings) in &curves {
            let cells: Vec<String> = [5, 10, 20]
                .iter()
                .zip(&best)
                .map(|(&n, &b)| match at(solver, settings, n) {
                    Some(v) if v == b => format!("**{v:.2e}**"),
                    Some(v) => format!("{v:.2e}"),
                    None => "-".into(),
                })
                .collect();
            s += &format!("| {sched} | {solver} | {settings} | {} |\n", cells.join(" | "));
        }
    }
    s
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Which error a plot shows.
#[derive(Clone, Copy)]
enum Metric {
    /// RMSE of the final sample.
    End,
    /// RMSE at the last network call.
    LastCall,
}

/// Log-log error vs NFE. Our curves are solid lines with dots; diffusers' are dashed with
/// crosses, in the colour of the same solver; one legend entry per colour. Errors above 1 (Heun
/// blowing up at 3 NFE) are left out so the interesting range stays readable.
fn plot(path: &Path, title: &str, rows: &[&Row], metric: Metric, text: bool) -> Res<()> {
    const CAP: f64 = 1.0;
    let value = |r: &Row| match metric {
        Metric::End => r.rmse,
        Metric::LastCall => r.rmse_last_call,
    };
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let finite: Vec<&&Row> =
        rows.iter().filter(|r| value(r).is_finite() && value(r) > 0.0 && value(r) <= CAP).collect();
    let (lo, hi) = finite.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| (lo.min(value(r)), hi.max(value(r))));
    let (lo, hi) = if lo < hi { (lo / 1.5, (hi * 1.5).min(CAP * 1.2)) } else { (1e-6, 1.0) };
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if text {
        builder.caption(title, ("sans-serif", 22)).x_label_area_size(45).y_label_area_size(80);
    } else {
        builder.x_label_area_size(5).y_label_area_size(5);
    }
    let mut chart = builder.build_cartesian_2d((3.5f64..60.0).log_scale(), (lo..hi).log_scale())?;
    let mut mesh = chart.configure_mesh();
    let y_desc = match metric {
        Metric::End => "RMSE of the final sample vs exact ODE endpoint",
        Metric::LastCall => "RMSE at the last network call vs exact ODE solution",
    };
    if text {
        mesh.x_desc("NFE (network evaluations)")
            .y_desc(y_desc)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style(("sans-serif", 16));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    // one colour per solver+settings; diffusers' parity curves share their twin's colour
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in &finite {
        let k = (r.solver.clone(), r.settings.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (ci, (solver, settings)) in keys.iter().enumerate() {
        let color = PALETTE[ci % PALETTE.len()];
        let mut labelled = false;
        for is_diffusers in [false, true] {
            let mut pts: Vec<(f64, f64)> = finite
                .iter()
                .filter(|r| r.solver == *solver && r.settings == *settings && (r.source == "diffusers") == is_diffusers)
                .map(|r| (r.nfe as f64, value(r)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = ShapeStyle::from(&color).stroke_width(2);
            let series = if is_diffusers {
                chart.draw_series(pts.iter().map(|&p| Cross::new(p, 6, color.stroke_width(2))))?;
                chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 5, style))?
            } else {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                chart.draw_series(LineSeries::new(pts.clone(), style))?
            };
            if text && !labelled {
                labelled = true;
                let label = match (settings.as_str(), is_diffusers) {
                    ("diffusers", false) => format!("{solver}, diffusers' grid and options"),
                    ("diffusers", true) => format!("{solver} (diffusers only)"),
                    _ => format!("{solver}, {settings}"),
                };
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
            }
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
