//! [`XlUNet`]: candle-transformers' UNet blocks wired as diffusers' `UNet2DConditionModel` with
//! SDXL's added conditioning (`addition_embed_type = "text_time"`).
//!
//! candle-transformers 0.11's `UNet2DConditionModel::forward(x, t, text)` has no added
//! conditioning: it never loads SDXL's `add_embedding` weights, so its SDXL runs without the
//! pooled text embedding and the size/crop `time_ids` the model was trained with. This type
//! reuses candle-transformers' public blocks (down, mid, up, time embedding) unchanged and only
//! redoes the top-level wiring, adding diffusers' (`unet_2d_condition.py`, `get_aug_embed`)
//!
//! ```text
//! time_embeds = add_time_proj(time_ids.flatten()).reshape(n, -1)       # 6 x 256 sinusoids
//! emb = time_embedding(time_proj(t)) + add_embedding(cat[text_embeds, time_embeds])
//! ```
//!
//! With no added conditioning configured it computes exactly what candle-transformers' UNet
//! computes (tested elementwise), so it also serves SD 1.x / 2.x.

use candle_core::{Module, Tensor};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};
use candle_transformers::models::stable_diffusion::unet_2d::{BlockConfig, UNet2DConditionModelConfig};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    CrossAttnDownBlock2D, CrossAttnDownBlock2DConfig, CrossAttnUpBlock2D, CrossAttnUpBlock2DConfig, DownBlock2D,
    DownBlock2DConfig, UNetMidBlock2DCrossAttn, UNetMidBlock2DCrossAttnConfig, UpBlock2D, UpBlock2DConfig,
};

use super::adapter::{Conditioning, TextUNet};

/// SDXL's added-conditioning sizes (diffusers' `addition_time_embed_dim` and
/// `projection_class_embeddings_input_dim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddedEmbedConfig {
    /// Sinusoid width per `time_ids` entry (256 for SDXL).
    pub time_embed_dim: usize,
    /// Input width of `add_embedding`: pooled text width + 6 x `time_embed_dim` (2816 for SDXL).
    pub input_dim: usize,
}

impl AddedEmbedConfig {
    /// SDXL base / Turbo: 256 and 1280 + 6 x 256 = 2816.
    pub fn sdxl() -> AddedEmbedConfig {
        AddedEmbedConfig { time_embed_dim: 256, input_dim: 2816 }
    }
}

enum Down {
    Basic(DownBlock2D),
    CrossAttn(CrossAttnDownBlock2D),
}

enum Up {
    Basic(UpBlock2D),
    CrossAttn(CrossAttnUpBlock2D),
}

struct Added {
    time_proj: Timesteps,
    embedding: TimestepEmbedding,
    config: AddedEmbedConfig,
}

/// diffusers' `UNet2DConditionModel` from candle-transformers' blocks, with optional SDXL added
/// conditioning (see the module docs). Weight names are diffusers'.
pub struct XlUNet {
    conv_in: nn::Conv2d,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    added: Option<Added>,
    down_blocks: Vec<Down>,
    mid_block: UNetMidBlock2DCrossAttn,
    up_blocks: Vec<Up>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2d,
    config: UNet2DConditionModelConfig,
}

impl std::fmt::Debug for XlUNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XlUNet")
            .field("config", &self.config)
            .field("added", &self.added.as_ref().map(|a| a.config))
            .finish()
    }
}

