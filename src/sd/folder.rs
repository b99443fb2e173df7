//! A Stable Diffusion weights folder in diffusers' layout (`unet/`, `vae/`, `text_encoder/`,
//! `tokenizer/`, `scheduler/`, and `text_encoder_2/`, `tokenizer_2/` for SDXL): checked once
//! when opened, then loaded component by component with typed errors.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::unet_2d::{BlockConfig, UNet2DConditionModelConfig};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;
use serde_json::Value;

use super::xl::{AddedEmbedConfig, XlUNet};
use super::SdVersion;
use crate::error::{Error, Result};

/// diffusers' `unet/config.json`, resolved into candle-transformers' config plus what it lacks
/// (channels, SDXL's added conditioning).
#[derive(Clone, Debug)]
pub struct UNetSpec {
    /// candle-transformers' block layout.
    pub config: UNet2DConditionModelConfig,
    /// Latent channels in (4; 9 for inpainting models, which this crate does not run).
    pub in_channels: usize,
    /// Channels out.
    pub out_channels: usize,
    /// SDXL's added conditioning (`addition_embed_type = "text_time"`).
    pub added: Option<AddedEmbedConfig>,
}

impl UNetSpec {
    /// Parse diffusers' `unet/config.json` text. `source` names the file in errors.
    pub fn from_json(text: &str, source: &str) -> Result<UNetSpec> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::ModelFile { path: source.into(), reason: format!("not valid JSON ({e})") })?;
        let f = Fields { v: &v, source };
        for key in ["class_embed_type", "encoder_hid_dim", "time_cond_proj_dim", "num_class_embeds"] {
            if !matches!(v.get(key), None | Some(Value::Null)) {
                return Err(f.err(key, "is set; this UNet option is not supported (SD 1.x / 2.x / XL / Turbo only)"));
            }
        }
        let channels = f.usize_list("block_out_channels", None)?;
        let n = channels.len();
        if n == 0 {
            return Err(f.err("block_out_channels", "is empty"));
        }
        let down = f.str_list("down_block_types")?;
        if down.len() != n {
            return Err(f.err("down_block_types", &format!("has {} entries for {n} blocks", down.len())));
        }
        let heads = match v.get("num_attention_heads") {
            Some(x) if !x.is_null() => f.usize_list("num_attention_heads", Some(n))?,
            _ => f.usize_list("attention_head_dim", Some(n))?,
        };
        let layers = match v.get("transformer_layers_per_block") {
            None | Some(Value::Null) => vec![1; n],
            _ => f.usize_list("transformer_layers_per_block", Some(n))?,
        };
        if heads.len() != n || layers.len() != n {
            return Err(f.err("attention_head_dim", &format!("needs one entry per block ({n})")));
        }
        let mut blocks = Vec::with_capacity(n);
        for i in 0..n {
            let cross = match down[i].as_str() {
                "CrossAttnDownBlock2D" => Some(layers[i]),
                "DownBlock2D" => None,
                other => return Err(f.err("down_block_types", &format!("block type {other} is not supported"))),
            };
            if heads[i] == 0 || channels[i] % heads[i] != 0 {
                return Err(
                    f.err("attention_head_dim", &format!("{} heads do not divide {} channels", heads[i], channels[i]))
                );
            }
            blocks.push(BlockConfig { out_channels: channels[i], use_cross_attn: cross, attention_head_dim: heads[i] });
        }
        if let Some(Value::String(m)) = v.get("mid_block_type") {
            if m != "UNetMidBlock2DCrossAttn" {
                return Err(f.err("mid_block_type", &format!("{m} is not supported")));
            }
        }
        let groups = f.usize_or("norm_num_groups", 32)?;
        if groups == 0 || channels.iter().any(|c| c % groups != 0) {
            return Err(f.err("norm_num_groups", &format!("{groups} does not divide every block's channels")));
        }
        let config = UNet2DConditionModelConfig {
            center_input_sample: f.bool_or("center_input_sample", false)?,
            flip_sin_to_cos: f.bool_or("flip_sin_to_cos", true)?,
            freq_shift: f.f64_or("freq_shift", 0.0)?,
            blocks,
            layers_per_block: f.usize_or("layers_per_block", 2)?,
            downsample_padding: f.usize_or("downsample_padding", 1)?,
            mid_block_scale_factor: f.f64_or("mid_block_scale_factor", 1.0)?,
            norm_num_groups: groups,
            norm_eps: f.f64_or("norm_eps", 1e-5)?,
            cross_attention_dim: f.usize_or("cross_attention_dim", 1280)?,
            sliced_attention_size: None,
            use_linear_projection: f.bool_or("use_linear_projection", false)?,
        };
        let added = match v.get("addition_embed_type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "text_time" => Some(AddedEmbedConfig {
                time_embed_dim: f.usize_or("addition_time_embed_dim", 256)?,
                input_dim: f.usize_or("projection_class_embeddings_input_dim", 2816)?,
            }),
            Some(other) => {
                return Err(f.err("addition_embed_type", &format!("{other} is not supported (only \"text_time\")")))
            }
        };
        Ok(UNetSpec {
            config,
            in_channels: f.usize_or("in_channels", 4)?,
            out_channels: f.usize_or("out_channels", 4)?,
            added,
        })
    }

    /// Build the UNet from a weights file, with typed errors for missing or misshapen tensors.
    pub fn load(&self, weights: &Path, device: &Device, dtype: DType) -> Result<XlUNet> {
        with_checked_weights(weights, device, dtype, Patch::None, |vs| {
            XlUNet::new(vs, self.in_channels, self.out_channels, false, self.config.clone(), self.added)
        })
    }
}

