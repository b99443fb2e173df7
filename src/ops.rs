//! `lincomb`: the one tensor primitive every solver step goes through.
//!
//! A solver step is `x_next = sum_i c_i * x_i` with host f64 coefficients. [`lincomb`] computes
//! it in one fused pass: every input is read once and the output is written once, with no
//! intermediate tensors (the unfused form, one `affine` and one `add` per term, makes `2n - 1`
//! passes and as many allocations). [`lincomb_reference`] keeps the unfused form; the tests
//! compare the two.
//!
//! Fused paths:
//! - CPU, contiguous F32/F64/F16/BF16 tensors (a start offset, as left by `narrow` on the first
//!   dimension, is fine): one loop over the slices, vectorisable, allocating only the output.
//!   F32 and F64 are computed in their own precision in the reference order
//!   (`((c0 x0 + c1 x1) + c2 x2) + ...`), so they equal [`lincomb_reference`] bit for bit; F16
//!   and BF16 accumulate in F32 and round once (more accurate than the reference, which rounds
//!   after every operation).
//! - CUDA (feature `cuda`), contiguous F32/F64/F16/BF16: one kernel launch, compiled with NVRTC
//!   on first use and cached per process.
//!
//! Everything else (strided or broadcast views, other devices or dtypes) takes the unfused path,
//! which handles any layout: the result is the same, only slower.

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};
use half::{bf16, f16};

use crate::error::{Error, Result};

/// Terms fused in one pass; longer combinations are chained in groups (same result, one extra
/// pass per group of seven further terms).
const MAX_FUSED: usize = 8;

/// Elements per block of the general (5+ term) CPU kernel: the accumulator stays in L1.
const BLOCK: usize = 512;

/// `sum_i c_i * x_i` over tensors of one shape, dtype and device, in one fused pass where the
/// layout allows: each input read once, the output written once, nothing else allocated.
///
/// Fused: contiguous F32/F64/F16/BF16 tensors on the CPU (bit-identical to
/// [`lincomb_reference`] in F32/F64; F16/BF16 accumulate in F32 and round once) and, with the
/// `cuda` feature, on CUDA devices. Strided or broadcast views, other dtypes and other devices
/// take the unfused path, which handles any layout (same result, slower).
///
/// Terms with a zero coefficient are skipped (their tensors are not read), so a term may be
/// non-finite when its weight is exactly zero. A single term with coefficient 1 returns that
/// tensor (shared storage, no copy). Coefficients are applied in the tensors' dtype (F32 math for
/// F16/BF16); keep the working state in F32 or F64.
///
/// Errors: no terms ([`Error::InvalidConfig`]); terms of different shapes, dtypes or devices
/// ([`Error::TermMismatch`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::lincomb;
/// let a = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?;
/// let b = Tensor::new(&[10.0f64, 20.0], &Device::Cpu)?;
/// let y = lincomb(&[(2.0, &a), (0.5, &b)])?;
/// assert_eq!(y.to_vec1::<f64>()?, vec![7.0, 14.0]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn lincomb(terms: &[(f64, &Tensor)]) -> Result<Tensor> {
    let first = check_terms(terms)?;
    let mut live_terms = terms.iter().copied().filter(|&(c, _)| c != 0.0);
    // the first group of non-zero terms, on the stack
    let mut group: [(f64, &Tensor); MAX_FUSED] = [(0.0, first); MAX_FUSED];
    let mut n = 0;
    for t in live_terms.by_ref() {
        group[n] = t;
        n += 1;
        if n == MAX_FUSED {
            break;
        }
    }
    let mut acc = match n {
        0 => return Ok(first.zeros_like()?),
        1 if group[0].0 == 1.0 => return Ok(group[0].1.clone()),
        _ => fused(&group[..n])?,
    };
    // more than MAX_FUSED terms: the partial sum leads the next group (1 * acc == acc, so the
    // operation order, and the result, are those of one long sum)
    loop {
        let mut next: [(f64, &Tensor); MAX_FUSED] = [(1.0, &acc); MAX_FUSED];
        let mut k = 1;
        for t in live_terms.by_ref() {
            next[k] = t;
            k += 1;
            if k == MAX_FUSED {
                break;
            }
        }
        if k == 1 {
            return Ok(acc);
        }
        let sum = fused(&next[..k])?;
        acc = sum;
    }
}

