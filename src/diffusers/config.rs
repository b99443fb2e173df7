//! Parsing `scheduler_config.json`: JSON text -> [`SchedulerConfig`], derived with serde and
//! checked by a validation pass (ranges, finiteness), every error naming its key. Nothing here
//! runs a sampler; [`super::DiffusersSampler`] resolves a config into one.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use super::classes::{SchedulerClass, OTHER_DIFFUSERS_KEYS, PRIVATE_KEYS};
pub use super::options::{
    AlgorithmType, BetaScheduleName, EdmSigmaSchedule, FinalSigmas, InterpolationType, SolverTypeName, TimeShiftType,
    TimestepSpacing, TimestepType, VarianceType,
};
use crate::error::{Error, Result};
use crate::model::Prediction;

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
#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // the fields are diffusers' option names, documented by diffusers
pub struct SchedulerConfig {
    /// The scheduler class (`_class_name`).
    #[serde(skip)]
    pub class: SchedulerClass,
    #[serde(deserialize_with = "de::int")]
    pub num_train_timesteps: Option<usize>,
    #[serde(deserialize_with = "de::number")]
    pub beta_start: Option<f64>,
    #[serde(deserialize_with = "de::number")]
    pub beta_end: Option<f64>,
    #[serde(deserialize_with = "de::named")]
    pub beta_schedule: Option<BetaScheduleName>,
    #[serde(deserialize_with = "de::numbers")]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(deserialize_with = "de::named")]
    pub prediction_type: Option<Prediction>,
    #[serde(deserialize_with = "de::named")]
    pub timestep_spacing: Option<TimestepSpacing>,
    #[serde(deserialize_with = "de::int")]
    pub steps_offset: Option<usize>,
    #[serde(deserialize_with = "de::boolean")]
    pub set_alpha_to_one: Option<bool>,
    #[serde(deserialize_with = "de::boolean")]
    pub clip_sample: Option<bool>,
    #[serde(deserialize_with = "de::number")]
    pub clip_sample_range: Option<f64>,
    #[serde(deserialize_with = "de::boolean")]
    pub thresholding: Option<bool>,
    #[serde(deserialize_with = "de::number")]
    pub dynamic_thresholding_ratio: Option<f64>,
    #[serde(deserialize_with = "de::number")]
    pub sample_max_value: Option<f64>,
    #[serde(deserialize_with = "de::boolean")]
    pub rescale_betas_zero_snr: Option<bool>,
    #[serde(deserialize_with = "de::int")]
    pub solver_order: Option<usize>,
    #[serde(deserialize_with = "de::named")]
    pub algorithm_type: Option<AlgorithmType>,
    #[serde(deserialize_with = "de::named")]
    pub solver_type: Option<SolverTypeName>,
    #[serde(deserialize_with = "de::boolean")]
    pub lower_order_final: Option<bool>,
    #[serde(deserialize_with = "de::boolean")]
    pub euler_at_final: Option<bool>,
    #[serde(deserialize_with = "de::nullable_boolean")]
    pub use_karras_sigmas: Option<bool>,
    #[serde(deserialize_with = "de::nullable_boolean")]
    pub use_exponential_sigmas: Option<bool>,
    #[serde(deserialize_with = "de::nullable_boolean")]
    pub use_beta_sigmas: Option<bool>,
    #[serde(deserialize_with = "de::boolean")]
    pub use_lu_lambdas: Option<bool>,
    #[serde(deserialize_with = "de::boolean")]
    pub use_flow_sigmas: Option<bool>,
    #[serde(deserialize_with = "de::number")]
    pub flow_shift: Option<f64>,
    #[serde(deserialize_with = "de::named")]
    pub final_sigmas_type: Option<FinalSigmas>,
    #[serde(deserialize_with = "de::number")]
    pub lambda_min_clipped: Option<f64>,
    #[serde(deserialize_with = "de::nullable_named")]
    pub variance_type: Option<VarianceType>,
    #[serde(deserialize_with = "de::boolean")]
    pub predict_x0: Option<bool>,
    #[serde(deserialize_with = "de::ints")]
    pub disable_corrector: Option<Vec<usize>>,
    #[serde(deserialize_with = "de::nullable_number")]
    pub sigma_min: Option<f64>,
    #[serde(deserialize_with = "de::nullable_number")]
    pub sigma_max: Option<f64>,
    #[serde(deserialize_with = "de::named")]
    pub timestep_type: Option<TimestepType>,
    #[serde(deserialize_with = "de::named")]
    pub interpolation_type: Option<InterpolationType>,
    #[serde(deserialize_with = "de::boolean")]
    pub skip_prk_steps: Option<bool>,
    #[serde(deserialize_with = "de::number")]
    pub shift: Option<f64>,
    #[serde(deserialize_with = "de::boolean")]
    pub use_dynamic_shifting: Option<bool>,
    #[serde(deserialize_with = "de::nullable_number")]
    pub base_shift: Option<f64>,
    #[serde(deserialize_with = "de::nullable_number")]
    pub max_shift: Option<f64>,
    #[serde(deserialize_with = "de::int")]
    pub base_image_seq_len: Option<usize>,
    #[serde(deserialize_with = "de::int")]
    pub max_image_seq_len: Option<usize>,
    #[serde(deserialize_with = "de::boolean")]
    pub invert_sigmas: Option<bool>,
    #[serde(deserialize_with = "de::shift_terminal")]
    pub shift_terminal: Option<f64>,
    #[serde(deserialize_with = "de::named")]
    pub time_shift_type: Option<TimeShiftType>,
    #[serde(deserialize_with = "de::boolean")]
    pub stochastic_sampling: Option<bool>,
    #[serde(deserialize_with = "de::number")]
    pub sigma_data: Option<f64>,
    #[serde(deserialize_with = "de::named")]
    pub sigma_schedule: Option<EdmSigmaSchedule>,
    #[serde(deserialize_with = "de::number")]
    pub rho: Option<f64>,
    #[serde(deserialize_with = "de::int")]
    pub original_inference_steps: Option<usize>,
    #[serde(deserialize_with = "de::number")]
    pub timestep_scaling: Option<f64>,
    #[serde(deserialize_with = "de::nullable_int")]
    pub noise_sampler_seed: Option<u64>,
    #[serde(deserialize_with = "de::int")]
    pub predictor_order: Option<usize>,
    #[serde(deserialize_with = "de::int")]
    pub corrector_order: Option<usize>,
    /// SASolverScheduler's `tau_func` (a Python callable in diffusers): only `null` is accepted.
    #[serde(deserialize_with = "de::null_only")]
    pub tau_func: Option<()>,
    /// Keys present in the file and known to diffusers, sorted.
    #[serde(skip)]
    present: Vec<String>,
}

