//! Parsing `scheduler_config.json`: JSON text -> [`SchedulerConfig`] (typed, validated field by
//! field). Nothing here runs a sampler; [`super::DiffusersSampler`] turns a config into one.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::Prediction;

/// The diffusers scheduler classes this layer reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchedulerClass {
    /// `DDIMScheduler`.
    Ddim,
    /// `DDIMInverseScheduler` (deterministic encoding).
    DdimInverse,
    /// `DPMSolverMultistepScheduler`.
    DpmSolverMultistep,
    /// `DPMSolverMultistepInverseScheduler` (deterministic encoding).
    DpmSolverMultistepInverse,
    /// `DPMSolverSinglestepScheduler`.
    DpmSolverSinglestep,
    /// `DEISMultistepScheduler`.
    DeisMultistep,
    /// `UniPCMultistepScheduler`.
    UniPcMultistep,
    /// `EulerDiscreteScheduler`.
    EulerDiscrete,
    /// `HeunDiscreteScheduler`.
    HeunDiscrete,
    /// `LMSDiscreteScheduler`.
    LmsDiscrete,
    /// `PNDMScheduler`.
    Pndm,
    /// `EulerAncestralDiscreteScheduler`.
    EulerAncestralDiscrete,
    /// `DDPMScheduler`.
    Ddpm,
    /// `FlowMatchEulerDiscreteScheduler`.
    FlowMatchEulerDiscrete,
}

const COMMON_DISCRETE: &[&str] = &["num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas"];

impl SchedulerClass {
    /// Every class, in a fixed order.
    pub const ALL: [SchedulerClass; 14] = [
        SchedulerClass::Ddim,
        SchedulerClass::DdimInverse,
        SchedulerClass::DpmSolverMultistep,
        SchedulerClass::DpmSolverMultistepInverse,
        SchedulerClass::DpmSolverSinglestep,
        SchedulerClass::DeisMultistep,
        SchedulerClass::UniPcMultistep,
        SchedulerClass::EulerDiscrete,
        SchedulerClass::HeunDiscrete,
        SchedulerClass::LmsDiscrete,
        SchedulerClass::Pndm,
        SchedulerClass::EulerAncestralDiscrete,
        SchedulerClass::Ddpm,
        SchedulerClass::FlowMatchEulerDiscrete,
    ];

