//! Step overhead: the cost of one solver step with the network output precomputed, against the
//! memory floor measured in the same run.
//!
//! The "network" returns a precomputed tensor (a refcounted clone, no work), the finite check is
//! off, so a step's time is the solver's own work: the model-output conversion and the update,
//! all through `lincomb`. Each solver (diffusers' default configuration) walks a long grid after
//! a few warm-up steps, so multistep history is full and every timed step is a real interior
//! step at full order.
//!
//! Also timed: one tensor copy of the same shape (`Tensor::copy`: allocation + memcpy, the unit
//! of the floor), a raw `copy_from_slice` into a preallocated buffer, and `lincomb` fused vs the
//! unfused `lincomb_reference` for 2-4 terms.
//!
//! Run: `cargo bench --bench step -- --warm-up-time 1 --measurement-time 3`. After the run the
//! medians are collected from criterion's output into `bench_results/step_rust.csv` (or
//! `$STEP_BENCH_CSV`), with each
//! solver's floor (the bytes it must touch, in tensor copies) and its ratio to it;
//! `tools/bench_diffusers_step.py` adds diffusers' numbers and writes the table.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion};
use diffusion_samplers::*;

const SHAPES: [[usize; 4]; 2] = [[1, 4, 64, 64], [4, 4, 128, 128]];
/// Steps in the timing grid and warm-up steps before timing.
const CYCLE: usize = 4000;
const WARM: usize = 5;

fn shape_id(s: &[usize; 4]) -> String {
    s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

fn randn(shape: &[usize; 4], seed: u64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = SeededNoise::new(seed).normal_vec(n).into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).expect("tensor")
}

/// A solver in the bench: id (file-name safe), the solver (diffusers' default configuration; its
/// label and NFE per step come from its metadata), and the tensor-sized reads + writes a step
/// must do at least (x, this step's network outputs and history terms read once, one output
/// written; Heun also writes and reads its predictor and re-reads x and eps0). The solvers run
/// as [`AnySolver`]s, the type-erased form `DiffusersSampler` and run-time choice use, so the
/// times include the erasure (a virtual call and a state downcast per step).
struct Row {
    id: &'static str,
    solver: AnySolver,
    floor_units: usize,
}

fn rows() -> Vec<Row> {
    let row = |id, solver, floor_units| Row { id, solver, floor_units };
    let dpmpp3m = DpmSolverMultistep { policy: OrderPolicy::diffusers(3), ..DpmSolverMultistep::diffusers_default() };
    vec![
        row("ddim", AnySolver::new(Ddim::default()), 3),
        row("euler", AnySolver::new(Euler), 3),
        row("heun", AnySolver::new(Heun::default()), 7),
        row("dpmpp2m", AnySolver::new(DpmSolverMultistep::diffusers_default()), 4),
        row("dpmpp3m", AnySolver::new(dpmpp3m), 5),
        // UniPC-bh2 (order 2, corrector): corrector and predictor are both linear in the previous
        // sample and the outputs, so one pass could read x_prev, m_t, m_prev, m_prev2, write 1
        row("unipc", AnySolver::new(UniPc::diffusers_default()), 5),
        row("deis", AnySolver::new(Deis::diffusers_default()), 4),
    ]
}

/// `DPM-Solver++(2M)`, `Heun (2 NFE)`: the solver's label, with its NFE on an interior step when
/// that is not 1.
fn label(solver: &AnySolver, interior: &Step) -> String {
    match solver.nfe(interior) {
        1 => solver.name().to_string(),
        n => format!("{} ({n} NFE)", solver.name()),
    }
}

