//! The UNet's building blocks, each loaded from diffusers' tensor names: ResNet block, spatial
//! self-attention, down/up samplers, and the sinusoidal time embedding.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, Linear};

use super::config::{SinCosOrder, TimeScaleShift};
use super::weights::Weights;
use crate::error::Result;

pub(crate) fn conv2d(
    w: &Weights,
    name: &str,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
) -> Result<Conv2d> {
    let weight = w.get(&format!("{name}.weight"), (c_out, c_in, k, k))?;
    let bias = w.get(&format!("{name}.bias"), c_out)?;
    let cfg = Conv2dConfig { padding, stride, dilation: 1, groups: 1, cudnn_fwd_algo: None };
    Ok(Conv2d::new(weight, Some(bias), cfg))
}

/// A linear layer; `alt` is a legacy name tried when `name` is absent.
pub(crate) fn linear(w: &Weights, name: &str, alt: Option<&str>, d_in: usize, d_out: usize) -> Result<Linear> {
    let name = match alt {
        Some(a) if !w.contains(&format!("{name}.weight")) && w.contains(&format!("{a}.weight")) => a,
        _ => name,
    };
    let weight = w.get(&format!("{name}.weight"), (d_out, d_in))?;
    let bias = w.get(&format!("{name}.bias"), d_out)?;
    Ok(Linear::new(weight, Some(bias)))
}

pub(crate) fn group_norm(w: &Weights, name: &str, groups: usize, channels: usize, eps: f64) -> Result<GroupNorm> {
    let weight = w.get(&format!("{name}.weight"), channels)?;
    let bias = w.get(&format!("{name}.bias"), channels)?;
    Ok(GroupNorm::new(weight, bias, channels, groups, eps)?)
}

/// The sinusoidal timestep embedding of diffusers' `Timesteps` (DDPM's `get_timestep_embedding`),
/// computed in f64 on the host for one timestep: `[1, dim]`.
pub(crate) fn timestep_embedding(
    t: f64,
    dim: usize,
    order: SinCosOrder,
    freq_shift: f64,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let mut emb = vec![0f64; dim];
    for i in 0..half {
        let freq = (-(10000f64).ln() * i as f64 / (half as f64 - freq_shift)).exp();
        let arg = t * freq;
        let (sin_at, cos_at) = match order {
            SinCosOrder::SinCos => (i, half + i),
            SinCosOrder::CosSin => (half + i, i),
        };
        emb[sin_at] = arg.sin();
        emb[cos_at] = arg.cos();
    }
    Ok(Tensor::from_vec(emb, (1, dim), device)?.to_dtype(dtype)?)
}

/// 2x resampling inside a ResNet block (`downsample_type` / `upsample_type` = "resnet").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResnetResample {
    None,
    Up,
    Down,
}

impl ResnetResample {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            ResnetResample::None => x.clone(),
            ResnetResample::Up => {
                let (_, _, h, w) = x.dims4()?;
                x.upsample_nearest2d(2 * h, 2 * w)?
            }
            ResnetResample::Down => x.avg_pool2d(2)?,
        })
    }
}

/// diffusers' `ResnetBlock2D` (pre-norm, SiLU, time embedding added or scale-shifted).
pub(crate) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    shift: TimeScaleShift,
    output_scale_factor: f64,
    resample: ResnetResample,
}

/// What every ResNet block of a model shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResnetSpec {
    pub temb: usize,
    pub groups: usize,
    pub eps: f64,
    pub shift: TimeScaleShift,
}

impl ResnetBlock {
    pub(crate) fn load(
        w: &Weights,
        name: &str,
        c_in: usize,
        c_out: usize,
        spec: ResnetSpec,
        output_scale_factor: f64,
        resample: ResnetResample,
    ) -> Result<ResnetBlock> {
        let proj_out = match spec.shift {
            TimeScaleShift::Default => c_out,
            TimeScaleShift::ScaleShift => 2 * c_out,
        };
        Ok(ResnetBlock {
            norm1: group_norm(w, &format!("{name}.norm1"), spec.groups, c_in, spec.eps)?,
            conv1: conv2d(w, &format!("{name}.conv1"), c_in, c_out, 3, 1, 1)?,
            time_emb_proj: linear(w, &format!("{name}.time_emb_proj"), None, spec.temb, proj_out)?,
            norm2: group_norm(w, &format!("{name}.norm2"), spec.groups, c_out, spec.eps)?,
            conv2: conv2d(w, &format!("{name}.conv2"), c_out, c_out, 3, 1, 1)?,
            conv_shortcut: if c_in != c_out {
                Some(conv2d(w, &format!("{name}.conv_shortcut"), c_in, c_out, 1, 1, 0)?)
            } else {
                None
            },
            shift: spec.shift,
            output_scale_factor,
            resample,
        })
    }

