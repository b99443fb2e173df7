//! Shared by the UNet examples (`mnist`, `compare`, `invert`): loading the bundled model and its
//! schedule, choosing a solver (by registry name) and grid, progress bars, writing PNG grids,
//! and the command-line pieces they share.
#![allow(dead_code)]

pub mod calibrated;

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::unet::UNet2DModel;
use diffusion_samplers::{steps_for_nfe, AnySolver, DiscreteVp, End, Grid, SeededNoise, Spacing};
use indicatif::{ProgressBar, ProgressStyle};

pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The `--model DIR` flag the UNet examples share.
#[derive(clap::Args, Debug)]
pub struct ModelArg {
    /// The model folder (a diffusers UNet2DModel with its scheduler_config.json); default: the
    /// bundled models/mnist-unet
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

impl ModelArg {
    /// The folder to load.
    pub fn dir(&self) -> PathBuf {
        self.model.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-unet"))
    }
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

/// The solvers the examples list in their help: registry names ([`diffusion_samplers::names`]);
/// any registered name works. The `_lof` multistep variants lower the order on the last steps
/// of short grids: without it, third-order steps with large h overshoot (DPM-Solver++(3M) at 5
/// NFE on the MNIST model, RMSE vs the reference 1.29 (uniform logSNR) / 0.43 (time-quadratic)
/// with full order to the end, 0.88 / 0.32 with it).
pub const SOLVER_NAMES: &str =
    "ddim, euler, heun, dpmpp_2m_lof, dpmpp_3m_lof, dpmpp_3m, unipc_bh2_2_lof, unipc_bh2_3_lof, deis_3_lof";

/// A solver by registry name (a command-line value parser).
pub fn solver(name: &str) -> Result<AnySolver, String> {
    name.parse().map_err(|e: diffusion_samplers::Error| e.to_string())
}

/// The grid each solver is customarily run on: DDIM on diffusers' `trailing` timesteps
/// (Lin et al. 2023), Euler and Heun on Karras' sigmas (EDM), the exponential integrators on
/// `multistep` (the measured choice, see models/mnist-unet/README.md).
pub fn default_spacing(solver: &AnySolver, multistep: &Spacing) -> Spacing {
    match solver.registry_name() {
        Some("ddim") => Spacing::Trailing,
        Some("euler" | "heun") => Spacing::Karras { rho: 7.0 },
        _ => multistep.clone(),
    }
}

/// The most steps within `nfe` network evaluations on a grid ending at sigma = 0.
pub fn steps_within(solver: &AnySolver, nfe: usize) -> AnyResult<usize> {
    Ok(steps_for_nfe(solver, nfe, End::Clean)?)
}

/// A spacing by name (a command-line value parser).
pub fn parse_spacing(s: &str) -> Result<Spacing, String> {
    Ok(match s {
        "lambda" => Spacing::UniformLambda,
        "karras" => Spacing::Karras { rho: 7.0 },
        "quadratic" => Spacing::TimeQuadratic,
        "uniform" => Spacing::UniformTime,
        "trailing" => Spacing::Trailing,
        "leading" => Spacing::Leading { steps_offset: 1, skip_zero: false },
        _ => return Err(format!("unknown spacing {s:?}: use lambda, karras, quadratic, uniform, trailing or leading")),
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