    /// The diffusers class name (`_class_name`).
    ///
    /// ```
    /// use diffusion_samplers::diffusers::SchedulerClass;
    /// assert_eq!(SchedulerClass::from_name("PNDMScheduler"), Some(SchedulerClass::Pndm));
    /// assert_eq!(SchedulerClass::Pndm.name(), "PNDMScheduler");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            SchedulerClass::Ddim => "DDIMScheduler",
            SchedulerClass::DdimInverse => "DDIMInverseScheduler",
            SchedulerClass::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            SchedulerClass::DpmSolverMultistepInverse => "DPMSolverMultistepInverseScheduler",
            SchedulerClass::DpmSolverSinglestep => "DPMSolverSinglestepScheduler",
            SchedulerClass::DeisMultistep => "DEISMultistepScheduler",
            SchedulerClass::UniPcMultistep => "UniPCMultistepScheduler",
            SchedulerClass::EulerDiscrete => "EulerDiscreteScheduler",
            SchedulerClass::HeunDiscrete => "HeunDiscreteScheduler",
            SchedulerClass::LmsDiscrete => "LMSDiscreteScheduler",
            SchedulerClass::Pndm => "PNDMScheduler",
            SchedulerClass::EulerAncestralDiscrete => "EulerAncestralDiscreteScheduler",
            SchedulerClass::Ddpm => "DDPMScheduler",
            SchedulerClass::FlowMatchEulerDiscrete => "FlowMatchEulerDiscreteScheduler",
        }
    }

    /// The class with diffusers name `name`.
    pub fn from_name(name: &str) -> Option<SchedulerClass> {
        SchedulerClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The options this class's constructor accepts (diffusers 0.42.1). Other known diffusers
    /// options in a config are ignored for this class, exactly as diffusers ignores them.
    pub fn keys(self) -> Vec<&'static str> {
        let own: &[&str] = match self {
            SchedulerClass::Ddim => &[
                "clip_sample",
                "set_alpha_to_one",
                "steps_offset",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "clip_sample_range",
                "sample_max_value",
                "timestep_spacing",
                "rescale_betas_zero_snr",
            ],
            SchedulerClass::DdimInverse => &[
                "clip_sample",
                "set_alpha_to_one",
                "set_alpha_to_zero",
                "steps_offset",
                "prediction_type",
                "clip_sample_range",
                "timestep_spacing",
                "rescale_betas_zero_snr",
            ],
            SchedulerClass::DpmSolverMultistep => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "euler_at_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_lu_lambdas",
                "use_flow_sigmas",
                "flow_shift",
                "final_sigmas_type",
                "lambda_min_clipped",
                "variance_type",
                "timestep_spacing",
                "steps_offset",
                "rescale_betas_zero_snr",
                "use_dynamic_shifting",
                "time_shift_type",
            ],
            SchedulerClass::DpmSolverMultistepInverse => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "euler_at_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "lambda_min_clipped",
                "variance_type",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::DpmSolverSinglestep => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "final_sigmas_type",
                "lambda_min_clipped",
                "variance_type",
                "use_dynamic_shifting",
                "time_shift_type",
            ],
            SchedulerClass::DeisMultistep => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "timestep_spacing",
                "steps_offset",
                "use_dynamic_shifting",
                "time_shift_type",
            ],
            SchedulerClass::UniPcMultistep => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "predict_x0",
                "solver_type",
                "lower_order_final",
                "disable_corrector",
                "solver_p",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "timestep_spacing",
                "steps_offset",
                "final_sigmas_type",
                "rescale_betas_zero_snr",
                "use_dynamic_shifting",
                "time_shift_type",
                "sigma_min",
                "sigma_max",
                "shift_terminal",
            ],
            SchedulerClass::EulerDiscrete => &[
                "prediction_type",
                "interpolation_type",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "sigma_min",
                "sigma_max",
                "timestep_spacing",
                "timestep_type",
                "steps_offset",
                "rescale_betas_zero_snr",
                "final_sigmas_type",
            ],
            SchedulerClass::HeunDiscrete => &[
                "prediction_type",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "clip_sample",
                "clip_sample_range",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::LmsDiscrete => &[
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "prediction_type",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::Pndm => {
                &["skip_prk_steps", "set_alpha_to_one", "prediction_type", "timestep_spacing", "steps_offset"]
            }
            SchedulerClass::EulerAncestralDiscrete => {
                &["prediction_type", "timestep_spacing", "steps_offset", "rescale_betas_zero_snr"]
            }
            SchedulerClass::Ddpm => &[
                "variance_type",
                "clip_sample",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "clip_sample_range",
                "sample_max_value",
                "timestep_spacing",
                "steps_offset",
                "rescale_betas_zero_snr",
            ],
            SchedulerClass::FlowMatchEulerDiscrete => &[
                "num_train_timesteps",
                "shift",
                "use_dynamic_shifting",
                "base_shift",
                "max_shift",
                "base_image_seq_len",
                "max_image_seq_len",
                "invert_sigmas",
                "shift_terminal",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "time_shift_type",
                "stochastic_sampling",
            ],
        };
        let mut keys: Vec<&'static str> =
            if self == SchedulerClass::FlowMatchEulerDiscrete { Vec::new() } else { COMMON_DISCRETE.to_vec() };
        keys.extend_from_slice(own);
        keys
    }

    /// True when the class takes `key` in its constructor.
    pub fn accepts(self, key: &str) -> bool {
        self.keys().contains(&key)
    }

    /// Whether the class works on `x / alpha` (k-diffusion's scaled sample; its pipeline scales
    /// the model input by `1 / sqrt(sigma^2 + 1)`): Euler, Heun, LMS, Euler-ancestral.
    pub fn works_on_scaled_sample(self) -> bool {
        matches!(
            self,
            SchedulerClass::EulerDiscrete
                | SchedulerClass::HeunDiscrete
                | SchedulerClass::LmsDiscrete
                | SchedulerClass::EulerAncestralDiscrete
        )
    }
}