impl XlUNet {
    /// Build from `vs` (diffusers' names) for `config`, with SDXL's added conditioning when
    /// `added` is given (`add_time_proj` has no weights; `add_embedding.linear_1/2` are loaded).
    pub fn new(
        vs: nn::VarBuilder,
        in_channels: usize,
        out_channels: usize,
        use_flash_attn: bool,
        config: UNet2DConditionModelConfig,
        added: Option<AddedEmbedConfig>,
    ) -> candle_core::Result<XlUNet> {
        let blocks = config.blocks.clone();
        let (first, last) = match (blocks.first(), blocks.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => candle_core::bail!("UNet config has no blocks"),
        };
        let n = blocks.len();
        let b_channels = first.out_channels;
        let time_embed_dim = b_channels * 4;
        let conv_cfg = nn::Conv2dConfig { padding: 1, ..Default::default() };
        let conv_in = nn::conv2d(in_channels, b_channels, 3, conv_cfg, vs.pp("conv_in"))?;
        let time_proj = Timesteps::new(b_channels, config.flip_sin_to_cos, config.freq_shift);
        let time_embedding = TimestepEmbedding::new(vs.pp("time_embedding"), b_channels, time_embed_dim)?;
        let added = match added {
            Some(a) => Some(Added {
                time_proj: Timesteps::new(a.time_embed_dim, config.flip_sin_to_cos, config.freq_shift),
                embedding: TimestepEmbedding::new(vs.pp("add_embedding"), a.input_dim, time_embed_dim)?,
                config: a,
            }),
            None => None,
        };
        let sliced = |head_dim: usize| match config.sliced_attention_size {
            Some(0) => Some(head_dim / 2),
            s => s,
        };

        let vs_db = vs.pp("down_blocks");
        let mut down_blocks = Vec::with_capacity(n);
        for (i, &BlockConfig { out_channels, use_cross_attn, attention_head_dim }) in blocks.iter().enumerate() {
            let in_ch = if i > 0 { blocks[i - 1].out_channels } else { b_channels };
            let db = DownBlock2DConfig {
                num_layers: config.layers_per_block,
                resnet_eps: config.norm_eps,
                resnet_groups: config.norm_num_groups,
                add_downsample: i + 1 < n,
                downsample_padding: config.downsample_padding,
                ..Default::default()
            };
            let vsi = vs_db.pp(i.to_string());
            down_blocks.push(match use_cross_attn {
                Some(layers) => {
                    let cfg = CrossAttnDownBlock2DConfig {
                        downblock: db,
                        attn_num_head_channels: attention_head_dim,
                        cross_attention_dim: config.cross_attention_dim,
                        sliced_attention_size: sliced(attention_head_dim),
                        use_linear_projection: config.use_linear_projection,
                        transformer_layers_per_block: layers,
                    };
                    let b =
                        CrossAttnDownBlock2D::new(vsi, in_ch, out_channels, Some(time_embed_dim), use_flash_attn, cfg)?;
                    Down::CrossAttn(b)
                }
                None => Down::Basic(DownBlock2D::new(vsi, in_ch, out_channels, Some(time_embed_dim), db)?),
            });
        }

        let mid_cfg = UNetMidBlock2DCrossAttnConfig {
            resnet_eps: config.norm_eps,
            output_scale_factor: config.mid_block_scale_factor,
            cross_attn_dim: config.cross_attention_dim,
            attn_num_head_channels: last.attention_head_dim,
            resnet_groups: Some(config.norm_num_groups),
            use_linear_projection: config.use_linear_projection,
            transformer_layers_per_block: last.use_cross_attn.unwrap_or(1),
            ..Default::default()
        };
        let mid_block = UNetMidBlock2DCrossAttn::new(
            vs.pp("mid_block"),
            last.out_channels,
            Some(time_embed_dim),
            use_flash_attn,
            mid_cfg,
        )?;

        let vs_ub = vs.pp("up_blocks");
        let mut up_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let BlockConfig { out_channels, use_cross_attn, attention_head_dim } = blocks[n - 1 - i];
            let prev_out = if i > 0 { blocks[n - i].out_channels } else { last.out_channels };
            let in_ch = blocks[if i == n - 1 { 0 } else { n - i - 2 }].out_channels;
            let ub = UpBlock2DConfig {
                num_layers: config.layers_per_block + 1,
                resnet_eps: config.norm_eps,
                resnet_groups: config.norm_num_groups,
                add_upsample: i + 1 < n,
                ..Default::default()
            };
            let vsi = vs_ub.pp(i.to_string());
            up_blocks.push(match use_cross_attn {
                Some(layers) => {
                    let cfg = CrossAttnUpBlock2DConfig {
                        upblock: ub,
                        attn_num_head_channels: attention_head_dim,
                        cross_attention_dim: config.cross_attention_dim,
                        sliced_attention_size: sliced(attention_head_dim),
                        use_linear_projection: config.use_linear_projection,
                        transformer_layers_per_block: layers,
                    };
                    let t = Some(time_embed_dim);
                    Up::CrossAttn(CrossAttnUpBlock2D::new(vsi, in_ch, prev_out, out_channels, t, use_flash_attn, cfg)?)
                }
                None => Up::Basic(UpBlock2D::new(vsi, in_ch, prev_out, out_channels, Some(time_embed_dim), ub)?),
            });
        }

