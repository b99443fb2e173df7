//! The UNet's building blocks, each loaded from diffusers' tensor names: ResNet block, spatial
//! self-attention, down/up samplers, and the sinusoidal time embedding.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, Linear};

use super::config::{SinCosOrder, TimeScaleShift};
use super::fused::{self, AttnParams, ConvParams, NormParams, Skip};
use super::kernels::Act;
use super::weights::Weights;
use crate::error::{Error, Result};

/// The bias of a loaded layer (every layer here is loaded with one).
fn bias_of(b: Option<&Tensor>) -> Result<&Tensor> {
    b.ok_or_else(|| Error::Unsupported("UNet layer without a bias".into()))
}

/// A convolution's fused-kernel parameters: stride 1 and `pad` on every side unless changed.
fn conv_params(c: &Conv2d, stride: usize, pad: usize, pad_end: usize, upsample: bool) -> Result<ConvParams<'_>> {
    Ok(ConvParams { weight: c.weight(), bias: bias_of(c.bias())?, stride, pad, pad_end, upsample })
}

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

/// A GroupNorm layer: candle-nn's for the composed path, its parameters for the fused one.
pub(crate) struct Norm {
    inner: GroupNorm,
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl Norm {
    /// The composed path: candle-nn's GroupNorm, then `act`; with `device` (and the `cuda`
    /// feature), the fused CUDA kernel instead where it applies.
    pub(crate) fn forward(&self, x: &Tensor, act: Act, device: bool) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if device && super::cuda::usable(x) && x.dtype() == self.weight.dtype() {
            return super::cuda::group_norm(x, &self.weight, &self.bias, self.groups, self.eps, act);
        }
        let _ = device;
        let y = self.inner.forward(x)?;
        Ok(match act {
            Act::None => y,
            Act::Silu => candle_nn::ops::silu(&y)?,
        })
    }

    pub(crate) fn params(&self) -> NormParams<'_> {
        NormParams { weight: &self.weight, bias: &self.bias, groups: self.groups, eps: self.eps }
    }

    /// The fused path over the channel concatenation of `parts`.
    pub(crate) fn forward_fused(&self, parts: &[&Tensor], act: Act) -> Result<Tensor> {
        fused::group_norm(parts, &self.params(), act)
    }
}

