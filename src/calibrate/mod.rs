//! Calibration: step schedules and solver plans optimised for one model.

mod error;

pub use error::CalibrationError;
