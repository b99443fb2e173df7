//! What can go wrong when calibrating or loading a calibrated schedule.

/// Errors of calibration and of saved schedule/plan files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    /// No calibration noises were given.
    #[error("calibration needs at least one calibration noise: pass a batch with at least one sample")]
    NoNoise,
}
