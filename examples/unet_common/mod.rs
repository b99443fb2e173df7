//! Shared by the UNet examples (`mnist`, `compare`, `invert`): loading the bundled model and its
//! schedule, choosing a solver and grid by name, running with a progress bar, writing PNG grids,
//! and a tiny `--key value` argument parser.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::unet::UNet2DModel;
use diffusion_samplers::{
    invert, sample_with, Ddim, Deis, DiscreteVp, DpmSolverMultistep, End, Euler, Grid, Heun, Model, OrderPolicy,
    Progress, SeededNoise, Spacing, UniPc,
};
use indicatif::{ProgressBar, ProgressStyle};

pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// `--key value` pairs and `--flag`s after the program name.
pub struct Args {
    pairs: Vec<(String, Option<String>)>,
}

impl Args {
    pub fn parse(usage: &str) -> Args {
        let raw: Vec<String> = std::env::args().skip(1).collect();
        if raw.iter().any(|a| a == "-h" || a == "--help") {
            println!("{usage}");
            std::process::exit(0);
        }
        let mut pairs = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let key = raw[i].trim_start_matches("--").to_string();
            let value = raw.get(i + 1).filter(|v| !v.starts_with("--")).cloned();
            i += if value.is_some() { 2 } else { 1 };
            pairs.push((key, value));
        }
        Args { pairs }
    }

    pub fn str(&self, key: &str, default: &str) -> String {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.clone())
            .unwrap_or_else(|| default.to_string())
    }

    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> AnyResult<T> {
        match self.pairs.iter().rev().find(|(k, _)| k == key).and_then(|(_, v)| v.clone()) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{key} {v}: not a valid number").into()),
        }
    }

    pub fn flag(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }
}

/// The bundled model folder (or `--model DIR`).
pub fn model_dir(args: &Args) -> PathBuf {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-unet");
    PathBuf::from(args.str("model", &default.display().to_string()))
}

/// Load the UNet (f32 on the CPU) and the DDPM schedule from its `scheduler_config.json`.
pub fn load(dir: &Path) -> AnyResult<(UNet2DModel, DiscreteVp)> {
    let unet = UNet2DModel::load(dir, DType::F32, &Device::Cpu)?;
    let path = dir.join("scheduler_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg: serde_json::Value = serde_json::from_str(&text)?;
    let get = |k: &str, d: f64| cfg.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    if cfg.get("beta_schedule").and_then(|v| v.as_str()).unwrap_or("linear") != "linear" {
        return Err("these examples expect a linear-beta DDPM schedule".into());
    }
    if cfg.get("prediction_type").and_then(|v| v.as_str()).unwrap_or("epsilon") != "epsilon" {
        return Err("these examples expect an epsilon-prediction model".into());
    }
    let schedule = DiscreteVp::linear(
        get("beta_start", 1e-4),
        get("beta_end", 0.02),
        get("num_train_timesteps", 1000.0) as usize,
    )?;
    Ok((unet, schedule))
}

/// Standard normal noise `[n, c, h, w]` (f32) from the crate's seeded generator.
pub fn noise(n: usize, c: usize, h: usize, w: usize, seed: u64) -> AnyResult<Tensor> {
    let v: Vec<f32> = SeededNoise::new(seed).normal_vec(n * c * h * w).into_iter().map(|x| x as f32).collect();
    Ok(Tensor::from_vec(v, (n, c, h, w), &Device::Cpu)?)
}

/// The solvers the examples know, by command-line name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SolverName {
    Ddim,
    Euler,
    Heun,
    Dpm2m,
    Dpm3m,
    Dpm3mFixed,
    UniPc2,
    UniPc3,
    Deis3,
}

pub const SOLVER_NAMES: &str = "ddim, euler, heun, dpm2m, dpm3m, dpm3m-fixed, unipc2, unipc3, deis3";

impl SolverName {
    pub fn parse(s: &str) -> AnyResult<SolverName> {
        Ok(match s {
            "ddim" => SolverName::Ddim,
            "euler" => SolverName::Euler,
            "heun" => SolverName::Heun,
            "dpm2m" => SolverName::Dpm2m,
            "dpm3m" => SolverName::Dpm3m,
            "dpm3m-fixed" => SolverName::Dpm3mFixed,
            "unipc2" => SolverName::UniPc2,
            "unipc3" => SolverName::UniPc3,
            "deis3" => SolverName::Deis3,
            _ => return Err(format!("unknown solver {s:?}: use one of {SOLVER_NAMES}").into()),
        })
    }