/// Options of diffusers scheduler classes outside [`SchedulerClass`] (consistency, EDM, LCM,
/// SDE, TCD, ... schedulers of diffusers 0.42.1). A config may carry them when it was written for
/// another class; diffusers ignores them for the classes here, and so does this layer (they are
/// listed in [`SchedulerConfig::ignored_keys`]).
pub const OTHER_DIFFUSERS_KEYS: &[&str] = &[
    "alpha_cum_end",
    "alpha_cum_start",
    "args",
    "block_length",
    "clip_denoised",
    "correct_steps",
    "corrector_k",
    "corrector_order",
    "corrector_selection",
    "corrector_selection_tau",
    "corrector_steps",
    "editing_threshold",
    "entropy_bound",
    "eps",
    "eta",
    "final_step_size_scale",
    "gamma",
    "gamma_cum_end",
    "gamma_cum_start",
    "mask_token_id",
    "masking_schedule",
    "minimal_topk",
    "n_grid",
    "noise_mode",
    "noise_sampler_seed",
    "num_inference_steps",
    "num_policy_substeps",
    "num_vec_classes",
    "original_inference_steps",
    "predictor_order",
    "rho",
    "s",
    "s_noise",
    "sampling_eps",
    "scale_factors",
    "scaler",
    "schedule_mode",
    "scheduler_type",
    "sigma_data",
    "sigma_schedule",
    "snr",
    "snr_shift_scale",
    "stage_range",
    "stages",
    "t_lim_ode",
    "t_lim_ode_below",
    "t_max",
    "t_min",
    "tail_step_multiplier",
    "tail_steps",
    "tau_func",
    "threshold",
    "timestep_scaling",
    "tsr_k",
    "tsr_sigma",
    "upscale_mode",
    "quantization_config",
];

/// Keys starting with `_` that diffusers writes into configs (diffusers drops every key starting
/// with `_` when it builds a scheduler; these are accepted without a note).
pub const PRIVATE_KEYS: &[&str] = &["_class_name", "_diffusers_version", "_use_default_values", "_name_or_path"];

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

/// `variance_type` (DPM-Solver: learned variance channels; DDPM: posterior variance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarianceType {
    /// `"fixed_small"`.
    FixedSmall,
    /// `"fixed_small_log"`.
    FixedSmallLog,
    /// `"fixed_large"`.
    FixedLarge,
    /// `"fixed_large_log"`.
    FixedLargeLog,
    /// `"learned"`.
    Learned,
    /// `"learned_range"`.
    LearnedRange,
}

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

/// A parsed `scheduler_config.json`: the class and every option, typed. `None` means "not in
/// the file" (the class's diffusers default applies).
///
/// ```
/// use diffusion_samplers::diffusers::{SchedulerClass, SchedulerConfig};
/// let cfg = SchedulerConfig::from_json(r#"{"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear",
///     "beta_start": 0.00085, "beta_end": 0.012, "skip_prk_steps": true}"#)?;
/// assert_eq!(cfg.class, SchedulerClass::Ddim);
/// assert_eq!(cfg.ignored_keys(), vec!["skip_prk_steps"]); // a PNDM option: diffusers ignores it for DDIM
/// assert!(SchedulerConfig::from_json(r#"{"_class_name": "DDIMScheduler", "clip_sampel": true}"#).is_err());
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)] // the fields are diffusers' option names, documented by diffusers
pub struct SchedulerConfig {
    /// The scheduler class (`_class_name`).
    pub class: SchedulerClass,
    pub num_train_timesteps: Option<usize>,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<BetaScheduleName>,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: Option<Prediction>,
    pub timestep_spacing: Option<TimestepSpacing>,
    pub steps_offset: Option<usize>,
    pub set_alpha_to_one: Option<bool>,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: Option<f64>,
    pub thresholding: Option<bool>,
    pub dynamic_thresholding_ratio: Option<f64>,
    pub sample_max_value: Option<f64>,
    pub rescale_betas_zero_snr: Option<bool>,
    pub solver_order: Option<usize>,
    pub algorithm_type: Option<AlgorithmType>,
    pub solver_type: Option<SolverTypeName>,
    pub lower_order_final: Option<bool>,
    pub euler_at_final: Option<bool>,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub use_lu_lambdas: Option<bool>,
    pub use_flow_sigmas: Option<bool>,
    pub flow_shift: Option<f64>,
    pub final_sigmas_type: Option<FinalSigmas>,
    pub lambda_min_clipped: Option<f64>,
    pub variance_type: Option<VarianceType>,
    pub predict_x0: Option<bool>,
    pub disable_corrector: Option<Vec<usize>>,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub timestep_type: Option<TimestepType>,
    pub interpolation_type: Option<InterpolationType>,
    pub skip_prk_steps: Option<bool>,
    pub shift: Option<f64>,
    pub use_dynamic_shifting: Option<bool>,
    pub base_shift: Option<f64>,
    pub max_shift: Option<f64>,
    pub base_image_seq_len: Option<usize>,
    pub max_image_seq_len: Option<usize>,
    pub invert_sigmas: Option<bool>,
    pub shift_terminal: Option<f64>,
    pub time_shift_type: Option<TimeShiftType>,
    pub stochastic_sampling: Option<bool>,
    /// Keys present in the file and known to diffusers that the current class does not take
    /// (ignored, as diffusers ignores them), in file order of appearance (sorted).
    present: Vec<String>,
}

