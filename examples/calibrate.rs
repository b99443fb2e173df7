//! Calibrate a step schedule (and optionally a solver plan) for the bundled MNIST UNet and write
//! it as a schedule file that `mnist` and `compare` load with `--schedule FILE`.
//!
//! ```text
//! cargo run --release --features unet --example calibrate -- --nfe 10
//! # the shipped models/mnist-unet/schedule-10.json and schedule-5.json (BENCHMARKS.md section 6):
//! cargo run --release --features unet --example calibrate -- --nfe 10 --plan --noises 8 --student-batch 8 --max-evals 40
//! cargo run --release --features unet --example calibrate -- --nfe 5 --plan --noises 8 --student-batch 8 --max-evals 40 \
//!     --out models/mnist-unet/schedule-5.json
//! ```
//!
//! The teacher is the adaptive DPM-Solver-23 from `t = 999` to `t = 0`, then the model's data
//! prediction there (the convention of every fixed-grid solver and of `compare`'s 500-step
//! reference). The calibration noises (`--noises`, seed `--seed`) are not the ones `compare`
//! judges on (seed 0). The GITS dynamic programming over the teacher's points gives a first
//! grid without further network evaluations; Nelder-Mead over the log-SNR points (and, with
//! `--plan`, a coordinate search over the per-step solver plan) then fits the students to the
//! teacher on `--student-batch` of the noises. The cost is printed in network evaluations and
//! seconds.

mod unet_common;

use std::time::Instant;

use clap::Parser;
use diffusion_samplers::calibrate::nelder_mead::NelderMead;
use diffusion_samplers::calibrate::search::{PlanSpace, SearchOptions};
use diffusion_samplers::calibrate::{calibrate, Calibration, FinalStep, Teacher, SOLVER_PLANS};
use diffusion_samplers::{DpmAdaptive, Model, PlanForm, Prediction, SecondOrder};
use unet_common::calibrated::{cpu_seconds, model_id};
use unet_common::*;

/// Calibrate a schedule file for the bundled MNIST UNet.
#[derive(Parser, Debug)]
struct Cli {
    /// Network evaluations of the calibrated sampler (= steps; the last goes to sigma = 0)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    nfe: u32,
    /// The solver the schedule is made for (with --plan: where the plan search starts)
    #[arg(long, default_value = "dpmpp_2m")]
    solver: String,
    /// Also search the per-step solver plan (order, data/noise form, corrector); the file's
    /// solver is then `planned`
    #[arg(long)]
    plan: bool,
    /// Calibration noises the teacher solves
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    noises: u32,
    /// Calibration noises the students are fitted on (the first ones)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    student_batch: u32,
    /// Seed of the calibration noises (compare judges on seed 0)
    #[arg(long, default_value_t = 1000)]
    seed: u64,
    /// Teacher tolerance (rtol = atol, on x / alpha)
    #[arg(long, default_value_t = 1e-3)]
    tol: f64,
    /// Student solves of each Nelder-Mead placement optimisation
    #[arg(long, default_value_t = 60)]
    max_evals: usize,
    /// Plan sweeps (each followed by a placement optimisation)
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Output file (default: models/mnist-unet/schedule-<nfe>.json)
    #[arg(long)]
    out: Option<String>,
    #[command(flatten)]
    model: ModelArg,
}

fn main() -> AnyResult<()> {
    let cli = Cli::parse();
    if !SOLVER_PLANS.contains(&cli.solver.as_str()) {
        return Err(format!("--solver {}: calibration knows {}", cli.solver, SOLVER_PLANS.join(", ")).into());
    }
    let nfe = cli.nfe as usize;
    let t0 = Instant::now();
    let dir = cli.model.dir();
    let (unet, schedule) = load(&dir)?;
    let id = model_id(&dir)?;
    let x_t = noise(cli.noises as usize, 1, 32, 32, cli.seed)?;
    let mut opts = Calibration::schedule(&cli.solver, nfe);
    opts.teacher = Teacher {
        solver: DpmAdaptive { rtol: cli.tol, atol: cli.tol, ..DpmAdaptive::default() },
        final_step: FinalStep::Denoise,
    };
    opts.student_batch = Some(cli.student_batch as usize);
    opts.search =
        SearchOptions { rounds: cli.rounds, placement: NelderMead { max_evals: cli.max_evals, step: 0.3, ftol: 1e-6 } };
    if cli.plan {
        // a small space: the network is the cost (forms and corrector per step; final-step order)
        opts.space = Some(PlanSpace {
            orders: vec![2],
            forms: vec![PlanForm::Data, PlanForm::Noise],
            seconds: vec![SecondOrder::Bh2],
            correctors: vec![false, true],
            final_orders: vec![1, 2],
        });
    }
    let load_secs = t0.elapsed().as_secs_f64();
    let cpu0 = cpu_seconds();
    let mut model = Model::new(&unet, &schedule, Prediction::Epsilon);
    let bar = Bar::new(0, "calibrating");
    let cal = calibrate(&mut model, &x_t, &opts)?;
    bar.done();
    let cpu =
        cpu_seconds().zip(cpu0).map(|(b, a)| format!("{:.1} CPU s", b - a)).unwrap_or_else(|| "CPU time n/a".into());
    let out = cli.out.clone().unwrap_or_else(|| dir.join(format!("schedule-{nfe}.json")).display().to_string());
    let made_from = format!("{} ({})", spacing_name(&opts.start), cli.solver);
    cal.file(&id, &schedule, &made_from)?.save(&out)?;
    let c = cal.cost;
    println!(
        "calibrated {} at {nfe} NFE for {id} ({}): RMSE vs teacher on the calibration noises {:.4} -> {:.4}",
        cal.solver, cal.method, cal.rmse_start, cal.rmse
    );
    println!(
        "cost: teacher {} NFE on {} noises, students {} NFE in {} solves on {} noises ({} network calls in all); \
         {:.1} s calibrating ({cpu}) + {load_secs:.1} s loading",
        c.teacher_nfe,
        c.noises,
        c.student_nfe,
        c.student_solves,
        c.student_batch,
        c.teacher_nfe + c.student_nfe,
        c.seconds
    );
    let times: Vec<String> = cal.grid.points().iter().map(|p| format!("{:.1}", p.t)).collect();
    println!("times: {}", times.join(" "));
    if cal.solver == "planned" {
        let plan: Vec<String> = cal
            .plan
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}{}{}",
                    s.order,
                    if s.form == PlanForm::Data { "d" } else { "n" },
                    if s.corrector { "c" } else { "" }
                )
            })
            .collect();
        println!("plan: {}", plan.join(" "));
    }
    println!("-> {out}");
    Ok(())
}
