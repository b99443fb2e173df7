//! Stable Diffusion 1.5 / 2.1 / XL / SD-Turbo / SDXL-Turbo on candle-transformers, sampled by
//! this crate: text-to-image with any solver or any diffusers `scheduler_config.json`, img2img,
//! and DDIM-style inversion of an image. Weights come from a local diffusers-layout folder (see
//! the README's "Use it with Stable Diffusion").
//!
//! ```text
//! cargo run --release --features stable-diffusion --example stable_diffusion -- \
//!     --weights weights/stable-diffusion-v1-5 --model sd15 --prompt "a lighthouse at dusk" --solver dpmpp_2m --steps 20
//! ```
//!
//! Everything model-specific is in `diffusion_samplers::sd`; this file parses arguments,
//! tokenizes, and writes PNGs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use clap::{Parser, ValueEnum};
use diffusion_samplers::diffusers::{DiffusersSampler, SchedulerClass};
use diffusion_samplers::sd::{self, Conditioning, SdFolder, SdVersion, TextEncoders};
use diffusion_samplers::{
    add_noise, sample_with, AnySolver, Denoiser, End, Grid, Model, NoiseSource, Progress, SeededNoise, Spacing,
};
use indicatif::{ProgressBar, ProgressStyle};

mod sd_common;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(about = "Stable Diffusion through candle-transformers, sampled by diffusion-samplers")]
struct Args {
    /// Folder of a diffusers-layout download (unet/, vae/, text_encoder/, tokenizer/, scheduler/).
    #[arg(long)]
    weights: PathBuf,
    /// Which model the folder holds: sd15, sd21, sdxl, sd-turbo, sdxl-turbo.
    #[arg(long)]
    model: SdVersion,
    /// The prompt.
    #[arg(long, default_value = "a photograph of an astronaut riding a horse")]
    prompt: String,
    /// The negative prompt (the unconditional half of classifier-free guidance).
    #[arg(long, default_value = "")]
    negative: String,
    /// Sampling steps (default: 30; 1 for the Turbo models).
    #[arg(long)]
    steps: Option<usize>,
    /// Guidance scale; <= 1 turns classifier-free guidance off (default: 7.5; 5 for SDXL; 0 for Turbo).
    #[arg(long)]
    guidance: Option<f64>,
    /// Image width in pixels, a multiple of 8 (default: the model's size).
    #[arg(long)]
    width: Option<usize>,
    /// Image height in pixels, a multiple of 8.
    #[arg(long)]
    height: Option<usize>,
    /// Images to generate (one prompt for all).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seed of the starting noise (and of stochastic solvers).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One of this crate's solvers by its registered name (ddim, euler, euler_ancestral, heun, lms,
    /// dpmpp_2m, dpmpp_3m, dpmpp_2m_sde, dpmpp_2s, deis_3, unipc_bh2_3, ipndm, ...; an unknown
    /// name lists them all) on a `--spacing` grid. Without it the folder's (or `--scheduler`'s)
    /// diffusers scheduler runs, exactly as diffusers would.
    #[arg(long)]
    solver: Option<String>,
    /// Spacing of the `--solver` grid.
    #[arg(long, value_enum, default_value_t = SpacingArg::Trailing)]
    spacing: SpacingArg,
    /// A diffusers scheduler_config.json to sample with instead of the folder's.
    #[arg(long)]
    scheduler: Option<PathBuf>,
    /// Switch the scheduler config to another diffusers class (e.g. DPMSolverMultistepScheduler),
    /// as `Class.from_config(pipe.scheduler.config)`.
    #[arg(long)]
    scheduler_class: Option<String>,
    /// img2img: start from this PNG (the output's size), noised to `--strength`.
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// img2img strength in [0, 1]: the fraction of the steps that run.
    #[arg(long, default_value_t = 0.6)]
    strength: f64,
    /// Invert this PNG to noise with the deterministic `--solver` (default ddim) under the prompt,
    /// regenerate it from that noise, and write the reconstruction.
    #[arg(long)]
    invert: Option<PathBuf>,
    /// Run the UNet and text encoders in F16 (GPU); the VAE stays in F32.
    #[arg(long)]
    f16: bool,
    /// Output PNG (with a batch, `-<i>` is inserted before the extension).
    #[arg(long, default_value = "stable_diffusion.png")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SpacingArg {
    /// diffusers' `trailing` (Lin et al. 2023): starts at the last training timestep.
    Trailing,
    /// diffusers' `leading` with `steps_offset = 1` (the SD 1.5 / 2.1 configs).
    Leading,
    /// Karras et al. 2022 (rho = 7).
    Karras,
    /// Uniform in log-SNR (DPM-Solver's recommendation).
    Lambda,
}

