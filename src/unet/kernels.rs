//! Slice-level CPU kernels (f32, NCHW) for the UNet's hot layers: GroupNorm with an optional
//! fused SiLU, 2-D convolution as im2col + GEMM writing straight into NCHW with the bias,
//! residual and shortcut folded in, and multi-head self-attention without layout copies.
//!
//! Each kernel works on plain slices and is checked against candle's composed operations in
//! `super::fused`'s tests. Work is split into independent tasks (image x group, image x output
//! rows, image) run on rayon's pool; the GEMMs inside a task are single-threaded (the `gemm`
//! crate that candle's CPU matmul also uses), so two cores never contend for one matrix.
//!
//! Elementwise loops are compiled twice, for the baseline target and for AVX2 + FMA, and the
//! second is chosen at run time where the CPU has it (`simd!`).

use std::cell::RefCell;
use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

/// A pointer that may cross to rayon's worker threads. The tasks that share it write disjoint
/// ranges (each kernel documents its split).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used for writes to disjoint ranges by concurrently running tasks (see users).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Run `$body` (an expression using only `#[inline(always)]` helpers) compiled for AVX2 + FMA
/// when the CPU supports it, else for the baseline target. Same results up to FMA contraction.
macro_rules! simd {
    ($body:expr) => {{
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the enabled target features (checked just above).
                unsafe { avx2(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
        {
            $body
        }
    }};
}

/// `exp(x)` for f32 in a form the compiler vectorises: Cody-Waite range reduction by ln 2 and a
/// degree-6 polynomial (Cephes' `expf`, max relative error ~1e-7 over the clamped range).
/// Inputs are clamped to [-87.3, 88.7] (the result saturates at the ends instead of 0 / inf;
/// exactly what the SiLU and softmax below need).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n from n's integer value, which sits in t's low mantissa bits
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    e * f32::from_bits((ni.wrapping_add(127) << 23) as u32)
}

/// `x * sigmoid(x)`.
#[inline(always)]
pub(crate) fn silu_f32(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

/// Elementwise activation fused into a kernel's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    None,
    Silu,
}

/// Sum with 16 independent accumulators (vectorises; rounding error grows like sqrt(n / 16)).
#[inline(always)]
fn sum_f32(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    let mut s = 0f32;
    for &v in rest {
        s += v;
    }
    acc.iter().sum::<f32>() + s
}

/// Sum of `(x - m)^2`, as [`sum_f32`].
#[inline(always)]
fn sum_sq_dev_f32(x: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            let d = c[i] - m;
            acc[i] += d * d;
        }
    }
    let mut s = 0f32;
    for &v in rest {
        s += (v - m) * (v - m);
    }
    acc.iter().sum::<f32>() + s
}

/// `y = act((x - m) * a + b)` (subtracting first: `x * a + (b - m a)` would cancel when `a` is
/// large, i.e. for a group of near-constant values).
#[inline(always)]
fn affine_act(x: &[f32], y: &mut [MaybeUninit<f32>], m: f32, a: f32, b: f32, act: Act) {
    match act {
        Act::None => {
            for (y, &x) in y.iter_mut().zip(x) {
                y.write((x - m) * a + b);
            }
        }
        Act::Silu => {
            for (y, &x) in y.iter_mut().zip(x) {
                y.write(silu_f32((x - m) * a + b));
            }
        }
    }
}

/// Channels `[B, C_p, HW]` of one input part; the parts of a kernel's input are concatenated
/// along channels (a UNet skip connection without the copy).
#[derive(Clone, Copy)]
pub(crate) struct Part<'a> {
    pub data: &'a [f32],
    pub channels: usize,
}