pub(crate) fn group_norm(w: &Weights, name: &str, groups: usize, channels: usize, eps: f64) -> Result<Norm> {
    let weight = w.get(&format!("{name}.weight"), channels)?;
    let bias = w.get(&format!("{name}.bias"), channels)?;
    let inner = GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?;
    Ok(Norm { inner, weight, bias, groups, eps })
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
    norm1: Norm,
    conv1: Conv2d,
    time_emb_proj: Linear,
    norm2: Norm,
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

    /// The composed path (`device`: device kernels allowed, see [`Norm::forward`]). `temb_act`
    /// is `silu(time embedding)`, shape `[1, temb]`.
    pub(crate) fn forward(&self, x: &Tensor, temb_act: &Tensor, device: bool) -> Result<Tensor> {
        let h = self.norm1.forward(x, Act::Silu, device)?;
        let (x, h) = (self.resample.apply(x)?, self.resample.apply(&h)?);
        let h = self.conv1.forward(&h)?;
        let t = self.time_emb_proj.forward(temb_act)?.unsqueeze(2)?.unsqueeze(3)?;
        let h = match self.shift {
            TimeScaleShift::Default => self.norm2.forward(&h.broadcast_add(&t)?, Act::None, device)?,
            TimeScaleShift::ScaleShift => {
                let c = t.dim(1)? / 2;
                let (scale, shift) = (t.narrow(1, 0, c)?, t.narrow(1, c, c)?);
                self.norm2.forward(&h, Act::None, device)?.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(&shift)?
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

    /// The fused path (f32 on the CPU) on the channel concatenation of `parts` (the block input
    /// and, in up blocks, its skip connection: no concatenated copy is made). Four kernels:
    /// GroupNorm + SiLU; conv1 with the time embedding folded into its bias; GroupNorm (with the
    /// scale-shift folded into its affine) + SiLU; conv2 with its bias, the shortcut (or the
    /// identity residual) and the output scale folded in.
    pub(crate) fn forward_fused(&self, parts: &[&Tensor], temb_act: &Tensor) -> Result<Tensor> {
        let h = self.norm1.forward_fused(parts, Act::Silu)?;
        // resampling ResNet blocks (attention blocks with `resnet` resamplers): resample the
        // activations and the concatenated input with candle, then continue fused
        let resampled: Tensor;
        let (h_in, x_parts): (Tensor, Vec<&Tensor>) = match self.resample {
            ResnetResample::None => (h, parts.to_vec()),
            r => {
                let x = if parts.len() == 1 { parts[0].clone() } else { Tensor::cat(parts, 1)? };
                resampled = r.apply(&x)?;
                (r.apply(&h)?, vec![&resampled])
            }
        };
        let t = self.time_emb_proj.forward(temb_act)?.flatten_all()?; // [proj_out]
        let c_out = self.conv1.weight().dim(0)?;
        let conv1_bias = bias_of(self.conv1.bias())?;
        let norm2 = self.norm2.params();
        let (h, gamma, beta);
        match self.shift {
            TimeScaleShift::Default => {
                let bias = (conv1_bias + &t)?;
                let p = ConvParams { bias: &bias, ..conv_params(&self.conv1, 1, 1, 1, false)? };
                h = fused::conv2d(&[&h_in], &p, Skip::None, 1.0)?;
                (gamma, beta) = (norm2.weight.clone(), norm2.bias.clone());
            }
            TimeScaleShift::ScaleShift => {
                h = fused::conv2d(&[&h_in], &conv_params(&self.conv1, 1, 1, 1, false)?, Skip::None, 1.0)?;
                // norm(h) (1 + scale) + shift = GroupNorm with affine gamma (1 + scale), beta (1 + scale) + shift
                let scale1 = (t.narrow(0, 0, c_out)? + 1.0)?;
                let shift = t.narrow(0, c_out, c_out)?;
                gamma = (norm2.weight * &scale1)?;
                beta = ((norm2.bias * &scale1)? + shift)?;
            }
        }
        let p2 = NormParams { weight: &gamma, bias: &beta, ..norm2 };
        let h = fused::group_norm(&[&h], &p2, Act::Silu)?;
        let skip = match &self.conv_shortcut {
            Some(sc) => Skip::Shortcut { parts: &x_parts, weight: sc.weight(), bias: bias_of(sc.bias())? },
            None => match x_parts.as_slice() {
                [x] => Skip::Identity(x),
                _ => return Err(Error::Unsupported("ResNet block: concatenated input without a shortcut".into())),
            },
        };
        fused::conv2d(&[&h], &conv_params(&self.conv2, 1, 1, 1, false)?, skip, self.output_scale_factor)
    }
}

/// diffusers' `Attention` on a feature map (GroupNorm, multi-head self-attention over the
/// `H*W` positions, output projection, residual, rescale). Legacy checkpoints' names
/// (`query`, `key`, `value`, `proj_attn`) are accepted as diffusers does.
pub(crate) struct SpatialAttention {
    group_norm: Option<Norm>,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    /// `to_q`, `to_k`, `to_v` stacked for the fused path: `[3 inner, C]` and `[3 inner]`.
    w_qkv: Tensor,
    b_qkv: Tensor,
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
        let to_q = linear(w, &n("to_q"), Some(&n("query")), channels, inner)?;
        let to_k = linear(w, &n("to_k"), Some(&n("key")), channels, inner)?;
        let to_v = linear(w, &n("to_v"), Some(&n("value")), channels, inner)?;
        let w_qkv = Tensor::cat(&[to_q.weight(), to_k.weight(), to_v.weight()], 0)?;
        let b_qkv = Tensor::cat(&[bias_of(to_q.bias())?, bias_of(to_k.bias())?, bias_of(to_v.bias())?], 0)?;
        Ok(SpatialAttention {
            group_norm: match groups {
                Some(g) => Some(group_norm(w, &n("group_norm"), g, channels, eps)?),
                None => None,
            },
            to_q,
            to_k,
            to_v,
            to_out: linear(w, &n("to_out.0"), Some(&n("proj_attn")), inner, channels)?,
            w_qkv,
            b_qkv,
            heads,
            head_dim,
            rescale_output_factor,
        })
    }

    /// The composed path (`device`: device kernels allowed, see [`Norm::forward`]).
    pub(crate) fn forward(&self, x: &Tensor, device: bool) -> Result<Tensor> {
        let (b, c, hgt, wid) = x.dims4()?;
        let l = hgt * wid;
        let h = match &self.group_norm {
            Some(g) => g.forward(x, Act::None, device)?,
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

    /// The fused path (f32 on the CPU): the GroupNorm kernel, then one attention kernel (QKV
    /// projection, softmax(q k^T / sqrt(d)) v per head, output projection, residual, rescale)
    /// working in the feature map's own layout.
    pub(crate) fn forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        let xn = match &self.group_norm {
            Some(g) => g.forward_fused(&[x], Act::None)?,
            None => x.clone(),
        };
        let p = AttnParams {
            w_qkv: &self.w_qkv,
            b_qkv: &self.b_qkv,
            w_o: self.to_out.weight(),
            b_o: bias_of(self.to_out.bias())?,
            heads: self.heads,
            head_dim: self.head_dim,
            rescale: self.rescale_output_factor,
        };
        fused::attention(x, &xn, &p)
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

    /// The fused path: the right/bottom padding is part of the convolution's geometry.
    pub(crate) fn forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        let pad = self.conv.config().padding;
        let pad_end = if self.pad_right_bottom { 1 } else { pad };
        fused::conv2d(&[x], &conv_params(&self.conv, 2, pad, pad_end, false)?, Skip::None, 1.0)
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

    /// The fused path: the nearest-neighbour upsampling happens inside the convolution's
    /// column gather (the 4x larger upsampled map is never stored).
    pub(crate) fn forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        fused::conv2d(&[x], &conv_params(&self.conv, 1, 1, 1, true)?, Skip::None, 1.0)
    }
}