/// Largest `num_train_timesteps` accepted (a table this size is 800 kB of f64).
pub const MAX_TRAIN_TIMESTEPS: usize = 100_000;

pub(crate) fn cfg_err<T>(key: &str, message: impl Into<String>) -> Result<T> {
    Err(Error::DiffusersConfig { key: key.to_string(), message: message.into() })
}

impl SchedulerConfig {
    /// An empty config of `class` (every option at its diffusers default).
    pub fn new(class: SchedulerClass) -> SchedulerConfig {
        SchedulerConfig {
            class,
            num_train_timesteps: None,
            beta_start: None,
            beta_end: None,
            beta_schedule: None,
            trained_betas: None,
            prediction_type: None,
            timestep_spacing: None,
            steps_offset: None,
            set_alpha_to_one: None,
            clip_sample: None,
            clip_sample_range: None,
            thresholding: None,
            dynamic_thresholding_ratio: None,
            sample_max_value: None,
            rescale_betas_zero_snr: None,
            solver_order: None,
            algorithm_type: None,
            solver_type: None,
            lower_order_final: None,
            euler_at_final: None,
            use_karras_sigmas: None,
            use_exponential_sigmas: None,
            use_beta_sigmas: None,
            use_lu_lambdas: None,
            use_flow_sigmas: None,
            flow_shift: None,
            final_sigmas_type: None,
            lambda_min_clipped: None,
            variance_type: None,
            predict_x0: None,
            disable_corrector: None,
            sigma_min: None,
            sigma_max: None,
            timestep_type: None,
            interpolation_type: None,
            skip_prk_steps: None,
            shift: None,
            use_dynamic_shifting: None,
            base_shift: None,
            max_shift: None,
            base_image_seq_len: None,
            max_image_seq_len: None,
            invert_sigmas: None,
            shift_terminal: None,
            time_shift_type: None,
            stochastic_sampling: None,
            present: Vec::new(),
        }
    }