/// Largest `num_train_timesteps` accepted ([`crate::limits::MAX_TRAIN_TIMESTEPS`]).
pub use crate::limits::MAX_TRAIN_TIMESTEPS;

/// Largest `sigma_min` / `sigma_max`: a sample scaled by a larger noise level leaves float32's
/// range in the sampler's arithmetic (published models use at most a few hundred).
const MAX_SIGMA: f64 = 1e15;

/// Largest step index or image sequence length accepted.
const MAX_INDEX: usize = usize::MAX >> 1;

pub(crate) fn cfg_err<T>(key: &str, message: impl Into<String>) -> Result<T> {
    Err(Error::DiffusersConfig { key: key.to_string(), message: message.into() })
}

impl SchedulerConfig {
    /// An empty config of `class` (every option at its diffusers default).
    pub fn new(class: SchedulerClass) -> SchedulerConfig {
        SchedulerConfig { class, ..SchedulerConfig::default() }
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
                "unknown or unsupported scheduler class {:?}; supported: {}",
                clip(&class_name),
                SchedulerClass::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        let defaults: Vec<String> = match map.get("_use_default_values") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => cfg_err("_use_default_values", format!("must list key names, got {}", short(other))),
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return cfg_err("_use_default_values", format!("must be a list of key names, got {}", short(other)))
            }
        };
        // the options this layer reads, each type-checked on its own so that an error names it
        let mut options = Map::new();
        let mut present = Vec::new();
        let entries: BTreeMap<&String, &Value> = map.iter().collect();
        for (key, value) in entries {
            if key.starts_with('_') || defaults.contains(key) {
                continue;
            }
            let known =
                SchedulerClass::ALL.iter().any(|c| c.accepts(key)) || OTHER_DIFFUSERS_KEYS.contains(&key.as_str());
            if !known {
                return cfg_err(
                    &clip(key),
                    "unknown option: no diffusers scheduler takes it (check the spelling); remove it to continue",
                );
            }
            present.push(key.clone());
            let (field, value) = match (key.as_str(), value) {
                // DDIMInverseScheduler's deprecated alias, applied as diffusers does
                ("set_alpha_to_zero", v) if !v.is_null() => ("set_alpha_to_one", v),
                ("solver_p", v) if !v.is_null() => {
                    return cfg_err(
                        key,
                        "a separate predictor scheduler (solver_p) is not implemented: remove it or set it to null",
                    )
                }
                // options of other diffusers classes (and a null alias or predictor): kept, never used
                ("set_alpha_to_zero" | "solver_p", _) => continue,
                (k, _) if OTHER_DIFFUSERS_KEYS.contains(&k) => continue,
                (k, v) => (k, v),
            };
            let one = Value::Object(Map::from_iter([(field.to_string(), value.clone())]));
            SchedulerConfig::deserialize(one)
                .map_err(|e| Error::DiffusersConfig { key: key.clone(), message: e.to_string() })?;
            options.insert(field.to_string(), value.clone());
        }
        let mut cfg = SchedulerConfig::deserialize(Value::Object(options))
            .map_err(|e| Error::DiffusersConfig { key: "<json>".into(), message: e.to_string() })?;
        cfg.class = class;
        cfg.present = present;
        cfg.validated()
    }

    /// The validation pass after deserialising: ranges and finiteness, each error naming its key.
    pub(crate) fn validated(mut self) -> Result<SchedulerConfig> {
        let at_most = |key: &str, v: Option<usize>, max: usize| match v {
            Some(n) if n > max => cfg_err(key, format!("must be an integer between 0 and {max}, got {n}")),
            _ => Ok(()),
        };
        if let Some(n) = self.num_train_timesteps.filter(|&n| n > MAX_TRAIN_TIMESTEPS) {
            return cfg_err(
                "num_train_timesteps",
                format!(
                    "{n} is over the limit of {MAX_TRAIN_TIMESTEPS} training timesteps \
                     (diffusion_samplers::limits::MAX_TRAIN_TIMESTEPS; published schedules have 1000)"
                ),
            );
        }
        if let Some(n @ 0..=1) = self.num_train_timesteps {
            return cfg_err("num_train_timesteps", format!("must be at least 2, got {n}"));
        }
        at_most("steps_offset", self.steps_offset, MAX_TRAIN_TIMESTEPS)?;
        at_most("solver_order", self.solver_order, 1000)?;
        if self.solver_order == Some(0) {
            return cfg_err("solver_order", "must be at least 1");
        }
        for (key, order) in [("predictor_order", self.predictor_order), ("corrector_order", self.corrector_order)] {
            if let Some(o) = order.filter(|o| !(1..=4).contains(o)) {
                return cfg_err(key, format!("must be 1, 2, 3 or 4 (SA-Solver's orders), got {o}"));
            }
        }
        at_most("original_inference_steps", self.original_inference_steps, MAX_TRAIN_TIMESTEPS)?;
        if self.original_inference_steps == Some(0) {
            return cfg_err("original_inference_steps", "must be at least 1");
        }
        at_most("base_image_seq_len", self.base_image_seq_len, MAX_INDEX)?;
        at_most("max_image_seq_len", self.max_image_seq_len, MAX_INDEX)?;
        for &i in self.disable_corrector.iter().flatten() {
            at_most("disable_corrector", Some(i), MAX_INDEX)?;
        }
        if self.trained_betas.as_ref().is_some_and(|b| b.len() > MAX_TRAIN_TIMESTEPS) {
            return cfg_err("trained_betas", format!("at most {MAX_TRAIN_TIMESTEPS} betas are supported"));
        }
        let finite = |key: &str, v: Option<f64>| match v {
            Some(x) if !x.is_finite() => cfg_err(key, format!("must be a finite number, got {x}")),
            _ => Ok(()),
        };
        for &b in self.trained_betas.iter().flatten() {
            finite("trained_betas", Some(b))?;
        }
        // (key, value, must be positive)
        for (key, v, positive) in [
            ("beta_start", self.beta_start, false),
            ("beta_end", self.beta_end, false),
            ("dynamic_thresholding_ratio", self.dynamic_thresholding_ratio, false),
            ("base_shift", self.base_shift, false),
            ("max_shift", self.max_shift, false),
            ("shift_terminal", self.shift_terminal, false),
            ("clip_sample_range", self.clip_sample_range, true),
            ("sample_max_value", self.sample_max_value, true),
            ("flow_shift", self.flow_shift, true),
            ("sigma_min", self.sigma_min, true),
            ("sigma_max", self.sigma_max, true),
            ("shift", self.shift, true),
            ("sigma_data", self.sigma_data, true),
            ("rho", self.rho, true),
            ("timestep_scaling", self.timestep_scaling, false),
        ] {
            finite(key, v)?;
            if let Some(x) = v.filter(|x| positive && !(*x > 0.0)) {
                return cfg_err(key, format!("must be positive, got {x}"));
            }
        }
        if let (Some(lo), Some(hi)) = (self.sigma_min, self.sigma_max) {
            if lo >= hi {
                return cfg_err("sigma_min", format!("must be below sigma_max, got {lo} and {hi}"));
            }
        }
        // a noise level this large leaves float32's range once the sample is scaled by it (diffusers
        // returns inf / NaN there)
        for (key, v) in [("sigma_min", self.sigma_min), ("sigma_max", self.sigma_max)] {
            if let Some(x) = v.filter(|x| *x > MAX_SIGMA) {
                return cfg_err(
                    key,
                    format!(
                        "{x:e} is beyond the largest noise level supported ({MAX_SIGMA:e}): use the model's own range"
                    ),
                );
            }
        }
        if let Some(r) = self.dynamic_thresholding_ratio.filter(|r| !(0.0..=1.0).contains(r)) {
            return cfg_err("dynamic_thresholding_ratio", format!("must lie in [0, 1], got {r}"));
        }
        if let Some(l) = self.lambda_min_clipped.filter(|l| l.is_nan() || *l == f64::INFINITY) {
            return cfg_err("lambda_min_clipped", format!("must be a number or -Infinity, got {l}"));
        }
        self.shift_terminal = match self.shift_terminal {
            Some(s) if s == 0.0 => None,
            Some(s) if !(s > 0.0 && s < 1.0) => {
                return cfg_err("shift_terminal", format!("must lie in (0, 1), got {s}"))
            }
            other => other,
        };
        Ok(self)
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
}

