//! `UNet2DConfig`: diffusers' `UNet2DModel` `config.json`, parsed and validated.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A down block of the UNet (diffusers' `down_block_types` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownBlockType {
    /// `DownBlock2D`: ResNet blocks, then a downsampler.
    DownBlock2D,
    /// `AttnDownBlock2D`: ResNet blocks each followed by self-attention, then a downsampler.
    AttnDownBlock2D,
}

/// An up block of the UNet (diffusers' `up_block_types` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpBlockType {
    /// `UpBlock2D`: ResNet blocks over concatenated skips, then an upsampler.
    UpBlock2D,
    /// `AttnUpBlock2D`: as `UpBlock2D` with self-attention after each ResNet block.
    AttnUpBlock2D,
}

/// The middle block (diffusers' `mid_block_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MidBlockType {
    /// `UNetMidBlock2D`: ResNet, (attention, ResNet) x 1.
    UNetMidBlock2D,
}

/// How attention blocks are built (diffusers' `add_attention`, for the middle block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MidAttention {
    /// The middle block has a self-attention layer (`add_attention: true`).
    #[default]
    On,
    /// It has none (`add_attention: false`).
    Off,
}

/// How the resolution changes between blocks (diffusers' `downsample_type` / `upsample_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Resample {
    /// A strided 3x3 convolution down, nearest-neighbour + 3x3 convolution up.
    #[default]
    Conv,
    /// A ResNet block with 2x2 average pooling / nearest upsampling inside (attention blocks only).
    Resnet,
}

/// How the time embedding enters a ResNet block (diffusers' `resnet_time_scale_shift`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeScaleShift {
    /// `default`: added to the features before the second GroupNorm.
    #[default]
    Default,
    /// `scale_shift`: `norm(h) * (1 + scale) + shift` (improved DDPM, arXiv:2102.09672).
    ScaleShift,
}

/// How the sinusoidal time embedding is laid out (diffusers' `flip_sin_to_cos`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SinCosOrder {
    /// `[cos, sin]` (`flip_sin_to_cos: true`, diffusers' default).
    #[default]
    CosSin,
    /// `[sin, cos]` (`flip_sin_to_cos: false`, the original DDPM checkpoints).
    SinCos,
}

/// Whether the input is mapped from [0, 1] to [-1, 1] first (diffusers' `center_input_sample`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InputCentering {
    /// Use the input as it is.
    #[default]
    None,
    /// `x -> 2 x - 1`.
    Center,
}

/// The configuration of a diffusers `UNet2DModel` (its `config.json`). Field names and defaults
/// are diffusers' (0.42); options this crate does not implement are rejected when parsing.
///
/// ```
/// use diffusion_samplers::unet::{DownBlockType, UNet2DConfig};
/// let c = UNet2DConfig::from_json(r#"{"block_out_channels": [32, 64], "in_channels": 1, "out_channels": 1,
///   "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
///   "norm_num_groups": 8}"#)?;
/// assert_eq!(c.down_block_types[1], DownBlockType::AttnDownBlock2D);
/// assert_eq!(c.time_embed_dim(), 128);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct UNet2DConfig {
    /// Training resolution `(height, width)` (informational; any multiple of the total
    /// downsampling factor works).
    pub sample_size: Option<(usize, usize)>,
    /// Input image channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// `center_input_sample`.
    pub center_input_sample: InputCentering,
    /// `time_embedding_dim` (default `4 * block_out_channels[0]`).
    pub time_embedding_dim: Option<usize>,
    /// `freq_shift` (the sinusoid's `downscale_freq_shift`).
    pub freq_shift: f64,
    /// `flip_sin_to_cos`.
    pub flip_sin_to_cos: SinCosOrder,
    /// `down_block_types`.
    pub down_block_types: Vec<DownBlockType>,
    /// `mid_block_type` (`None`: no middle block).
    pub mid_block_type: Option<MidBlockType>,
    /// `up_block_types`.
    pub up_block_types: Vec<UpBlockType>,
    /// `block_out_channels`, one per down block.
    pub block_out_channels: Vec<usize>,
    /// `layers_per_block` (up blocks have one more).
    pub layers_per_block: usize,
    /// `mid_block_scale_factor` (the middle block's output scale).
    pub mid_block_scale_factor: f64,
    /// `downsample_padding` (0: pad right/bottom by one, as the original DDPM).
    pub downsample_padding: usize,
    /// `downsample_type` (attention down blocks only, as diffusers).
    pub downsample_type: Resample,
    /// `upsample_type` (attention up blocks only, as diffusers).
    pub upsample_type: Resample,
    /// `attention_head_dim` (`None`: one head over all channels).
    pub attention_head_dim: Option<usize>,
    /// `norm_num_groups`.
    pub norm_num_groups: usize,
    /// `attn_norm_num_groups` (the middle block's attention GroupNorm).
    pub attn_norm_num_groups: Option<usize>,
    /// `norm_eps`.
    pub norm_eps: f64,
    /// `resnet_time_scale_shift`.
    pub resnet_time_scale_shift: TimeScaleShift,
    /// `add_attention` (middle block).
    pub add_attention: MidAttention,
}