/// diffusers' `vae/config.json`: candle-transformers' config plus the latent scaling factor.
#[derive(Clone, Debug)]
pub struct VaeSpec {
    /// candle-transformers' layout.
    pub config: AutoEncoderKLConfig,
    /// diffusers' `scaling_factor` (0.18215 for SD 1.x / 2.x, 0.13025 for SDXL).
    pub scaling_factor: f64,
}

impl VaeSpec {
    /// Parse diffusers' `vae/config.json` text.
    pub fn from_json(text: &str, source: &str) -> Result<VaeSpec> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::ModelFile { path: source.into(), reason: format!("not valid JSON ({e})") })?;
        let f = Fields { v: &v, source };
        let config = AutoEncoderKLConfig {
            block_out_channels: f.usize_list("block_out_channels", None)?,
            layers_per_block: f.usize_or("layers_per_block", 2)?,
            latent_channels: f.usize_or("latent_channels", 4)?,
            norm_num_groups: f.usize_or("norm_num_groups", 32)?,
            use_quant_conv: f.bool_or("use_quant_conv", true)?,
            use_post_quant_conv: f.bool_or("use_post_quant_conv", true)?,
        };
        if config.block_out_channels.is_empty() {
            return Err(f.err("block_out_channels", "is empty"));
        }
        if !config.use_quant_conv {
            return Err(
                f.err("use_quant_conv", "is false; only VAEs with a quant_conv (SD 1.x / 2.x / XL) are supported")
            );
        }
        let scaling_factor = f.f64_or("scaling_factor", 0.18215)?;
        if !(scaling_factor > 0.0 && scaling_factor.is_finite()) {
            return Err(f.err("scaling_factor", "must be positive"));
        }
        Ok(VaeSpec { config, scaling_factor })
    }

    /// Build the VAE from a weights file (see [`super::Vae`]).
    pub fn load(&self, weights: &Path, device: &Device, dtype: DType) -> Result<super::Vae> {
        let latent = self.config.latent_channels;
        let kl = with_checked_weights(weights, device, dtype, Patch::PosteriorMean { latent }, |vs| {
            candle_transformers::models::stable_diffusion::vae::AutoEncoderKL::new(vs, 3, 3, self.config.clone())
        })?;
        Ok(super::Vae::new(kl, self.scaling_factor))
    }
}

struct Fields<'a> {
    v: &'a Value,
    source: &'a str,
}