/// The field deserializers: the JSON type of each option (ranges are the validation pass's).
mod de {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::super::options::Names;
    use super::{clip, num_or_inf, short};

    fn value<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn fail<E: serde::de::Error, T>(message: String) -> std::result::Result<T, E> {
        Err(E::custom(message))
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
        match value(d)? {
            Value::Bool(b) => Ok(Some(b)),
            other => fail(format!("must be true or false, got {}", short(&other))),
        }
    }

    pub fn nullable_boolean<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
        match value(d)? {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(b)),
            other => fail(format!("must be true, false or null, got {}", short(&other))),
        }
    }

    pub fn number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
        num_or_inf(&value(d)?).map(Some).map_err(D::Error::custom)
    }

    pub fn nullable_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
        match value(d)? {
            Value::Null => Ok(None),
            v => num_or_inf(&v).map(Some).map_err(D::Error::custom),
        }
    }

    pub fn numbers<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<f64>>, D::Error> {
        match value(d)? {
            Value::Null => Ok(None),
            Value::Array(a) => a.iter().map(num_or_inf).collect::<Result<_, _>>().map(Some).map_err(D::Error::custom),
            other => fail(format!("must be a list of numbers or null, got {}", short(&other))),
        }
    }

    /// A non-negative integer (an integral float such as `1000.0` is accepted, as Python
    /// accepts it); the largest `usize` stands for anything larger.
    fn integer(v: &Value) -> std::result::Result<usize, String> {
        let err = || format!("must be a non-negative integer, got {}", short(v));
        match v {
            Value::Number(n) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => Ok(usize::try_from(u).unwrap_or(usize::MAX)),
                (None, Some(x)) if x >= 0.0 && x.fract() == 0.0 => {
                    Ok(if x < usize::MAX as f64 { x as usize } else { usize::MAX })
                }
                _ => Err(err()),
            },
            _ => Err(err()),
        }
    }

    pub fn int<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<usize>, D::Error> {
        integer(&value(d)?).map(Some).map_err(D::Error::custom)
    }

    pub fn nullable_int<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
        match value(d)? {
            Value::Null => Ok(None),
            v => integer(&v).map(|n| Some(n as u64)).map_err(D::Error::custom),
        }
    }

    /// An option whose only JSON value diffusers can use is `null` (a Python callable otherwise).
    pub fn null_only<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<()>, D::Error> {
        match value(d)? {
            Value::Null => Ok(None),
            other => fail(format!(
                "must be null: a custom tau function is Python code (SA-Solver's default tau is used), got {}",
                short(&other)
            )),
        }
    }

    pub fn ints<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<usize>>, D::Error> {
        match value(d)? {
            Value::Null => Ok(None),
            Value::Array(a) => a.iter().map(integer).collect::<Result<_, _>>().map(Some).map_err(D::Error::custom),
            other => fail(format!("must be a list of step indices, got {}", short(&other))),
        }
    }

    fn choose<T: Names>(v: &Value) -> std::result::Result<T, String> {
        let names = || T::NAMES.iter().map(|(n, _)| format!("{n:?}")).collect::<Vec<_>>().join(", ");
        match v {
            Value::String(s) => T::NAMES
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, t)| *t)
                .ok_or_else(|| format!("{:?} is not one of {}", clip(s), names())),
            other => Err(format!("must be one of {}, got {}", names(), short(other))),
        }
    }

    pub fn named<'de, D: Deserializer<'de>, T: Names>(d: D) -> std::result::Result<Option<T>, D::Error> {
        choose(&value(d)?).map(Some).map_err(D::Error::custom)
    }

    pub fn nullable_named<'de, D: Deserializer<'de>, T: Names>(d: D) -> std::result::Result<Option<T>, D::Error> {
        match value(d)? {
            Value::Null => Ok(None),
            v => choose(&v).map(Some).map_err(D::Error::custom),
        }
    }

    /// `shift_terminal`: a number, or `null` / `false` for none.
    pub fn shift_terminal<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
        match value(d)? {
            Value::Null | Value::Bool(false) => Ok(None),
            v => num_or_inf(&v).map(Some).map_err(D::Error::custom),
        }
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