/// Check that the parts hold `batch` images of `hw` values per channel; returns the total
/// channel count.
fn parts_channels(parts: &[Part<'_>], batch: usize, hw: usize) -> Option<usize> {
    let mut c = 0;
    for p in parts {
        if p.data.len() != batch.checked_mul(p.channels)?.checked_mul(hw)? {
            return None;
        }
        c += p.channels;
    }
    Some(c)
}

/// Channel `c` (of the concatenation) of image `b`: `hw` contiguous values.
#[inline]
fn channel<'a>(parts: &[Part<'a>], b: usize, mut c: usize, hw: usize) -> &'a [f32] {
    for p in parts {
        if c < p.channels {
            let start = (b * p.channels + c) * hw;
            return &p.data[start..start + hw];
        }
        c -= p.channels;
    }
    &[]
}

/// GroupNorm over the channel concatenation of `parts` (`[B, C, HW]` in all), followed by `act`:
/// `out = act((x - mean_g) / sqrt(var_g + eps) * gamma_c + beta_c)` with the biased variance of
/// each image's group, as `torch.nn.GroupNorm`. Mean and variance are two passes over the group
/// (in cache), then one pass writes the output. Tasks: one per (image, group). Every element of
/// `out` is written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm(
    parts: &[Part<'_>],
    batch: usize,
    hw: usize,
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Act,
    out: &mut [MaybeUninit<f32>],
) {
    let c = parts_channels(parts, batch, hw).unwrap_or(usize::MAX);
    assert!(
        groups > 0 && c % groups == 0 && gamma.len() == c && beta.len() == c && out.len() == batch * c * hw,
        "group_norm: inconsistent sizes"
    );
    let cg = c / groups;
    let n = (cg * hw) as f32;
    if out.is_empty() {
        return;
    }
    out.par_chunks_mut(cg * hw).enumerate().for_each(|(task, dst)| {
        let (b, g) = (task / groups, task % groups);
        let chans = g * cg..(g + 1) * cg;
        simd!({
            let mut s = 0f32;
            for ci in chans.clone() {
                s += sum_f32(channel(parts, b, ci, hw));
            }
            let mean = s / n;
            let mut v = 0f32;
            for ci in chans.clone() {
                v += sum_sq_dev_f32(channel(parts, b, ci, hw), mean);
            }
            let rstd = 1.0 / (v / n + eps).sqrt();
            for (j, ci) in chans.clone().enumerate() {
                let a = rstd * gamma[ci];
                affine_act(channel(parts, b, ci, hw), &mut dst[j * hw..(j + 1) * hw], mean, a, beta[ci], act);
            }
        })
    });
}

/// `dst (m x n, row stride dst_rs) (+)= lhs (m x k) * rhs (k x n)`, single-threaded; `lhs` and
/// `rhs` given by element strides. `accumulate`: add to `dst` instead of overwriting it.
///
/// # Safety
/// Every element addressed by the sizes and strides must lie inside the allocations the pointers
/// come from, and `dst` must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    accumulate: bool,
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        1.0,
        scale,
        false,
        false,
        false,
        Parallelism::None,
    )
}

thread_local! {
    /// Per-thread scratch (im2col columns, attention scores), grown on demand and reused.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's scratch buffer of at least `len` values (contents unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

/// How a convolution reads its input: kernel size, stride, zero padding before (top/left) and
/// after (bottom/right), and an optional nearest-neighbour 2x upsampling of the input first
/// (diffusers' `Upsample2D`), folded into the column gather.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub pad_end: usize,
    pub upsample: bool,
    /// Input height and width (before upsampling).
    pub h: usize,
    pub w: usize,
    /// Output height and width.
    pub h_out: usize,
    pub w_out: usize,
}

impl ConvGeom {
    /// Input size as the convolution sees it (after the optional upsampling).
    fn seen(&self) -> (usize, usize) {
        if self.upsample {
            (2 * self.h, 2 * self.w)
        } else {
            (self.h, self.w)
        }
    }

