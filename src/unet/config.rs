//! `UNet2DConfig`: diffusers' `UNet2DModel` `config.json`, parsed and validated.
//!
//! Parsing is serde's: `config.json` deserialises (derived) into [`RawUNet2DConfig`], whose
//! fields keep what was written (absent, `null`, a value of the right type, or anything else);
//! one conversion then applies diffusers' defaults, reports each wrong or unsupported value as
//! [`Error::ModelConfig`] naming its key, and runs [`UNet2DConfig::validate`]. `UNet2DConfig`
//! implements `Deserialize` (that path) and `Serialize` (diffusers' key names and value forms).

use std::path::Path;

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A down block of the UNet (diffusers' `down_block_types` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum DownBlockType {
    /// `DownBlock2D`: ResNet blocks, then a downsampler.
    DownBlock2D,
    /// `AttnDownBlock2D`: ResNet blocks each followed by self-attention, then a downsampler.
    AttnDownBlock2D,
}

/// An up block of the UNet (diffusers' `up_block_types` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum UpBlockType {
    /// `UpBlock2D`: ResNet blocks over concatenated skips, then an upsampler.
    UpBlock2D,
    /// `AttnUpBlock2D`: as `UpBlock2D` with self-attention after each ResNet block.
    AttnUpBlock2D,
}

/// The middle block (diffusers' `mid_block_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    /// A strided 3x3 convolution down, nearest-neighbour + 3x3 convolution up.
    #[default]
    Conv,
    /// A ResNet block with 2x2 average pooling / nearest upsampling inside (attention blocks only).
    Resnet,
}

/// How the time embedding enters a ResNet block (diffusers' `resnet_time_scale_shift`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
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
    /// Input image channels (at most [`UNet2DConfig::MAX_CHANNELS`]).
    pub in_channels: usize,
    /// Output channels (at most [`UNet2DConfig::MAX_CHANNELS`]).
    pub out_channels: usize,
    /// `center_input_sample`.
    pub center_input_sample: InputCentering,
    /// `time_embedding_dim` (default `4 * block_out_channels[0]`; at most
    /// [`UNet2DConfig::MAX_CHANNELS`]).
    pub time_embedding_dim: Option<usize>,
    /// `freq_shift` (the sinusoid's `downscale_freq_shift`; finite, and not
    /// `block_out_channels[0] / 2`, where the frequencies divide by zero).
    pub freq_shift: f64,
    /// `flip_sin_to_cos`.
    pub flip_sin_to_cos: SinCosOrder,
    /// `down_block_types`.
    pub down_block_types: Vec<DownBlockType>,
    /// `mid_block_type` (`None`: no middle block).
    pub mid_block_type: Option<MidBlockType>,
    /// `up_block_types`.
    pub up_block_types: Vec<UpBlockType>,
    /// `block_out_channels`, one per down block (at most [`UNet2DConfig::MAX_BLOCKS`] blocks of
    /// at most [`UNet2DConfig::MAX_CHANNELS`] channels).
    pub block_out_channels: Vec<usize>,
    /// `layers_per_block` (up blocks have one more; at most
    /// [`UNet2DConfig::MAX_LAYERS_PER_BLOCK`]).
    pub layers_per_block: usize,
    /// `mid_block_scale_factor` (the middle block's output scale; finite and non-zero).
    pub mid_block_scale_factor: f64,
    /// `downsample_padding`: 0 (pad right/bottom by one, as the original DDPM) or 1 (diffusers'
    /// default); larger paddings change the feature-map sizes and are refused.
    pub downsample_padding: usize,
    /// `downsample_type` (attention down blocks only, as diffusers).
    pub downsample_type: Resample,
    /// `upsample_type` (attention up blocks only, as diffusers).
    pub upsample_type: Resample,
    /// `attention_head_dim` (`None`: one head over all channels; at most
    /// [`UNet2DConfig::MAX_CHANNELS`]).
    pub attention_head_dim: Option<usize>,
    /// `norm_num_groups`.
    pub norm_num_groups: usize,
    /// `attn_norm_num_groups` (the middle block's attention GroupNorm).
    pub attn_norm_num_groups: Option<usize>,
    /// `norm_eps` (finite and positive).
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

/// One `config.json` value as written: absent, `null`, a value of the expected type, or
/// anything else (kept, so that the conversion can name the key and show the value).
/// Deserialising a `Field` never fails.
#[derive(Clone, Debug, Default, PartialEq)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
    Invalid(Value),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Field::Null,
            v => match T::deserialize(&v) {
                Ok(t) => Field::Value(t),
                Err(_) => Field::Invalid(v),
            },
        })
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Field::Absent | Field::Null => s.serialize_none(),
            Field::Value(t) => t.serialize(s),
            Field::Invalid(v) => v.serialize(s),
        }
    }
}

