//! Stable Diffusion 1.5, 2.1, XL and the Turbo models through
//! [candle-transformers](https://docs.rs/candle-transformers) (feature `stable-diffusion`).
//!
//! candle-transformers has the networks (CLIP, `UNet2DConditionModel`, VAE); this module turns
//! them into a [`crate::Denoiser`] so that every solver, spacing and diffusers
//! `scheduler_config.json` of this crate drives them. The adapter is [`adapter`] (one small file
//! to import or copy); the rest loads a diffusers-layout weights folder with typed errors.
//!
//! ```no_run
//! use candle_core::{DType, Device, Tensor};
//! use diffusion_samplers::sd::{self, SdFolder, SdVersion, TextEncoders};
//! use diffusion_samplers::{sample, DiscreteVp, DpmSolverMultistep, End, Grid, Model, Prediction, SeededNoise, NoiseSource, Spacing};
//! # fn tokens() -> Vec<Vec<u32>> { vec![] }
//! let device = Device::Cpu;
//! let folder = SdFolder::open("weights/stable-diffusion-v1-5", SdVersion::V1_5)?;
//! let unet = folder.unet.load(&folder.unet_files.weights, &device, DType::F32)?;
//! let text = TextEncoders::load(&folder, &device, DType::F32)?;
//! let cond = text.encode(&tokens(), 512, 512)?;   // token ids of the prompt (CLIP tokenizer)
//! let uncond = text.encode(&tokens(), 512, 512)?; // ... and of the empty prompt
//! let schedule = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
//! let grid = Grid::new(&schedule, &Spacing::Trailing, 20, End::Clean)?;
//! let denoiser = sd::denoiser(&unet, &cond, Some(&uncond), 7.5, 1)?;
//! let mut model = Model::new(denoiser, &schedule, Prediction::Epsilon);
//! let noise = SeededNoise::new(0).noise_like(&Tensor::zeros((1, 4, 64, 64), DType::F32, &device)?)?;
//! let latents = sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &noise)?;
//! let image = folder.vae.load(&folder.vae_files.weights, &device, DType::F32)?.decode(&latents)?;
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```
//!
//! What candle-transformers 0.11 lacks and this module adds: SDXL's added conditioning
//! ([`XlUNet`]; candle's UNet never loads `add_embedding`), the VAE posterior mean (its field is
//! private; [`Vae::encode`] is deterministic), SDXL's penultimate hidden states and pooled,
//! projected text embedding ([`TextEncoders`]), and config-driven loading with typed errors
//! ([`SdFolder`]). Its schedulers are not used; see `tests/stable_diffusion.rs` for two of their
//! defects.

pub mod adapter;
mod folder;
mod text;
mod xl;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;

pub use adapter::{denoiser, AddedConditioning, Conditioning, SdDenoiser, TextConditioned, TextUNet};
pub use folder::{Component, SdFolder, UNetSpec, VaeSpec};
pub use text::{TextEncoders, MAX_TOKENS};
pub use xl::{AddedEmbedConfig, XlUNet};

use crate::error::{Error, Result};

/// The models this module runs. Each is a diffusers repository layout; the Turbo models are
/// their base architecture distilled for 1-4 steps without guidance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdVersion {
    /// Stable Diffusion 1.5 (512 px, epsilon prediction).
    V1_5,
    /// Stable Diffusion 2.1 (768 px, v-prediction).
    V2_1,
    /// SDXL base 1.0 (1024 px; two text encoders and added conditioning).
    Xl,
    /// SD-Turbo (SD 2.1 architecture, 512 px, no guidance).
    Turbo,
    /// SDXL-Turbo (SDXL architecture, 512 px, no guidance).
    XlTurbo,
}

impl SdVersion {
    /// Every version, for help texts.
    pub const ALL: [SdVersion; 5] =
        [SdVersion::V1_5, SdVersion::V2_1, SdVersion::Xl, SdVersion::Turbo, SdVersion::XlTurbo];

    /// The command-line name (`sd15`, `sd21`, `sdxl`, `sd-turbo`, `sdxl-turbo`).
    pub fn name(self) -> &'static str {
        match self {
            SdVersion::V1_5 => "sd15",
            SdVersion::V2_1 => "sd21",
            SdVersion::Xl => "sdxl",
            SdVersion::Turbo => "sd-turbo",
            SdVersion::XlTurbo => "sdxl-turbo",
        }
    }

    /// True for the SDXL architecture (two text encoders, added conditioning).
    pub fn is_xl(self) -> bool {
        matches!(self, SdVersion::Xl | SdVersion::XlTurbo)
    }

    /// Width of the text embeddings the UNet cross-attends to.
    pub fn cross_attention_dim(self) -> usize {
        match self {
            SdVersion::V1_5 => 768,
            SdVersion::V2_1 | SdVersion::Turbo => 1024,
            SdVersion::Xl | SdVersion::XlTurbo => 2048,
        }
    }

    /// `(hidden_size, num_hidden_layers)` of each text encoder (diffusers' configs).
    pub fn text_encoder_sizes(self) -> Vec<(usize, usize)> {
        match self {
            SdVersion::V1_5 => vec![(768, 12)],
            SdVersion::V2_1 | SdVersion::Turbo => vec![(1024, 23)],
            SdVersion::Xl | SdVersion::XlTurbo => vec![(768, 12), (1280, 32)],
        }
    }

    /// Default image side in pixels.
    pub fn default_size(self) -> usize {
        match self {
            SdVersion::V1_5 | SdVersion::Turbo | SdVersion::XlTurbo => 512,
            SdVersion::V2_1 => 768,
            SdVersion::Xl => 1024,
        }
    }

    /// Default guidance scale (0 = no guidance for the Turbo models).
    pub fn default_guidance(self) -> f64 {
        match self {
            SdVersion::V1_5 | SdVersion::V2_1 => 7.5,
            SdVersion::Xl => 5.0,
            SdVersion::Turbo | SdVersion::XlTurbo => 0.0,
        }
    }

    /// Default step count.
    pub fn default_steps(self) -> usize {
        match self {
            SdVersion::Turbo | SdVersion::XlTurbo => 1,
            _ => 30,
        }
    }

    fn family_of_cross_dim(dim: usize) -> &'static str {
        match dim {
            768 => "SD 1.x",
            1024 => "SD 2.x / SD-Turbo",
            2048 => "SDXL / SDXL-Turbo",
            _ => "an unknown model",
        }
    }
}

impl std::str::FromStr for SdVersion {
    type Err = Error;
    fn from_str(s: &str) -> Result<SdVersion> {
        SdVersion::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
            let names: Vec<&str> = SdVersion::ALL.iter().map(|v| v.name()).collect();
            Error::InvalidConfig(format!("unknown Stable Diffusion model `{s}`: use one of {}", names.join(", ")))
        })
    }
}

impl std::fmt::Display for SdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The VAE: images in `[-1, 1]` to scaled latents and back.
pub struct Vae {
    kl: AutoEncoderKL,
    scaling_factor: f64,
}

impl std::fmt::Debug for Vae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vae").field("scaling_factor", &self.scaling_factor).finish()
    }
}

impl Vae {
    /// Wrap a candle-transformers VAE whose `quant_conv` was loaded by [`VaeSpec::load`] (so that
    /// its posterior has zero variance) with diffusers' latent `scaling_factor`.
    pub(crate) fn new(kl: AutoEncoderKL, scaling_factor: f64) -> Vae {
        Vae { kl, scaling_factor }
    }

    /// Latent scaling factor.
    pub fn scaling_factor(&self) -> f64 {
        self.scaling_factor
    }

    /// Images `[n, 3, h, w]` in `[-1, 1]` to latents `[n, 4, h/8, w/8]` (the posterior mean times
    /// the scaling factor: deterministic, as diffusers' `latent_dist.mode()`).
    pub fn encode(&self, images: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = images.dims4()?;
        if c != 3 {
            return Err(Error::InvalidConfig(format!("the VAE encodes RGB images [n, 3, h, w], got {c} channels")));
        }
        check_size("image to encode", w, h)?;
        Ok(self.kl.encode(images)?.sample()?.affine(self.scaling_factor, 0.0)?)
    }

    /// Latents to images in `[-1, 1]` (clamped).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let x = latents.affine(1.0 / self.scaling_factor, 0.0)?;
        Ok(self.kl.decode(&x)?.clamp(-1.0, 1.0)?)
    }
}

fn check_size(what: &str, width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 || width % 8 != 0 || height % 8 != 0 {
        return Err(Error::ImageSize {
            what: what.into(),
            got_width: width,
            got_height: height,
            expected: "both sides must be positive multiples of 8".into(),
            hint: format!(
                "the VAE works on 8x8 pixel blocks; resize to {}x{}",
                (width / 8).max(1) * 8,
                (height / 8).max(1) * 8
            ),
        });
    }
    Ok(())
}

/// The latent shape `[batch, 4, height / 8, width / 8]` for an image size, checked.
pub fn latent_shape(batch: usize, width: usize, height: usize) -> Result<(usize, usize, usize, usize)> {
    check_size("requested image size", width, height)?;
    Ok((batch, 4, height / 8, width / 8))
}

/// Check an img2img / inversion input image against the requested output size.
///
/// ```
/// use diffusion_samplers::{sd::check_input_image, Error};
/// assert!(check_input_image(512, 512, 512, 512).is_ok());
/// assert!(matches!(check_input_image(500, 333, 512, 512), Err(Error::ImageSize { got_width: 500, .. })));
/// ```
pub fn check_input_image(width: usize, height: usize, out_width: usize, out_height: usize) -> Result<()> {
    check_size("requested image size", out_width, out_height)?;
    if (width, height) != (out_width, out_height) {
        return Err(Error::ImageSize {
            what: "input image".into(),
            got_width: width,
            got_height: height,
            expected: format!("the output is {out_width}x{out_height}"),
            hint: if width % 8 == 0 && height % 8 == 0 && width > 0 && height > 0 {
                format!("resize the image to {out_width}x{out_height}, or ask for a {width}x{height} output")
            } else {
                format!("resize the image to {out_width}x{out_height} (sides must be multiples of 8)")
            },
        });
    }
    Ok(())
}

