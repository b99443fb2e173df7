//! The crate side of `tools/sweep_diffusers_timesteps.py`: plan every swept (config, steps) case
//! with the diffusers layer and report the cases whose model times or sigmas differ from
//! diffusers' (a timestep moved by the float32 arithmetic of diffusers, or any other difference).
//!
//! ```text
//! python tools/sweep_diffusers_timesteps.py --out target/sweep
//! cargo run --release --example diffusers_sweep -- target/sweep [--list]
//! ```

use std::collections::BTreeMap;

use candle_core::Device;
use clap::Parser;
use diffusion_samplers::diffusers::{DiffusersSampler, SchedulerConfig, SetTimesteps};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Compare the crate's diffusers timesteps with a sweep of diffusers' set_timesteps")]
struct Args {
    /// The folder the sweep script wrote (sweep.json, sweep.safetensors).
    dir: String,
    /// Print every differing case (otherwise the first 5 per group).
    #[arg(long)]
    list: bool,
    /// Write the differing cases as a JSON list of {config, steps} to this file.
    #[arg(long)]
    write: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let index: Value = serde_json::from_str(&std::fs::read_to_string(format!("{}/sweep.json", args.dir))?)?;
    let t = candle_core::safetensors::load(format!("{}/sweep.safetensors", args.dir), &Device::Cpu)?;
    let vec = |k: &str| t.get(k).map(|x| x.to_vec1::<f64>()).transpose();
    // group (class, conversion keys) -> (cases, moved timesteps, other timestep diffs, sigma diffs,
    // errors, cases where diffusers' timesteps hold NaN)
    let mut groups: BTreeMap<String, [usize; 6]> = BTreeMap::new();
    // the largest timestep difference below 0.5 (a fractional time off in its last digits)
    let mut worst_small = 0.0f64;
    let mut shown: BTreeMap<String, usize> = BTreeMap::new();
    let mut failing = Vec::new();
    let cases = index["cases"].as_array().ok_or("no cases")?;
    for (i, case) in cases.iter().enumerate() {
        let cfg = &case["config"];
        let steps = case["steps"].as_u64().ok_or("steps")? as usize;
        let obj = cfg.as_object().ok_or("config")?;
        let conv: Vec<&str> = obj.keys().filter(|k| k.starts_with("use_")).map(|k| k.as_str()).collect();
        let group = format!(
            "{}{} {} {} {}",
            cfg["_class_name"].as_str().unwrap_or("?"),
            if cfg["_sigmas_of"].is_number() { " (own sigmas as custom sigmas)" } else { "" },
            if conv.is_empty() { "interp".to_string() } else { conv.join("+") },
            cfg["beta_schedule"].as_str().unwrap_or("?"),
            cfg["timestep_spacing"].as_str().unwrap_or("?"),
        );
        let g = groups.entry(group.clone()).or_insert([0; 6]);
        g[0] += 1;
        let want_t = vec(&format!("{i}.timesteps"))?.ok_or("timesteps")?;
        let want_s = vec(&format!("{i}.sigmas"))?;
        // `_sigmas_of`: EulerDiscrete run on its own default sigmas as custom `sigmas`
        let request = match (&cfg["_sigmas_of"], &want_s) {
            (Value::Number(_), Some(s)) => SetTimesteps::Sigmas(s.clone()),
            _ => SetTimesteps::Steps(steps),
        };
        let plan = SchedulerConfig::from_json(&cfg.to_string())
            .and_then(|c| DiffusersSampler::from_config(&c))
            .and_then(|s| s.plan(request));
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                g[4] += 1;
                report(&mut shown, &group, args.list, || format!("  {steps:4} steps: error {e}"));
                failing.push(case.clone());
                continue;
            }
        };
        if want_t.iter().any(|t| t.is_nan()) {
            // diffusers' float32 arithmetic gave NaN timesteps (the crate never returns NaN)
            g[5] += 1;
            report(&mut shown, &group, args.list, || format!("  {steps:4} steps: diffusers has NaN timesteps"));
            continue;
        }
        let moved = plan.timesteps.len() != want_t.len()
            || plan.timesteps.iter().zip(&want_t).any(|(a, b)| (a - b).abs() >= 0.5);
        if !moved {
            worst_small = plan.timesteps.iter().zip(&want_t).map(|(a, b)| (a - b).abs()).fold(worst_small, f64::max);
        }
        let close = |a: &[f64], b: &[f64], tol: f64| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * y.abs().max(1.0))
        };
        let times_ok = close(&plan.timesteps, &want_t, 1e-6);
        let sigmas_ok = match &want_s {
            Some(s) if s.len() == plan.sigmas.len() => close(&plan.sigmas, s, 1e-6),
            _ => true, // the interleaved two-stage classes keep their own layout
        };
        if moved {
            g[1] += 1;
        } else if !times_ok {
            g[2] += 1;
        }
        if !sigmas_ok {
            g[3] += 1;
        }
        if moved || !times_ok || !sigmas_ok {
            failing.push(case.clone());
            let diff: Vec<String> = plan
                .timesteps
                .iter()
                .zip(&want_t)
                .enumerate()
                .filter(|(_, (a, b))| (*a - *b).abs() > 1e-6 * b.abs().max(1.0))
                .map(|(k, (a, b))| format!("[{k}] {a} vs {b}"))
                .take(4)
                .collect();
            report(&mut shown, &group, args.list, || {
                format!("  {steps:4} steps: times {} sigmas ok {sigmas_ok}", diff.join(", "))
            });
        }
    }
    let head = ["group", "cases", "moved", "t-diff", "s-diff", "error", "d-NaN"];
    println!(
        "\n{:<95} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
        head[0], head[1], head[2], head[3], head[4], head[5], head[6]
    );
    let mut total = [0usize; 6];
    let row = |g: &str, c: &[usize; 6]| {
        println!("{g:<95} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}", c[0], c[1], c[2], c[3], c[4], c[5]);
    };
    for (g, c) in &groups {
        for k in 0..6 {
            total[k] += c[k];
        }
        if c[1..].iter().any(|&v| v > 0) {
            row(g, c);
        }
    }
    row("total", &total);
    println!("largest timestep difference below 0.5: {worst_small:.3e}");
    if let Some(path) = args.write {
        std::fs::write(&path, serde_json::to_string_pretty(&failing)?)?;
        println!("wrote {} cases to {path}", failing.len());
    }
    Ok(())
}

fn report(shown: &mut BTreeMap<String, usize>, group: &str, all: bool, line: impl FnOnce() -> String) {
    let n = shown.entry(group.to_string()).or_insert(0);
    if *n == 0 {
        println!("{group}");
    }
    if all || *n < 5 {
        println!("{}", line());
    }
    *n += 1;
}