impl<T> Field<T> {
    fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }

    /// The value, or `default` when absent; `null` and values of another type are errors naming
    /// `key` (`expected` says what was wanted).
    fn or(self, key: &str, default: T, expected: &str) -> Result<T> {
        match self {
            Field::Absent => Ok(default),
            Field::Value(t) => Ok(t),
            Field::Null => field_err(key, format!("expected {expected}, got null")),
            Field::Invalid(v) => field_err(key, format!("expected {expected}, got {v}")),
        }
    }

    /// As [`Field::or`], with `null` meaning `None`.
    fn or_null(self, key: &str, default: Option<T>, expected: &str) -> Result<Option<T>> {
        match self {
            Field::Absent => Ok(default),
            Field::Null => Ok(None),
            Field::Value(t) => Ok(Some(t)),
            Field::Invalid(v) => field_err(key, format!("expected {expected}, got {v}")),
        }
    }

    /// `null` read as absent (options whose `null` means the default).
    fn null_as_absent(self) -> Field<T> {
        match self {
            Field::Null => Field::Absent,
            f => f,
        }
    }

    /// A choice from a fixed set: absent gives `default` (where there is one); `null` or
    /// anything that is not one of the choices is "not supported", listing `supported`.
    fn choice(self, key: &str, default: Option<T>, supported: &str) -> Result<T> {
        match (self, default) {
            (Field::Value(t), _) => Ok(t),
            (Field::Absent, Some(d)) => Ok(d),
            (Field::Absent | Field::Null, _) => unsupported(key, &Value::Null, supported),
            (Field::Invalid(v), _) => unsupported(key, &v, supported),
        }
    }
}

/// `sample_size`: one number (square) or `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
enum SampleSize {
    Square(usize),
    Rect([usize; 2]),
}

const INT: &str = "a non-negative integer";
const NUMBER: &str = "a number";
const BOOL: &str = "true or false";
const DOWN_BLOCKS: &str = "\"DownBlock2D\", \"AttnDownBlock2D\"";
const UP_BLOCKS: &str = "\"UpBlock2D\", \"AttnUpBlock2D\"";
const MID_BLOCKS: &str = "\"UNetMidBlock2D\", null";
const RESAMPLES: &str = "\"conv\", \"resnet\"";
const SHIFTS: &str = "\"default\", \"scale_shift\"";

/// `config.json` as written (serde derive), before defaults and validation. Keys not listed
/// (`dropout`, `_diffusers_version`, ...) are ignored.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct RawUNet2DConfig {
    #[serde(rename = "_class_name", skip_serializing_if = "Field::is_absent")]
    class_name: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    sample_size: Field<SampleSize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    in_channels: Field<usize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    out_channels: Field<usize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    center_input_sample: Field<bool>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    time_embedding_type: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    time_embedding_dim: Field<usize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    freq_shift: Field<f64>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    flip_sin_to_cos: Field<bool>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    down_block_types: Field<Vec<Field<DownBlockType>>>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    mid_block_type: Field<MidBlockType>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    up_block_types: Field<Vec<Field<UpBlockType>>>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    block_out_channels: Field<Vec<Field<usize>>>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    layers_per_block: Field<usize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    mid_block_scale_factor: Field<f64>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    downsample_padding: Field<usize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    downsample_type: Field<Resample>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    upsample_type: Field<Resample>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    act_fn: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    attention_head_dim: Field<usize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    norm_num_groups: Field<usize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    attn_norm_num_groups: Field<usize>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    norm_eps: Field<f64>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    resnet_time_scale_shift: Field<TimeScaleShift>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    add_attention: Field<bool>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    class_embed_type: Field<Value>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    num_class_embeds: Field<Value>,
}

/// A string option with one supported behaviour (`allowed[0]` and its aliases); absent or null
/// means that behaviour.
fn only(f: Field<String>, key: &str, allowed: &[&str]) -> Result<()> {
    match f {
        Field::Absent | Field::Null => Ok(()),
        Field::Value(s) if allowed.contains(&s.as_str()) => Ok(()),
        Field::Value(s) => unsupported(key, &Value::String(s), &format!("\"{}\"", allowed[0])),
        Field::Invalid(v) => field_err(key, format!("expected a string, got {v}")),
    }
}

