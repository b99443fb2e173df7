//! The values of diffusers' string-valued options, typed, with the strings diffusers writes.

use crate::model::Prediction;

/// `beta_schedule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaScheduleName {
    /// `"linear"`.
    Linear,
    /// `"scaled_linear"`.
    ScaledLinear,
    /// `"squaredcos_cap_v2"` (cosine alpha-bar, max beta 0.999).
    SquaredCosCapV2,
    /// `"exp"` (HeunDiscrete only): `alpha_bar(t) = exp(-12 t)`.
    Exp,
    /// `"laplace"` (DDPM only).
    Laplace,
    /// `"sigmoid"` (DDPM only).
    Sigmoid,
}

/// `timestep_spacing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// `"linspace"`.
    Linspace,
    /// `"leading"` (with `steps_offset`).
    Leading,
    /// `"trailing"`.
    Trailing,
}

/// `algorithm_type` of the DPM-Solver family and DEIS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgorithmType {
    /// `"dpmsolver"` (noise prediction).
    DpmSolver,
    /// `"dpmsolver++"` (data prediction).
    DpmSolverPP,
    /// `"sde-dpmsolver"`.
    SdeDpmSolver,
    /// `"sde-dpmsolver++"`.
    SdeDpmSolverPP,
    /// `"deis"` (DEIS; DPM-Solver classes read it as `"dpmsolver++"`, as diffusers does).
    Deis,
    /// `"data_prediction"` (SASolverScheduler: the data-prediction SA-Solver).
    DataPrediction,
    /// `"noise_prediction"` (SASolverScheduler: the noise-prediction SA-Solver).
    NoisePrediction,
}

/// `solver_type` across classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverTypeName {
    /// `"midpoint"`.
    Midpoint,
    /// `"heun"`.
    Heun,
    /// `"logrho"` (DEIS).
    Logrho,
    /// `"bh1"` (UniPC).
    Bh1,
    /// `"bh2"` (UniPC).
    Bh2,
}

/// `final_sigmas_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalSigmas {
    /// `"zero"`: the last step ends at `sigma = 0`.
    Zero,
    /// `"sigma_min"`: the last step ends at the table's smallest sigma.
    SigmaMin,
}

/// `variance_type` (DPM-Solver: learned variance channels; DDPM: posterior variance): the DDPM
/// solver's own variance choice.
pub type VarianceType = crate::solvers::DdpmVariance;

/// `timestep_type` (EulerDiscrete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepType {
    /// `"discrete"`: the model gets the training index.
    Discrete,
    /// `"continuous"`: with v-prediction the model gets `ln(sigma) / 4`.
    Continuous,
}

/// `interpolation_type` (EulerDiscrete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterpolationType {
    /// `"linear"`: sigma interpolated linearly over the training index.
    Linear,
    /// `"log_linear"`: sigmas log-uniform between the table's ends.
    LogLinear,
}

/// `time_shift_type` (dynamic shifting of flow schedules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeShiftType {
    /// `"exponential"`: `e^mu / (e^mu + (1/t - 1))`.
    Exponential,
    /// `"linear"`: `mu / (mu + (1/t - 1))`.
    Linear,
}

/// `sigma_schedule` (the EDM-style classes: EDMEuler, EDMDPMSolverMultistep,
/// CosineDPMSolverMultistep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdmSigmaSchedule {
    /// `"karras"`: Karras et al.'s rho-spaced noise levels between `sigma_max` and `sigma_min`.
    Karras,
    /// `"exponential"`: log-uniform noise levels.
    Exponential,
}

/// The string values of a diffusers option.
pub(crate) trait Names: Copy + 'static {
    const NAMES: &'static [(&'static str, Self)];
}

impl Names for Prediction {
    const NAMES: &'static [(&'static str, Prediction)] = &[
        ("epsilon", Prediction::Epsilon),
        ("sample", Prediction::Sample),
        ("original_sample", Prediction::Sample),
        ("v_prediction", Prediction::VPrediction),
        ("flow_prediction", Prediction::Flow),
    ];
}

impl Names for BetaScheduleName {
    const NAMES: &'static [(&'static str, BetaScheduleName)] = &[
        ("linear", BetaScheduleName::Linear),
        ("scaled_linear", BetaScheduleName::ScaledLinear),
        ("squaredcos_cap_v2", BetaScheduleName::SquaredCosCapV2),
        ("exp", BetaScheduleName::Exp),
        ("laplace", BetaScheduleName::Laplace),
        ("sigmoid", BetaScheduleName::Sigmoid),
    ];
}

impl Names for TimestepSpacing {
    const NAMES: &'static [(&'static str, TimestepSpacing)] = &[
        ("linspace", TimestepSpacing::Linspace),
        ("leading", TimestepSpacing::Leading),
        ("trailing", TimestepSpacing::Trailing),
    ];
}

impl Names for AlgorithmType {
    const NAMES: &'static [(&'static str, AlgorithmType)] = &[
        ("dpmsolver", AlgorithmType::DpmSolver),
        ("dpmsolver++", AlgorithmType::DpmSolverPP),
        ("sde-dpmsolver", AlgorithmType::SdeDpmSolver),
        ("sde-dpmsolver++", AlgorithmType::SdeDpmSolverPP),
        ("deis", AlgorithmType::Deis),
        ("data_prediction", AlgorithmType::DataPrediction),
        ("noise_prediction", AlgorithmType::NoisePrediction),
    ];
}

impl Names for SolverTypeName {
    const NAMES: &'static [(&'static str, SolverTypeName)] = &[
        ("midpoint", SolverTypeName::Midpoint),
        ("heun", SolverTypeName::Heun),
        ("logrho", SolverTypeName::Logrho),
        ("bh1", SolverTypeName::Bh1),
        ("bh2", SolverTypeName::Bh2),
    ];
}

impl Names for FinalSigmas {
    const NAMES: &'static [(&'static str, FinalSigmas)] =
        &[("zero", FinalSigmas::Zero), ("sigma_min", FinalSigmas::SigmaMin)];
}

impl Names for VarianceType {
    const NAMES: &'static [(&'static str, VarianceType)] = &[
        ("fixed_small", VarianceType::FixedSmall),
        ("fixed_small_log", VarianceType::FixedSmallLog),
        ("fixed_large", VarianceType::FixedLarge),
        ("fixed_large_log", VarianceType::FixedLargeLog),
        ("learned", VarianceType::Learned),
        ("learned_range", VarianceType::LearnedRange),
    ];
}

impl Names for TimestepType {
    const NAMES: &'static [(&'static str, TimestepType)] =
        &[("discrete", TimestepType::Discrete), ("continuous", TimestepType::Continuous)];
}

impl Names for InterpolationType {
    const NAMES: &'static [(&'static str, InterpolationType)] =
        &[("linear", InterpolationType::Linear), ("log_linear", InterpolationType::LogLinear)];
}

impl Names for EdmSigmaSchedule {
    const NAMES: &'static [(&'static str, EdmSigmaSchedule)] =
        &[("karras", EdmSigmaSchedule::Karras), ("exponential", EdmSigmaSchedule::Exponential)];
}

impl Names for TimeShiftType {
    const NAMES: &'static [(&'static str, TimeShiftType)] =
        &[("exponential", TimeShiftType::Exponential), ("linear", TimeShiftType::Linear)];
}
