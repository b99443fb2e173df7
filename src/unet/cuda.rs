//! The fused GroupNorm (+ SiLU) CUDA kernel (feature `cuda`): the GPU counterpart of
//! [`super::kernels::group_norm`], used by the UNet's forward pass on CUDA devices in place of
//! candle-nn's GroupNorm and SiLU (about ten kernel launches and as many intermediate tensors
//! per layer, one launch here). Convolutions and attention stay candle's (cuBLAS) on the GPU.
//!
//! One thread block per (image, group): two block reductions (mean, then the biased variance of
//! the deviations, as `torch.nn.GroupNorm`), then one pass writes `act((x - mean) / sqrt(var +
//! eps) * gamma_c + beta_c)`. F32, F16 and BF16 tensors (contiguous), computed in f32. The CUDA
//! C source is compiled once per process with NVRTC, as the `lincomb` kernel in `src/ops.rs`.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, CudaStorage, WrapErr};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use half::{bf16, f16};

use super::kernels::Act;
use crate::error::Result;

const MODULE: &str = "diffusion_samplers_unet_group_norm";

const SOURCE: &str = r#"
typedef unsigned short u16;
__device__ __forceinline__ float ld_f(const float* p, size_t i) { return p[i]; }
__device__ __forceinline__ float ld_h(const u16* p, size_t i) {
    float f; u16 h = p[i]; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ float ld_b(const u16* p, size_t i) {
    return __uint_as_float(((unsigned int)p[i]) << 16);
}
__device__ __forceinline__ float st_f(float f) { return f; }
__device__ __forceinline__ u16 st_h(float f) {
    u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ u16 st_b(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                        // round to nearest even
    return (u16)(u >> 16);
}

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v, float* red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); // red may still be read from the previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = (lane < (int)(blockDim.x >> 5)) ? red[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) red[0] = v;
    }
    __syncthreads();
    return red[0];
}

#define GROUP_NORM(NAME, T, LOAD, STORE)                                                          \
extern "C" __global__ void NAME(const T* x, const T* gamma, const T* beta, T* y,                  \
    const int channels, const int groups, const size_t hw, const float eps, const int silu) {     \
    __shared__ float red[32];                                                                     \
    const int b = blockIdx.x / groups, g = blockIdx.x % groups;                                   \
    const int cg = channels / groups;                                                             \
    const size_t n = (size_t)cg * hw;                                                             \
    const size_t base = ((size_t)b * channels + (size_t)g * cg) * hw;                             \
    float s = 0.0f;                                                                               \
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += LOAD(x, base + i);                  \
    const float mean = block_sum(s, red) / (float)n;                                              \
    float v = 0.0f;                                                                               \
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {                                        \
        const float d = LOAD(x, base + i) - mean;                                                 \
        v += d * d;                                                                               \
    }                                                                                             \
    const float rstd = 1.0f / sqrtf(block_sum(v, red) / (float)n + eps);                          \
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {                                        \
        const int c = g * cg + (int)(i / hw);                                                     \
        float z = (LOAD(x, base + i) - mean) * rstd * LOAD(gamma, c) + LOAD(beta, c);             \
        if (silu) z = z / (1.0f + expf(-z));                                                      \
        y[base + i] = STORE(z);                                                                   \
    }                                                                                             \
}
GROUP_NORM(unet_group_norm_f32, float, ld_f, st_f)
GROUP_NORM(unet_group_norm_f16, u16, ld_h, st_h)
GROUP_NORM(unet_group_norm_bf16, u16, ld_b, st_b)
"#;

/// The PTX, compiled once per process.
fn ptx() -> candle_core::Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    let compiled =
        PTX.get_or_init(|| cudarc::nvrtc::compile_ptx(SOURCE).map(|p| p.to_src()).map_err(|e| format!("{e:?}")));
    match compiled {
        Ok(p) => Ok(p.as_str()),
        Err(e) => Err(candle_core::Error::Msg(format!("NVRTC failed to compile the UNet GroupNorm kernel: {e}"))),
    }
}

/// Whether the kernel applies: a contiguous F32/F16/BF16 tensor of rank >= 3 on a CUDA device.
pub(crate) fn usable(x: &Tensor) -> bool {
    x.device().is_cuda() && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16) && x.rank() >= 3
}

