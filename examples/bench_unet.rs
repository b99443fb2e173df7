//! Forward time of the bundled MNIST `UNet2DModel` (the Rust side of BENCHMARKS.md section
//! "UNet forward"; `tools/bench_unet_torch.py` is the PyTorch side, same input and output format).
//!
//! ```text
//! cargo run --release --features unet --example bench_unet -- --batches 1,16,64 --reps 7
//! ```
//!
//! Input `x[i] = sin(0.37 i)` over the flattened `[batch, 1, 32, 32]` f32 tensor, timestep 500.
//! Each batch size is warmed up (`--warmup`, default 2), then timed `--reps` times. Prints one CSV
//! line per batch size: `impl,threads,batch,median_ms,min_ms,max_ms,cpu_ms,out_mean_abs`, where
//! `cpu_ms` is the process CPU time (all threads, from `/proc/self/stat`; Linux only, else NaN)
//! per timed forward: on a shared machine it moves less than the wall time. Threads are rayon's
//! (candle's CPU backend): `RAYON_NUM_THREADS`, default the number of cores. `--composed` times
//! `UNet2DModel::forward_composed` (candle's composed operations, the path before the fused
//! kernels) instead of `forward`.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::unet::UNet2DModel;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn arg(args: &[String], key: &str, default: &str) -> String {
    args.iter().position(|a| a == key).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: bench_unet [--batches 1,16,64] [--reps 7] [--warmup 2] [--model DIR] [--composed] [--header]");
        return Ok(());
    }
    for a in args.iter().filter(|a| a.starts_with("--")) {
        if !["--batches", "--reps", "--warmup", "--model", "--header", "--composed"].contains(&a.as_str()) {
            return Err(format!("unknown option {a} (see --help)").into());
        }
    }
    let default_model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/mnist-unet");
    let model = arg(&args, "--model", &default_model.display().to_string());
    let reps: usize = arg(&args, "--reps", "7").parse()?;
    let warmup: usize = arg(&args, "--warmup", "2").parse()?;
    let batches: Vec<usize> =
        arg(&args, "--batches", "1,16,64").split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?;
    if reps == 0 {
        return Err("--reps must be at least 1".into());
    }

    let unet = UNet2DModel::load(&model, DType::F32, &Device::Cpu)?;
    let composed = args.iter().any(|a| a == "--composed");
    let forward = |x: &Tensor| if composed { unet.forward_composed(x, 500.0) } else { unet.forward(x, 500.0) };
    let name = if composed { "rust-composed" } else { "rust" };
    let threads = rayon_threads();
    if args.iter().any(|a| a == "--header") {
        println!("impl,threads,batch,median_ms,min_ms,max_ms,cpu_ms,out_mean_abs");
    }
    for &b in &batches {
        let n = b * 32 * 32;
        let x: Vec<f32> = (0..n).map(|i| (0.37 * i as f64).sin() as f32).collect();
        let x = Tensor::from_vec(x, (b, 1, 32, 32), &Device::Cpu)?;
        let mut out = forward(&x)?;
        for _ in 1..warmup {
            out = forward(&x)?;
        }
        let mut ms = Vec::with_capacity(reps);
        let cpu0 = cpu_seconds();
        for _ in 0..reps {
            let t0 = Instant::now();
            out = forward(&x)?;
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let cpu_ms = (cpu_seconds() - cpu0) * 1e3 / reps as f64;
        let mean_abs = out.abs()?.mean_all()?.to_scalar::<f32>()?;
        ms.sort_by(f64::total_cmp);
        let median = if reps % 2 == 1 { ms[reps / 2] } else { 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]) };
        println!("{name},{threads},{b},{median:.2},{:.2},{:.2},{cpu_ms:.1},{mean_abs:.6}", ms[0], ms[reps - 1]);
    }
    Ok(())
}

/// User + system CPU time of this process (all threads), from `/proc/self/stat` (Linux reports
/// it in units of 1/100 s); NaN where that file does not exist.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // fields after the command name (which is in parentheses and may hold spaces)
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return f64::NAN };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    match (f.get(11).and_then(|v| v.parse::<f64>().ok()), f.get(12).and_then(|v| v.parse::<f64>().ok())) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