    /// A 1x1, stride-1, unpadded convolution reads its input directly: no column matrix.
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0 && self.pad_end == 0 && !self.upsample
    }

    /// The geometry of a convolution of an `h x w` input (upsampled first if `upsample`), or
    /// `None` when the kernel does not fit (empty output).
    pub(crate) fn new(
        k: usize,
        stride: usize,
        pad: usize,
        pad_end: usize,
        upsample: bool,
        h: usize,
        w: usize,
    ) -> Option<ConvGeom> {
        let (sh, sw) = if upsample { (2 * h, 2 * w) } else { (h, w) };
        if k == 0 || stride == 0 || sh + pad + pad_end < k || sw + pad + pad_end < k {
            return None;
        }
        let h_out = (sh + pad + pad_end - k) / stride + 1;
        let w_out = (sw + pad + pad_end - k) / stride + 1;
        Some(ConvGeom { k, stride, pad, pad_end, upsample, h, w, h_out, w_out })
    }
}

/// What is added to a convolution's output before the optional rescale.
pub(crate) enum Residual<'a> {
    None,
    /// `out += r` (`[B, c_out, HW_out]`).
    Identity(&'a [f32]),
    /// `out += w_sc * x + b_sc`: a 1x1 convolution of `parts` (same spatial size as the output),
    /// `w_sc` `[c_out, C]`, `b_sc` `[c_out]` (diffusers' `conv_shortcut`).
    Shortcut {
        parts: &'a [Part<'a>],
        weight: &'a [f32],
        bias: &'a [f32],
    },
}

