//! The CLIP text encoders: token ids to the UNet's [`Conditioning`], as diffusers' pipelines
//! build it.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::clip::{ClipTextTransformer, Config};

use super::adapter::{AddedConditioning, Conditioning};
use super::{SdFolder, SdVersion};
use crate::error::{Error, Result};

/// The text encoder(s) of one model: one CLIP for SD 1.x / 2.x (its last hidden state, after the
/// final layer norm), two for SDXL (the penultimate hidden states of both, concatenated, plus
/// the second one's pooled and projected embedding and the size `time_ids` as added
/// conditioning).
pub struct TextEncoders {
    version: SdVersion,
    encoders: Vec<ClipTextTransformer>,
    projection: Option<nn::Linear>,
    device: Device,
}

impl std::fmt::Debug for TextEncoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoders").field("version", &self.version).field("encoders", &self.encoders.len()).finish()
    }
}

/// Context length of every CLIP text encoder used here.
pub const MAX_TOKENS: usize = 77;

impl TextEncoders {
    /// Load the text encoder(s) of a checked folder.
    pub fn load(folder: &SdFolder, device: &Device, dtype: DType) -> Result<TextEncoders> {
        let v = folder.version;
        let configs = match v {
            SdVersion::V1_5 => vec![Config::v1_5()],
            SdVersion::V2_1 | SdVersion::Turbo => vec![Config::v2_1()],
            SdVersion::Xl | SdVersion::XlTurbo => vec![Config::sdxl(), Config::sdxl2()],
        };
        let mut encoders = Vec::new();
        let mut projection = None;
        for (i, (c, files)) in configs.iter().zip(&folder.text_encoders).enumerate() {
            let path = &files.weights;
            let err = |e: candle_core::Error| Error::ModelFile {
                path: path.display().to_string(),
                reason: format!(
                    "cannot load the text encoder ({e}): the file does not match {}'s text encoder",
                    v.name()
                ),
            };
            // SAFETY: read-only memory map; the file must not change while the weights are copied.
            let vs = unsafe { nn::VarBuilder::from_mmaped_safetensors(&[path], dtype, device) }.map_err(err)?;
            encoders.push(ClipTextTransformer::new(vs.clone(), c).map_err(err)?);
            if v.is_xl() && i == 1 {
                let width = v.text_encoder_sizes().get(1).map_or(1280, |s| s.0);
                projection = Some(nn::linear_no_bias(width, width, vs.pp("text_projection")).map_err(err)?);
            }
        }
        Ok(TextEncoders { version: v, encoders, projection, device: device.clone() })
    }

    /// Encode one prompt, given its token ids for each text encoder (`[BOS, ..., EOS, pad...]`,
    /// at most [`MAX_TOKENS`]), for an image of `width` x `height` (SDXL's `time_ids`). The
    /// result has batch 1; join prompts with [`Conditioning::cat`].
    pub fn encode(&self, ids: &[Vec<u32>], width: usize, height: usize) -> Result<Conditioning> {
        if ids.len() != self.encoders.len() {
            return Err(Error::InvalidConfig(format!(
                "{} needs token ids for {} text encoder(s), got {}",
                self.version.name(),
                self.encoders.len(),
                ids.len()
            )));
        }
        let mut hidden = Vec::new();
        let mut pooled = None;
        for (i, (enc, ids)) in self.encoders.iter().zip(ids).enumerate() {
            if ids.is_empty() || ids.len() > MAX_TOKENS {
                return Err(Error::InvalidConfig(format!(
                    "text encoder {} takes 1 to {MAX_TOKENS} token ids, got {}",
                    i + 1,
                    ids.len()
                )));
            }
            let t = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
            if !self.version.is_xl() {
                hidden.push(enc.forward(&t)?);
                continue;
            }
            let (last, penultimate) = enc.forward_until_encoder_layer(&t, usize::MAX, -2)?;
            hidden.push(penultimate);
            if let (Some(proj), 1) = (&self.projection, i) {
                // transformers' CLIPTextModelWithProjection pools at input_ids.argmax(-1): the
                // first end-of-text token (the largest id)
                let mut eos = 0;
                for (k, &id) in ids.iter().enumerate() {
                    if id > ids[eos] {
                        eos = k;
                    }
                }
                pooled = Some(proj.forward(&last.narrow(1, eos, 1)?.squeeze(1)?)?);
            }
        }
        let text = Tensor::cat(&hidden, 2)?;
        let added = match pooled {
            Some(text_embeds) => {
                let (h, w) = (height as f32, width as f32);
                let time_ids = Tensor::new(&[[h, w, 0.0, 0.0, h, w]], &self.device)?.to_dtype(text.dtype())?;
                Some(AddedConditioning { text_embeds, time_ids })
            }
            None => None,
        };
        Ok(Conditioning { text, added })
    }
}

impl Conditioning {
    /// The same shapes with zero embeddings (SDXL's unconditional input for an empty negative
    /// prompt, diffusers' `force_zeros_for_empty_prompt`); `time_ids` are kept.
    pub fn zeroed(&self) -> Result<Conditioning> {
        let added = match &self.added {
            Some(a) => {
                Some(AddedConditioning { text_embeds: a.text_embeds.zeros_like()?, time_ids: a.time_ids.clone() })
            }
            None => None,
        };
        Ok(Conditioning { text: self.text.zeros_like()?, added })
    }
}