/// An option this crate does not implement: only absent or null is accepted.
fn must_be_null(f: Field<Value>, key: &str, what: &str) -> Result<()> {
    match f {
        Field::Absent | Field::Null => Ok(()),
        Field::Value(v) | Field::Invalid(v) => {
            field_err(key, format!("{v}: {what} is not supported by diffusion_samplers::unet (use null)"))
        }
    }
}

/// A list whose entries are read with `entry` (absent: `default`).
fn list<T, U>(
    f: Field<Vec<Field<T>>>,
    key: &str,
    default: Vec<U>,
    entry: impl Fn(Field<T>) -> Result<U>,
) -> Result<Vec<U>> {
    match f {
        Field::Absent => Ok(default),
        Field::Value(l) => l.into_iter().map(entry).collect(),
        Field::Null => field_err(key, "expected a list, got null"),
        Field::Invalid(v) => field_err(key, format!("expected a list, got {v}")),
    }
}

impl RawUNet2DConfig {
    /// From the config's JSON object (an object only: serde would also read a struct from a
    /// list, by position; repeated keys keep the last value, as Python's `json` does).
    fn from_map(map: Map<String, Value>) -> Result<RawUNet2DConfig> {
        RawUNet2DConfig::deserialize(Value::Object(map))
            .map_err(|e| Error::ModelConfig { field: "<file>".into(), reason: format!("not a config object: {e}") })
    }

    /// diffusers' defaults for absent keys, typed errors naming the key for everything else,
    /// then [`UNet2DConfig::validate`].
    fn into_config(self) -> Result<UNet2DConfig> {
        let d = UNet2DConfig::default();
        match self.class_name {
            Field::Absent => {}
            Field::Value(s) if s == "UNet2DModel" => {}
            Field::Value(s) => return unsupported("_class_name", &Value::String(s), "\"UNet2DModel\""),
            Field::Null => return unsupported("_class_name", &Value::Null, "\"UNet2DModel\""),
            Field::Invalid(v) => return unsupported("_class_name", &v, "\"UNet2DModel\""),
        }
        only(self.act_fn, "act_fn", &["silu", "swish"])?;
        only(self.time_embedding_type, "time_embedding_type", &["positional"])?;
        must_be_null(self.class_embed_type, "class_embed_type", "class conditioning")?;
        must_be_null(self.num_class_embeds, "num_class_embeds", "class conditioning")?;

        let sample_size =
            match self.sample_size.or_null("sample_size", None, "a non-negative integer or [height, width]")? {
                None => None,
                Some(SampleSize::Square(s)) => Some((s, s)),
                Some(SampleSize::Rect([h, w])) => Some((h, w)),
            };
        let flag = |f: Field<bool>, key: &str, default: bool| f.or(key, default, BOOL);
        let config = UNet2DConfig {
            sample_size,
            in_channels: self.in_channels.or("in_channels", d.in_channels, INT)?,
            out_channels: self.out_channels.or("out_channels", d.out_channels, INT)?,
            center_input_sample: if flag(self.center_input_sample, "center_input_sample", false)? {
                InputCentering::Center
            } else {
                InputCentering::None
            },
            time_embedding_dim: self.time_embedding_dim.or_null("time_embedding_dim", d.time_embedding_dim, INT)?,
            freq_shift: self.freq_shift.or("freq_shift", d.freq_shift, NUMBER)?,
            flip_sin_to_cos: if flag(self.flip_sin_to_cos, "flip_sin_to_cos", true)? {
                SinCosOrder::CosSin
            } else {
                SinCosOrder::SinCos
            },
            down_block_types: list(self.down_block_types, "down_block_types", d.down_block_types, |e| {
                e.choice("down_block_types", None, DOWN_BLOCKS)
            })?,
            mid_block_type: match self.mid_block_type {
                Field::Null => None,
                f => Some(f.choice("mid_block_type", d.mid_block_type, MID_BLOCKS)?),
            },
            up_block_types: list(self.up_block_types, "up_block_types", d.up_block_types, |e| {
                e.choice("up_block_types", None, UP_BLOCKS)
            })?,
            block_out_channels: list(self.block_out_channels, "block_out_channels", d.block_out_channels, |e| {
                e.or("block_out_channels", 0, INT)
            })?,
            layers_per_block: self.layers_per_block.or("layers_per_block", d.layers_per_block, INT)?,
            mid_block_scale_factor: self.mid_block_scale_factor.or(
                "mid_block_scale_factor",
                d.mid_block_scale_factor,
                NUMBER,
            )?,
            downsample_padding: self.downsample_padding.or("downsample_padding", d.downsample_padding, INT)?,
            downsample_type: self.downsample_type.null_as_absent().choice(
                "downsample_type",
                Some(d.downsample_type),
                RESAMPLES,
            )?,
            upsample_type: self.upsample_type.null_as_absent().choice(
                "upsample_type",
                Some(d.upsample_type),
                RESAMPLES,
            )?,
            attention_head_dim: self.attention_head_dim.or_null("attention_head_dim", d.attention_head_dim, INT)?,
            norm_num_groups: match self.norm_num_groups {
                Field::Null => {
                    return field_err("norm_num_groups", "null is not supported (give the GroupNorm group count)")
                }
                f => f.or("norm_num_groups", d.norm_num_groups, INT)?,
            },
            attn_norm_num_groups: self.attn_norm_num_groups.or_null("attn_norm_num_groups", None, INT)?,
            norm_eps: self.norm_eps.or("norm_eps", d.norm_eps, NUMBER)?,
            resnet_time_scale_shift: self.resnet_time_scale_shift.choice(
                "resnet_time_scale_shift",
                Some(d.resnet_time_scale_shift),
                SHIFTS,
            )?,
            add_attention: if flag(self.add_attention, "add_attention", true)? {
                MidAttention::On
            } else {
                MidAttention::Off
            },
        };
        config.validate()?;
        Ok(config)
    }
}