impl Fields<'_> {
    fn err(&self, key: &str, reason: &str) -> Error {
        Error::ModelConfig { field: format!("{}: {key}", self.source), reason: reason.to_string() }
    }
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_u64()
                .map(|u| u as usize)
                .ok_or_else(|| self.err(key, &format!("{x} is not a non-negative integer"))),
        }
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| self.err(key, &format!("{x} is not a finite number"))),
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x.as_bool().ok_or_else(|| self.err(key, &format!("{x} is not true or false"))),
        }
    }
    /// A list of integers, or (with `broadcast = Some(n)`) one integer meaning n copies.
    fn usize_list(&self, key: &str, broadcast: Option<usize>) -> Result<Vec<usize>> {
        let bad = || self.err(key, "must be a list of non-negative integers");
        match (self.v.get(key), broadcast) {
            (Some(Value::Array(a)), _) => a.iter().map(|x| x.as_u64().map(|u| u as usize).ok_or_else(bad)).collect(),
            (Some(x), Some(n)) if x.is_u64() => Ok(vec![x.as_u64().unwrap_or(0) as usize; n]),
            (None, _) => Err(self.err(key, "is missing")),
            _ => Err(bad()),
        }
    }
    fn str_list(&self, key: &str) -> Result<Vec<String>> {
        match self.v.get(key) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| self.err(key, "must be a list of strings")))
                .collect(),
            None => Err(self.err(key, "is missing")),
            _ => Err(self.err(key, "must be a list of strings")),
        }
    }
}

/// A change applied to tensors as they are loaded.
#[derive(Clone, Copy)]
enum Patch {
    None,
    /// Make the VAE posterior's log-variance -10^4 (standard deviation exactly 0), so that
    /// candle-transformers' `DiagonalGaussianDistribution::sample()` returns the posterior mean
    /// (its `mean` field is private): the deterministic encoding inversion and img2img need.
    PosteriorMean {
        latent: usize,
    },
}

/// A safetensors-backed VarBuilder backend that remembers the first missing or misshapen tensor
/// as a typed error (candle's own errors carry no structure to match on).
struct Checked {
    inner: candle_core::safetensors::MmapedSafetensors,
    file: String,
    patch: Patch,
    first_error: Mutex<Option<Error>>,
}