/// A 2-D convolution of the channel concatenation of `parts` (`[B, c_in, h, w]` in all) with
/// `weight` (`[c_out, c_in, k, k]` contiguous, i.e. `[c_out, c_in k k]`) and `bias` (`[c_out]`),
/// plus `residual`, all divided by `out_scale`: `out` is `[B, c_out, h_out, w_out]`.
///
/// Per task (an image and a band of output rows): the output band is set to the bias (plus
/// the residual, or the shortcut's bias and its GEMM), the input patches of the band are gathered
/// into a `[c_in k k, band]` column matrix in this thread's scratch (padding, stride and
/// upsampling resolved here), and one GEMM adds `weight x columns` into the band in place.
/// Every element of `out` is written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    parts: &[Part<'_>],
    batch: usize,
    geom: ConvGeom,
    weight: &[f32],
    bias: &[f32],
    c_out: usize,
    residual: Residual<'_>,
    out_scale: f32,
    out: &mut [MaybeUninit<f32>],
) {
    let (h, w) = (geom.h, geom.w);
    let hw_out = geom.h_out * geom.w_out;
    let c_in = parts_channels(parts, batch, h * w).unwrap_or(usize::MAX);
    let kk = geom.k * geom.k;
    let kdim = c_in.saturating_mul(kk);
    assert!(
        ConvGeom::new(geom.k, geom.stride, geom.pad, geom.pad_end, geom.upsample, h, w) == Some(geom)
            && c_in != usize::MAX
            && weight.len() == c_out * kdim
            && bias.len() == c_out
            && out.len() == batch * c_out * hw_out,
        "conv2d: inconsistent sizes"
    );
    match &residual {
        Residual::None => {}
        Residual::Identity(r) => assert_eq!(r.len(), out.len(), "conv2d: residual size"),
        Residual::Shortcut { parts: sp, weight: sw_, bias: sb } => {
            let c_sc = parts_channels(sp, batch, hw_out).unwrap_or(usize::MAX);
            assert!(c_sc != usize::MAX && sw_.len() == c_out * c_sc && sb.len() == c_out, "conv2d: shortcut sizes");
        }
    }
    if out.is_empty() {
        return;
    }

    // Bands of output rows: about BAND_COLS output pixels per task (large enough that the GEMM
    // amortises packing the weights), and enough tasks to keep every thread busy at batch 1.
    let threads = rayon::current_num_threads().max(1);
    const BAND_COLS: usize = 1024;
    let max_cols = BAND_COLS.max(geom.w_out);
    let mut rows = (max_cols / geom.w_out).clamp(1, geom.h_out);
    while rows > 1 && batch * geom.h_out.div_ceil(rows) < 4 * threads {
        rows = rows.div_ceil(2);
    }
    let bands = geom.h_out.div_ceil(rows);
    let out_ptr = SendPtr(out.as_mut_ptr().cast::<f32>());
    let pointwise = geom.is_pointwise();

    (0..batch * bands).into_par_iter().for_each(|task| {
        let (b, band) = (task / bands, task % bands);
        let y0 = band * rows;
        let y1 = (y0 + rows).min(geom.h_out);
        let (c0, ncols) = (y0 * geom.w_out, (y1 - y0) * geom.w_out);
        let img = b * c_out * hw_out;
        // SAFETY: task (b, band) writes only rows [y0, y1) of image b's channels: the ranges
        // img + o * hw_out + [c0, c0 + ncols) are disjoint across tasks and inside `out`
        // (checked above); nothing else touches `out` while the tasks run. Step 1 initialises
        // each range before `band_mut` hands it out as f32.
        let dst = out_ptr.get();
        let band_uninit = |o: usize| unsafe {
            std::slice::from_raw_parts_mut(dst.add(img + o * hw_out + c0).cast::<MaybeUninit<f32>>(), ncols)
        };
        let band_mut = |o: usize| unsafe { std::slice::from_raw_parts_mut(dst.add(img + o * hw_out + c0), ncols) };

        simd!({
            // 1. bias (+ identity residual): initialises the band
            for o in 0..c_out {
                let d = band_uninit(o);
                match &residual {
                    Residual::Identity(r) => {
                        let r = &r[img + o * hw_out + c0..][..ncols];
                        for (d, &r) in d.iter_mut().zip(r) {
                            d.write(r + bias[o]);
                        }
                    }
                    Residual::Shortcut { bias: sb, .. } => d.iter_mut().for_each(|d| {
                        d.write(bias[o] + sb[o]);
                    }),
                    Residual::None => d.iter_mut().for_each(|d| {
                        d.write(bias[o]);
                    }),
                }
            }
        });
        // 2. the shortcut's GEMM, straight from its inputs
        if let Residual::Shortcut { parts: sp, weight: sw_, .. } = &residual {
            let c_sc: usize = sp.iter().map(|p| p.channels).sum();
            let mut col = 0;
            for p in sp.iter() {
                let src = &p.data[b * p.channels * hw_out + c0..];
                // SAFETY: lhs rows o < c_out, cols col..col+channels of w_sc [c_out, c_sc]; rhs
                // rows < channels at stride hw_out and cols < ncols inside image b of the part
                // (lengths checked above); dst as in step 1.
                unsafe {
                    gemm_f32(
                        c_out,
                        ncols,
                        p.channels,
                        dst.add(img + c0),
                        hw_out,
                        sw_.as_ptr().add(col),
                        c_sc,
                        1,
                        src.as_ptr(),
                        hw_out,
                        1,
                        true,
                        1.0,
                    );
                }
                col += p.channels;
            }
        }
        // 3. the convolution's GEMM
        if pointwise {
            let mut col = 0;
            for p in parts {
                let src = &p.data[b * p.channels * hw_out + c0..];
                // SAFETY: as in step 2, with the convolution's weight [c_out, c_in].
                unsafe {
                    gemm_f32(
                        c_out,
                        ncols,
                        p.channels,
                        dst.add(img + c0),
                        hw_out,
                        weight.as_ptr().add(col),
                        c_in,
                        1,
                        src.as_ptr(),
                        hw_out,
                        1,
                        true,
                        1.0,
                    );
                }
                col += p.channels;
            }
        } else {
            with_scratch(kdim * ncols, |cols| {
                simd!(im2col(parts, b, &geom, y0, y1, cols));
                // SAFETY: weight is [c_out, kdim], cols [kdim, ncols] (this scratch), dst as
                // in step 1.
                unsafe {
                    gemm_f32(
                        c_out,
                        ncols,
                        kdim,
                        dst.add(img + c0),
                        hw_out,
                        weight.as_ptr(),
                        kdim,
                        1,
                        cols.as_ptr(),
                        ncols,
                        1,
                        true,
                        1.0,
                    );
                }
            });
        }
        if out_scale != 1.0 {
            let inv = 1.0 / out_scale;
            simd!({
                for o in 0..c_out {
                    band_mut(o).iter_mut().for_each(|v| *v *= inv);
                }
            });
        }
    });
}