impl From<&UNet2DConfig> for RawUNet2DConfig {
    /// diffusers' key names and value forms (booleans for the two-way choices, `null` for `None`).
    fn from(c: &UNet2DConfig) -> Self {
        let opt = |o: Option<usize>| o.map_or(Field::Null, Field::Value);
        RawUNet2DConfig {
            class_name: Field::Value("UNet2DModel".into()),
            sample_size: match c.sample_size {
                None => Field::Null,
                Some((h, w)) if h == w => Field::Value(SampleSize::Square(h)),
                Some((h, w)) => Field::Value(SampleSize::Rect([h, w])),
            },
            in_channels: Field::Value(c.in_channels),
            out_channels: Field::Value(c.out_channels),
            center_input_sample: Field::Value(c.center_input_sample == InputCentering::Center),
            time_embedding_type: Field::Value("positional".into()),
            time_embedding_dim: opt(c.time_embedding_dim),
            freq_shift: Field::Value(c.freq_shift),
            flip_sin_to_cos: Field::Value(c.flip_sin_to_cos == SinCosOrder::CosSin),
            down_block_types: Field::Value(c.down_block_types.iter().map(|&b| Field::Value(b)).collect()),
            mid_block_type: c.mid_block_type.map_or(Field::Null, Field::Value),
            up_block_types: Field::Value(c.up_block_types.iter().map(|&b| Field::Value(b)).collect()),
            block_out_channels: Field::Value(c.block_out_channels.iter().map(|&b| Field::Value(b)).collect()),
            layers_per_block: Field::Value(c.layers_per_block),
            mid_block_scale_factor: Field::Value(c.mid_block_scale_factor),
            downsample_padding: Field::Value(c.downsample_padding),
            downsample_type: Field::Value(c.downsample_type),
            upsample_type: Field::Value(c.upsample_type),
            act_fn: Field::Value("silu".into()),
            attention_head_dim: opt(c.attention_head_dim),
            norm_num_groups: Field::Value(c.norm_num_groups),
            attn_norm_num_groups: opt(c.attn_norm_num_groups),
            norm_eps: Field::Value(c.norm_eps),
            resnet_time_scale_shift: Field::Value(c.resnet_time_scale_shift),
            add_attention: Field::Value(c.add_attention == MidAttention::On),
            class_embed_type: Field::Null,
            num_class_embeds: Field::Null,
        }
    }
}

impl<'de> Deserialize<'de> for UNet2DConfig {
    /// Reads diffusers' `config.json` form and validates it, as [`UNet2DConfig::from_json`]
    /// (whose [`Error`] becomes the deserialiser's error message).
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        RawUNet2DConfig::from_map(map).and_then(RawUNet2DConfig::into_config).map_err(serde::de::Error::custom)
    }
}

impl Serialize for UNet2DConfig {
    /// Writes diffusers' `config.json` form (which [`UNet2DConfig::from_json`] reads back).
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        RawUNet2DConfig::from(self).serialize(s)
    }
}