        let conv_norm_out =
            nn::group_norm(config.norm_num_groups, b_channels, config.norm_eps, vs.pp("conv_norm_out"))?;
        let conv_out = nn::conv2d(b_channels, out_channels, 3, conv_cfg, vs.pp("conv_out"))?;
        Ok(XlUNet {
            conv_in,
            time_proj,
            time_embedding,
            added,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            config,
        })
    }

    /// True when built with SDXL's added conditioning.
    pub fn has_added_conditioning(&self) -> bool {
        self.added.is_some()
    }

    /// One forward pass: latents `[n, c, h, w]`, the diffusers timestep, text embeddings
    /// `[n, tokens, cross_attention_dim]`, and (exactly when built with it) the added
    /// conditioning.
    pub fn forward(&self, x: &Tensor, timestep: f64, cond: &Conditioning) -> candle_core::Result<Tensor> {
        let (n, _c, height, width) = x.dims4()?;
        let text = &cond.text;
        let n_blocks = self.config.blocks.len();
        let factor = 1usize << (n_blocks - 1);
        let forward_upsample_size = height % factor != 0 || width % factor != 0;
        let x = if self.config.center_input_sample { ((x * 2.0)? - 1.0)? } else { x.clone() };

        // 1. time (+ added conditioning)
        let t = (Tensor::ones(n, x.dtype(), x.device())? * timestep)?;
        let mut emb = self.time_embedding.forward(&self.time_proj.forward(&t)?)?;
        match (&self.added, &cond.added) {
            (Some(a), Some(c)) => {
                let ids = c.time_ids.to_dtype(x.dtype())?;
                let (rows, k) = ids.dims2()?;
                if rows != n {
                    candle_core::bail!("added conditioning time_ids have batch {rows}, the latents {n}");
                }
                let time_embeds =
                    a.time_proj.forward(&ids.flatten_all()?)?.reshape((n, k * a.config.time_embed_dim))?;
                let add = Tensor::cat(&[&c.text_embeds.to_dtype(x.dtype())?, &time_embeds], 1)?;
                emb = (emb + a.embedding.forward(&add)?)?;
            }
            (Some(_), None) => candle_core::bail!(
                "this UNet was built with SDXL's added conditioning: pass text_embeds and time_ids \
                 (Conditioning::added)"
            ),
            (None, Some(_)) => candle_core::bail!(
                "this UNet was built without added conditioning but the conditioning carries SDXL's \
                 text_embeds / time_ids: build it with AddedEmbedConfig::sdxl()"
            ),
            (None, None) => {}
        }

        // 2. down
        let x = self.conv_in.forward(&x)?;
        let mut res = vec![x.clone()];
        let mut x = x;
        for block in &self.down_blocks {
            let (out, states) = match block {
                Down::Basic(b) => b.forward(&x, Some(&emb))?,
                Down::CrossAttn(b) => b.forward(&x, Some(&emb), Some(text))?,
            };
            res.extend(states);
            x = out;
        }
        // 3. mid
        let mut x = self.mid_block.forward(&x, Some(&emb), Some(text))?;
        // 4. up
        let mut upsample_size = None;
        for (i, block) in self.up_blocks.iter().enumerate() {
            let n_res = self.config.layers_per_block + 1;
            if res.len() < n_res {
                candle_core::bail!("UNet wiring: {} skip connections left, {n_res} needed", res.len());
            }
            let skips = res.split_off(res.len() - n_res);
            if i + 1 < n_blocks && forward_upsample_size {
                if let Some(last) = res.last() {
                    let (_, _, h, w) = last.dims4()?;
                    upsample_size = Some((h, w));
                }
            }
            x = match block {
                Up::Basic(b) => b.forward(&x, &skips, Some(&emb), upsample_size)?,
                Up::CrossAttn(b) => b.forward(&x, &skips, Some(&emb), upsample_size, Some(text))?,
            };
        }
        // 5. out
        let x = nn::ops::silu(&self.conv_norm_out.forward(&x)?)?;
        self.conv_out.forward(&x)
    }
}

impl TextUNet for XlUNet {
    fn predict(&self, x: &Tensor, timestep: f64, cond: &Conditioning) -> candle_core::Result<Tensor> {
        self.forward(x, timestep, cond)
    }
}
