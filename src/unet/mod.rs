//! A diffusers-compatible `UNet2DModel` (pixel-space DDPM UNet) on candle-nn, behind the cargo
//! feature `unet`.
//!
//! It reads diffusers' `config.json` and `diffusion_pytorch_model.safetensors` with diffusers'
//! tensor names, and computes what diffusers' `UNet2DModel` computes (checked against it to
//! 1e-4 in f32 by `tests/unet.rs`): a sinusoidal + MLP time embedding, ResNet blocks with
//! GroupNorm and SiLU, spatial self-attention, and the block types `DownBlock2D`,
//! `AttnDownBlock2D`, `UNetMidBlock2D`, `UpBlock2D`, `AttnUpBlock2D`. Other options (class
//! conditioning, Fourier embeddings, skip/FIR blocks, other activations) are rejected when the
//! config is parsed, with an error naming the field.
//!
//! The crate ships a small MNIST model of this class in `models/mnist-unet/` (used by the
//! examples). Public checkpoints of the class load the same way, e.g. the DDPM CIFAR-10 model
//! (Ho et al. 2020, arXiv:2006.11239) from the Hugging Face repository `google/ddpm-cifar10-32`:
//! download its `config.json` and `diffusion_pytorch_model.safetensors` into one folder (if a
//! repository only has `diffusion_pytorch_model.bin`, convert it once with diffusers:
//! `UNet2DModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)`), then
//! `UNet2DModel::load(folder, DType::F32, &device)`. A pipeline folder with a `unet/`
//! subfolder works too. `tests/unet.rs` checks that checkpoint's published config and full tensor
//! set (35.7 M parameters, legacy attention names) against diffusers with closed-form weights.
//!
//! ```no_run
//! use candle_core::{DType, Device, Tensor};
//! use diffusion_samplers::unet::UNet2DModel;
//! use diffusion_samplers::{sample, DiscreteVp, DpmSolverMultistep, End, Grid, Model, Prediction, Spacing};
//!
//! let device = Device::Cpu;
//! let unet = UNet2DModel::load("models/mnist-unet", DType::F32, &device)?;
//! let schedule = DiscreteVp::linear(1e-4, 0.02, 1000)?;
//! let grid = Grid::new(&schedule, &Spacing::TimeQuadratic, 10, End::Clean)?;
//! let mut model = Model::new(&unet, &schedule, Prediction::Epsilon);
//! let noise = Tensor::randn(0f32, 1.0, (16, 1, 32, 32), &device)?;
//! let digits = sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &noise)?; // in [-1, 1]
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```

mod config;
#[cfg(feature = "cuda")]
mod cuda;
mod fused;
mod kernels;
mod layers;
#[cfg(test)]
mod tests;
mod weights;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Linear};

pub use config::{
    DownBlockType, InputCentering, MidAttention, MidBlockType, Resample, SinCosOrder, TimeScaleShift, UNet2DConfig,
    UpBlockType,
};
use kernels::Act;
use layers::{
    conv2d, group_norm, linear, timestep_embedding, ConvDownsample, ConvUpsample, Norm, ResnetBlock, ResnetResample,
    ResnetSpec, SpatialAttention,
};
use weights::Weights;

use crate::error::{Error, Result};
use crate::model::Denoiser;

/// The file names diffusers uses in a model folder.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file name diffusers uses in a model folder.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

enum Downsampler {
    Conv(ConvDownsample),
    Resnet(Box<ResnetBlock>),
}

enum Upsampler {
    Conv(ConvUpsample),
    Resnet(Box<ResnetBlock>),
}

struct DownBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialAttention>,
    downsampler: Option<Downsampler>,
}

struct MidBlock {
    first: ResnetBlock,
    layers: Vec<(Option<SpatialAttention>, ResnetBlock)>,
}

struct UpBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialAttention>,
    upsampler: Option<Upsampler>,
}

/// diffusers' `UNet2DModel`: an unconditional pixel-space UNet predicting noise (or whatever
/// its training objective was) from `(x_t, timestep)`.
///
/// It is a [`Denoiser`] (by reference, so one loaded model serves many [`crate::Model`]s): the
/// model time the samplers pass is the diffusers timestep (0..999 for a 1000-step DDPM, possibly
/// fractional). Inputs of any float dtype are cast to the weights' dtype and the output back.
pub struct UNet2DModel {
    config: UNet2DConfig,
    dtype: DType,
    device: Device,
    conv_in: Conv2d,
    time_linear_1: Linear,
    time_linear_2: Linear,
    down: Vec<DownBlock>,
    mid: Option<MidBlock>,
    up: Vec<UpBlock>,
    conv_norm_out: Norm,
    conv_out: Conv2d,
}

impl std::fmt::Debug for UNet2DModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UNet2DModel").field("dtype", &self.dtype).field("config", &self.config).finish_non_exhaustive()
    }
}

impl UNet2DModel {
    /// Load a diffusers model folder holding `config.json` and
    /// `diffusion_pytorch_model.safetensors` (or a pipeline folder with them under `unet/`),
    /// with the weights converted to `dtype` on `device`.
    ///
    /// Errors (before anything is read): a non-float `dtype` ([`Error::InvalidConfig`]); BF16 on
    /// the CPU ([`Error::Unsupported`]: candle's CPU matmul has no BF16 kernel; use F32, which
    /// runs the fused kernels, or F16). Then a missing or malformed config or weights file, a config over
    /// the documented limits ([`UNet2DConfig::validate`]) and weights that disagree with the
    /// config, each a typed error naming the file, field or tensor.
    pub fn load(dir: impl AsRef<Path>, dtype: DType, device: &Device) -> Result<UNet2DModel> {
        check_dtype(dtype, device)?;
        let dir = dir.as_ref();
        let dir = if !dir.join(CONFIG_FILE).is_file() && dir.join("unet").join(CONFIG_FILE).is_file() {
            dir.join("unet")
        } else {
            dir.to_path_buf()
        };
        Self::from_files(dir.join(CONFIG_FILE), dir.join(WEIGHTS_FILE), dtype, device)
    }

    /// Load from an explicit `config.json` and safetensors weights file (errors as
    /// [`UNet2DModel::load`]).
    pub fn from_files(
        config: impl AsRef<Path>,
        weights: impl AsRef<Path>,
        dtype: DType,
        device: &Device,
    ) -> Result<UNet2DModel> {
        check_dtype(dtype, device)?;
        let config = UNet2DConfig::from_file(config)?;
        let weights = Weights::from_file(weights.as_ref(), dtype, device)?;
        Self::build(config, &weights, dtype, device)
    }

    /// Build from a config and tensors already in memory (diffusers names), e.g. from
    /// `candle_core::safetensors::load` (errors as [`UNet2DModel::load`]).
    pub fn from_tensors(
        config: UNet2DConfig,
        tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<UNet2DModel> {
        check_dtype(dtype, device)?;
        config.validate()?;
        let weights = Weights::new(tensors, "<tensors in memory>".into(), dtype, device);
        Self::build(config, &weights, dtype, device)
    }

    fn build(config: UNet2DConfig, w: &Weights, dtype: DType, device: &Device) -> Result<UNet2DModel> {
        check_dtype(dtype, device)?;
        config.validate()?;
        let c = &config;
        let ch = &c.block_out_channels;
        let n = ch.len();
        let temb = c.time_embed_dim();
        let spec = ResnetSpec { temb, groups: c.norm_num_groups, eps: c.norm_eps, shift: c.resnet_time_scale_shift };

        let conv_in = conv2d(w, "conv_in", c.in_channels, ch[0], 3, 1, 1)?;
        let time_linear_1 = linear(w, "time_embedding.linear_1", None, ch[0], temb)?;
        let time_linear_2 = linear(w, "time_embedding.linear_2", None, temb, temb)?;

        let mut down = Vec::with_capacity(n);
        let mut c_out = ch[0];
        for (i, kind) in c.down_block_types.iter().enumerate() {
            let c_in = c_out;
            c_out = ch[i];
            let name = format!("down_blocks.{i}");
            let attn = *kind == DownBlockType::AttnDownBlock2D;
            let inputs: Vec<usize> = (0..c.layers_per_block).map(|j| if j == 0 { c_in } else { c_out }).collect();
            let (resnets, attentions) = block_layers(w, c, spec, &name, &inputs, c_out, attn)?;
            let ds = format!("{name}.downsamplers.0");
            let downsampler = match (i + 1 < n, attn, c.downsample_type) {
                (false, _, _) => None,
                (true, true, Resample::Resnet) => Some(Downsampler::Resnet(Box::new(ResnetBlock::load(
                    w,
                    &ds,
                    c_out,
                    c_out,
                    spec,
                    1.0,
                    ResnetResample::Down,
                )?))),
                (true, _, _) => Some(Downsampler::Conv(ConvDownsample::load(
                    w,
                    &format!("{ds}.conv"),
                    c_out,
                    c.downsample_padding,
                )?)),
            };
            down.push(DownBlock { resnets, attentions, downsampler });
        }

        let mid = match c.mid_block_type {
            None => None,
            Some(MidBlockType::UNetMidBlock2D) => {
                let cm = ch[n - 1];
                let f = c.mid_block_scale_factor;
                let attn_groups = c.attn_norm_num_groups.or(match c.resnet_time_scale_shift {
                    TimeScaleShift::Default => Some(c.norm_num_groups),
                    TimeScaleShift::ScaleShift => None,
                });
                let first = ResnetBlock::load(w, "mid_block.resnets.0", cm, cm, spec, f, ResnetResample::None)?;
                let attention = match c.add_attention {
                    MidAttention::On => Some(SpatialAttention::load(
                        w,
                        "mid_block.attentions.0",
                        cm,
                        c.head_dim(cm),
                        attn_groups,
                        c.norm_eps,
                        f,
                    )?),
                    MidAttention::Off => None,
                };
                let second = ResnetBlock::load(w, "mid_block.resnets.1", cm, cm, spec, f, ResnetResample::None)?;
                Some(MidBlock { first, layers: vec![(attention, second)] })
            }
        };

        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(n);
        let mut c_out = rev[0];
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let prev = c_out;
            c_out = rev[i];
            let c_in = rev[(i + 1).min(n - 1)];
            let name = format!("up_blocks.{i}");
            let attn = *kind == UpBlockType::AttnUpBlock2D;
            let layers = c.layers_per_block + 1;
            // each resnet takes the previous layer's output concatenated with one skip connection
            let inputs: Vec<usize> = (0..layers)
                .map(|j| (if j == 0 { prev } else { c_out }) + (if j == layers - 1 { c_in } else { c_out }))
                .collect();
            let (resnets, attentions) = block_layers(w, c, spec, &name, &inputs, c_out, attn)?;
            let us = format!("{name}.upsamplers.0");
            let upsampler = match (i + 1 < n, attn, c.upsample_type) {
                (false, _, _) => None,
                (true, true, Resample::Resnet) => Some(Upsampler::Resnet(Box::new(ResnetBlock::load(
                    w,
                    &us,
                    c_out,
                    c_out,
                    spec,
                    1.0,
                    ResnetResample::Up,
                )?))),
                (true, _, _) => Some(Upsampler::Conv(ConvUpsample::load(w, &format!("{us}.conv"), c_out)?)),
            };
            up.push(UpBlock { resnets, attentions, upsampler });
        }

        let conv_norm_out = group_norm(w, "conv_norm_out", c.norm_num_groups, ch[0], c.norm_eps)?;
        let conv_out = conv2d(w, "conv_out", ch[0], c.out_channels, 3, 1, 1)?;
        w.check_all_used()?;
        Ok(UNet2DModel {
            config,
            dtype,
            device: device.clone(),
            conv_in,
            time_linear_1,
            time_linear_2,
            down,
            mid,
            up,
            conv_norm_out,
            conv_out,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &UNet2DConfig {
        &self.config
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The weights' device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Check an input shape: `[batch, in_channels, H, W]` with `H`, `W` multiples of
    /// [`UNet2DConfig::downsampling_factor`].
    fn check_input(&self, x: &Tensor) -> Result<()> {
        let f = self.config.downsampling_factor();
        let ok = match x.dims() {
            &[b, c, h, w] => b > 0 && c == self.config.in_channels && h > 0 && w > 0 && h % f == 0 && w % f == 0,
            _ => false,
        };
        if !ok {
            return Err(Error::Unsupported(format!(
                "UNet2DModel input has shape {:?}: expected [batch, {}, H, W] with H and W positive multiples of {f}",
                x.dims(),
                self.config.in_channels
            )));
        }
        if !x.dtype().is_float() {
            return Err(Error::Unsupported(format!(
                "UNet2DModel input has dtype {:?}: pass a float tensor",
                x.dtype()
            )));
        }
        Ok(())
    }

    /// The network output for `x` (`[batch, in_channels, H, W]`) at diffusers timestep
    /// `timestep` (the same for the whole batch), in `x`'s dtype.
    ///
    /// With f32 weights on the CPU the layers run as fused kernels (GroupNorm + SiLU in one
    /// pass, convolutions that write their bias, time embedding, residual and shortcut in
    /// place, attention without layout copies; see BENCHMARKS.md, "UNet forward"). Elsewhere
    /// they run as candle's composed operations, [`UNet2DModel::forward_composed`], except
    /// that on CUDA devices (feature `cuda`) GroupNorm + SiLU is one fused kernel. All compute
    /// the same function (they differ by float rounding, ~1e-6 on the bundled model in f32).
    pub fn forward(&self, x: &Tensor, timestep: f64) -> Result<Tensor> {
        self.run(x, timestep, true)
    }

    /// [`UNet2DModel::forward`] through candle's composed operations only, on every device and
    /// dtype (no fused kernel): the reference the tests compare the fused paths with, and the
    /// "before" of the forward benchmark (`examples/bench_unet.rs --composed`).
    pub fn forward_composed(&self, x: &Tensor, timestep: f64) -> Result<Tensor> {
        self.run(x, timestep, false)
    }

    fn run(&self, x: &Tensor, timestep: f64, allow_fused: bool) -> Result<Tensor> {
        self.check_input(x)?;
        if !timestep.is_finite() {
            return Err(Error::Unsupported(format!("UNet2DModel timestep must be finite, got {timestep}")));
        }
        let in_dtype = x.dtype();
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let x = match self.config.center_input_sample {
            InputCentering::None => x,
            InputCentering::Center => x.affine(2.0, -1.0)?,
        };
        let c = &self.config;
        let t_emb = timestep_embedding(
            timestep,
            c.block_out_channels[0],
            c.flip_sin_to_cos,
            c.freq_shift,
            self.dtype,
            &self.device,
        )?;
        let emb = self.time_linear_2.forward(&candle_nn::ops::silu(&self.time_linear_1.forward(&t_emb)?)?)?;
        let temb_act = candle_nn::ops::silu(&emb)?; // every ResNet block applies SiLU first
        let out = if allow_fused && fused::usable(&x) {
            self.layers_fused(&x, &temb_act)?
        } else {
            self.layers_composed(&x, &temb_act, allow_fused)?
        };
        Ok(out.to_dtype(in_dtype)?)
    }

    /// Everything after the time embedding, with candle's composed operations (`device`: the
    /// fused CUDA GroupNorm where it applies).
    fn layers_composed(&self, x: &Tensor, temb_act: &Tensor, device: bool) -> Result<Tensor> {
        let temb_act = temb_act.clone();
        let mut h = self.conv_in.forward(x)?;
        let mut skips = vec![h.clone()];
        for block in &self.down {
            for (j, resnet) in block.resnets.iter().enumerate() {
                h = resnet.forward(&h, &temb_act, device)?;
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward(&h, device)?;
                }
                skips.push(h.clone());
            }
            if let Some(ds) = &block.downsampler {
                h = match ds {
                    Downsampler::Conv(d) => d.forward(&h)?,
                    Downsampler::Resnet(r) => r.forward(&h, &temb_act, device)?,
                };
                skips.push(h.clone());
            }
        }
        if let Some(mid) = &self.mid {
            h = mid.first.forward(&h, &temb_act, device)?;
            for (attn, resnet) in &mid.layers {
                if let Some(a) = attn {
                    h = a.forward(&h, device)?;
                }
                h = resnet.forward(&h, &temb_act, device)?;
            }
        }
        for block in &self.up {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().ok_or_else(|| Error::Unsupported("UNet skip connections exhausted".into()))?;
                h = Tensor::cat(&[&h, &skip], 1)?;
                h = resnet.forward(&h, &temb_act, device)?;
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward(&h, device)?;
                }
            }
            if let Some(us) = &block.upsampler {
                h = match us {
                    Upsampler::Conv(u) => u.forward(&h)?,
                    Upsampler::Resnet(r) => r.forward(&h, &temb_act, device)?,
                };
            }
        }
        let h = self.conv_norm_out.forward(&h, Act::Silu, device)?;
        Ok(self.conv_out.forward(&h)?)
    }

    /// Everything after the time embedding, with the fused CPU kernels (f32 on the CPU).
    fn layers_fused(&self, x: &Tensor, temb_act: &Tensor) -> Result<Tensor> {
        let conv = |c: &Conv2d, parts: &[&Tensor]| -> Result<Tensor> {
            let bias = c.bias().ok_or_else(|| Error::Unsupported("UNet convolution without a bias".into()))?;
            let p = fused::ConvParams { weight: c.weight(), bias, stride: 1, pad: 1, pad_end: 1, upsample: false };
            fused::conv2d(parts, &p, fused::Skip::None, 1.0)
        };
        let mut h = conv(&self.conv_in, &[x])?;
        let mut skips = vec![h.clone()];
        for block in &self.down {
            for (j, resnet) in block.resnets.iter().enumerate() {
                h = resnet.forward_fused(&[&h], temb_act)?;
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward_fused(&h)?;
                }
                skips.push(h.clone());
            }
            if let Some(ds) = &block.downsampler {
                h = match ds {
                    Downsampler::Conv(d) => d.forward_fused(&h)?,
                    Downsampler::Resnet(r) => r.forward_fused(&[&h], temb_act)?,
                };
                skips.push(h.clone());
            }
        }
        if let Some(mid) = &self.mid {
            h = mid.first.forward_fused(&[&h], temb_act)?;
            for (attn, resnet) in &mid.layers {
                if let Some(a) = attn {
                    h = a.forward_fused(&h)?;
                }
                h = resnet.forward_fused(&[&h], temb_act)?;
            }
        }
        for block in &self.up {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().ok_or_else(|| Error::Unsupported("UNet skip connections exhausted".into()))?;
                // the concatenation [h, skip] is read in place by the block's kernels
                h = resnet.forward_fused(&[&h, &skip], temb_act)?;
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward_fused(&h)?;
                }
            }
            if let Some(us) = &block.upsampler {
                h = match us {
                    Upsampler::Conv(u) => u.forward_fused(&h)?,
                    Upsampler::Resnet(r) => r.forward_fused(&[&h], temb_act)?,
                };
            }
        }
        let h = self.conv_norm_out.forward_fused(&[&h], Act::Silu)?;
        conv(&self.conv_out, &[&h])
    }
}

impl Denoiser for &UNet2DModel {
    fn denoise(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<Tensor> {
        self.forward(x, model_time).map_err(|e| match e {
            Error::Candle(c) => c,
            other => candle_core::Error::wrap(other),
        })
    }
}

impl Denoiser for UNet2DModel {
    fn denoise(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<Tensor> {
        let mut r: &UNet2DModel = self;
        r.denoise(x, model_time)
    }
}

/// The weights' dtype must be a float type that runs on `device`.
fn check_dtype(dtype: DType, device: &Device) -> Result<()> {
    if !dtype.is_float() {
        return Err(Error::InvalidConfig(format!("UNet weights dtype must be a float type, got {dtype:?}")));
    }
    if dtype == DType::BF16 && device.is_cpu() {
        return Err(Error::Unsupported(
            "UNet2DModel with BF16 weights on the CPU: candle's CPU matmul has no BF16 kernel, so every forward \
             would fail; load with DType::F32 (the fastest on the CPU) or DType::F16"
                .into(),
        ));
    }
    Ok(())
}

/// The resnets (input channels `inputs[j]`, output `c_out`) and, for attention blocks, the
/// self-attention after each, of down or up block `name`.
fn block_layers(
    w: &Weights,
    c: &UNet2DConfig,
    spec: ResnetSpec,
    name: &str,
    inputs: &[usize],
    c_out: usize,
    attn: bool,
) -> Result<(Vec<ResnetBlock>, Vec<SpatialAttention>)> {
    let mut resnets = Vec::with_capacity(inputs.len());
    let mut attentions = Vec::new();
    for (j, &r_in) in inputs.iter().enumerate() {
        resnets.push(ResnetBlock::load(
            w,
            &format!("{name}.resnets.{j}"),
            r_in,
            c_out,
            spec,
            1.0,
            ResnetResample::None,
        )?);
        if attn {
            attentions.push(SpatialAttention::load(
                w,
                &format!("{name}.attentions.{j}"),
                c_out,
                c.head_dim(c_out),
                Some(c.norm_num_groups),
                c.norm_eps,
                1.0,
            )?);
        }
    }
    Ok((resnets, attentions))
}