/// The unfused `sum_i c_i * x_i`: one candle `affine` per term with `c != 1` and one `add` per
/// further term, for any layout, dtype and device. The reference [`lincomb`] is tested against;
/// same argument checks and errors.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{lincomb, lincomb_reference};
/// let a = Tensor::new(&[1.0f32, 2.0], &Device::Cpu)?;
/// let b = Tensor::new(&[10.0f32, 20.0], &Device::Cpu)?;
/// let fused = lincomb(&[(0.3, &a), (0.7, &b)])?.to_vec1::<f32>()?;
/// assert_eq!(fused, lincomb_reference(&[(0.3, &a), (0.7, &b)])?.to_vec1::<f32>()?);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn lincomb_reference(terms: &[(f64, &Tensor)]) -> Result<Tensor> {
    let first = check_terms(terms)?;
    let mut acc: Option<Tensor> = None;
    for &(c, x) in terms {
        if c == 0.0 {
            continue;
        }
        let term = if c == 1.0 { x.clone() } else { x.affine(c, 0.0)? };
        acc = Some(match acc {
            None => term,
            Some(a) => (a + term)?,
        });
    }
    match acc {
        Some(a) => Ok(a),
        None => Ok(first.zeros_like()?),
    }
}

/// Non-empty, one shape, one dtype, one device; returns the first tensor.
fn check_terms<'t>(terms: &[(f64, &'t Tensor)]) -> Result<&'t Tensor> {
    let first = terms.first().ok_or_else(|| Error::InvalidConfig("lincomb needs at least one term".into()))?.1;
    for (index, &(_, x)) in terms.iter().enumerate().skip(1) {
        let mismatch =
            |what: &'static str, expected: String, got: String| Error::TermMismatch { index, what, expected, got };
        if x.dims() != first.dims() {
            return Err(mismatch("shape", format!("{:?}", first.dims()), format!("{:?}", x.dims())));
        }
        if x.dtype() != first.dtype() {
            return Err(mismatch("dtype", format!("{:?}", first.dtype()), format!("{:?}", x.dtype())));
        }
        if !x.device().same_device(first.device()) {
            return Err(mismatch(
                "device",
                format!("{:?}", first.device().location()),
                format!("{:?}", x.device().location()),
            ));
        }
    }
    Ok(first)
}

/// True when every element of `t` is finite (no NaN, no infinity), without the overflow of a sum:
/// a scan of the slice for contiguous CPU tensors (nothing allocated, nothing copied); on other
/// devices and layouts `sum(t * 0) == 0`, one scalar read back (`x * 0` is 0 for every finite `x`
/// and NaN for NaN and +-inf, and a sum of zeros cannot overflow). Integer tensors are finite.
pub(crate) fn all_finite(t: &Tensor) -> Result<bool> {
    if !t.dtype().is_float() || t.elem_count() == 0 {
        return Ok(true);
    }
    if t.device().is_cpu() {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(s), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            let finite = match t.dtype() {
                DType::F32 => s.as_slice::<f32>()?[start..end].iter().all(|v| v.is_finite()),
                DType::F64 => s.as_slice::<f64>()?[start..end].iter().all(|v| v.is_finite()),
                DType::F16 => s.as_slice::<f16>()?[start..end].iter().all(|v| v.is_finite()),
                DType::BF16 => s.as_slice::<bf16>()?[start..end].iter().all(|v| v.is_finite()),
                _ => return zero_sum_is_zero(t),
            };
            return Ok(finite);
        }
    }
    zero_sum_is_zero(t)
}

/// `sum(t * 0) == 0`: [`all_finite`] for any device and layout.
fn zero_sum_is_zero(t: &Tensor) -> Result<bool> {
    let s = t.affine(0.0, 0.0)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok(s == 0.0)
}

/// One pass over at most [`MAX_FUSED`] checked, non-zero terms; falls back to the unfused path
/// where no fused kernel applies.
fn fused(terms: &[(f64, &Tensor)]) -> Result<Tensor> {
    let first = terms[0].1;
    let fusable_dtype = matches!(first.dtype(), DType::F32 | DType::F64 | DType::F16 | DType::BF16);
    if !fusable_dtype || terms.iter().any(|(_, x)| !x.is_contiguous()) {
        return lincomb_reference(terms);
    }
    if first.device().is_cpu() {
        return fused_cpu(terms);
    }
    #[cfg(feature = "cuda")]
    if first.device().is_cuda() {
        return cuda::fused_cuda(terms);
    }
    lincomb_reference(terms)
}