/// A name from the file (a class name, a key, a value) as an error message quotes it: the first
/// 60 characters, then its length, so a huge one gives a short message.
pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}... ({} bytes)", s.chars().take(60).collect::<String>(), s.len())
    } else {
        s.to_string()
    }
}

/// A number, or one of Python's non-finite literals (rewritten to strings before parsing).
fn num_or_inf(v: &Value) -> std::result::Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("the number {n} is not representable")),
        Value::String(s) if s == INF_MARK => Ok(f64::INFINITY),
        Value::String(s) if s == NEG_INF_MARK => Ok(f64::NEG_INFINITY),
        Value::String(s) if s == NAN_MARK => Ok(f64::NAN),
        other => Err(format!("must be a number, got {}", short(other))),
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
    fn every_class_option_is_a_field() {
        // every option a class takes (but the alias and the refused predictor, handled before
        // deserialising) is a field: a null value is a type error or accepted, never "unknown"
        for class in SchedulerClass::ALL {
            for key in class.keys() {
                if ["set_alpha_to_zero", "solver_p"].contains(&key) {
                    continue;
                }
                let one = Value::Object(Map::from_iter([(key.to_string(), Value::Null)]));
                if let Err(e) = SchedulerConfig::deserialize(one) {
                    assert!(!e.to_string().contains("unknown field"), "{key}: {e}");
                }
            }
        }
        // and the values land in their fields
        let cfg = SchedulerConfig::from_json(
            r#"{"_class_name": "DDIMInverseScheduler", "set_alpha_to_zero": false, "num_train_timesteps": 1000.0,
                "lambda_min_clipped": -Infinity, "shift_terminal": 0, "disable_corrector": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(cfg.set_alpha_to_one, Some(false));
        assert_eq!(cfg.num_train_timesteps, Some(1000));
        assert_eq!(cfg.shift_terminal, None);
        assert_eq!(cfg.disable_corrector, Some(vec![1, 2]));
        assert_eq!(cfg.present_keys().len(), 5);
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
            (r#"{"_class_name": "DDIMScheduler", "beta_start": Infinity}"#, "beta_start"),
            (r#"{"_class_name": "DDIMScheduler", "clip_sample": null}"#, "clip_sample"),
            (r#"{"_class_name": "UniPCMultistepScheduler", "solver_p": {"a": 1}}"#, "solver_p"),
            (r#"{"_class_name": "DDIMScheduler", "num_train_timesteps": 1}"#, "num_train_timesteps"),
        ] {
            match SchedulerConfig::from_json(json) {
                Err(Error::DiffusersConfig { key: k, .. }) => assert_eq!(k, key, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