/// Times `solver.step` on successive steps of a long uniform-lambda grid (so multistep history
/// always holds distinct, earlier points, as in real sampling), re-initialising and re-warming
/// the state when the cycle wraps (once per `CYCLE` steps: amortised, < 1 %).
fn bench_solver<S: Solver>(c: &mut Criterion, id: &str, solver: &S, shape: &[usize; 4]) {
    let sched = ContinuousVp::default();
    let grid = Grid::new(&sched, &Spacing::UniformLambda, CYCLE, End::Min).expect("grid");
    let steps: Vec<Step> = grid.steps().collect();
    let eps = randn(shape, 2);
    let x = randn(shape, 1);
    let out = eps.clone();
    let mut model =
        Model::new(move |_x: &Tensor, _t: f64| Ok(out.clone()), &sched, Prediction::Epsilon).with_finite_check(false);
    let mut noise = SeededNoise::new(0);
    let warm = |ctx: &mut StepContext, state: &mut S::State| {
        for step in &steps[..WARM] {
            solver.step(ctx, step, &x, state).expect("warm-up step");
        }
    };
    solver.validate(&steps).expect("valid");
    let mut ctx = StepContext { model: &mut model, noise: &mut noise };
    let mut state = solver.init_state();
    warm(&mut ctx, &mut state);
    let mut i = WARM;
    let mut g = c.benchmark_group("step");
    g.bench_function(BenchmarkId::new(id, shape_id(shape)), |b| {
        b.iter(|| {
            if i + WARM >= steps.len() {
                state = solver.init_state();
                warm(&mut ctx, &mut state);
                i = WARM;
            }
            let y = solver.step(&mut ctx, &steps[i], black_box(&x), &mut state).expect("step");
            i += 1;
            black_box(y)
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    for shape in &SHAPES {
        let x = randn(shape, 1);
        let y = randn(shape, 2);
        let z = randn(shape, 3);
        let w = randn(shape, 4);
        let sid = shape_id(shape);
        {
            let mut g = c.benchmark_group("floor");
            g.bench_function(BenchmarkId::new("tensor_copy", &sid), |b| {
                b.iter(|| black_box(black_box(&x).copy().expect("copy")))
            });
            let src: Vec<f32> = x.flatten_all().and_then(|t| t.to_vec1()).expect("host");
            let mut dst = vec![0f32; src.len()];
            g.bench_function(BenchmarkId::new("memcpy", &sid), |b| {
                b.iter(|| {
                    dst.copy_from_slice(black_box(&src));
                    black_box(&mut dst);
                })
            });
            g.finish();
        }
        {
            let mut g = c.benchmark_group("lincomb");
            let all = [&x, &y, &z, &w];
            for m in 2..=4 {
                let terms: Vec<(f64, &Tensor)> =
                    all[..m].iter().enumerate().map(|(i, t)| (0.3 + i as f64, *t)).collect();
                g.bench_function(BenchmarkId::new(format!("fused{m}"), &sid), |b| {
                    b.iter(|| black_box(lincomb(black_box(&terms)).expect("lincomb")))
                });
                g.bench_function(BenchmarkId::new(format!("reference{m}"), &sid), |b| {
                    b.iter(|| black_box(lincomb_reference(black_box(&terms)).expect("lincomb")))
                });
            }
            g.finish();
        }
        for row in rows() {
            bench_solver(c, row.id, &row.solver, shape);
        }
    }
}

/// criterion's median estimate (ns) of `group/function/param`, if that benchmark ran.
fn median_ns(root: &Path, group: &str, function: &str, param: &str) -> Option<f64> {
    let path = root.join(group).join(function).join(param).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn write_csv(root: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut lines =
        vec!["solver,label,shape,ns_per_step,tensor_copy_ns,memcpy_ns,floor_units,floor_ns,ratio_to_floor".to_string()];
    for shape in &SHAPES {
        let sid = shape_id(shape);
        let (Some(copy), Some(memcpy)) =
            (median_ns(root, "floor", "tensor_copy", &sid), median_ns(root, "floor", "memcpy", &sid))
        else {
            continue;
        };
        let interior = Grid::new(&ContinuousVp::default(), &Spacing::UniformLambda, 10, End::Min)
            .map(|g| g.as_ref()[5])
            .expect("grid");
        for row in rows() {
            let Some(ns) = median_ns(root, "step", row.id, &sid) else { continue };
            let floor = copy * row.floor_units as f64 / 2.0;
            lines.push(format!(
                "{},{},{},{:.1},{:.1},{:.1},{},{:.1},{:.2}",
                row.id,
                label(&row.solver, &interior),
                sid,
                ns,
                copy,
                memcpy,
                row.floor_units,
                floor,
                ns / floor
            ));
        }
        for m in 2..=4 {
            let (Some(f), Some(r)) = (
                median_ns(root, "lincomb", &format!("fused{m}"), &sid),
                median_ns(root, "lincomb", &format!("reference{m}"), &sid),
            ) else {
                continue;
            };
            let floor = copy * (m + 1) as f64 / 2.0;
            lines.push(format!(
                "lincomb{m},lincomb {m} terms fused,{sid},{f:.1},{copy:.1},{memcpy:.1},{},{floor:.1},{:.2}",
                m + 1,
                f / floor
            ));
            lines.push(format!(
                "lincomb_reference{m},lincomb {m} terms unfused,{sid},{r:.1},{copy:.1},{memcpy:.1},{},{floor:.1},{:.2}",
                m + 1,
                r / floor
            ));
        }
    }
    if lines.len() == 1 {
        return Ok(None);
    }
    let out = PathBuf::from(std::env::var("STEP_BENCH_CSV").unwrap_or_else(|_| "bench_results/step_rust.csv".into()));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, lines.join("\n") + "\n")?;
    Ok(Some(out))
}

fn main() {
    // cargo runs benches from the package root; keep criterion's output where we read it back
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion");
    let mut c = Criterion::default().sample_size(30).output_directory(&root).configure_from_args();
    benches(&mut c);
    c.final_summary();
    match write_csv(&root) {
        Ok(Some(p)) => println!("wrote {}", p.display()),
        Ok(None) => {}
        Err(e) => eprintln!("could not write the step CSV: {e}"),
    }
}
