//! What can go wrong when calibrating or loading a calibrated schedule.

/// Errors of calibration and of saved schedule/plan files. Each names what is wrong and what to
/// do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    /// No calibration noises were given.
    #[error("calibration needs at least one calibration noise: pass a batch with at least one sample")]
    NoNoise,

    /// The requested number of evaluations cannot be met by the method.
    #[error("{method} cannot make a schedule of {nfe} evaluations: {reason}")]
    Budget {
        /// The calibration method.
        method: String,
        /// The requested budget.
        nfe: usize,
        /// Why, and what to ask for instead.
        reason: String,
    },

    /// A schedule file could not be read.
    #[error("cannot read schedule file {path}: {reason}")]
    FileRead {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },

    /// A schedule file is not valid JSON of the expected form (corrupt, truncated, a field
    /// missing or of the wrong type, another format or version).
    #[error("schedule file {path} is not a valid schedule: {reason}")]
    FileFormat {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// A schedule's points are unusable (not finite, not strictly decreasing in noise, outside
    /// the schedule's range, times and sigmas that disagree, a plan of the wrong length).
    #[error("schedule file {path} holds an invalid schedule: {reason}; recalibrate, or restore the file")]
    InvalidSchedule {
        /// The file (or `<memory>`).
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// A schedule file made for another model.
    #[error("schedule file {path} was made for model {found:?}, not {expected:?}: calibrate this model, or load the file made for it")]
    WrongModel {
        /// The file.
        path: String,
        /// The model the caller runs.
        expected: String,
        /// The model the file names.
        found: String,
    },

    /// A schedule file made on another noise schedule.
    #[error("schedule file {path} was made on another noise schedule: {reason}")]
    WrongNoiseSchedule {
        /// The file.
        path: String,
        /// What differs.
        reason: String,
    },

    /// A schedule file made for another solver.
    #[error("schedule file {path} was made for solver {found:?}, not {expected:?}: run it with {found:?}, or calibrate for {expected:?}")]
    WrongSolver {
        /// The file.
        path: String,
        /// The solver the caller runs.
        expected: String,
        /// The solver the file names.
        found: String,
    },
}