struct GroupNormOp {
    groups: usize,
    eps: f64,
    act: Act,
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "unet-group-norm"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the CUDA GroupNorm op was applied to CPU tensors")
    }

    fn cuda_fwd(
        &self,
        sx: &CudaStorage,
        lx: &Layout,
        sg: &CudaStorage,
        lg: &Layout,
        sb: &CudaStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dims = lx.shape().dims();
        if dims.len() < 3 {
            candle_core::bail!("unet-group-norm: expected [batch, channels, ...], got {dims:?}")
        }
        let (batch, channels) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        if self.groups == 0 || channels % self.groups != 0 || lg.shape().elem_count() != channels {
            candle_core::bail!("unet-group-norm: {channels} channels in {} groups", self.groups)
        }
        if lb.shape().elem_count() != channels || sx.dtype() != sg.dtype() || sx.dtype() != sb.dtype() {
            candle_core::bail!("unet-group-norm: gamma and beta must be [{channels}] in the input's dtype")
        }
        let (Some(ox), Some(og), Some(ob)) =
            (lx.contiguous_offsets(), lg.contiguous_offsets(), lb.contiguous_offsets())
        else {
            candle_core::bail!("unet-group-norm: the CUDA kernel needs contiguous inputs")
        };
        let n = batch * channels * hw;
        let dev = sx.device.clone();
        let cfg = LaunchConfig {
            grid_dim: ((batch * self.groups) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = Args {
            channels: channels as i32,
            groups: self.groups as i32,
            hw,
            eps: self.eps as f32,
            silu: i32::from(self.act == Act::Silu),
        };

        struct Args {
            channels: i32,
            groups: i32,
            hw: usize,
            eps: f32,
            silu: i32,
        }

        #[allow(clippy::too_many_arguments)]
        fn launch<T: CudaDType + DeviceRepr>(
            func_name: &str,
            dev: &candle_core::CudaDevice,
            cfg: LaunchConfig,
            inputs: [(&CudaStorage, (usize, usize)); 3],
            n: usize,
            a: &Args,
        ) -> candle_core::Result<CudaStorage> {
            let func = dev.get_or_load_custom_func(func_name, MODULE, ptx()?)?;
            let [(sx, (x0, x1)), (sg, (g0, g1)), (sb, (b0, b1))] = inputs;
            let x = sx.as_cuda_slice::<T>()?.slice(x0..x1);
            let g = sg.as_cuda_slice::<T>()?.slice(g0..g1);
            let b = sb.as_cuda_slice::<T>()?.slice(b0..b1);
            // SAFETY: every element is written by the kernel below before it is read.
            let out: CudaSlice<T> = unsafe { dev.alloc::<T>(n)? };
            let mut bld = func.builder();
            bld.arg(&x);
            bld.arg(&g);
            bld.arg(&b);
            bld.arg(&out);
            bld.arg(&a.channels);
            bld.arg(&a.groups);
            bld.arg(&a.hw);
            bld.arg(&a.eps);
            bld.arg(&a.silu);
            // SAFETY: block (b, g) reads and writes the cg * hw elements of its group inside the
            // n = batch * channels * hw elements of x and out, and gamma/beta[c] for c < channels
            // (all checked above); the grid has batch * groups blocks.
            unsafe { bld.launch(cfg) }.w()?;
            Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
        }

        let inputs = [(sx, ox), (sg, og), (sb, ob)];
        let out = match sx.dtype() {
            DType::F32 => launch::<f32>("unet_group_norm_f32", &dev, cfg, inputs, n, &args)?,
            DType::F16 => launch::<f16>("unet_group_norm_f16", &dev, cfg, inputs, n, &args)?,
            DType::BF16 => launch::<bf16>("unet_group_norm_bf16", &dev, cfg, inputs, n, &args)?,
            dt => candle_core::bail!("unet-group-norm: no CUDA kernel for {dt:?}"),
        };
        Ok((out, lx.shape().clone()))
    }
}

/// GroupNorm (+ `act`) of `x` (`[B, C, ...]` on a CUDA device, see [`usable`]) in one launch.
pub(crate) fn group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    act: Act,
) -> Result<Tensor> {
    let (x, gamma, beta) = (x.contiguous()?, gamma.contiguous()?, beta.contiguous()?);
    Ok(x.apply_op3_no_bwd(&gamma, &beta, &GroupNormOp { groups, eps, act })?)
}
