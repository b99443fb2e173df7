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

/// `Ok(())` when `requested <= limit`, else [`Error::TooLarge`] naming `what`.
pub(crate) fn check(what: &'static str, requested: usize, limit: usize) -> Result<()> {
    if requested > limit {
        return Err(Error::TooLarge { what, requested, limit });
    }
    Ok(())
}