impl SpacingArg {
    fn spacing(self) -> Spacing {
        match self {
            SpacingArg::Trailing => Spacing::Trailing,
            SpacingArg::Leading => Spacing::Leading { steps_offset: 1, skip_zero: false },
            SpacingArg::Karras => Spacing::Karras { rho: 7.0 },
            SpacingArg::Lambda => Spacing::UniformLambda,
        }
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), AnyError> {
    let v = args.model;
    let device = Device::cuda_if_available(0)?;
    let dtype = if args.f16 { DType::F16 } else { DType::F32 };
    let (width, height) = (args.width.unwrap_or(v.default_size()), args.height.unwrap_or(v.default_size()));
    let steps = args.steps.unwrap_or(v.default_steps());
    let guidance = args.guidance.unwrap_or(if args.invert.is_some() { 1.0 } else { v.default_guidance() });
    let shape = sd::latent_shape(args.batch, width, height)?;

    // the folder is checked before anything is loaded
    let folder = SdFolder::open(&args.weights, v)?;
    let input = match (&args.init_image, &args.invert) {
        (Some(p), None) | (None, Some(p)) => Some(load_png(p, width, height, &device)?),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("use --init-image or --invert, not both".into()),
    };
    let t0 = Instant::now();
    let text = TextEncoders::load(&folder, &device, dtype)?;
    let cond = encode(&folder, &text, &args.prompt, width, height)?;
    let uncond = if guidance <= 1.0 {
        None
    } else if v.is_xl() && args.negative.is_empty() {
        Some(cond.zeroed()?) // SDXL's force_zeros_for_empty_prompt
    } else {
        Some(encode(&folder, &text, &args.negative, width, height)?)
    };
    drop(text);
    let unet = folder.unet.load(&folder.unet_files.weights, &device, dtype)?;
    let vae = folder.vae.load(&folder.vae_files.weights, &device, DType::F32)?;
    println!("loaded {} from {} in {:.1} s on {device:?}", v, args.weights.display(), t0.elapsed().as_secs_f64());

    let mut diffusers = match &args.scheduler {
        Some(p) => DiffusersSampler::from_file(p)?,
        None => DiffusersSampler::from_file(&folder.scheduler_config)?,
    };
    if let Some(name) = &args.scheduler_class {
        let class =
            SchedulerClass::from_name(name).ok_or_else(|| format!("unknown diffusers scheduler class {name}"))?;
        diffusers = diffusers.switch_to(class)?;
    }
    let schedule = diffusers.schedule()?;
    let noise = SeededNoise::new(args.seed).noise_like(&Tensor::zeros(shape, DType::F32, &device)?)?;
    let den = sd::denoiser(&unet, &cond, uncond.as_ref(), guidance, args.batch)?;

    let t1 = Instant::now();
    let (latents, nfe, what) = if let Some(image) = input {
        let x0 = vae.encode(&image)?.repeat((args.batch, 1, 1, 1))?;
        let solver = args.solver.clone().unwrap_or_else(|| "ddim".into());
        let grid_end = if args.invert.is_some() { End::Min } else { End::Clean };
        let grid = Grid::new(schedule.as_ref(), &args.spacing.spacing(), steps, grid_end)?;
        let mut model = Model::new(den, schedule.as_ref(), diffusers.prediction()).with_model_dtype(dtype);
        if args.invert.is_some() {
            let inverted = run_named(&solver, &mut model, &grid.reversed()?, &x0, args.seed)?;
            let back = run_named(&solver, &mut model, &grid, &inverted, args.seed)?;
            let rms = |t: &Tensor| -> candle_core::Result<f64> {
                t.sqr()?.mean_all()?.to_scalar::<f32>().map(|v| (v as f64).sqrt())
            };
            println!(
                "inversion: latent round-trip RMS error {:.4} (latent RMS {:.4}); inverted noise RMS {:.4}",
                rms(&(&back - &x0)?)?,
                rms(&x0)?,
                rms(&inverted)?
            );
            (back, model.nfe(), format!("inverted and regenerated with {solver}"))
        } else {
            let part = grid.img2img(args.strength)?;
            let start = add_noise(&x0, &noise, &part.points()[0])?;
            let out = run_named(&solver, &mut model, &part, &start, args.seed)?;
            (out, model.nfe(), format!("img2img with {solver}, strength {}", args.strength))
        }
    } else if let Some(solver) = &args.solver {
        let grid = Grid::new(schedule.as_ref(), &args.spacing.spacing(), steps, End::Clean)?;
        let mut model = Model::new(den, schedule.as_ref(), diffusers.prediction()).with_model_dtype(dtype);
        let out = run_named(solver, &mut model, &grid, &noise, args.seed)?;
        (out, model.nfe(), format!("{solver} on a {:?} grid", args.spacing))
    } else {
        let bar = bar(diffusers.plan(steps)?.steps.len());
        let mut nfe = 0;
        let mut unet = Cast { inner: den, dtype };
        let out =
            diffusers.sample_with(&mut unet, &noise, steps, &mut SeededNoise::new(args.seed), |p: &Progress| {
                bar.set_position(p.step as u64);
                nfe = p.nfe;
            })?;
        bar.finish_and_clear();
        (out, nfe, format!("diffusers' {}", diffusers.class().name()))
    };
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "{what}: {steps} steps, {nfe} network evaluations, {secs:.2} s ({:.3} s per evaluation)",
        secs / nfe.max(1) as f64
    );

