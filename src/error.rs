//! The crate's error type.
//!
//! Every failure a caller can cause (a bad schedule, grid, option or denoiser output) is a typed
//! variant with a message that says what to change. Errors raised inside the sampling loop are
//! wrapped in [`Error::Step`], which names the solver and the step; [`Error::root`] unwraps it.

use candle_core::{DType, Shape};

/// Errors returned by `diffusion-samplers`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A schedule, spacing or solver parameter is out of its valid range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),

    /// The sampling grid is not usable (not strictly monotone in lambda, sigma = 0 before its
    /// end, times outside the schedule's range, ...).
    #[error("invalid grid: {0}")]
    InvalidGrid(String),

    /// Zero sampling steps were requested.
    #[error("zero sampling steps requested: ask for at least one step")]
    ZeroSteps,

    /// More sampling steps than a discrete schedule has training timesteps.
    #[error(
        "{steps} sampling steps requested but the discrete schedule has only {max} training \
         timesteps: use at most {max} steps"
    )]
    TooManySteps {
        /// Steps requested.
        steps: usize,
        /// Largest number of steps this schedule and spacing support.
        max: usize,
    },

    /// A size (steps, training timesteps, ...) over one of the crate's documented limits
    /// ([`crate::limits`]), refused before anything is allocated.
    #[error("{what} = {requested} is over the limit of {limit} (diffusion_samplers::limits): ask for at most {limit}")]
    TooLarge {
        /// The quantity (an argument or field name, e.g. `steps`).
        what: &'static str,
        /// The value asked for.
        requested: usize,
        /// The largest accepted value.
        limit: usize,
    },

    /// The denoiser returned a tensor whose shape differs from its input.
    #[error(
        "denoiser output at model time {model_time} has shape {got:?} but its input had shape \
         {expected:?}: the network must return one prediction per input element"
    )]
    DenoiserShape {
        /// Shape of the denoiser input.
        expected: Shape,
        /// Shape of the denoiser output.
        got: Shape,
        /// Model time of the call.
        model_time: f64,
    },

    /// The denoiser returned a tensor whose dtype differs from its input.
    #[error(
        "denoiser output at model time {model_time} has dtype {got:?} but its input had dtype \
         {expected:?}: return the input's dtype (set `Model::with_model_dtype` to run the \
         network in another dtype)"
    )]
    DenoiserDType {
        /// Dtype of the denoiser input.
        expected: DType,
        /// Dtype of the denoiser output.
        got: DType,
        /// Model time of the call.
        model_time: f64,
    },

    /// The denoiser returned a tensor on another device than its input.
    #[error(
        "denoiser output at model time {model_time} is on {got} but its input was on \
         {expected}: return the prediction on the input's device"
    )]
    DenoiserDevice {
        /// Device of the denoiser input.
        expected: String,
        /// Device of the denoiser output.
        got: String,
        /// Model time of the call.
        model_time: f64,
    },

    /// A tensor produced during sampling holds NaN or infinity.
    #[error(
        "{what} at model time {model_time} contains NaN or infinity: check the network, its \
         dtype (F16 overflows easily) and the prediction type"
    )]
    NonFinite {
        /// Which tensor was not finite ("denoiser output", ...).
        what: &'static str,
        /// Model time of the call.
        model_time: f64,
    },

    /// The sample itself holds NaN or infinity (not the network's output): the caller's starting
    /// sample was not finite, or the sampler's arithmetic overflowed the state's dtype.
    #[error(
        "the sample {when} contains NaN or infinity and the network is not at fault: start from a finite \
         sample; if it was finite, the grid, the solver settings or the state's dtype (F16 overflows easily) \
         made it overflow: sample in F32 or F64, or check those settings"
    )]
    NonFiniteSample {
        /// Where it was found ("before the network call at model time 999", "at the end of the run").
        when: String,
    },

    /// Tensors combined by [`crate::lincomb`] differ in shape, dtype or device.
    #[error(
        "lincomb term {index} has {what} {got} but term 0 has {expected}: combine tensors of one \
         shape, dtype and device (broadcast or cast them first)"
    )]
    TermMismatch {
        /// Index of the offending term.
        index: usize,
        /// What differs: "shape", "dtype" or "device".
        what: &'static str,
        /// The first term's value.
        expected: String,
        /// The offending term's value.
        got: String,
    },

    /// Caller-supplied noise ([`crate::TensorNoise`]) ran out.
    #[error(
        "the supplied noise held {supplied} draws and the sampler asked for another: supply one draw per \
         noise-adding step (a stochastic solver draws once per step)"
    )]
    NoiseExhausted {
        /// Draws supplied (and used).
        supplied: usize,
    },

    /// A caller-supplied noise tensor's shape differs from the sample's.
    #[error("supplied noise draw {draw} has shape {got:?} but the sample has shape {expected:?}: supply noise shaped like the sample")]
    NoiseShape {
        /// 0-based index of the draw.
        draw: usize,
        /// The sample's shape.
        expected: Shape,
        /// The draw's shape.
        got: Shape,
    },

    /// A solver name that the registry ([`crate::names`]) does not know.
    #[error("unknown solver `{name}`: use one of {known}")]
    UnknownSolver {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },

    /// A sigma schedule name ([`crate::sigmas::NAMES`]) that the crate does not know.
    #[error("unknown sigma schedule `{name}`: use one of {known}")]
    UnknownSchedule {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },

    /// The combination of options is not implemented.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A diffusers `scheduler_config.json` option (or `_class_name`) that is malformed, out of
    /// range, unknown, or not implemented (see [`crate::diffusers`]).
    #[error("scheduler_config.json `{key}`: {message}")]
    DiffusersConfig {
        /// The JSON key (`<json>` for a syntax error, `<file>` for an unreadable file).
        key: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// A model file (config or weights) is missing, unreadable or malformed.
    #[error("cannot load model file {path}: {reason}")]
    ModelFile {
        /// The file.
        path: String,
        /// What went wrong and what to do.
        reason: String,
    },

    /// A model config field is malformed, inconsistent or names something not supported.
    #[error("model config field `{field}`: {reason}")]
    ModelConfig {
        /// The config.json key.
        field: String,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// The model config needs a weight tensor that the weights file lacks.
    #[error(
        "weight tensor `{name}` is missing from {file}: the weights do not match the config \
         (use the config.json that came with these weights)"
    )]
    MissingWeight {
        /// Tensor name (diffusers' naming).
        name: String,
        /// The weights file.
        file: String,
    },

    /// A weight tensor's shape disagrees with the model config.
    #[error(
        "weight tensor `{name}` has shape {got:?} but the config implies {expected:?}: the \
         weights do not match the config (use the config.json that came with these weights)"
    )]
    WeightShape {
        /// Tensor name (diffusers' naming).
        name: String,
        /// Shape implied by the config.
        expected: Shape,
        /// Shape in the weights file.
        got: Shape,
    },

    /// The weights file holds tensors the model config has no place for.
    #[error(
        "{count} weight tensor(s) in {file} are not used by the config, e.g. `{name}`: the \
         weights do not match the config (use the config.json that came with these weights)"
    )]
    UnusedWeights {
        /// One unused tensor name (the first in sorted order).
        name: String,
        /// How many tensors are unused.
        count: usize,
        /// The weights file.
        file: String,
    },

    /// An adaptive solver could not reach the end of its interval (too many attempted steps, or
    /// a step size that is no longer a positive finite number).
    #[error("adaptive solver: {0}")]
    Adaptive(String),

    /// A calibration input, result or saved schedule/plan file is not usable (see
    /// [`crate::calibrate::CalibrationError`]).
    #[error(transparent)]
    Calibration(#[from] crate::calibrate::CalibrationError),

    /// Two inputs that must agree in batch size do not (e.g. prompt embeddings and the noise).
    #[error(
        "{what} have batch {got} but {against} has batch {expected}: give one row per image, or a \
         batch that divides it (one prompt for several images)"
    )]
    BatchMismatch {
        /// What has the wrong batch ("prompt embeddings", ...).
        what: &'static str,
        /// Its batch size.
        got: usize,
        /// What it is checked against ("the noise", ...).
        against: &'static str,
        /// That input's batch size.
        expected: usize,
    },

    /// An input image has a size the model or the run cannot use.
    #[error("{what} is {got_width}x{got_height} (width x height) but {expected}: {hint}")]
    ImageSize {
        /// Which image ("img2img input image", ...).
        what: String,
        /// Its width in pixels.
        got_width: usize,
        /// Its height in pixels.
        got_height: usize,
        /// What is needed ("the output is 512x512", ...).
        expected: String,
        /// What to do.
        hint: String,
    },

    /// An error from a solver step, naming the solver and the step (1-based).
    #[error("{solver} step {step}/{count}: {source}")]
    Step {
        /// Solver name.
        solver: &'static str,
        /// 1-based step number.
        step: usize,
        /// Steps in the grid.
        count: usize,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },

    /// An error from candle (tensor operations).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// The innermost error, with any [`Error::Step`] context removed.
    ///
    /// ```
    /// use diffusion_samplers::Error;
    /// let e = Error::Step { solver: "DDIM", step: 2, count: 10, source: Box::new(Error::ZeroSteps) };
    /// assert!(matches!(e.root(), Error::ZeroSteps));
    /// ```
    pub fn root(&self) -> &Error {
        match self {
            Error::Step { source, .. } => source.root(),
            other => other,
        }
    }

    pub(crate) fn at_step(self, solver: &'static str, index: usize, count: usize) -> Error {
        Error::Step { solver, step: index + 1, count, source: Box::new(self) }
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn config_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::InvalidConfig(msg.into()))
}
