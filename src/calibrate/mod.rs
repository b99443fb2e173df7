//! Calibration: step schedules and solver plans optimised for one model, saved as small files.
//!
//! A calibration solves a batch of calibration noises with a fine, error-controlled teacher (the
//! adaptive DPM-Solver, [`Teacher`]), then chooses the student's log-SNR points (and, if asked,
//! its per-step solver plan) so that the student's result at the requested number of network
//! evaluations is closest to the teacher's:
//!
//! 1. [`gits::search`]: dynamic programming over the teacher's own points with teacher-forced
//!    local errors (GITS, arXiv:2405.11326), no network evaluations beyond the teacher's;
//! 2. [`search::search`]: Nelder-Mead over the log-SNR points and the last point
//!    ([`Placement`]), alternating with a coordinate search over the plan (USF / S^3,
//!    arXiv:2312.07243), against the students' mean squared error to the teacher's endpoint
//!    (optionally LD3's soft teacher forcing, arXiv:2405.15506; the global-truncation-error
//!    objective of LD3 and DMN, arXiv:2402.17376).
//!
//! The result is a [`Grid`](crate::Grid) and a [`ScheduleFile`] that a later run loads without
//! recalibrating.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use diffusion_samplers::calibrate::{calibrate, Calibration};
//! use diffusion_samplers::{testing::GaussianMixture, DiscreteVp, Model, Prediction, SeededNoise};
//! let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
//! let gm = GaussianMixture::example(4, 3, 0)?;
//! let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
//! let noise = Tensor::from_vec(SeededNoise::new(1).normal_vec(64 * 4), (64, 4), &Device::Cpu)?;
//! let mut opts = Calibration::schedule("dpmpp_2m", 5);
//! opts.search.placement.max_evals = 60;
//! let cal = calibrate(&mut model, &noise, &opts)?;
//! assert_eq!(cal.grid.len(), 5);
//! assert!(cal.rmse <= cal.rmse_start);
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```

mod error;
mod file;
pub mod gits;
pub mod nelder_mead;
mod placement;
mod reference;
mod run;
pub mod search;

pub use error::CalibrationError;
pub use file::{CalibrationInfo, Expect, NoiseScheduleId, ScheduleFile, FORMAT, VERSION};
pub use placement::Placement;
pub use reference::{FinalStep, Reference, Teacher};
pub use run::{calibrate, solver_plan, Calibrated, Calibration, Cost, SOLVER_PLANS};