/// The column matrix of output rows `[y0, y1)` of image `b`: row `(ci, kh, kw)` holds, for each
/// output pixel, the input value under kernel tap `(kh, kw)` (zero in the padding).
#[inline(always)]
fn im2col(parts: &[Part<'_>], b: usize, g: &ConvGeom, y0: usize, y1: usize, cols: &mut [f32]) {
    let ncols = (y1 - y0) * g.w_out;
    let c_in: usize = parts.iter().map(|p| p.channels).sum();
    let hw = g.h * g.w;
    // stride 1 at the input's own width: a tap's values for the whole band are one contiguous
    // run of the input channel, shifted; copy it at once and zero the padding afterwards
    let contiguous = g.stride == 1 && !g.upsample && g.w_out == g.w;
    // stride 1 after upsampling: build each zero-padded upsampled input row once and copy the
    // k taps of the row out of it
    let mut padded = if g.upsample && g.stride == 1 { vec![0f32; g.w_out + g.k - 1] } else { Vec::new() };
    for ci in 0..c_in {
        let src = channel(parts, b, ci, hw);
        if !padded.is_empty() {
            taps_upsampled(src, g, ci, y0, y1, &mut padded, cols);
            continue;
        }
        for kh in 0..g.k {
            for kw in 0..g.k {
                let row = (ci * g.k + kh) * g.k + kw;
                let dst = &mut cols[row * ncols..(row + 1) * ncols];
                if contiguous {
                    tap_contiguous(src, g, kh, kw, y0, y1, dst);
                } else {
                    tap_rows(src, g, kh, kw, y0, y1, dst);
                }
            }
        }
    }
}

/// The `k x k` im2col rows of input channel `ci` for a stride-1 convolution of the 2x upsampled
/// input (see [`im2col`]); `padded` holds `w_out + k - 1` values.
#[inline(always)]
fn taps_upsampled(src: &[f32], g: &ConvGeom, ci: usize, y0: usize, y1: usize, padded: &mut [f32], cols: &mut [f32]) {
    let (sh, sw) = g.seen();
    let ncols = (y1 - y0) * g.w_out;
    for kh in 0..g.k {
        for (yi, y) in (y0..y1).enumerate() {
            let iy = (y + kh) as isize - g.pad as isize;
            let row0 = (ci * g.k + kh) * g.k;
            if iy < 0 || iy >= sh as isize {
                for kw in 0..g.k {
                    cols[(row0 + kw) * ncols + yi * g.w_out..][..g.w_out].fill(0.0);
                }
                continue;
            }
            // padded[j] = upsampled[iy][j - pad] (zero outside), upsampled[iy][x] = src[iy / 2][x / 2]
            let srow = &src[(iy as usize / 2) * g.w..][..g.w];
            let inner = &mut padded[g.pad.min(g.w_out + g.k - 1)..];
            let n = sw.min(inner.len());
            for (pair, &v) in inner[..n].chunks_mut(2).zip(srow) {
                pair.fill(v);
            }
            inner[n..].fill(0.0);
            for kw in 0..g.k {
                cols[(row0 + kw) * ncols + yi * g.w_out..][..g.w_out].copy_from_slice(&padded[kw..kw + g.w_out]);
            }
        }
    }
}

/// One im2col row for stride 1 and `w_out == w` (see [`im2col`]).
#[inline(always)]
fn tap_contiguous(src: &[f32], g: &ConvGeom, kh: usize, kw: usize, y0: usize, y1: usize, dst: &mut [f32]) {
    let w = g.w as isize;
    let (dy, dx) = (kh as isize - g.pad as isize, kw as isize - g.pad as isize);
    // output rows whose input row exists, and output columns whose input column exists
    let ya = (y0 as isize).max(-dy).min(y1 as isize) as usize;
    let yb = (y1 as isize).min(g.h as isize - dy).max(ya as isize) as usize;
    let xa = (-dx).clamp(0, w) as usize;
    let xb = (w - dx).clamp(xa as isize, w) as usize;
    dst[..(ya - y0) * g.w].fill(0.0);
    dst[(yb - y0) * g.w..].fill(0.0);
    if ya == yb {
        return;
    }
    let (lo, hi) = ((ya - y0) * g.w, (yb - y0) * g.w);
    let s = (ya as isize + dy) * w + dx; // input index of dst[lo]; may be off the ends by |dx|
    let front = (-s).max(0) as usize;
    let back = (s + (hi - lo) as isize - src.len() as isize).max(0) as usize;
    let s = (s + front as isize) as usize;
    dst[lo + front..hi - back].copy_from_slice(&src[s..s + (hi - lo - front - back)]);
    if xa > 0 || xb < g.w {
        for row in dst[lo..hi].chunks_exact_mut(g.w) {
            row[..xa].fill(0.0);
            row[xb..].fill(0.0);
        }
    }
}

/// One im2col row, output row by output row (strides, upsampling, other widths).
#[inline(always)]
fn tap_rows(src: &[f32], g: &ConvGeom, kh: usize, kw: usize, y0: usize, y1: usize, dst: &mut [f32]) {
    let (sh, sw) = g.seen();
    for (yi, y) in (y0..y1).enumerate() {
        let d = &mut dst[yi * g.w_out..(yi + 1) * g.w_out];
        let iy = (y * g.stride + kh) as isize - g.pad as isize;
        if iy < 0 || iy >= sh as isize {
            d.fill(0.0);
            continue;
        }
        let iy = iy as usize;
        let srow = if g.upsample { &src[(iy / 2) * g.w..][..g.w] } else { &src[iy * g.w..][..g.w] };
        // output x reads (upsampled) input column x * stride + off, valid for x in [xa, xb)
        let off = kw as isize - g.pad as isize;
        let xa = if off < 0 { (-off) as usize } else { 0 }.div_ceil(g.stride).min(g.w_out);
        let last = sw as isize - 1 - off; // largest x * stride allowed
        let xb = if last < 0 { 0 } else { (last as usize / g.stride + 1).min(g.w_out) };
        let xb = xb.max(xa);
        d[..xa].fill(0.0);
        d[xb..].fill(0.0);
        let ix = |x: usize| ((x * g.stride) as isize + off) as usize;
        if g.upsample {
            for x in xa..xb {
                d[x] = srow[ix(x) / 2];
            }
        } else if g.stride == 1 {
            let s0 = ix(xa);
            d[xa..xb].copy_from_slice(&srow[s0..s0 + (xb - xa)]);
        } else {
            for x in xa..xb {
                d[x] = srow[ix(x)];
            }
        }
    }
}

/// Multi-head self-attention over the `L = HW` positions of each image, with the output
/// projection and the residual: for `x` `[B, C, L]` and its normalised copy `xn`,
/// `out = (x + W_o attn(W_q xn, W_k xn, W_v xn) + b_o) / rescale`, `attn` = softmax(q k^T /
/// sqrt(d)) v per head (`heads * d = inner`). `w_qkv` is `[3 inner, C]` (q, k, v stacked) with
/// `b_qkv` `[3 inner]`; `w_o` `[C, inner]`, `b_o` `[C]`. Everything stays in the channel-major
/// layout: q, k, v are `[inner, L]` per image and the scores `q^T k` are GEMMs on strided views.
/// Tasks: one per image; queries in blocks of at most 256 so the scores stay in cache. Every
/// element of `out` is written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    x: &[f32],
    xn: &[f32],
    batch: usize,
    c: usize,
    l: usize,
    heads: usize,
    d: usize,
    w_qkv: &[f32],
    b_qkv: &[f32],
    w_o: &[f32],
    b_o: &[f32],
    rescale: f32,
    out: &mut [MaybeUninit<f32>],
) {
    let inner = heads * d;
    assert!(
        x.len() == batch * c * l
            && xn.len() == x.len()
            && out.len() == x.len()
            && w_qkv.len() == 3 * inner * c
            && b_qkv.len() == 3 * inner
            && w_o.len() == c * inner
            && b_o.len() == c,
        "attention: inconsistent sizes"
    );
    if out.is_empty() {
        return;
    }
    let scale = 1.0 / (d as f32).sqrt();
    let qb = l.min(256);
    out.par_chunks_mut(c * l).enumerate().for_each(|(b, dst_uninit)| {
        let xb = &x[b * c * l..(b + 1) * c * l];
        let xnb = &xn[b * c * l..(b + 1) * c * l];
        with_scratch(3 * inner * l + inner * l + qb * l, |scratch| {
            let (qkv, rest) = scratch.split_at_mut(3 * inner * l);
            let (o, s) = rest.split_at_mut(inner * l);
            // q, k, v = W_qkv xn + b: [3 inner, L]
            for (r, row) in qkv.chunks_exact_mut(l).enumerate() {
                row.fill(b_qkv[r]);
            }
            // SAFETY: lhs [3 inner, c], rhs [c, l], dst [3 inner, l]: all inside their slices.
            unsafe {
                gemm_f32(3 * inner, l, c, qkv.as_mut_ptr(), l, w_qkv.as_ptr(), c, 1, xnb.as_ptr(), l, 1, true, 1.0)
            };
            for hd in 0..heads {
                let q = &qkv[hd * d * l..];
                let k = &qkv[(inner + hd * d) * l..];
                let v = &qkv[(2 * inner + hd * d) * l..];
                for q0 in (0..l).step_by(qb) {
                    let nq = qb.min(l - q0);
                    let s = &mut s[..nq * l];
                    // scores s[i, j] = scale * sum_e q[e, q0 + i] k[e, j]
                    // SAFETY: q^T view (rows nq at stride 1, cols d at stride l), k [d, l], s
                    // [nq, l]; all inside qkv / s.
                    unsafe {
                        gemm_f32(nq, l, d, s.as_mut_ptr(), l, q.as_ptr().add(q0), 1, l, k.as_ptr(), l, 1, false, scale)
                    };
                    simd!({
                        for row in s.chunks_exact_mut(l) {
                            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                            let mut sum = 0f32;
                            for v in row.iter_mut() {
                                *v = exp_f32(*v - m);
                                sum += *v;
                            }
                            let inv = 1.0 / sum;
                            row.iter_mut().for_each(|v| *v *= inv);
                        }
                    });
                    // o[e, q0 + i] = sum_j v[e, j] s[i, j]
                    // SAFETY: v [d, l], s^T view (rows l at stride 1, cols nq at stride l),
                    // dst o rows hd*d.. of [inner, l] at columns q0..q0+nq.
                    unsafe {
                        gemm_f32(
                            d,
                            nq,
                            l,
                            o.as_mut_ptr().add(hd * d * l + q0),
                            l,
                            v.as_ptr(),
                            l,
                            1,
                            s.as_ptr(),
                            1,
                            l,
                            false,
                            1.0,
                        )
                    };
                }
            }
            // out = x + b_o + W_o o, then / rescale
            for (ch, row) in dst_uninit.chunks_exact_mut(l).enumerate() {
                for (y, &xv) in row.iter_mut().zip(&xb[ch * l..(ch + 1) * l]) {
                    y.write(xv + b_o[ch]);
                }
            }
            // SAFETY: every element of this chunk was initialised just above.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(dst_uninit.as_mut_ptr().cast::<f32>(), dst_uninit.len()) };
            // SAFETY: lhs [c, inner], rhs o [inner, l], dst [c, l] (this image's chunk).
            unsafe { gemm_f32(c, l, inner, dst.as_mut_ptr(), l, w_o.as_ptr(), inner, 1, o.as_ptr(), l, 1, true, 1.0) };
            if rescale != 1.0 {
                let inv = 1.0 / rescale;
                dst.iter_mut().for_each(|v| *v *= inv);
            }
        });
    });
}