    /// Network evaluations per step, and the steps that spend at most `nfe` evaluations on a
    /// grid ending at sigma = 0 (Heun: 2 per step, 1 on the last).
    pub fn steps_for_nfe(self, nfe: usize) -> usize {
        match self {
            SolverName::Heun => nfe.div_ceil(2).max(1),
            _ => nfe,
        }
    }

    /// The grid each solver is customarily run on: DDIM on diffusers' `trailing` timesteps
    /// (Lin et al. 2023), Euler and Heun on Karras' sigmas (EDM), the exponential integrators
    /// on `multistep` (the measured choice, see models/mnist-unet/README.md).
    pub fn default_spacing(self, multistep: &Spacing) -> Spacing {
        match self {
            SolverName::Ddim => Spacing::Trailing,
            SolverName::Euler | SolverName::Heun => Spacing::Karras { rho: 7.0 },
            _ => multistep.clone(),
        }
    }
}

pub fn parse_spacing(s: &str) -> AnyResult<Spacing> {
    Ok(match s {
        "lambda" => Spacing::UniformLambda,
        "karras" => Spacing::Karras { rho: 7.0 },
        "quadratic" => Spacing::TimeQuadratic,
        "uniform" => Spacing::UniformTime,
        "trailing" => Spacing::Trailing,
        "leading" => Spacing::Leading { steps_offset: 1, skip_zero: false },
        _ => {
            return Err(
                format!("unknown spacing {s:?}: use lambda, karras, quadratic, uniform, trailing or leading").into()
            )
        }
    })
}

pub fn spacing_name(s: &Spacing) -> &'static str {
    match s {
        Spacing::UniformLambda => "lambda",
        Spacing::Karras { .. } => "karras",
        Spacing::TimeQuadratic => "quadratic",
        Spacing::UniformTime => "uniform",
        Spacing::Trailing => "trailing",
        Spacing::Leading { .. } => "leading",
        _ => "custom",
    }
}

fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::default_bar().template("{msg:>22} [{bar:30}] {pos}/{len} {elapsed_precise}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A progress bar that stays hidden unless the work takes more than a second.
pub struct Bar {
    pb: ProgressBar,
}

impl Bar {
    pub fn new(len: u64, msg: &str) -> Bar {
        Bar { pb: bar(len, msg) }
    }
    pub fn set(&self, pos: u64) {
        self.pb.set_position(pos);
    }
    pub fn inc(&self) {
        self.pb.inc(1);
    }
    pub fn done(&self) {
        self.pb.finish_and_clear();
    }
}

/// The multistep solvers of order `p` with diffusers' lower-order-final policy (the last steps
/// of grids under 15 steps drop to first/second order). Without it, third-order steps with
/// large h overshoot: DPM-Solver++(3M) at 5 NFE on the MNIST model, RMSE vs the reference
/// 1.29 (uniform logSNR) / 0.43 (time-quadratic) with full order to the end, 0.88 / 0.32 with it.
pub fn dpm(p: usize) -> DpmSolverMultistep {
    DpmSolverMultistep { policy: OrderPolicy::diffusers(p), ..DpmSolverMultistep::pp(p) }
}

pub fn unipc(p: usize) -> UniPc {
    UniPc { policy: OrderPolicy::diffusers(p), ..UniPc::order(p) }
}

pub fn deis(p: usize) -> Deis {
    Deis { policy: OrderPolicy::diffusers(p) }
}

/// Run `solver` on `grid` from `x` (forward when `invert` is false, from the grid's end back to
/// its start when true), reporting steps to `on_step`.
pub fn run(
    solver: SolverName,
    model: &mut Model,
    grid: &Grid,
    x: &Tensor,
    on_step: impl FnMut(&Progress),
) -> diffusion_samplers::Result<Tensor> {
    match solver {
        SolverName::Ddim => sample_with(&Ddim::default(), model, grid, x, on_step),
        SolverName::Euler => sample_with(&Euler, model, grid, x, on_step),
        SolverName::Heun => sample_with(&Heun::default(), model, grid, x, on_step),
        SolverName::Dpm2m => sample_with(&dpm(2), model, grid, x, on_step),
        SolverName::Dpm3m => sample_with(&dpm(3), model, grid, x, on_step),
        SolverName::Dpm3mFixed => sample_with(&DpmSolverMultistep::pp(3), model, grid, x, on_step),
        SolverName::UniPc2 => sample_with(&unipc(2), model, grid, x, on_step),
        SolverName::UniPc3 => sample_with(&unipc(3), model, grid, x, on_step),
        SolverName::Deis3 => sample_with(&deis(3), model, grid, x, on_step),
    }
}

/// Deterministic encoding with [`diffusion_samplers::invert`]: `solver` on `grid` reversed,
/// from a sample at the grid's end (t_min) to its start.
pub fn encode(solver: SolverName, model: &mut Model, grid: &Grid, x: &Tensor) -> diffusion_samplers::Result<Tensor> {
    match solver {
        SolverName::Ddim => invert(&Ddim::default(), model, grid, x),
        SolverName::Euler => invert(&Euler, model, grid, x),
        SolverName::Heun => invert(&Heun::default(), model, grid, x),
        SolverName::Dpm2m => invert(&dpm(2), model, grid, x),
        SolverName::Dpm3m => invert(&dpm(3), model, grid, x),
        SolverName::Dpm3mFixed => invert(&DpmSolverMultistep::pp(3), model, grid, x),
        SolverName::UniPc2 => invert(&unipc(2), model, grid, x),
        SolverName::UniPc3 => invert(&unipc(3), model, grid, x),
        SolverName::Deis3 => invert(&deis(3), model, grid, x),
    }
}

/// A display name for `solver`.
pub fn label(solver: SolverName) -> &'static str {
    match solver {
        SolverName::Ddim => "DDIM",
        SolverName::Euler => "Euler",
        SolverName::Heun => "Heun",
        SolverName::Dpm2m => "DPM-Solver++(2M)",
        SolverName::Dpm3m => "DPM-Solver++(3M)",
        SolverName::Dpm3mFixed => "DPM-Solver++(3M) fixed",
        SolverName::UniPc2 => "UniPC-2",
        SolverName::UniPc3 => "UniPC-3",
        SolverName::Deis3 => "DEIS-3",
    }
}

/// Build the `End::Clean` grid with `steps` steps.
pub fn grid(schedule: &DiscreteVp, spacing: &Spacing, steps: usize) -> diffusion_samplers::Result<Grid> {
    Grid::new(schedule, spacing, steps, End::Clean)
}

/// `[n, 1, h, w]` images in [-1, 1] -> 8-bit pixels of a `rows x cols` tile grid with a
/// `pad`-pixel border (value `border`), row-major. Missing tiles stay border-coloured.
pub fn tile(images: &[Tensor], cols: usize, pad: usize, border: u8) -> AnyResult<image::GrayImage> {
    let (h, w) = {
        let d = images.first().ok_or("no images")?.dims();
        (d[d.len() - 2], d[d.len() - 1])
    };
    let rows = images.len().div_ceil(cols);
    let (gw, gh) = (cols * (w + pad) + pad, rows * (h + pad) + pad);
    let mut img = image::GrayImage::from_pixel(gw as u32, gh as u32, image::Luma([border]));
    for (k, t) in images.iter().enumerate() {
        let px = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if px.len() != h * w {
            return Err(format!("tile {k} has {} pixels, expected {h}x{w}", px.len()).into());
        }
        let (r, c) = (k / cols, k % cols);
        for y in 0..h {
            for x in 0..w {
                let v = ((px[y * w + x] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                img.put_pixel((pad + c * (w + pad) + x) as u32, (pad + r * (h + pad) + y) as u32, image::Luma([v]));
            }
        }
    }
    Ok(img)
}

/// Split a `[n, 1, h, w]` batch into its images.
pub fn images(batch: &Tensor) -> AnyResult<Vec<Tensor>> {
    let n = batch.dim(0)?;
    Ok((0..n).map(|i| batch.get(i)).collect::<candle_core::Result<_>>()?)
}

/// Root-mean-square difference of two tensors (f64).
pub fn rmse(a: &Tensor, b: &Tensor) -> AnyResult<f64> {
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?;
    Ok(d.sqr()?.mean_all()?.to_scalar::<f64>()?.sqrt())
}
