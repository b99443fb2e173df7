//! The crate's size limits, in one place.
//!
//! No public constructor or sampling run allocates more than these limits allow from a size
//! given as a number (a step count, a table length, a config value); a larger request is
//! [`crate::Error::TooLarge`] (or, in the diffusers layer, [`crate::Error::DiffusersConfig`]
//! naming the JSON key), returned before anything is allocated. Data the caller passes in
//! (a list of times or points, a `trained_betas` table, tensors) is already allocated and is not
//! limited.
//!
//! | Limit | Applies to | Memory at the limit |
//! |---|---|---|
//! | [`MAX_STEPS`] = 100 000 | `Grid::new` steps, `Ipndm::diffusers_points`, `Pndm::diffusers_grid`, `DpmSolverSinglestep::orders`, `steps_for_nfe`'s answer, `DiffusersSampler::plan` / `timesteps` / `sample` steps | a grid of `MAX_STEPS` points and steps: about 12 MB |
//! | [`MAX_TRAIN_TIMESTEPS`] = 100 000 | `DiscreteVp::new` (generated beta tables), the diffusers `num_train_timesteps` | 2 tables of f64: 1.6 MB |
//! | [`MAX_MIXTURE_VALUES`] = 16 777 216 | `testing::GaussianMixture::example`'s `dim * k` | 134 MB of f64 |
//! | [`MAX_UNET_BLOCKS`] = 16 | `UNet2DConfig` (feature `unet`): `block_out_channels.len()` | the block list; the weights and activations follow the weights file, which must match the config |
//! | [`MAX_UNET_LAYERS_PER_BLOCK`] = 64 | `UNet2DConfig`: `layers_per_block` | as above |
//! | [`MAX_UNET_CHANNELS`] = 65 536 | `UNet2DConfig`: `in_channels`, `out_channels`, each `block_out_channels` entry, `time_embedding_dim`, `attention_head_dim` | as above |
//!
//! The UNet limits are checked by `UNet2DConfig::validate` (from `config.json`, serde and the
//! model constructors) before any weight is read or allocated, and their errors are
//! [`crate::Error::ModelConfig`] naming the config field and the limit; `downsample_padding`
//! must be 0 or 1 there. `UNet2DConfig::MAX_BLOCKS`, `MAX_LAYERS_PER_BLOCK` and `MAX_CHANNELS`
//! are these constants.
//!
//! Functions whose purpose is to return a number of values the caller asks for
//! (`SeededNoise::normal_vec(n)`, `GaussianMixture::sample_data(n, ..)`) allocate what they are
//! asked for, as `vec![0.0; n]` does.
//!
//! diffusers itself has no limits; 100 000 is 100 times the 1000 training timesteps of every
//! published DDPM / Stable Diffusion schedule and 100 times the largest step counts in use.
//!
//! ```
//! use diffusion_samplers::{limits, Edm, End, Error, Grid, Spacing};
//! let err = Grid::new(&Edm::default(), &Spacing::Karras { rho: 7.0 }, usize::MAX, End::Clean).unwrap_err();
//! assert!(matches!(err, Error::TooLarge { what: "steps", limit: limits::MAX_STEPS, .. }));
//! ```

use crate::error::{Error, Result};

/// The most sampling steps a grid, a step plan or a diffusers plan may have.
pub const MAX_STEPS: usize = 100_000;

/// The most training timesteps a generated discrete schedule table may have.
pub const MAX_TRAIN_TIMESTEPS: usize = 100_000;

/// The most mean values (`dim * k`) of a [`crate::testing::GaussianMixture::example`].
pub const MAX_MIXTURE_VALUES: usize = 1 << 24;

/// The most down (and up) blocks of a `UNet2DConfig` (`block_out_channels.len()`).
pub const MAX_UNET_BLOCKS: usize = 16;

/// The most ResNet layers per down block of a `UNet2DConfig` (`layers_per_block`).
pub const MAX_UNET_LAYERS_PER_BLOCK: usize = 64;

/// The most channels of any `UNet2DConfig` layer (`in_channels`, `out_channels`, each
/// `block_out_channels` entry, `time_embedding_dim`, `attention_head_dim`).
pub const MAX_UNET_CHANNELS: usize = 1 << 16;

/// `Ok(())` when `requested <= limit`, else [`Error::TooLarge`] naming `what`.
pub(crate) fn check(what: &'static str, requested: usize, limit: usize) -> Result<()> {
    if requested > limit {
        return Err(Error::TooLarge { what, requested, limit });
    }
    Ok(())
}