impl UNet2DConfig {
    /// Parse a diffusers `config.json` for `UNet2DModel`. Keys this crate does not need
    /// (`dropout`, `_diffusers_version`, ...) are ignored; options it does not implement
    /// (other block types, class conditioning, Fourier time embeddings, other activations),
    /// values of the wrong type and sizes over the documented limits (see
    /// [`UNet2DConfig::validate`]) are [`Error::ModelConfig`] naming the field.
    pub fn from_json(json: &str) -> Result<UNet2DConfig> {
        let map: Map<String, Value> = serde_json::from_str(json).map_err(|e| {
            let reason = match e.classify() {
                serde_json::error::Category::Data => format!("expected a JSON object (diffusers' config.json): {e}"),
                _ => format!("not valid JSON: {e}"),
            };
            Error::ModelConfig { field: "<file>".into(), reason }
        })?;
        RawUNet2DConfig::from_map(map)?.into_config()
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

    /// The most down (and up) blocks a config may have (`block_out_channels.len()`):
    /// [`crate::limits::MAX_UNET_BLOCKS`].
    pub const MAX_BLOCKS: usize = crate::limits::MAX_UNET_BLOCKS;
    /// The most ResNet layers per down block (`layers_per_block`):
    /// [`crate::limits::MAX_UNET_LAYERS_PER_BLOCK`].
    pub const MAX_LAYERS_PER_BLOCK: usize = crate::limits::MAX_UNET_LAYERS_PER_BLOCK;
    /// The most channels of any layer (`in_channels`, `out_channels`, each
    /// `block_out_channels` entry, `time_embedding_dim`, `attention_head_dim`):
    /// [`crate::limits::MAX_UNET_CHANNELS`].
    pub const MAX_CHANNELS: usize = crate::limits::MAX_UNET_CHANNELS;

    /// Check the fields are consistent (list lengths, channel counts divisible by the group
    /// count, positive sizes, finite scalars) and within the documented limits
    /// ([`UNet2DConfig::MAX_BLOCKS`], [`UNet2DConfig::MAX_LAYERS_PER_BLOCK`],
    /// [`UNet2DConfig::MAX_CHANNELS`], `downsample_padding` 0 or 1), so that no config makes the
    /// loader or a forward pass allocate more than its weights and activations need. Called by
    /// [`UNet2DConfig::from_json`] and by the model constructors before anything is allocated;
    /// errors are [`Error::ModelConfig`] naming the field (and the limit).
    pub fn validate(&self) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0 {
            return field_err("block_out_channels", "must list at least one channel count");
        }
        if n > Self::MAX_BLOCKS {
            return field_err(
                "block_out_channels",
                format!(
                    "{n} blocks is more than this crate supports (UNet2DConfig::MAX_BLOCKS = {})",
                    Self::MAX_BLOCKS
                ),
            );
        }
        let limit = |key: &str, v: usize, max: usize, name: &str| -> Result<()> {
            if v > max {
                return field_err(key, format!("{v} exceeds the limit of {max} (UNet2DConfig::{name})"));
            }
            Ok(())
        };
        limit("layers_per_block", self.layers_per_block, Self::MAX_LAYERS_PER_BLOCK, "MAX_LAYERS_PER_BLOCK")?;
        for (key, v) in [
            ("in_channels", Some(self.in_channels)),
            ("out_channels", Some(self.out_channels)),
            ("time_embedding_dim", self.time_embedding_dim),
            ("attention_head_dim", self.attention_head_dim),
        ] {
            limit(key, v.unwrap_or(0), Self::MAX_CHANNELS, "MAX_CHANNELS")?;
        }
        for &c in &self.block_out_channels {
            limit("block_out_channels", c, Self::MAX_CHANNELS, "MAX_CHANNELS")?;
        }
        if self.downsample_padding > 1 {
            return field_err(
                "downsample_padding",
                format!(
                    "{} is not supported: use 0 (pad right and bottom by one, as the original DDPM) or 1 \
                     (diffusers' default); larger paddings change the feature-map sizes",
                    self.downsample_padding
                ),
            );
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
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return field_err("norm_eps", format!("{} must be finite and positive", self.norm_eps));
        }
        if !self.mid_block_scale_factor.is_finite() || self.mid_block_scale_factor == 0.0 {
            return field_err(
                "mid_block_scale_factor",
                format!("{} must be finite and non-zero", self.mid_block_scale_factor),
            );
        }
        let half = (self.block_out_channels[0] / 2) as f64;
        if !self.freq_shift.is_finite() || (half > 0.0 && self.freq_shift == half) {
            return field_err(
                "freq_shift",
                format!(
                    "{} must be finite and differ from block_out_channels[0] / 2 = {half} (the sinusoid's \
                     frequencies divide by their difference)",
                    self.freq_shift
                ),
            );
        }
        Ok(())
    }
}