/// RGB bytes (`width * height * 3`, row-major) to a `[1, 3, h, w]` tensor in `[-1, 1]`.
pub fn image_to_tensor(rgb: &[u8], width: usize, height: usize, device: &Device) -> Result<Tensor> {
    let needed = width.checked_mul(height).and_then(|n| n.checked_mul(3));
    if needed != Some(rgb.len()) {
        return Err(Error::InvalidConfig(format!(
            "{} bytes is not a {width}x{height} RGB image (3 bytes per pixel)",
            rgb.len()
        )));
    }
    let t = Tensor::from_slice(rgb, (height, width, 3), device)?.permute((2, 0, 1))?.to_dtype(DType::F32)?;
    Ok(t.affine(2.0 / 255.0, -1.0)?.unsqueeze(0)?)
}

/// One image `[3, h, w]` in `[-1, 1]` to RGB bytes (row-major), rounding to the nearest level.
pub fn tensor_to_image(image: &Tensor) -> Result<(Vec<u8>, usize, usize)> {
    let (c, h, w) = image.dims3()?;
    if c != 3 {
        return Err(Error::InvalidConfig(format!("expected an RGB image [3, h, w], got {c} channels")));
    }
    let t = image.to_dtype(DType::F32)?.clamp(-1.0, 1.0)?.affine(127.5, 127.5)?.round()?;
    let t = t.permute((1, 2, 0))?.to_dtype(DType::U8)?.flatten_all()?;
    Ok((t.to_vec1::<u8>()?, w, h))
}