impl Checked {
    fn remember(&self, e: Error) {
        if let Ok(mut slot) = self.first_error.lock() {
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }

    fn patched(&self, name: &str, t: Tensor) -> candle_core::Result<Tensor> {
        let Patch::PosteriorMean { latent } = self.patch else { return Ok(t) };
        match name {
            "quant_conv.weight" => {
                let mean = t.narrow(0, 0, latent)?;
                Tensor::cat(&[&mean, &mean.zeros_like()?], 0)
            }
            "quant_conv.bias" => {
                let mean = t.narrow(0, 0, latent)?;
                Tensor::cat(&[&mean, &mean.ones_like()?.affine(-1e4, 0.0)?], 0)
            }
            _ => Ok(t),
        }
    }
}

impl nn::var_builder::SimpleBackend for Checked {
    fn get(&self, s: Shape, name: &str, _: nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = match self.inner.load(name, dev) {
            Ok(t) => t,
            Err(e) => {
                self.remember(Error::MissingWeight { name: name.to_string(), file: self.file.clone() });
                return Err(e);
            }
        };
        if t.shape() != &s {
            self.remember(Error::WeightShape { name: name.to_string(), expected: s.clone(), got: t.shape().clone() });
            candle_core::bail!("weight {name}: shape {:?}, expected {s:?}", t.shape());
        }
        self.patched(name, t.to_dtype(dtype)?)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.patched(name, self.inner.load(name, dev)?.to_dtype(dtype)?)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.get(name).is_ok()
    }
}

fn with_checked_weights<T>(
    path: &Path,
    device: &Device,
    dtype: DType,
    patch: Patch,
    build: impl FnOnce(nn::VarBuilder) -> candle_core::Result<T>,
) -> Result<T> {
    let file = path.display().to_string();
    if !path.is_file() {
        return Err(Error::ModelFile { path: file, reason: "no such file".into() });
    }
    // SAFETY: the file is memory-mapped read-only; as in candle's own loaders, it must not be
    // modified while the model is being built (tensors are copied out of the map).
    let inner = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(|e| Error::ModelFile {
        path: file.clone(),
        reason: format!("not a readable safetensors file ({e}); re-download it"),
    })?;
    let backend = std::sync::Arc::new(Checked { inner, file: file.clone(), patch, first_error: Mutex::new(None) });
    let vs = nn::VarBuilder::from_backend(Box::new(Shared(backend.clone())), dtype, device.clone());
    match build(vs) {
        Ok(t) => Ok(t),
        Err(e) => {
            let typed = backend.first_error.lock().ok().and_then(|mut s| s.take());
            Err(typed.unwrap_or(Error::ModelFile { path: file, reason: format!("cannot build the model ({e})") }))
        }
    }
}

struct Shared(std::sync::Arc<Checked>);

impl nn::var_builder::SimpleBackend for Shared {
    fn get(&self, s: Shape, name: &str, h: nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

/// The files of one component (`unet`, `vae`, ...): its config and its weights.
#[derive(Clone, Debug)]
pub struct Component {
    /// `<folder>/<name>/config.json`.
    pub config: PathBuf,
    /// The safetensors weights (full precision preferred over `.fp16`).
    pub weights: PathBuf,
}

/// A checked diffusers-layout folder for one [`SdVersion`].
#[derive(Clone, Debug)]
pub struct SdFolder {
    /// The folder.
    pub root: PathBuf,
    /// The model it holds.
    pub version: SdVersion,
    /// `unet/`, parsed.
    pub unet: UNetSpec,
    /// `unet/` files.
    pub unet_files: Component,
    /// `vae/`, parsed.
    pub vae: VaeSpec,
    /// `vae/` files.
    pub vae_files: Component,
    /// `text_encoder/` and, for SDXL, `text_encoder_2/`.
    pub text_encoders: Vec<Component>,
    /// `tokenizer/` and, for SDXL, `tokenizer_2/`.
    pub tokenizers: Vec<PathBuf>,
    /// `scheduler/scheduler_config.json`.
    pub scheduler_config: PathBuf,
}

impl SdFolder {
    /// Check that `root` holds every component `version` needs (configs, weights, tokenizer
    /// files, scheduler config) and that the configs are those of `version`, before any weight
    /// is read.
    ///
    /// Errors: [`Error::ModelFile`] naming a missing or unreadable file;
    /// [`Error::ModelConfig`] naming a config field that shows the folder holds another model
    /// (e.g. `cross_attention_dim` 768, an SD 1.x UNet, where SDXL needs 2048).
    pub fn open(root: impl AsRef<Path>, version: SdVersion) -> Result<SdFolder> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(Error::ModelFile {
                path: root.display().to_string(),
                reason: "not a directory: pass the folder of a diffusers-layout download (see the README's \
                         \"Use it with Stable Diffusion\")"
                    .into(),
            });
        }
        // the UNet first: its config tells which model the folder holds
        let unet_files = component(
            &root,
            "unet",
            &["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
        )?;
        let unet = UNetSpec::from_json(&read(&unet_files.config)?, &rel(&root, &unet_files.config))?;
        check_unet_version(&unet, version, &rel(&root, &unet_files.config))?;
        let vae_files = component(
            &root,
            "vae",
            &["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
        )?;
        let vae = VaeSpec::from_json(&read(&vae_files.config)?, &rel(&root, &vae_files.config))?;
        let n_text = if version.is_xl() { 2 } else { 1 };
        let mut text_encoders = Vec::new();
        let mut tokenizers = Vec::new();
        for i in 0..n_text {
            let suffix = if i == 0 { String::new() } else { format!("_{}", i + 1) };
            text_encoders.push(component(
                &root,
                &format!("text_encoder{suffix}"),
                &["model.safetensors", "model.fp16.safetensors"],
            )?);
            let tok = root.join(format!("tokenizer{suffix}"));
            if !tok.join("tokenizer.json").is_file() {
                for f in ["vocab.json", "merges.txt"] {
                    require(&tok.join(f), &format!("the CLIP tokenizer's {f}"))?;
                }
            }
            tokenizers.push(tok);
        }
        let scheduler_config = root.join("scheduler").join("scheduler_config.json");
        require(&scheduler_config, "the scheduler config")?;
        let folder =
            SdFolder { root, version, unet, unet_files, vae, vae_files, text_encoders, tokenizers, scheduler_config };
        folder.check_text_encoders()?;
        Ok(folder)
    }

    fn check_text_encoders(&self) -> Result<()> {
        let v = self.version;
        for (i, (c, (hidden, layers))) in self.text_encoders.iter().zip(v.text_encoder_sizes()).enumerate() {
            let src = rel(&self.root, &c.config);
            let json: Value = serde_json::from_str(&read(&c.config)?)
                .map_err(|e| Error::ModelFile { path: src.clone(), reason: format!("not valid JSON ({e})") })?;
            let f = Fields { v: &json, source: &src };
            let got = (f.usize_or("hidden_size", 0)?, f.usize_or("num_hidden_layers", 0)?);
            if got != (hidden, layers) {
                return Err(Error::ModelConfig {
                    field: format!("{src}: hidden_size / num_hidden_layers"),
                    reason: format!(
                        "are {} / {} but {} needs {hidden} / {layers} for text encoder {}: the folder holds another \
                         model's text encoder",
                        got.0,
                        got.1,
                        v.name(),
                        i + 1
                    ),
                });
            }
        }
        Ok(())
    }
}

fn check_unet_version(unet: &UNetSpec, v: SdVersion, unet_src: &str) -> Result<()> {
    let other = |field: &str, got: String, needed: String| Error::ModelConfig {
        field: format!("{unet_src}: {field}"),
        reason: format!(
            "is {got} but {} needs {needed}: the folder holds another model's weights; pass the model these \
             weights are for, or the folder of {}",
            v.name(),
            v.name()
        ),
    };
    let cross = unet.config.cross_attention_dim;
    if cross != v.cross_attention_dim() {
        let got = format!("{cross} ({})", SdVersion::family_of_cross_dim(cross));
        return Err(other("cross_attention_dim", got, v.cross_attention_dim().to_string()));
    }
    if unet.added.is_some() != v.is_xl() {
        let (got, needed) = if v.is_xl() { ("absent", "\"text_time\"") } else { ("\"text_time\" (SDXL)", "none") };
        return Err(other("addition_embed_type", got.into(), needed.into()));
    }
    if unet.in_channels != 4 {
        let got = format!("{} (an inpainting or otherwise conditioned UNet)", unet.in_channels);
        return Err(other("in_channels", got, "4".into()));
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::ModelFile { path: path.display().to_string(), reason: format!("cannot read ({e})") })
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn require(path: &Path, what: &str) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    Err(Error::ModelFile {
        path: path.display().to_string(),
        reason: format!(
            "missing ({what}): the weights folder is incomplete; download the whole diffusers repository \
             (see the README's \"Use it with Stable Diffusion\")"
        ),
    })
}

fn component(root: &Path, name: &str, weight_files: &[&str]) -> Result<Component> {
    let dir = root.join(name);
    let config = dir.join("config.json");
    require(&config, &format!("the {name} config"))?;
    let weights = weight_files.iter().map(|f| dir.join(f)).find(|p| p.is_file());
    match weights {
        Some(weights) => Ok(Component { config, weights }),
        None => Err(Error::ModelFile {
            path: dir.join(weight_files.first().copied().unwrap_or("")).display().to_string(),
            reason: format!(
                "missing (the {name} weights; also looked for {}): the weights folder is incomplete; download \
                 the safetensors files of the diffusers repository (see the README's \"Use it with Stable \
                 Diffusion\")",
                weight_files.get(1..).unwrap_or(&[]).join(", ")
            ),
        }),
    }
}