    /// Parse the text of a `scheduler_config.json`.
    ///
    /// Every key is checked: `_class_name` must name a class of [`SchedulerClass`]; options
    /// must have the type and range diffusers expects; keys of other diffusers scheduler classes
    /// ([`SchedulerClass::keys`], [`OTHER_DIFFUSERS_KEYS`]) are kept but ignored for this class
    /// ([`SchedulerConfig::ignored_keys`]), as diffusers ignores them; keys starting with `_` are
    /// diffusers' private keys and have no effect (`_use_default_values` lists keys to reset to
    /// their defaults, as diffusers does); any other key is an error naming it. Python's
    /// `Infinity`, `-Infinity` and `NaN` (written by `json.dump`, e.g. for
    /// `lambda_min_clipped`) are accepted.
    pub fn from_json(text: &str) -> Result<SchedulerConfig> {
        let cleaned = python_json_to_json(text);
        let value: Value = serde_json::from_str(&cleaned)
            .map_err(|e| Error::DiffusersConfig { key: "<json>".into(), message: format!("not valid JSON: {e}") })?;
        let Value::Object(map) = value else {
            return cfg_err("<json>", "the file must hold a JSON object ({...})");
        };
        let class_name = match map.get("_class_name") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => return cfg_err("_class_name", format!("must be a string, got {}", short(other))),
            None => {
                return cfg_err(
                    "_class_name",
                    "missing: a scheduler_config.json names its class, e.g. \"_class_name\": \"DDIMScheduler\"",
                )
            }
        };
        let class = SchedulerClass::from_name(&class_name).ok_or_else(|| Error::DiffusersConfig {
            key: "_class_name".into(),
            message: format!(
                "unknown or unsupported scheduler class {class_name:?}; supported: {}",
                SchedulerClass::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        let defaults: Vec<String> = match map.get("_use_default_values") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => {
                let mut out = Vec::with_capacity(a.len());
                for v in a {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            return cfg_err("_use_default_values", format!("must list key names, got {}", short(other)))
                        }
                    }
                }
                out
            }
            Some(other) => {
                return cfg_err("_use_default_values", format!("must be a list of key names, got {}", short(other)))
            }
        };
        let mut cfg = SchedulerConfig::new(class);
        let entries: BTreeMap<&String, &Value> = map.iter().collect();
        for (key, value) in entries {
            if key.starts_with('_') || defaults.iter().any(|d| d == key) {
                continue;
            }
            cfg.set(key, value)?;
        }
        Ok(cfg)
    }

    /// Read and parse a `scheduler_config.json` file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<SchedulerConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::DiffusersConfig {
            key: "<file>".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        SchedulerConfig::from_json(&text)
    }

    /// The same options under another class: diffusers' `OtherScheduler.from_config(config)`.
    /// Options the new class does not take are ignored; options it takes are used.
    ///
    /// ```
    /// use diffusion_samplers::diffusers::{SchedulerClass, SchedulerConfig};
    /// let pndm = SchedulerConfig::from_json(r#"{"_class_name": "PNDMScheduler", "steps_offset": 1, "skip_prk_steps": true}"#)?;
    /// let dpm = pndm.with_class(SchedulerClass::DpmSolverMultistep);
    /// assert_eq!(dpm.steps_offset, Some(1));
    /// assert_eq!(dpm.ignored_keys(), vec!["skip_prk_steps"]);
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn with_class(&self, class: SchedulerClass) -> SchedulerConfig {
        SchedulerConfig { class, ..self.clone() }
    }

    /// Keys present in the config that the current class does not take (diffusers ignores them
    /// too), sorted.
    pub fn ignored_keys(&self) -> Vec<&str> {
        self.present.iter().map(|s| s.as_str()).filter(|k| !self.class.accepts(k)).collect()
    }

    /// Keys present in the config (excluding `_`-private keys), sorted.
    pub fn present_keys(&self) -> Vec<&str> {
        self.present.iter().map(|s| s.as_str()).collect()
    }

    fn set(&mut self, key: &str, v: &Value) -> Result<()> {
        let known = SchedulerClass::ALL.iter().any(|c| c.accepts(key)) || OTHER_DIFFUSERS_KEYS.contains(&key);
        if !known {
            return cfg_err(
                key,
                "unknown option: no diffusers scheduler takes it (check the spelling); remove it to continue",
            );
        }
        match key {
            "num_train_timesteps" => {
                let n = int(key, v, MAX_TRAIN_TIMESTEPS)?;
                if n < 2 {
                    return cfg_err(key, format!("must be at least 2, got {n}"));
                }
                self.num_train_timesteps = Some(n);
            }
            "beta_start" => self.beta_start = Some(num(key, v)?),
            "beta_end" => self.beta_end = Some(num(key, v)?),
            "beta_schedule" => {
                self.beta_schedule = Some(choice(
                    key,
                    v,
                    &[
                        ("linear", BetaScheduleName::Linear),
                        ("scaled_linear", BetaScheduleName::ScaledLinear),
                        ("squaredcos_cap_v2", BetaScheduleName::SquaredCosCapV2),
                        ("exp", BetaScheduleName::Exp),
                        ("laplace", BetaScheduleName::Laplace),
                        ("sigmoid", BetaScheduleName::Sigmoid),
                    ],
                )?)
            }
            "trained_betas" => {
                self.trained_betas = match v {
                    Value::Null => None,
                    Value::Array(a) => {
                        if a.len() > MAX_TRAIN_TIMESTEPS {
                            return cfg_err(key, format!("at most {MAX_TRAIN_TIMESTEPS} betas are supported"));
                        }
                        Some(a.iter().map(|x| num(key, x)).collect::<Result<Vec<f64>>>()?)
                    }
                    other => return cfg_err(key, format!("must be a list of numbers or null, got {}", short(other))),
                }
            }
            "prediction_type" => {
                self.prediction_type = Some(choice(
                    key,
                    v,
                    &[
                        ("epsilon", Prediction::Epsilon),
                        ("sample", Prediction::Sample),
                        ("original_sample", Prediction::Sample),
                        ("v_prediction", Prediction::VPrediction),
                        ("flow_prediction", Prediction::Flow),
                    ],
                )?)
            }
            "timestep_spacing" => {
                self.timestep_spacing = Some(choice(
                    key,
                    v,
                    &[
                        ("linspace", TimestepSpacing::Linspace),
                        ("leading", TimestepSpacing::Leading),
                        ("trailing", TimestepSpacing::Trailing),
                    ],
                )?)
            }
            "steps_offset" => self.steps_offset = Some(int(key, v, MAX_TRAIN_TIMESTEPS)?),
            "set_alpha_to_one" => self.set_alpha_to_one = Some(boolean(key, v)?),
            // DDIMInverseScheduler's deprecated alias, applied as diffusers does
            "set_alpha_to_zero" if !v.is_null() => self.set_alpha_to_one = Some(boolean(key, v)?),
            "clip_sample" => self.clip_sample = Some(boolean(key, v)?),
            "clip_sample_range" => self.clip_sample_range = Some(positive(key, v)?),
            "thresholding" => self.thresholding = Some(boolean(key, v)?),
            "dynamic_thresholding_ratio" => {
                let r = num(key, v)?;
                if !(0.0..=1.0).contains(&r) {
                    return cfg_err(key, format!("must lie in [0, 1], got {r}"));
                }
                self.dynamic_thresholding_ratio = Some(r);
            }
            "sample_max_value" => self.sample_max_value = Some(positive(key, v)?),
            "rescale_betas_zero_snr" => self.rescale_betas_zero_snr = Some(boolean(key, v)?),
            "solver_order" => {
                let n = int(key, v, 1000)?;
                if n == 0 {
                    return cfg_err(key, "must be at least 1");
                }
                self.solver_order = Some(n);
            }
            "algorithm_type" => {
                self.algorithm_type = Some(choice(
                    key,
                    v,
                    &[
                        ("dpmsolver", AlgorithmType::DpmSolver),
                        ("dpmsolver++", AlgorithmType::DpmSolverPP),
                        ("sde-dpmsolver", AlgorithmType::SdeDpmSolver),
                        ("sde-dpmsolver++", AlgorithmType::SdeDpmSolverPP),
                        ("deis", AlgorithmType::Deis),
                    ],
                )?)
            }
            "solver_type" => {
                self.solver_type = Some(choice(
                    key,
                    v,
                    &[
                        ("midpoint", SolverTypeName::Midpoint),
                        ("heun", SolverTypeName::Heun),
                        ("logrho", SolverTypeName::Logrho),
                        ("bh1", SolverTypeName::Bh1),
                        ("bh2", SolverTypeName::Bh2),
                    ],
                )?)
            }
            "lower_order_final" => self.lower_order_final = Some(boolean(key, v)?),
            "euler_at_final" => self.euler_at_final = Some(boolean(key, v)?),
            "use_karras_sigmas" => self.use_karras_sigmas = nullable_bool(key, v)?,
            "use_exponential_sigmas" => self.use_exponential_sigmas = nullable_bool(key, v)?,
            "use_beta_sigmas" => self.use_beta_sigmas = nullable_bool(key, v)?,
            "use_lu_lambdas" => self.use_lu_lambdas = Some(boolean(key, v)?),
            "use_flow_sigmas" => self.use_flow_sigmas = Some(boolean(key, v)?),
            "flow_shift" => self.flow_shift = Some(positive(key, v)?),
            "final_sigmas_type" => {
                self.final_sigmas_type =
                    Some(choice(key, v, &[("zero", FinalSigmas::Zero), ("sigma_min", FinalSigmas::SigmaMin)])?)
            }
            "lambda_min_clipped" => {
                let l = num_or_inf(key, v)?;
                if l.is_nan() || l == f64::INFINITY {
                    return cfg_err(key, format!("must be a number or -Infinity, got {l}"));
                }
                self.lambda_min_clipped = Some(l);
            }
            "variance_type" => {
                self.variance_type = match v {
                    Value::Null => None,
                    _ => Some(choice(
                        key,
                        v,
                        &[
                            ("fixed_small", VarianceType::FixedSmall),
                            ("fixed_small_log", VarianceType::FixedSmallLog),
                            ("fixed_large", VarianceType::FixedLarge),
                            ("fixed_large_log", VarianceType::FixedLargeLog),
                            ("learned", VarianceType::Learned),
                            ("learned_range", VarianceType::LearnedRange),
                        ],
                    )?),
                }
            }
            "predict_x0" => self.predict_x0 = Some(boolean(key, v)?),
            "disable_corrector" => {
                self.disable_corrector = match v {
                    Value::Null => None,
                    Value::Array(a) => {
                        Some(a.iter().map(|x| int(key, x, usize::MAX >> 1)).collect::<Result<Vec<usize>>>()?)
                    }
                    other => return cfg_err(key, format!("must be a list of step indices, got {}", short(other))),
                }
            }
            "solver_p" if !v.is_null() => {
                return cfg_err(
                    key,
                    "a separate predictor scheduler (solver_p) is not implemented: remove it or set it to null",
                );
            }
            "sigma_min" => self.sigma_min = nullable_positive(key, v)?,
            "sigma_max" => self.sigma_max = nullable_positive(key, v)?,
            "timestep_type" => {
                self.timestep_type = Some(choice(
                    key,
                    v,
                    &[("discrete", TimestepType::Discrete), ("continuous", TimestepType::Continuous)],
                )?)
            }
            "interpolation_type" => {
                self.interpolation_type = Some(choice(
                    key,
                    v,
                    &[("linear", InterpolationType::Linear), ("log_linear", InterpolationType::LogLinear)],
                )?)
            }
            "skip_prk_steps" => self.skip_prk_steps = Some(boolean(key, v)?),
            "shift" => self.shift = Some(positive(key, v)?),
            "use_dynamic_shifting" => self.use_dynamic_shifting = Some(boolean(key, v)?),
            "base_shift" => self.base_shift = nullable_num(key, v)?,
            "max_shift" => self.max_shift = nullable_num(key, v)?,
            "base_image_seq_len" => self.base_image_seq_len = Some(int(key, v, usize::MAX >> 1)?),
            "max_image_seq_len" => self.max_image_seq_len = Some(int(key, v, usize::MAX >> 1)?),
            "invert_sigmas" => self.invert_sigmas = Some(boolean(key, v)?),
            "shift_terminal" => {
                self.shift_terminal = match v {
                    Value::Null | Value::Bool(false) => None,
                    _ => {
                        let s = num(key, v)?;
                        if s == 0.0 {
                            None
                        } else if !(s > 0.0 && s < 1.0) {
                            return cfg_err(key, format!("must lie in (0, 1), got {s}"));
                        } else {
                            Some(s)
                        }
                    }
                }
            }
            "time_shift_type" => {
                self.time_shift_type = Some(choice(
                    key,
                    v,
                    &[("exponential", TimeShiftType::Exponential), ("linear", TimeShiftType::Linear)],
                )?)
            }
            "stochastic_sampling" => self.stochastic_sampling = Some(boolean(key, v)?),
            // options of other diffusers classes: kept, never used
            _ => {}
        }
        self.present.push(key.to_string());
        self.present.sort();
        Ok(())
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn boolean(key: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => cfg_err(key, format!("must be true or false, got {}", short(other))),
    }
}

