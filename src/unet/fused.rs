//! Tensor-level entry points of the fused CPU kernels in [`super::kernels`]: they take candle
//! tensors (f32 on the CPU; made contiguous if they are not), run one kernel and return a new
//! tensor. The layers call them on the fast path ([`usable`]); everything else (other dtypes,
//! other devices) takes the layers' composed candle path, which the tests use as the reference.

use candle_core::{Device, Layout, Storage, Tensor};

use super::kernels::{self, Act, ConvGeom, Part};
use crate::error::{Error, Result};

/// Whether the fused CPU kernels apply to a tensor: f32 on the CPU.
pub(crate) fn usable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

/// Read access to the f32 data of contiguous CPU tensors.
struct Slices<'a> {
    guards: Vec<(candle_core::StorageRef<'a>, &'a Layout)>,
}

impl<'a> Slices<'a> {
    fn new(ts: &[&'a Tensor]) -> Slices<'a> {
        Slices { guards: ts.iter().map(|t| t.storage_and_layout()).collect() }
    }

    fn get(&self, i: usize) -> Result<&[f32]> {
        let (storage, layout) = &self.guards[i];
        match (&**storage, layout.contiguous_offsets()) {
            (Storage::Cpu(s), Some((a, b))) => Ok(&s.as_slice::<f32>()?[a..b]),
            _ => Err(Error::Unsupported("fused UNet kernel: expected a contiguous f32 CPU tensor".into())),
        }
    }
}

/// Dims `[B, C, H, W]` of a 4-D tensor.
fn dims4(x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    Ok(x.dims4()?)
}

/// The channel concatenation of `parts` (each `[B, C_i, H, W]`, same B, H, W): contiguous
/// copies where needed, and the common (B, H, W).
fn parts_of(parts: &[&Tensor]) -> Result<(Vec<Tensor>, usize, usize, usize)> {
    let first = parts.first().ok_or_else(|| Error::Unsupported("fused UNet kernel: no input".into()))?;
    let (b, _, h, w) = dims4(first)?;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let (pb, _, ph, pw) = dims4(p)?;
        if (pb, ph, pw) != (b, h, w) || !usable(p) {
            return Err(Error::Unsupported(format!(
                "fused UNet kernel: inputs {:?} and {:?} cannot be concatenated on channels",
                first.dims(),
                p.dims()
            )));
        }
        out.push(p.contiguous()?);
    }
    Ok((out, b, h, w))
}

fn part_views<'a>(tensors: &[Tensor], s: &'a Slices<'_>, offset: usize) -> Result<Vec<Part<'a>>> {
    (0..tensors.len()).map(|i| Ok(Part { data: s.get(offset + i)?, channels: tensors[i].dim(1)? })).collect()
}

/// GroupNorm parameters (per-channel affine `weight`, `bias`: `[C]`).
pub(crate) struct NormParams<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
    pub groups: usize,
    pub eps: f64,
}

/// GroupNorm (+ `act`) of the channel concatenation of `parts`: `[B, sum C_i, H, W]`.
pub(crate) fn group_norm(parts: &[&Tensor], p: &NormParams<'_>, act: Act) -> Result<Tensor> {
    let (xs, b, h, w) = parts_of(parts)?;
    let c: usize = xs.iter().map(|t| t.dim(1)).sum::<candle_core::Result<usize>>()?;
    if p.groups == 0 || c % p.groups != 0 || p.weight.elem_count() != c || p.bias.elem_count() != c {
        return Err(Error::Unsupported(format!("GroupNorm of {c} channels in {} groups", p.groups)));
    }
    let (gw, gb) = (p.weight.contiguous()?, p.bias.contiguous()?);
    let mut refs: Vec<&Tensor> = xs.iter().collect();
    refs.push(&gw);
    refs.push(&gb);
    let s = Slices::new(&refs);
    let views = part_views(&xs, &s, 0)?;
    let mut out = Vec::with_capacity(b * c * h * w);
    kernels::group_norm(
        &views,
        b,
        h * w,
        p.groups,
        s.get(xs.len())?,
        s.get(xs.len() + 1)?,
        p.eps as f32,
        act,
        &mut out.spare_capacity_mut()[..b * c * h * w],
    );
    // SAFETY: the kernel wrote all b c h w elements.
    unsafe { out.set_len(b * c * h * w) };
    Ok(Tensor::from_vec(out, (b, c, h, w), &Device::Cpu)?)
}

/// A convolution's weights: `weight` `[c_out, c_in, k, k]`, `bias` `[c_out]`.
pub(crate) struct ConvParams<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
    pub stride: usize,
    pub pad: usize,
    pub pad_end: usize,
    pub upsample: bool,
}

/// What a convolution adds to its output.
pub(crate) enum Skip<'a> {
    None,
    /// `+ r` (same shape as the output).
    Identity(&'a Tensor),
    /// `+ conv1x1(cat(parts))` with `weight` `[c_out, C, 1, 1]` and `bias` `[c_out]`.
    Shortcut {
        parts: &'a [&'a Tensor],
        weight: &'a Tensor,
        bias: &'a Tensor,
    },
}