impl Default for UNet2DConfig {
    /// diffusers' `UNet2DModel()` defaults.
    fn default() -> Self {
        UNet2DConfig {
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: InputCentering::None,
            time_embedding_dim: None,
            freq_shift: 0.0,
            flip_sin_to_cos: SinCosOrder::CosSin,
            down_block_types: vec![
                DownBlockType::DownBlock2D,
                DownBlockType::AttnDownBlock2D,
                DownBlockType::AttnDownBlock2D,
                DownBlockType::AttnDownBlock2D,
            ],
            mid_block_type: Some(MidBlockType::UNetMidBlock2D),
            up_block_types: vec![
                UpBlockType::AttnUpBlock2D,
                UpBlockType::AttnUpBlock2D,
                UpBlockType::AttnUpBlock2D,
                UpBlockType::UpBlock2D,
            ],
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            downsample_type: Resample::Conv,
            upsample_type: Resample::Conv,
            attention_head_dim: Some(8),
            norm_num_groups: 32,
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: TimeScaleShift::Default,
            add_attention: MidAttention::On,
        }
    }
}

fn field_err<T>(field: &str, reason: impl Into<String>) -> Result<T> {
    Err(Error::ModelConfig { field: field.to_string(), reason: reason.into() })
}

fn unsupported<T>(field: &str, value: &Value, supported: &str) -> Result<T> {
    field_err(field, format!("{value} is not supported by diffusion_samplers::unet (supported: {supported})"))
}

/// Typed access to the JSON object, every error naming its field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// The value, or `None` when the key is absent (JSON `null` is returned as `Value::Null`).
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => as_usize(key, v),
        }
    }

    fn opt_usize(&self, key: &str, default: Option<usize>) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(v) => as_usize(key, v).map(Some),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map_or_else(|| field_err(key, format!("expected a number, got {v}")), Ok),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().map_or_else(|| field_err(key, format!("expected true or false, got {v}")), Ok),
        }
    }

    fn str_or<'v>(&'v self, key: &str, default: &'v str) -> Result<&'v str> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::String(s)) => Ok(s),
            Some(v) => field_err(key, format!("expected a string, got {v}")),
        }
    }

    /// Fails when the key holds anything but `null` (an option this crate does not implement).
    fn must_be_null(&self, key: &str, what: &str) -> Result<()> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(v) => field_err(key, format!("{v}: {what} is not supported by diffusion_samplers::unet (use null)")),
        }
    }

    fn list<'v>(&'v self, key: &str) -> Result<Option<&'v Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => field_err(key, format!("expected a list, got {v}")),
        }
    }
}

fn as_usize(key: &str, v: &Value) -> Result<usize> {
    v.as_u64()
        .and_then(|x| usize::try_from(x).ok())
        .map_or_else(|| field_err(key, format!("expected a non-negative integer, got {v}")), Ok)
}