fn nullable_bool(key: &str, v: &Value) -> Result<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        _ => boolean(key, v).map(Some),
    }
}

/// A finite number (JSON integer or float).
fn num(key: &str, v: &Value) -> Result<f64> {
    let x = num_or_inf(key, v)?;
    if !x.is_finite() {
        return cfg_err(key, format!("must be a finite number, got {x}"));
    }
    Ok(x)
}

fn nullable_num(key: &str, v: &Value) -> Result<Option<f64>> {
    match v {
        Value::Null => Ok(None),
        _ => num(key, v).map(Some),
    }
}

fn positive(key: &str, v: &Value) -> Result<f64> {
    let x = num(key, v)?;
    if !(x > 0.0) {
        return cfg_err(key, format!("must be positive, got {x}"));
    }
    Ok(x)
}

fn nullable_positive(key: &str, v: &Value) -> Result<Option<f64>> {
    match v {
        Value::Null => Ok(None),
        _ => positive(key, v).map(Some),
    }
}

/// A number, or one of Python's non-finite literals (rewritten to strings before parsing).
fn num_or_inf(key: &str, v: &Value) -> Result<f64> {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(x) => Ok(x),
            None => cfg_err(key, format!("the number {n} is not representable")),
        },
        Value::String(s) if s == INF_MARK => Ok(f64::INFINITY),
        Value::String(s) if s == NEG_INF_MARK => Ok(f64::NEG_INFINITY),
        Value::String(s) if s == NAN_MARK => Ok(f64::NAN),
        other => cfg_err(key, format!("must be a number, got {}", short(other))),
    }
}