    let images = vae.decode(&latents.to_dtype(DType::F32)?)?;
    for i in 0..args.batch {
        let (rgb, w, h) = sd::tensor_to_image(&images.get(i)?)?;
        let path = output_path(&args.out, i, args.batch);
        image::save_buffer(&path, &rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Run the solver registered as `name` (see `diffusion_samplers::names`) with a progress bar.
fn run_named(name: &str, model: &mut Model, grid: &Grid, x: &Tensor, seed: u64) -> Result<Tensor, AnyError> {
    let solver: AnySolver = name.parse()?;
    let bar = bar(grid.len());
    let out = sample_with(&solver, model, grid, x, &mut SeededNoise::new(seed), |p: &Progress| {
        bar.set_position(p.step as u64)
    })?;
    bar.finish_and_clear();
    Ok(out)
}

/// The UNet denoiser run in `dtype`, as `Model::with_model_dtype` does on the solver path.
struct Cast<D> {
    inner: D,
    dtype: DType,
}

impl<D: Denoiser> Denoiser for Cast<D> {
    fn denoise(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<Tensor> {
        self.inner.denoise(&x.to_dtype(self.dtype)?, model_time)?.to_dtype(x.dtype())
    }
}

fn bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise} < {eta_precise}]") {
        bar.set_style(style);
    }
    bar
}

/// The prompt's token ids for each of the model's tokenizers, encoded.
fn encode(
    folder: &SdFolder,
    text: &TextEncoders,
    prompt: &str,
    width: usize,
    height: usize,
) -> Result<Conditioning, AnyError> {
    let mut ids = Vec::new();
    for dir in &folder.tokenizers {
        ids.push(sd_common::clip_tokens(dir, prompt)?);
    }
    Ok(text.encode(&ids, width, height)?)
}

fn load_png(path: &Path, width: usize, height: usize, device: &Device) -> Result<Tensor, AnyError> {
    let img = image::open(path).map_err(|e| format!("{}: {e} (PNG images only)", path.display()))?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    sd::check_input_image(w, h, width, height)?;
    Ok(sd::image_to_tensor(img.as_raw(), w, h, device)?)
}

fn output_path(out: &Path, i: usize, n: usize) -> PathBuf {
    if n == 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().map_or("stable_diffusion".into(), |s| s.to_string_lossy().to_string());
    out.with_file_name(format!("{stem}-{i}.png"))
}
