//! The adapter: a text-conditioned UNet as this crate's [`Denoiser`], with classifier-free
//! guidance through [`ClassifierFreeGuidance`] (both halves in one batched call).
//!
//! This file is the part to copy if you do not want the feature: [`TextUNet`] is implemented for
//! candle-transformers' `UNet2DConditionModel` (text embeddings only) and for [`super::XlUNet`]
//! (text embeddings plus SDXL's added conditioning); [`SdDenoiser`] binds a UNet to its
//! conditioning and is what [`crate::Model::new`] takes.

use candle_core::Tensor;
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;

use crate::error::{Error, Result};
use crate::model::{ClassifierFreeGuidance, Denoiser};

/// SDXL's added conditioning (diffusers' `added_cond_kwargs`): the pooled, projected embedding
/// of the second text encoder and the six size/crop numbers (`time_ids`:
/// `[original_h, original_w, crop_top, crop_left, target_h, target_w]`).
#[derive(Clone, Debug)]
pub struct AddedConditioning {
    /// `[n, projection_dim]` (1280 for SDXL).
    pub text_embeds: Tensor,
    /// `[n, 6]`.
    pub time_ids: Tensor,
}

/// What the UNet is conditioned on, one row per batch element: the text encoder(s)' hidden
/// states and, for SDXL, the added conditioning.
#[derive(Clone, Debug)]
pub struct Conditioning {
    /// `[n, tokens, cross_attention_dim]`.
    pub text: Tensor,
    /// SDXL's added conditioning (`None` for SD 1.x / 2.x).
    pub added: Option<AddedConditioning>,
}

impl Conditioning {
    /// Conditioning on text embeddings only (SD 1.x / 2.x).
    pub fn text(text: Tensor) -> Conditioning {
        Conditioning { text, added: None }
    }

    /// Batch size (rows of the text embeddings).
    pub fn batch(&self) -> Result<usize> {
        Ok(self.text.dim(0)?)
    }

    /// The rows of `self` followed by the rows of `other` (the classifier-free guidance batch:
    /// pass the unconditional conditioning as `self`).
    pub fn cat(&self, other: &Conditioning) -> Result<Conditioning> {
        let added = match (&self.added, &other.added) {
            (None, None) => None,
            (Some(a), Some(b)) => Some(AddedConditioning {
                text_embeds: Tensor::cat(&[&a.text_embeds, &b.text_embeds], 0)?,
                time_ids: Tensor::cat(&[&a.time_ids, &b.time_ids], 0)?,
            }),
            _ => {
                return Err(Error::InvalidConfig(
                    "one conditioning has SDXL's added conditioning and the other has not: build both \
                     (prompt and negative prompt) with the same text encoders"
                        .into(),
                ))
            }
        };
        Ok(Conditioning { text: Tensor::cat(&[&self.text, &other.text], 0)?, added })
    }

    /// Every row repeated `k` times in place (`[a, b]` -> `[a, a, b, b]` for `k = 2`):
    /// diffusers' `num_images_per_prompt`.
    pub fn repeat_rows(&self, k: usize) -> Result<Conditioning> {
        let rep = |t: &Tensor| -> Result<Tensor> {
            let n = t.dim(0)?;
            let idx: Vec<u32> = (0..n * k).map(|i| (i / k) as u32).collect();
            Ok(t.index_select(&Tensor::new(idx, t.device())?, 0)?)
        };
        let added = match &self.added {
            Some(a) => Some(AddedConditioning { text_embeds: rep(&a.text_embeds)?, time_ids: rep(&a.time_ids)? }),
            None => None,
        };
        Ok(Conditioning { text: rep(&self.text)?, added })
    }

    fn to_dtype(&self, dtype: candle_core::DType) -> candle_core::Result<Conditioning> {
        let added = match &self.added {
            Some(a) => Some(AddedConditioning {
                text_embeds: a.text_embeds.to_dtype(dtype)?,
                time_ids: a.time_ids.to_dtype(dtype)?,
            }),
            None => None,
        };
        Ok(Conditioning { text: self.text.to_dtype(dtype)?, added })
    }
}

/// A UNet that predicts from latents, a diffusers timestep (the model time of
/// [`crate::DiscreteVp`], 0..999) and a [`Conditioning`] with the latents' batch size.
pub trait TextUNet {
    /// One forward pass.
    fn predict(&self, x: &Tensor, timestep: f64, cond: &Conditioning) -> candle_core::Result<Tensor>;
}

/// candle-transformers' UNet: text embeddings only. Its `forward` has no added conditioning, so
/// SDXL's `add_embedding` weights are never loaded and SDXL runs without its size/crop and pooled
/// text conditioning; use [`super::XlUNet`] for SDXL.
impl TextUNet for UNet2DConditionModel {
    fn predict(&self, x: &Tensor, timestep: f64, cond: &Conditioning) -> candle_core::Result<Tensor> {
        if cond.added.is_some() {
            candle_core::bail!(
                "candle-transformers' UNet2DConditionModel takes no added conditioning: load SDXL with \
                 diffusion_samplers::sd::XlUNet"
            );
        }
        self.forward(x, timestep, &cond.text)
    }
}