    /// `temb_act` is `silu(time embedding)`, shape `[1, temb]`.
    pub(crate) fn forward(&self, x: &Tensor, temb_act: &Tensor) -> Result<Tensor> {
        let h = candle_nn::ops::silu(&self.norm1.forward(x)?)?;
        let (x, h) = (self.resample.apply(x)?, self.resample.apply(&h)?);
        let h = self.conv1.forward(&h)?;
        let t = self.time_emb_proj.forward(temb_act)?.unsqueeze(2)?.unsqueeze(3)?;
        let h = match self.shift {
            TimeScaleShift::Default => self.norm2.forward(&h.broadcast_add(&t)?)?,
            TimeScaleShift::ScaleShift => {
                let c = t.dim(1)? / 2;
                let (scale, shift) = (t.narrow(1, 0, c)?, t.narrow(1, c, c)?);
                self.norm2.forward(&h)?.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(&shift)?
            }
        };
        let h = self.conv2.forward(&candle_nn::ops::silu(&h)?)?;
        let x = match &self.conv_shortcut {
            Some(c) => c.forward(&x)?,
            None => x,
        };
        let out = (x + h)?;
        Ok(if self.output_scale_factor == 1.0 { out } else { (out / self.output_scale_factor)? })
    }
}

/// diffusers' `Attention` on a feature map (GroupNorm, multi-head self-attention over the
/// `H*W` positions, output projection, residual, rescale). Legacy checkpoints' names
/// (`query`, `key`, `value`, `proj_attn`) are accepted as diffusers does.
pub(crate) struct SpatialAttention {
    group_norm: Option<GroupNorm>,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    head_dim: usize,
    rescale_output_factor: f64,
}

impl SpatialAttention {
    pub(crate) fn load(
        w: &Weights,
        name: &str,
        channels: usize,
        head_dim: usize,
        groups: Option<usize>,
        eps: f64,
        rescale_output_factor: f64,
    ) -> Result<SpatialAttention> {
        let heads = channels / head_dim;
        if heads == 0 {
            return Err(crate::Error::ModelConfig {
                field: "attention_head_dim".into(),
                reason: format!("{head_dim} exceeds the {channels} channels of attention block `{name}`"),
            });
        }
        let inner = heads * head_dim;
        let n = |s: &str| format!("{name}.{s}");
        Ok(SpatialAttention {
            group_norm: match groups {
                Some(g) => Some(group_norm(w, &n("group_norm"), g, channels, eps)?),
                None => None,
            },
            to_q: linear(w, &n("to_q"), Some(&n("query")), channels, inner)?,
            to_k: linear(w, &n("to_k"), Some(&n("key")), channels, inner)?,
            to_v: linear(w, &n("to_v"), Some(&n("value")), channels, inner)?,
            to_out: linear(w, &n("to_out.0"), Some(&n("proj_attn")), inner, channels)?,
            heads,
            head_dim,
            rescale_output_factor,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, hgt, wid) = x.dims4()?;
        let l = hgt * wid;
        let h = match &self.group_norm {
            Some(g) => g.forward(x)?,
            None => x.clone(),
        };
        let h = h.reshape((b, c, l))?.transpose(1, 2)?.contiguous()?; // [b, l, c]
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, l, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let q = split(self.to_q.forward(&h)?)?;
        let k = split(self.to_k.forward(&h)?)?;
        let v = split(self.to_v.forward(&h)?)?;
        let dtype = q.dtype();
        // softmax in f32 at least (diffusers' upcast_softmax)
        let work = if matches!(dtype, DType::F16 | DType::BF16) { DType::F32 } else { dtype };
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.to_dtype(work)?.matmul(&k.to_dtype(work)?.t()?)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let o = probs.matmul(&v)?; // [b, heads, l, d]
        let o = o.transpose(1, 2)?.reshape((b, l, self.heads * self.head_dim))?;
        let o = self.to_out.forward(&o)?; // [b, l, c]
        let o = o.transpose(1, 2)?.reshape((b, c, hgt, wid))?;
        let out = (o + x)?;
        Ok(if self.rescale_output_factor == 1.0 { out } else { (out / self.rescale_output_factor)? })
    }
}

/// diffusers' `Downsample2D` with a convolution (`name="op"`): stride 2, and with
/// `padding = 0` a one-pixel zero pad on the right and bottom first.
pub(crate) struct ConvDownsample {
    conv: Conv2d,
    pad_right_bottom: bool,
}

impl ConvDownsample {
    pub(crate) fn load(w: &Weights, name: &str, channels: usize, padding: usize) -> Result<ConvDownsample> {
        Ok(ConvDownsample { conv: conv2d(w, name, channels, channels, 3, 2, padding)?, pad_right_bottom: padding == 0 })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if self.pad_right_bottom {
            x.pad_with_zeros(D::Minus1, 0, 1)?.pad_with_zeros(D::Minus2, 0, 1)?
        } else {
            x.clone()
        };
        Ok(self.conv.forward(&x)?)
    }
}

/// diffusers' `Upsample2D` with a convolution: nearest 2x, then a 3x3 convolution.
pub(crate) struct ConvUpsample {
    conv: Conv2d,
}

impl ConvUpsample {
    pub(crate) fn load(w: &Weights, name: &str, channels: usize) -> Result<ConvUpsample> {
        Ok(ConvUpsample { conv: conv2d(w, name, channels, channels, 3, 1, 1)? })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        Ok(self.conv.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)?)
    }
}