/// `(conv(cat(parts)) + skip) / out_scale`, `[B, c_out, H_out, W_out]`.
pub(crate) fn conv2d(parts: &[&Tensor], p: &ConvParams<'_>, skip: Skip<'_>, out_scale: f64) -> Result<Tensor> {
    let (xs, b, h, w) = parts_of(parts)?;
    let c_in: usize = xs.iter().map(|t| t.dim(1)).sum::<candle_core::Result<usize>>()?;
    let (c_out, wc, kh, kw) = p.weight.dims4()?;
    let geom = ConvGeom::new(kh, p.stride, p.pad, p.pad_end, p.upsample, h, w);
    let Some(geom) = geom.filter(|_| wc == c_in && kh == kw && p.bias.elem_count() == c_out) else {
        return Err(Error::Unsupported(format!(
            "convolution with weight {:?} does not apply to an input of {c_in} channels, {h}x{w}",
            p.weight.dims()
        )));
    };
    let (weight, bias) = (p.weight.contiguous()?, p.bias.contiguous()?);
    let mut owned: Vec<Tensor> = xs.clone();
    owned.push(weight);
    owned.push(bias);
    let n_main = owned.len();
    match &skip {
        Skip::None => {}
        Skip::Identity(r) => {
            if r.dims() != [b, c_out, geom.h_out, geom.w_out] || !usable(r) {
                return Err(Error::Unsupported(format!("residual of shape {:?}", r.dims())));
            }
            owned.push(r.contiguous()?);
        }
        Skip::Shortcut { parts, weight, bias } => {
            let (sx, sb, sh, sw) = parts_of(parts)?;
            let c_sc: usize = sx.iter().map(|t| t.dim(1)).sum::<candle_core::Result<usize>>()?;
            if (sb, sh, sw) != (b, geom.h_out, geom.w_out)
                || weight.dims() != [c_out, c_sc, 1, 1]
                || bias.elem_count() != c_out
            {
                return Err(Error::Unsupported(format!("shortcut with weight {:?}", weight.dims())));
            }
            owned.extend(sx);
            owned.push(weight.contiguous()?);
            owned.push(bias.contiguous()?);
        }
    }
    let refs: Vec<&Tensor> = owned.iter().collect();
    let s = Slices::new(&refs);
    let views = part_views(&owned[..xs.len()], &s, 0)?;
    let sc_views;
    let residual = match &skip {
        Skip::None => kernels::Residual::None,
        Skip::Identity(_) => kernels::Residual::Identity(s.get(n_main)?),
        Skip::Shortcut { .. } => {
            let n_sc = owned.len() - n_main - 2;
            sc_views = part_views(&owned[n_main..n_main + n_sc], &s, n_main)?;
            kernels::Residual::Shortcut {
                parts: &sc_views,
                weight: s.get(n_main + n_sc)?,
                bias: s.get(n_main + n_sc + 1)?,
            }
        }
    };
    let n = b * c_out * geom.h_out * geom.w_out;
    let mut out = Vec::with_capacity(n);
    kernels::conv2d(
        &views,
        b,
        geom,
        s.get(xs.len())?,
        s.get(xs.len() + 1)?,
        c_out,
        residual,
        out_scale as f32,
        &mut out.spare_capacity_mut()[..n],
    );
    // SAFETY: the kernel wrote all n elements.
    unsafe { out.set_len(n) };
    Ok(Tensor::from_vec(out, (b, c_out, geom.h_out, geom.w_out), &Device::Cpu)?)
}

/// Self-attention weights: `w_qkv` `[3 inner, C]` (q, k, v stacked), `b_qkv` `[3 inner]`, `w_o`
/// `[C, inner]`, `b_o` `[C]`.
pub(crate) struct AttnParams<'a> {
    pub w_qkv: &'a Tensor,
    pub b_qkv: &'a Tensor,
    pub w_o: &'a Tensor,
    pub b_o: &'a Tensor,
    pub heads: usize,
    pub head_dim: usize,
    pub rescale: f64,
}

/// `(x + attention(xn)) / rescale` over the `H W` positions of `x` `[B, C, H, W]`, where `xn` is
/// `x` normalised (or `x` itself).
pub(crate) fn attention(x: &Tensor, xn: &Tensor, p: &AttnParams<'_>) -> Result<Tensor> {
    let (b, c, h, w) = dims4(x)?;
    let inner = p.heads * p.head_dim;
    if xn.dims() != x.dims()
        || !usable(x)
        || !usable(xn)
        || p.w_qkv.dims() != [3 * inner, c]
        || p.b_qkv.elem_count() != 3 * inner
        || p.w_o.dims() != [c, inner]
        || p.b_o.elem_count() != c
    {
        return Err(Error::Unsupported(format!("attention over {:?}", x.dims())));
    }
    let owned = [
        x.contiguous()?,
        xn.contiguous()?,
        p.w_qkv.contiguous()?,
        p.b_qkv.contiguous()?,
        p.w_o.contiguous()?,
        p.b_o.contiguous()?,
    ];
    let refs: Vec<&Tensor> = owned.iter().collect();
    let s = Slices::new(&refs);
    let n = b * c * h * w;
    let mut out = Vec::with_capacity(n);
    kernels::attention(
        s.get(0)?,
        s.get(1)?,
        b,
        c,
        h * w,
        p.heads,
        p.head_dim,
        s.get(2)?,
        s.get(3)?,
        s.get(4)?,
        s.get(5)?,
        p.rescale as f32,
        &mut out.spare_capacity_mut()[..n],
    );
    // SAFETY: the kernel wrote all n elements.
    unsafe { out.set_len(n) };
    Ok(Tensor::from_vec(out, (b, c, h, w), &Device::Cpu)?)
}