/// A non-negative integer no larger than `max` (an integral float such as `1000.0` is accepted,
/// as Python accepts it).
fn int(key: &str, v: &Value, max: usize) -> Result<usize> {
    let err = || cfg_err(key, format!("must be an integer between 0 and {max}, got {}", short(v)));
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                return if u as u128 <= max as u128 { Ok(u as usize) } else { err() };
            }
            match n.as_f64() {
                Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= max as f64 => Ok(x as usize),
                _ => err(),
            }
        }
        _ => err(),
    }
}

fn choice<T: Copy>(key: &str, v: &Value, options: &[(&str, T)]) -> Result<T> {
    let names = || options.iter().map(|(n, _)| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    match v {
        Value::String(s) => match options.iter().find(|(n, _)| n == s) {
            Some((_, t)) => Ok(*t),
            None => cfg_err(key, format!("{s:?} is not one of {}", names())),
        },
        other => cfg_err(key, format!("must be one of {}, got {}", names(), short(other))),
    }
}

const INF_MARK: &str = "\u{0}Infinity";
const NEG_INF_MARK: &str = "\u{0}-Infinity";
const NAN_MARK: &str = "\u{0}NaN";

/// Python's `json.dump` writes `Infinity`, `-Infinity` and `NaN` as bare tokens, which strict
/// JSON rejects: rewrite them (outside strings) to marker strings that [`num_or_inf`] reads.
fn python_json_to_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        let mut matched = false;
        for (token, mark) in [("-Infinity", NEG_INF_MARK), ("Infinity", INF_MARK), ("NaN", NAN_MARK)] {
            if rest.starts_with(token) {
                out.push('"');
                out.push_str(&mark.replace('\u{0}', "\\u0000"));
                out.push('"');
                rest = &rest[token.len()..];
                matched = true;
                break;
            }
        }
        if !matched {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_non_finite_literals() {
        let cfg = SchedulerConfig::from_json(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "_diffusers_version": "0.21.0"}"#,
        )
        .unwrap();
        assert_eq!(cfg.lambda_min_clipped, Some(f64::NEG_INFINITY));
        // inside strings nothing is rewritten
        let e = SchedulerConfig::from_json(r#"{"_class_name": "NaN Infinity"}"#).unwrap_err();
        assert!(e.to_string().contains("NaN Infinity"), "{e}");
    }

    #[test]
    fn use_default_values_resets_keys() {
        let cfg = SchedulerConfig::from_json(
            r#"{"_class_name": "DDIMScheduler", "steps_offset": 1, "_use_default_values": ["steps_offset"]}"#,
        )
        .unwrap();
        assert_eq!(cfg.steps_offset, None);
    }

    #[test]
    fn errors_name_the_key() {
        for (json, key) in [
            (r#"{"_class_name": "DDIMScheduler", "steps_offset": -1}"#, "steps_offset"),
            (r#"{"_class_name": "DDIMScheduler", "clip_sample": "yes"}"#, "clip_sample"),
            (r#"{"_class_name": "FooScheduler"}"#, "_class_name"),
            (r#"{"_class_name": "DDIMScheduler", "beta_schedul": "linear"}"#, "beta_schedul"),
            (r#"{"_class_name": "DDIMScheduler", "timestep_spacing": "uniform"}"#, "timestep_spacing"),
            (r#"{"beta_start": 0.1}"#, "_class_name"),
        ] {
            match SchedulerConfig::from_json(json) {
                Err(Error::DiffusersConfig { key: k, .. }) => assert_eq!(k, key, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