impl<U: TextUNet + ?Sized> TextUNet for &U {
    fn predict(&self, x: &Tensor, timestep: f64, cond: &Conditioning) -> candle_core::Result<Tensor> {
        (**self).predict(x, timestep, cond)
    }
}

/// A [`TextUNet`] bound to its conditioning: a [`Denoiser`] for latents with the conditioning's
/// batch size.
pub struct TextConditioned<U> {
    unet: U,
    cond: Conditioning,
}

impl<U: TextUNet> TextConditioned<U> {
    /// Bind `unet` to `cond`.
    pub fn new(unet: U, cond: Conditioning) -> TextConditioned<U> {
        TextConditioned { unet, cond }
    }
}

impl<U> std::fmt::Debug for TextConditioned<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextConditioned").field("cond", &self.cond).finish_non_exhaustive()
    }
}

impl<U: TextUNet> Denoiser for TextConditioned<U> {
    fn denoise(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<Tensor> {
        let (n, m) = (x.dim(0)?, self.cond.text.dim(0)?);
        if n != m {
            candle_core::bail!("the UNet got latents of batch {n} but conditioning of batch {m}");
        }
        if self.cond.text.dtype() != x.dtype() {
            self.cond = self.cond.to_dtype(x.dtype())?;
        }
        self.unet.predict(x, model_time, &self.cond)
    }
}

/// The denoiser for a Stable Diffusion run: the conditional UNet alone, or, with a guidance scale
/// above 1, [`ClassifierFreeGuidance`] around it (one UNet call on the batch
/// `[uncond rows, cond rows]`).
#[derive(Debug)]
pub enum SdDenoiser<U> {
    /// No guidance (scale <= 1, e.g. the Turbo models).
    Conditional(TextConditioned<U>),
    /// Classifier-free guidance.
    Guided(ClassifierFreeGuidance<TextConditioned<U>>),
}

impl<U: TextUNet> Denoiser for SdDenoiser<U> {
    fn denoise(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<Tensor> {
        match self {
            SdDenoiser::Conditional(d) => d.denoise(x, model_time),
            SdDenoiser::Guided(d) => d.denoise(x, model_time),
        }
    }

    /// Guided: the CFG++ samplers get the unconditional half of the same batched call.
    fn has_unconditional(&self) -> bool {
        matches!(self, SdDenoiser::Guided(_))
    }

    fn denoise_with_unconditional(
        &mut self,
        x: &Tensor,
        model_time: f64,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        match self {
            SdDenoiser::Conditional(d) => Ok((d.denoise(x, model_time)?, None)),
            SdDenoiser::Guided(d) => d.denoise_with_unconditional(x, model_time),
        }
    }
}

/// Bind `unet` to the prompt conditioning `cond` (and the negative / empty-prompt conditioning
/// `uncond`) for latents of batch `batch`, as diffusers' pipelines do: guidance above 1 runs
/// classifier-free guidance (diffusers' `do_classifier_free_guidance = guidance_scale > 1`) and
/// needs `uncond`; a conditioning of batch 1 serves every latent (`num_images_per_prompt`), one
/// of batch `k` serves `batch / k` latents per prompt.
///
/// Errors: [`Error::BatchMismatch`] when a conditioning's batch does not divide `batch`, or the
/// negative one has neither batch 1 nor the prompt's batch; [`Error::InvalidConfig`] for a guidance scale that is not
/// finite or guidance without `uncond`.
pub fn denoiser<U: TextUNet>(
    unet: U,
    cond: &Conditioning,
    uncond: Option<&Conditioning>,
    guidance: f64,
    batch: usize,
) -> Result<SdDenoiser<U>> {
    if !guidance.is_finite() {
        return Err(Error::InvalidConfig(format!("guidance scale must be finite, got {guidance}")));
    }
    let expand = |c: &Conditioning, what: &'static str| -> Result<Conditioning> {
        let m = c.batch()?;
        if m == 0 || batch == 0 || batch % m != 0 {
            return Err(Error::BatchMismatch { what, got: m, against: "the noise", expected: batch });
        }
        if m == batch {
            Ok(c.clone())
        } else {
            c.repeat_rows(batch / m)
        }
    };
    let c_rows = cond.batch()?;
    let cond = expand(cond, "prompt embeddings")?;
    if guidance <= 1.0 {
        return Ok(SdDenoiser::Conditional(TextConditioned::new(unet, cond)));
    }
    let uncond = uncond.ok_or_else(|| {
        Error::InvalidConfig(format!(
            "guidance scale {guidance} > 1 needs the unconditional (negative or empty prompt) conditioning"
        ))
    })?;
    let (m, k) = (uncond.batch()?, c_rows);
    if m != 1 && m != k {
        return Err(Error::BatchMismatch {
            what: "negative prompt embeddings",
            got: m,
            against: "prompt embeddings",
            expected: k,
        });
    }
    let uncond = expand(uncond, "negative prompt embeddings")?;
    let both = uncond.cat(&cond)?;
    Ok(SdDenoiser::Guided(ClassifierFreeGuidance {
        denoiser: TextConditioned::new(unet, both),
        scale: guidance,
        rescale: 0.0,
    }))
}