impl UNet2DConfig {
    /// Parse a diffusers `config.json` for `UNet2DModel`. Keys this crate does not need
    /// (`dropout`, `_diffusers_version`, ...) are ignored; options it does not implement
    /// (other block types, class conditioning, Fourier time embeddings, other activations) are
    /// [`Error::ModelConfig`] naming the field.
    pub fn from_json(json: &str) -> Result<UNet2DConfig> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Error::ModelConfig { field: "<file>".into(), reason: format!("not valid JSON: {e}") })?;
        let obj = value.as_object().ok_or_else(|| Error::ModelConfig {
            field: "<file>".into(),
            reason: "expected a JSON object (diffusers' config.json)".into(),
        })?;
        Self::from_map(obj)
    }

    /// Read and parse a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<UNet2DConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::ModelFile {
            path: path.display().to_string(),
            reason: format!("{e} (expected diffusers' UNet2DModel config.json)"),
        })?;
        Self::from_json(&text).map_err(|e| match e {
            Error::ModelConfig { field, reason } => {
                Error::ModelConfig { field, reason: format!("{reason} (in {})", path.display()) }
            }
            other => other,
        })
    }

    fn from_map(obj: &Map<String, Value>) -> Result<UNet2DConfig> {
        let f = Fields(obj);
        let d = UNet2DConfig::default();
        if let Some(v) = f.get("_class_name") {
            if v.as_str() != Some("UNet2DModel") {
                return unsupported("_class_name", v, "\"UNet2DModel\"");
            }
        }
        let act = f.str_or("act_fn", "silu")?;
        if act != "silu" && act != "swish" {
            return unsupported("act_fn", &Value::String(act.into()), "\"silu\"");
        }
        let temb = f.str_or("time_embedding_type", "positional")?;
        if temb != "positional" {
            return unsupported("time_embedding_type", &Value::String(temb.into()), "\"positional\"");
        }
        f.must_be_null("class_embed_type", "class conditioning")?;
        f.must_be_null("num_class_embeds", "class conditioning")?;

        let sample_size = match f.get("sample_size") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) if a.len() == 2 => {
                Some((as_usize("sample_size", &a[0])?, as_usize("sample_size", &a[1])?))
            }
            Some(v) => {
                let s = as_usize("sample_size", v)?;
                Some((s, s))
            }
        };
        let down_block_types = match f.list("down_block_types")? {
            None => d.down_block_types.clone(),
            Some(list) => list
                .iter()
                .map(|v| match v.as_str() {
                    Some("DownBlock2D") => Ok(DownBlockType::DownBlock2D),
                    Some("AttnDownBlock2D") => Ok(DownBlockType::AttnDownBlock2D),
                    _ => unsupported("down_block_types", v, "\"DownBlock2D\", \"AttnDownBlock2D\""),
                })
                .collect::<Result<_>>()?,
        };
        let up_block_types = match f.list("up_block_types")? {
            None => d.up_block_types.clone(),
            Some(list) => list
                .iter()
                .map(|v| match v.as_str() {
                    Some("UpBlock2D") => Ok(UpBlockType::UpBlock2D),
                    Some("AttnUpBlock2D") => Ok(UpBlockType::AttnUpBlock2D),
                    _ => unsupported("up_block_types", v, "\"UpBlock2D\", \"AttnUpBlock2D\""),
                })
                .collect::<Result<_>>()?,
        };
        let mid_block_type = match f.get("mid_block_type") {
            None => d.mid_block_type,
            Some(Value::Null) => None,
            Some(v) if v.as_str() == Some("UNetMidBlock2D") => Some(MidBlockType::UNetMidBlock2D),
            Some(v) => return unsupported("mid_block_type", v, "\"UNetMidBlock2D\", null"),
        };
        let block_out_channels = match f.list("block_out_channels")? {
            None => d.block_out_channels.clone(),
            Some(list) => list.iter().map(|v| as_usize("block_out_channels", v)).collect::<Result<_>>()?,
        };
        let resample = |key: &str| -> Result<Resample> {
            match f.get(key) {
                None | Some(Value::Null) => Ok(Resample::Conv),
                Some(v) if v.as_str() == Some("conv") => Ok(Resample::Conv),
                Some(v) if v.as_str() == Some("resnet") => Ok(Resample::Resnet),
                Some(v) => unsupported(key, v, "\"conv\", \"resnet\""),
            }
        };
        let resnet_time_scale_shift = match f.get("resnet_time_scale_shift") {
            None => TimeScaleShift::Default,
            Some(v) if v.as_str() == Some("default") => TimeScaleShift::Default,
            Some(v) if v.as_str() == Some("scale_shift") => TimeScaleShift::ScaleShift,
            Some(v) => return unsupported("resnet_time_scale_shift", v, "\"default\", \"scale_shift\""),
        };
        let norm_num_groups = match f.get("norm_num_groups") {
            None => d.norm_num_groups,
            Some(Value::Null) => {
                return field_err("norm_num_groups", "null is not supported (give the GroupNorm group count)")
            }
            Some(v) => as_usize("norm_num_groups", v)?,
        };
        let config = UNet2DConfig {
            sample_size,
            in_channels: f.usize_or("in_channels", d.in_channels)?,
            out_channels: f.usize_or("out_channels", d.out_channels)?,
            center_input_sample: if f.bool_or("center_input_sample", false)? {
                InputCentering::Center
            } else {
                InputCentering::None
            },
            time_embedding_dim: f.opt_usize("time_embedding_dim", None)?,
            freq_shift: f.f64_or("freq_shift", d.freq_shift)?,
            flip_sin_to_cos: if f.bool_or("flip_sin_to_cos", true)? {
                SinCosOrder::CosSin
            } else {
                SinCosOrder::SinCos
            },
            down_block_types,
            mid_block_type,
            up_block_types,
            block_out_channels,
            layers_per_block: f.usize_or("layers_per_block", d.layers_per_block)?,
            mid_block_scale_factor: f.f64_or("mid_block_scale_factor", d.mid_block_scale_factor)?,
            downsample_padding: f.usize_or("downsample_padding", d.downsample_padding)?,
            downsample_type: resample("downsample_type")?,
            upsample_type: resample("upsample_type")?,
            attention_head_dim: f.opt_usize("attention_head_dim", d.attention_head_dim)?,
            norm_num_groups,
            attn_norm_num_groups: f.opt_usize("attn_norm_num_groups", None)?,
            norm_eps: f.f64_or("norm_eps", d.norm_eps)?,
            resnet_time_scale_shift,
            add_attention: if f.bool_or("add_attention", true)? { MidAttention::On } else { MidAttention::Off },
        };
        config.validate()?;
        Ok(config)
    }

    /// The time-embedding width: `time_embedding_dim` or `4 * block_out_channels[0]`.
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim.unwrap_or(4 * self.block_out_channels.first().copied().unwrap_or(0))
    }

    /// The width of one attention head over `channels` channels (`attention_head_dim`, or one head
    /// over all of them).
    pub fn head_dim(&self, channels: usize) -> usize {
        self.attention_head_dim.unwrap_or(channels)
    }

    /// The factor by which input height and width must be divisible (`2^(blocks - 1)`).
    pub fn downsampling_factor(&self) -> usize {
        1usize << self.block_out_channels.len().saturating_sub(1)
    }

    /// Check the fields are consistent (list lengths, channel counts divisible by the group
    /// count, positive sizes). Called by [`UNet2DConfig::from_json`] and by the model
    /// constructors.
    pub fn validate(&self) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0 {
            return field_err("block_out_channels", "must list at least one channel count");
        }
        if n > 16 {
            return field_err("block_out_channels", format!("{n} blocks is more than this crate supports (16)"));
        }
        if self.down_block_types.len() != n {
            return field_err(
                "down_block_types",
                format!(
                    "has {} entries but block_out_channels has {n}: give one per block",
                    self.down_block_types.len()
                ),
            );
        }
        if self.up_block_types.len() != n {
            return field_err(
                "up_block_types",
                format!("has {} entries but block_out_channels has {n}: give one per block", self.up_block_types.len()),
            );
        }
        for (key, v) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("layers_per_block", self.layers_per_block),
            ("norm_num_groups", self.norm_num_groups),
        ] {
            if v == 0 {
                return field_err(key, "must be positive");
            }
        }
        if self.time_embedding_dim == Some(0) {
            return field_err("time_embedding_dim", "must be positive");
        }
        if self.attention_head_dim == Some(0) {
            return field_err("attention_head_dim", "must be positive (or null for one head)");
        }
        if self.attn_norm_num_groups == Some(0) {
            return field_err("attn_norm_num_groups", "must be positive (or null)");
        }
        for &c in &self.block_out_channels {
            if c == 0 || c % self.norm_num_groups != 0 {
                return field_err(
                    "block_out_channels",
                    format!("{c} is not a positive multiple of norm_num_groups = {}", self.norm_num_groups),
                );
            }
        }
        if let Some(g) = self.attn_norm_num_groups {
            if self.block_out_channels[n - 1] % g != 0 {
                return field_err(
                    "attn_norm_num_groups",
                    format!("{g} does not divide {}", self.block_out_channels[n - 1]),
                );
            }
        }
        if self.norm_eps.is_nan() || self.norm_eps <= 0.0 {
            return field_err("norm_eps", "must be positive");
        }
        if self.mid_block_scale_factor == 0.0 {
            return field_err("mid_block_scale_factor", "must be non-zero");
        }
        Ok(())
    }
}