/// The CPU kernel: read guards on every storage, contiguous slices, one output `Vec`.
fn fused_cpu(terms: &[(f64, &Tensor)]) -> Result<Tensor> {
    let first = terms[0].1;
    let guards: [Option<(candle_core::StorageRef<'_>, &Layout)>; MAX_FUSED] =
        std::array::from_fn(|i| terms.get(i).map(|(_, x)| x.storage_and_layout()));
    let mut coefs = [0.0f64; MAX_FUSED];
    let mut cpu: [Option<(&CpuStorage, usize, usize)>; MAX_FUSED] = [None; MAX_FUSED];
    for (i, g) in guards.iter().enumerate() {
        let Some((storage, layout)) = g else { break };
        let (Storage::Cpu(s), Some((start, end))) = (&**storage, layout.contiguous_offsets()) else {
            return lincomb_reference(terms);
        };
        coefs[i] = terms[i].0;
        cpu[i] = Some((s, start, end));
    }
    let m = terms.len();
    macro_rules! run {
        ($t:ty) => {{
            let mut xs: [&[$t]; MAX_FUSED] = [&[]; MAX_FUSED];
            for (i, c) in cpu.iter().take(m).enumerate() {
                if let Some((s, start, end)) = c {
                    xs[i] = &s.as_slice::<$t>()?[*start..*end];
                }
            }
            let out = combine::<$t>(&coefs[..m], &xs[..m]);
            Tensor::from_vec(out, first.shape(), first.device())?
        }};
    }
    let out = match first.dtype() {
        DType::F32 => run!(f32),
        DType::F64 => run!(f64),
        DType::F16 => run!(f16),
        DType::BF16 => run!(bf16),
        _ => return lincomb_reference(terms),
    };
    Ok(out)
}

/// An element type of the CPU kernel and the type it accumulates in.
trait Elem: Copy {
    type Acc: Copy + std::ops::Mul<Output = Self::Acc> + std::ops::Add<Output = Self::Acc> + Default;
    fn coef(c: f64) -> Self::Acc;
    fn load(self) -> Self::Acc;
    fn store(a: Self::Acc) -> Self;
}

/// `Elem` for a type that accumulates in `$acc`, converting with `$load` / `$store`.
macro_rules! elem {
    ($t:ty, $acc:ty, $load:expr, $store:expr) => {
        impl Elem for $t {
            type Acc = $acc;
            #[inline(always)]
            fn coef(c: f64) -> $acc {
                c as $acc
            }
            #[inline(always)]
            fn load(self) -> $acc {
                $load(self)
            }
            #[inline(always)]
            fn store(a: $acc) -> $t {
                $store(a)
            }
        }
    };
}

elem!(f32, f32, |x| x, |a| a);
elem!(f64, f64, |x| x, |a| a);
elem!(f16, f32, f16::to_f32, f16::from_f32);
elem!(bf16, f32, bf16::to_f32, bf16::from_f32);

/// `out[j] = ((c0 x0[j] + c1 x1[j]) + c2 x2[j]) + ...` for `1 <= xs.len() <= MAX_FUSED` slices
/// of one length. Up to four terms each output element is one expression (registers only);
/// beyond, a block accumulator in L1. Either way each input is read once and the output written
/// once, straight into its final allocation.
fn combine<T: Elem>(coefs: &[f64], xs: &[&[T]]) -> Vec<T> {
    let mut k = [T::Acc::default(); MAX_FUSED];
    for (ki, &ci) in k.iter_mut().zip(coefs) {
        *ki = T::coef(ci);
    }
    let n = xs[0].len();
    match xs {
        [a] => a.iter().map(|&a| T::store(k[0] * a.load())).collect(),
        [a, b] => a.iter().zip(*b).map(|(&a, &b)| T::store(k[0] * a.load() + k[1] * b.load())).collect(),
        [a, b, c] => a
            .iter()
            .zip(*b)
            .zip(*c)
            .map(|((&a, &b), &c)| T::store(k[0] * a.load() + k[1] * b.load() + k[2] * c.load()))
            .collect(),
        [a, b, c, d] => a
            .iter()
            .zip(*b)
            .zip(*c)
            .zip(*d)
            .map(|(((&a, &b), &c), &d)| T::store(k[0] * a.load() + k[1] * b.load() + k[2] * c.load() + k[3] * d.load()))
            .collect(),
        _ => {
            let mut out = Vec::with_capacity(n);
            let mut acc = [T::Acc::default(); BLOCK];
            let mut start = 0;
            while start < n {
                let len = BLOCK.min(n - start);
                let acc = &mut acc[..len];
                for (a, &x) in acc.iter_mut().zip(&xs[0][start..start + len]) {
                    *a = k[0] * x.load();
                }
                for (x, &kk) in xs.iter().zip(&k).skip(1) {
                    for (a, &x) in acc.iter_mut().zip(&x[start..start + len]) {
                        *a = *a + kk * x.load();
                    }
                }
                out.extend(acc.iter().map(|&a| T::store(a)));
                start += len;
            }
            out
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    //! The CUDA kernel: `out[j] = sum_k c_k x_k[j]` over up to [`MAX_FUSED`] pointers, one thread
    //! per element (grid-stride loop), compiled once per process with NVRTC (no FMA contraction,
    //! so F32/F64 round as the CPU path does). F16/BF16 are converted to F32 with inline PTX / bit
    //! operations (no CUDA headers needed), F64 runs in double.

    use std::sync::OnceLock;

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaDType, CudaStorage, WrapErr};
    use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};
    use half::{bf16, f16};

    use super::MAX_FUSED;
    use crate::error::Result;

    const MODULE: &str = "diffusion_samplers_lincomb";

    const SOURCE: &str = r#"
typedef unsigned short u16;
__device__ __forceinline__ float ld(const float* p, size_t i) { return p[i]; }
__device__ __forceinline__ double ld(const double* p, size_t i) { return p[i]; }
__device__ __forceinline__ float ld_h(const u16* p, size_t i) {
    float f; u16 h = p[i]; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ float ld_b(const u16* p, size_t i) {
    return __uint_as_float(((unsigned int)p[i]) << 16);
}
__device__ __forceinline__ u16 st_h(float f) {
    u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ u16 st_b(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                        // round to nearest even
    return (u16)(u >> 16);
}

#define LINCOMB(NAME, T, ACC, LOAD, STORE)                                                        \
extern "C" __global__ void NAME(const size_t n, const int m,                                      \
    const T* x0, const T* x1, const T* x2, const T* x3,                                           \
    const T* x4, const T* x5, const T* x6, const T* x7,                                           \
    ACC c0, ACC c1, ACC c2, ACC c3, ACC c4, ACC c5, ACC c6, ACC c7, T* out) {                     \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;                         \
         i += (size_t)blockDim.x * gridDim.x) {                                                   \
        ACC a = c0 * LOAD(x0, i);                                                                 \
        if (m > 1) a = a + c1 * LOAD(x1, i);                                                      \
        if (m > 2) a = a + c2 * LOAD(x2, i);                                                      \
        if (m > 3) a = a + c3 * LOAD(x3, i);                                                      \
        if (m > 4) a = a + c4 * LOAD(x4, i);                                                      \
        if (m > 5) a = a + c5 * LOAD(x5, i);                                                      \
        if (m > 6) a = a + c6 * LOAD(x6, i);                                                      \
        if (m > 7) a = a + c7 * LOAD(x7, i);                                                      \
        out[i] = STORE(a);                                                                        \
    }                                                                                             \
}
#define ID(a) (a)
LINCOMB(lincomb_f32, float, float, ld, ID)
LINCOMB(lincomb_f64, double, double, ld, ID)
LINCOMB(lincomb_f16, u16, float, ld_h, st_h)
LINCOMB(lincomb_bf16, u16, float, ld_b, st_b)
"#;

    /// The PTX, compiled once per process.
    fn ptx() -> candle_core::Result<&'static str> {
        static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
        let compiled = PTX.get_or_init(|| {
            // no FMA contraction: F32/F64 round like the CPU path, term by term
            let opts = cudarc::nvrtc::CompileOptions { fmad: Some(false), ftz: Some(false), ..Default::default() };
            cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts).map(|p| p.to_src()).map_err(|e| format!("{e:?}"))
        });
        match compiled {
            Ok(p) => Ok(p.as_str()),
            Err(e) => Err(candle_core::Error::Msg(format!("NVRTC failed to compile the lincomb kernel: {e}"))),
        }
    }

    /// `CustomOp1` on the first term, holding the others; candle hands it the first storage.
    struct Fused {
        coefs: [f64; MAX_FUSED],
        rest: Vec<Tensor>,
    }

    impl CustomOp1 for Fused {
        fn name(&self) -> &'static str {
            "lincomb"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            candle_core::bail!("the CUDA lincomb op was applied to a CPU tensor")
        }

        fn cuda_fwd(&self, s0: &CudaStorage, l0: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
            let guards: Vec<_> = self.rest.iter().map(|t| t.storage_and_layout()).collect();
            let mut storages: Vec<(&CudaStorage, &Layout)> = vec![(s0, l0)];
            for (g, l) in &guards {
                match &**g {
                    Storage::Cuda(s) => storages.push((s, l)),
                    _ => candle_core::bail!("lincomb: all terms must be on the same CUDA device"),
                }
            }
            let dev = s0.device.clone();
            let n = l0.shape().elem_count();
            let func_name = match s0.dtype() {
                candle_core::DType::F32 => "lincomb_f32",
                candle_core::DType::F64 => "lincomb_f64",
                candle_core::DType::F16 => "lincomb_f16",
                candle_core::DType::BF16 => "lincomb_bf16",
                dt => candle_core::bail!("lincomb: no CUDA kernel for {dt:?}"),
            };
            let threads = 256u32;
            let blocks = n.div_ceil(threads as usize).clamp(1, 65535 * 8) as u32;
            let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };

            fn launch<T: CudaDType + DeviceRepr, A: DeviceRepr + Copy>(
                func_name: &str,
                dev: &candle_core::CudaDevice,
                cfg: LaunchConfig,
                storages: &[(&CudaStorage, &Layout)],
                coefs: [A; MAX_FUSED],
                n: usize,
            ) -> candle_core::Result<CudaStorage> {
                let func = dev.get_or_load_custom_func(func_name, MODULE, ptx()?)?;
                let m = storages.len();
                let mut views = Vec::with_capacity(MAX_FUSED);
                for (s, l) in storages {
                    let Some((a, b)) = l.contiguous_offsets() else {
                        candle_core::bail!("lincomb: CUDA kernel needs contiguous inputs")
                    };
                    views.push(s.as_cuda_slice::<T>()?.slice(a..b));
                }
                // SAFETY: every element is written by the kernel below before it is read.
                let out: CudaSlice<T> = unsafe { dev.alloc::<T>(n)? };
                let (n_arg, m_arg) = (n, m as i32);
                let mut b = func.builder();
                b.arg(&n_arg);
                b.arg(&m_arg);
                for i in 0..MAX_FUSED {
                    b.arg(&views[i.min(m - 1)]);
                }
                for c in coefs.iter() {
                    b.arg(c);
                }
                b.arg(&out);
                // SAFETY: the kernel reads n elements of each of the first m views and writes n
                // elements of `out`; all were checked or allocated with n elements.
                unsafe { b.launch(cfg) }.w()?;
                Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
            }

            let c32 = self.coefs.map(|c| c as f32);
            let out = match s0.dtype() {
                candle_core::DType::F32 => launch::<f32, f32>(func_name, &dev, cfg, &storages, c32, n)?,
                candle_core::DType::F64 => launch::<f64, f64>(func_name, &dev, cfg, &storages, self.coefs, n)?,
                candle_core::DType::F16 => launch::<f16, f32>(func_name, &dev, cfg, &storages, c32, n)?,
                _ => launch::<bf16, f32>(func_name, &dev, cfg, &storages, c32, n)?,
            };
            Ok((out, l0.shape().clone()))
        }
    }

    pub(super) fn fused_cuda(terms: &[(f64, &Tensor)]) -> Result<Tensor> {
        let mut coefs = [0.0; MAX_FUSED];
        for (c, (ci, _)) in coefs.iter_mut().zip(terms) {
            *c = *ci;
        }
        let rest = terms[1..].iter().map(|(_, t)| (*t).clone()).collect();
        Ok(terms[0].1.apply_op1_no_bwd(&Fused { coefs, rest })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Both paths of `all_finite` (a contiguous CPU scan; a strided view through the sum of
    /// zeros): values whose sum overflows the dtype are finite, one NaN or infinity is found.
    #[test]
    fn all_finite_does_not_overflow_and_finds_nan_and_inf() {
        for dtype in [DType::F64, DType::F32, DType::F16, DType::BF16] {
            let big = match dtype {
                DType::F64 => 1e307,
                DType::F32 => 1e37,
                _ => 30000.0, // f16 max is 65504; bf16 would not overflow here, which is fine
            };
            for bad in [None, Some(f64::NAN), Some(f64::INFINITY), Some(f64::NEG_INFINITY)] {
                let mut v = vec![big; 64 * 32];
                if let Some(b) = bad {
                    v[1000] = b;
                }
                let t = Tensor::from_vec(v, (64, 32), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                let strided = t.t().unwrap();
                assert!(t.is_contiguous() && !strided.is_contiguous());
                assert_eq!(all_finite(&t).unwrap(), bad.is_none(), "{dtype:?} {bad:?} contiguous");
                assert_eq!(all_finite(&strided).unwrap(), bad.is_none(), "{dtype:?} {bad:?} strided");
                // the sum the old check used overflows (except where the dtype's range is wide)
                if bad.is_none() && dtype != DType::BF16 {
                    let sum = t.sum_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
                    assert!(!sum.is_finite(), "{dtype:?}: {sum}");
                }
            }
        }
        let ints = Tensor::new(&[1u8, 2, 255], &Device::Cpu).unwrap();
        assert!(all_finite(&ints).unwrap());
    }
}
