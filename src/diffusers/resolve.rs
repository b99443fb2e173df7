//! Resolving a config for its class, once: every option at its value or at the class's diffusers
//! default, checked against what the class accepts, and the class's table built. The planners
//! ([`super::timesteps`]) and the sampler read only the resolved values.

use super::config::{
    cfg_err, AlgorithmType, BetaScheduleName, EdmSigmaSchedule, FinalSigmas, InterpolationType, SchedulerClass,
    SchedulerConfig, SolverTypeName, TimeShiftType, TimestepSpacing, TimestepType, VarianceType,
};
use super::{Quirks, TablePrecision};
use crate::error::Result;
use crate::math::expint::Form;
use crate::math::{LowerOrderFinal, OrderPolicy};
use crate::model::{DataTransform, DynamicThresholding, Prediction};
use crate::schedule::{alphas_cumprod, flow_sigma_of_lambda, vp_from_log_ksigma, BetaSchedule, Point, Scheduler};
use crate::solvers::{
    Algorithm, AnySolver, BVariant, CleanStepDraw, Corrector, Ddim, Ddpm, Deis, Dpm2, Dpm2Ancestral, DpmPpSde,
    DpmSolverMultistep, DpmSolverSinglestep, Euler, EulerAncestral, FinalNoise, FlowHeun, Heun, Ipndm, Lcm, Lms, Pndm,
    SaSolver, SdeDpmSolverPP, SolverType, Tcd, TcdTime, ThirdOrder, UniPc, UniPcEnd,
};

/// The time coordinate of the model for flow-sigma grids: `alpha = 1 - t / n`, `sigma = t / n`,
/// and the model time is `t` itself.
#[derive(Clone, Debug)]
pub(crate) struct FlowClock {
    pub(crate) n: f64,
}

impl Scheduler for FlowClock {
    fn alpha_sigma(&self, t: f64) -> (f64, f64) {
        let s = (t / self.n).clamp(0.0, 1.0);
        (1.0 - s, s)
    }
    fn t_of_lambda(&self, lambda: f64) -> f64 {
        flow_sigma_of_lambda(lambda) * self.n
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, self.n)
    }
    fn model_time(&self, t: f64) -> f64 {
        t
    }
    fn t_of_model_time(&self, model_time: f64) -> f64 {
        model_time
    }
    fn clean_point(&self) -> Point {
        Point::clean(0.0)
    }
}

/// The time input of an EDM-preconditioned network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EdmNoise {
    /// EDM's `c_noise = ln(sigma) / 4` (EDMEuler, EDMDPMSolverMultistep).
    QuarterLog,
    /// `atan(sigma) 2 / pi` (CosineDPMSolverMultistep).
    Atan,
}

/// The EDM-style classes' noise levels and preconditioning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EdmOptions {
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub sigma_data: f64,
    pub schedule: EdmSigmaSchedule,
    pub rho: f64,
    pub noise: EdmNoise,
    /// `prediction_type = "epsilon"`: the network's `F` is `-v` of the `sigma_data`-scaled VP
    /// sample (`"v_prediction"`: `+v`).
    pub negate: bool,
}

/// The time coordinate of the EDM-preconditioned classes. The time `t` is EDM's noise level
/// `sigma` (`x = x0 + sigma eps`); the crate works on the network's input `c_in x`, `c_in = 1 /
/// sqrt(sigma^2 + sigma_data^2)`, a variance-preserving sample of the data `x0 / sigma_data`:
/// `alpha = sigma_data c_in`, `sigma_vp = sigma c_in` (`ksigma = sigma / sigma_data`).
#[derive(Clone, Debug)]
pub(crate) struct EdmClock {
    pub(crate) sigma_data: f64,
    pub(crate) noise: EdmNoise,
    pub(crate) range: (f64, f64),
}

impl Scheduler for EdmClock {
    fn alpha_sigma(&self, t: f64) -> (f64, f64) {
        if t.is_infinite() {
            return (0.0, 1.0);
        }
        let n = t.hypot(self.sigma_data);
        (self.sigma_data / n, t / n)
    }
    fn t_of_lambda(&self, lambda: f64) -> f64 {
        self.sigma_data * (-lambda).exp()
    }
    fn t_range(&self) -> (f64, f64) {
        self.range
    }
    fn model_time(&self, t: f64) -> f64 {
        match self.noise {
            EdmNoise::QuarterLog => 0.25 * t.ln(),
            EdmNoise::Atan => t.atan() / std::f64::consts::FRAC_PI_2,
        }
    }
    fn t_of_model_time(&self, model_time: f64) -> f64 {
        match self.noise {
            EdmNoise::QuarterLog => (4.0 * model_time).exp(),
            EdmNoise::Atan => (model_time * std::f64::consts::FRAC_PI_2).tan(),
        }
    }
    fn clean_point(&self) -> Point {
        Point::clean(0.0)
    }
}

/// The time coordinate of EulerDiscrete's continuous timesteps for v-prediction
/// (`timestep_type = "continuous"`): the model time is `t = ln(ksigma) / 4` of the VP point with
/// `ksigma = sigma / alpha`, over the table's k-sigma range `[ks_min, ks_max]`.
#[derive(Clone, Debug)]
pub(crate) struct QuarterLogKsigma {
    pub(crate) ks_min: f64,
    pub(crate) ks_max: f64,
}

impl Scheduler for QuarterLogKsigma {
    fn alpha_sigma(&self, t: f64) -> (f64, f64) {
        vp_from_log_ksigma(4.0 * t)
    }
    fn t_of_lambda(&self, lambda: f64) -> f64 {
        -0.25 * lambda
    }
    fn t_range(&self) -> (f64, f64) {
        (0.25 * self.ks_min.ln(), 0.25 * self.ks_max.ln())
    }
    fn model_time(&self, t: f64) -> f64 {
        t
    }
    fn t_of_model_time(&self, model_time: f64) -> f64 {
        model_time
    }
    fn clean_point(&self) -> Point {
        Point::clean(-1.0)
    }
}

/// The solver a class runs: one configuration, or (PNDM) one that depends on the step count.
#[derive(Clone, Debug)]
pub(crate) enum SolverChoice {
    Fixed(AnySolver),
    /// PNDM's Runge-Kutta half stride is `num_train_timesteps // steps // 2`.
    Pndm {
        skip_prk_steps: bool,
    },
}

impl SolverChoice {
    /// The solver for `steps` inference steps of a `n_train`-step table.
    pub(crate) fn for_steps(&self, n_train: usize, steps: usize) -> AnySolver {
        match self {
            SolverChoice::Fixed(s) => s.clone(),
            SolverChoice::Pndm { skip_prk_steps } => AnySolver::new(Pndm::diffusers(*skip_prk_steps, n_train, steps)),
        }
    }
}

/// Which of diffusers' sigma conversions the class applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conversion {
    /// Sigmas interpolated over the table at the spaced timesteps.
    Interp,
    /// `use_karras_sigmas`.
    Karras,
    /// `use_lu_lambdas`.
    Lu,
    /// `use_exponential_sigmas`.
    Exponential,
    /// `use_beta_sigmas`.
    Beta,
    /// `use_flow_sigmas`.
    Flow,
}

/// The shift options of flow schedules (FlowMatchEuler, and the multistep classes' flow sigmas).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FlowOptions {
    /// FlowMatchEuler's `shift`.
    pub shift: f64,
    /// The multistep classes' `flow_shift`.
    pub flow_shift: f64,
    /// `use_dynamic_shifting`.
    pub dynamic: bool,
    /// `time_shift_type`.
    pub time_shift: TimeShiftType,
    /// `shift_terminal`.
    pub shift_terminal: Option<f64>,
    /// Flux's `mu` line: (`base_image_seq_len`, `base_shift`) to (`max_image_seq_len`, `max_shift`).
    pub mu_line: [f64; 4],
}

/// A config resolved for its class (see the module doc).
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub class: SchedulerClass,
    pub quirks: Quirks,
    pub n_train: usize,
    /// The betas the table is built from and whether it is rescaled to zero terminal SNR (none
    /// for FlowMatchEuler).
    pub betas: Option<(BetaSchedule, bool)>,
    /// diffusers' `alphas_cumprod` (float32 values unless `TablePrecision::Float64`); empty for
    /// FlowMatchEuler.
    pub alphas_cumprod: Vec<f64>,
    pub prediction: Prediction,
    pub transform: DataTransform,
    pub solver: SolverChoice,
    pub spacing: TimestepSpacing,
    pub steps_offset: usize,
    /// The clean point after the last step (DDIM, DDIMInverse, PNDM; DDPM always).
    pub set_alpha_to_one: bool,
    pub skip_prk_steps: bool,
    pub conversion: Conversion,
    /// `use_flow_sigmas` (accepted and set).
    pub flow_sigmas: bool,
    /// `sigma_min` / `sigma_max` (read from any config that has them, as diffusers does).
    pub sigma_bounds: (Option<f64>, Option<f64>),
    pub final_sigmas: FinalSigmas,
    pub lambda_min_clipped: Option<f64>,
    pub interpolation: InterpolationType,
    /// EulerDiscrete with `timestep_type = "continuous"` and v-prediction: the model gets `ln(sigma) / 4`.
    pub continuous_v: bool,
    /// Karras / Lu timesteps are rounded (all but DPMSolverMultistep with `squaredcos_cap_v2`).
    pub round_karras: bool,
    pub flow: FlowOptions,
    /// The EDM-style classes' options.
    pub edm: Option<EdmOptions>,
    /// LCM / TCD: `original_inference_steps`.
    pub original_steps: usize,
    /// DPMSolverSDE: `noise_sampler_seed` (seeds the default noise instead of torchsde's tree).
    pub noise_seed: Option<u64>,
    /// IPNDMScheduler's `trained_betas`: the noise levels of its steps.
    pub ipndm_betas: Option<Vec<f64>>,
}

fn get<T: Copy>(v: Option<T>, default: T) -> T {
    v.unwrap_or(default)
}

/// Resolve `config` for its class under `quirks` (diffusers' `Class.from_config(config)`).
pub(crate) fn resolve(config: &SchedulerConfig, quirks: Quirks) -> Result<Resolved> {
    let class = config.class;
    let c = config;
    let n_train = get(c.num_train_timesteps, 1000);
    let flow_class = matches!(class, SchedulerClass::FlowMatchEulerDiscrete | SchedulerClass::FlowMatchHeunDiscrete);
    let accepted = |key: &str, set: Option<bool>| get(set, false) && class.accepts(key);

    // ---- prediction type
    let prediction_default =
        if class == SchedulerClass::CosineDpmSolverMultistep { Prediction::VPrediction } else { Prediction::Epsilon };
    let prediction = match class {
        _ if flow_class => Prediction::Flow,
        // IPNDMScheduler has no prediction_type: its network returns v (`ets = sigma x + alpha v`)
        SchedulerClass::Ipndm => Prediction::VPrediction,
        _ => get(c.prediction_type, prediction_default),
    };
    let data_prediction = get(c.algorithm_type, AlgorithmType::DataPrediction) == AlgorithmType::DataPrediction;
    let allowed: &[Prediction] = match class {
        SchedulerClass::DpmSolverMultistep
        | SchedulerClass::DpmSolverMultistepInverse
        | SchedulerClass::DpmSolverSinglestep
        | SchedulerClass::DeisMultistep
        | SchedulerClass::UniPcMultistep => {
            &[Prediction::Epsilon, Prediction::Sample, Prediction::VPrediction, Prediction::Flow]
        }
        SchedulerClass::Pndm => &[Prediction::Epsilon, Prediction::VPrediction],
        SchedulerClass::FlowMatchEulerDiscrete | SchedulerClass::FlowMatchHeunDiscrete => &[Prediction::Flow],
        // their step raises NotImplementedError for "sample"; the EDM classes' preconditioning
        // knows only epsilon and v
        SchedulerClass::KDpm2Discrete
        | SchedulerClass::KDpm2AncestralDiscrete
        | SchedulerClass::DpmSolverSde
        | SchedulerClass::EdmEuler
        | SchedulerClass::EdmDpmSolverMultistep
        | SchedulerClass::CosineDpmSolverMultistep
        | SchedulerClass::Ipndm => &[Prediction::Epsilon, Prediction::VPrediction],
        SchedulerClass::SaSolver if data_prediction => {
            &[Prediction::Epsilon, Prediction::Sample, Prediction::VPrediction, Prediction::Flow]
        }
        _ => &[Prediction::Epsilon, Prediction::Sample, Prediction::VPrediction],
    };
    if !allowed.contains(&prediction) {
        return cfg_err("prediction_type", format!("{prediction:?} is not accepted by {}", class.name()));
    }
    let flow_sigmas = accepted("use_flow_sigmas", c.use_flow_sigmas);
    if prediction == Prediction::Flow && !flow_class && !flow_sigmas {
        return cfg_err(
            "prediction_type",
            "flow_prediction needs use_flow_sigmas=true (diffusers would mix flow outputs with VP sigmas)",
        );
    }

    // ---- sigma conversions: only one
    let (karras, exponential, beta) = (
        accepted("use_karras_sigmas", c.use_karras_sigmas),
        accepted("use_exponential_sigmas", c.use_exponential_sigmas),
        accepted("use_beta_sigmas", c.use_beta_sigmas),
    );
    if [karras, exponential, beta].iter().filter(|b| **b).count() > 1 {
        return cfg_err(
            "use_karras_sigmas",
            "only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be true",
        );
    }

    // ---- tables
    let betas = if class.has_beta_table() { Some(beta_schedule(c)?) } else { None };
    let alphas_cumprod = match &betas {
        None => Vec::new(),
        Some((schedule, rescale)) => build_table(schedule, c, n_train, *rescale, quirks.precision)?,
    };

    // ---- data transform
    let thresholding = get(c.thresholding, false) && class.accepts("thresholding");
    let edm = edm_options(c, prediction)?;
    // the EDM-style classes' network returns +-v of the crate's (sigma_data-scaled) sample
    let prediction = if edm.is_some() { Prediction::VPrediction } else { prediction };
    if let Some(e) = edm.filter(|e| thresholding && e.sigma_data != 1.0) {
        return cfg_err(
            "thresholding",
            format!(
                "dynamic thresholding with sigma_data = {} is not implemented (this layer works on x0 / sigma_data, \
                 and the threshold is not scale-free): use sigma_data = 1 or no thresholding",
                e.sigma_data
            ),
        );
    }
    // TCDScheduler takes clip_sample but its step never clips
    let clip = class.accepts("clip_sample")
        && class != SchedulerClass::Tcd
        && get(
            c.clip_sample,
            matches!(class, SchedulerClass::Ddim | SchedulerClass::DdimInverse | SchedulerClass::Ddpm),
        );
    let transform = if thresholding {
        let ratio = get(c.dynamic_thresholding_ratio, 0.995);
        let max_value = get(c.sample_max_value, 1.0);
        DataTransform::DynamicThreshold(DynamicThresholding { ratio, max_value })
    } else if clip {
        DataTransform::Clip { range: get(c.clip_sample_range, 1.0) }
    } else {
        DataTransform::None
    };

    // ---- solver
    let order = get(c.solver_order, 2);
    let check_order = |max: usize| -> Result<()> {
        if order > max {
            return cfg_err("solver_order", format!("{} supports solver_order 1..={max}, got {order}", class.name()));
        }
        Ok(())
    };
    let lower_order_final = get(c.lower_order_final, class != SchedulerClass::DpmSolverSinglestep);
    let variance_learned = matches!(c.variance_type, Some(VarianceType::Learned | VarianceType::LearnedRange));
    let solver = match class {
        SchedulerClass::Ddim | SchedulerClass::DdimInverse => SolverChoice::Fixed(AnySolver::new(Ddim::default())),
        SchedulerClass::DpmSolverMultistep | SchedulerClass::DpmSolverMultistepInverse => {
            check_order(3)?;
            if variance_learned {
                return cfg_err(
                    "variance_type",
                    "learned variance channels are not implemented: return only the prediction channels and \
                     set variance_type to null",
                );
            }
            let algorithm = get(c.algorithm_type, AlgorithmType::DpmSolverPP);
            let solver_type = match get(c.solver_type, SolverTypeName::Midpoint) {
                SolverTypeName::Heun => SolverType::Heun,
                _ => SolverType::Midpoint, // diffusers maps logrho / bh1 / bh2 to midpoint
            };
            let final_zero = get(c.final_sigmas_type, FinalSigmas::Zero) == FinalSigmas::Zero
                && class == SchedulerClass::DpmSolverMultistep;
            if matches!(algorithm, AlgorithmType::DpmSolver | AlgorithmType::SdeDpmSolver) && final_zero {
                return cfg_err(
                    "final_sigmas_type",
                    "\"zero\" is not supported with algorithm_type dpmsolver / sde-dpmsolver (diffusers refuses \
                     it): use \"sigma_min\"",
                );
            }
            if algorithm == AlgorithmType::DpmSolver && prediction == Prediction::Flow {
                return cfg_err("prediction_type", "flow_prediction needs algorithm_type dpmsolver++");
            }
            let policy = OrderPolicy {
                order,
                lower_order_final: lower_order_final_of(lower_order_final),
                euler_at_final: get(c.euler_at_final, false),
            };
            match algorithm {
                AlgorithmType::DpmSolverPP | AlgorithmType::Deis | AlgorithmType::DpmSolver => {
                    SolverChoice::Fixed(AnySolver::new(DpmSolverMultistep {
                        algorithm: if algorithm == AlgorithmType::DpmSolver {
                            Algorithm::DpmSolver
                        } else {
                            Algorithm::DpmSolverPP
                        },
                        policy,
                        solver_type,
                        third_order: ThirdOrder::Reference,
                    }))
                }
                AlgorithmType::SdeDpmSolverPP => {
                    if class == SchedulerClass::DpmSolverMultistepInverse {
                        return cfg_err("algorithm_type", "sde-dpmsolver++ inversion is not implemented");
                    }
                    SolverChoice::Fixed(AnySolver::new(SdeDpmSolverPP {
                        policy,
                        solver_type,
                        third_order: ThirdOrder::Reference,
                        ..SdeDpmSolverPP::diffusers_default()
                    }))
                }
                AlgorithmType::SdeDpmSolver => {
                    return cfg_err(
                        "algorithm_type",
                        "\"sde-dpmsolver\" (noise-prediction SDE) is not implemented: use \"sde-dpmsolver++\"",
                    )
                }
                other @ (AlgorithmType::DataPrediction | AlgorithmType::NoisePrediction) => {
                    return cfg_err(
                        "algorithm_type",
                        format!("{other:?} is SASolverScheduler's; {} takes dpmsolver++ or dpmsolver", class.name()),
                    )
                }
            }
        }
        SchedulerClass::DpmSolverSinglestep => {
            check_order(3)?;
            if variance_learned {
                return cfg_err(
                    "variance_type",
                    "learned variance channels are not implemented: set variance_type to null",
                );
            }
            let algorithm = match get(c.algorithm_type, AlgorithmType::DpmSolverPP) {
                AlgorithmType::DpmSolver => Algorithm::DpmSolver,
                AlgorithmType::DpmSolverPP | AlgorithmType::Deis => Algorithm::DpmSolverPP,
                other => {
                    return cfg_err(
                        "algorithm_type",
                        format!("{other:?} is not implemented by DPMSolverSinglestepScheduler"),
                    )
                }
            };
            if algorithm == Algorithm::DpmSolver && prediction == Prediction::Flow {
                return cfg_err("prediction_type", "flow_prediction needs algorithm_type dpmsolver++");
            }
            let solver_type = match get(c.solver_type, SolverTypeName::Midpoint) {
                SolverTypeName::Heun => SolverType::Heun,
                _ => SolverType::Midpoint,
            };
            SolverChoice::Fixed(AnySolver::new(DpmSolverSinglestep {
                algorithm,
                policy: OrderPolicy {
                    order,
                    lower_order_final: if lower_order_final { LowerOrderFinal::Always } else { LowerOrderFinal::Never },
                    euler_at_final: false,
                },
                solver_type,
            }))
        }
        SchedulerClass::DeisMultistep => {
            check_order(3)?;
            match get(c.algorithm_type, AlgorithmType::Deis) {
                AlgorithmType::Deis | AlgorithmType::DpmSolverPP | AlgorithmType::DpmSolver => {}
                other => {
                    return cfg_err("algorithm_type", format!("{other:?} is not implemented by DEISMultistepScheduler"))
                }
            }
            if matches!(prediction, Prediction::Flow) {
                return cfg_err("prediction_type", "flow_prediction with DEIS is not implemented");
            }
            SolverChoice::Fixed(AnySolver::new(Deis {
                policy: OrderPolicy {
                    order,
                    lower_order_final: lower_order_final_of(lower_order_final),
                    euler_at_final: false,
                },
            }))
        }
        SchedulerClass::UniPcMultistep => {
            check_order(3)?;
            let variant = match get(c.solver_type, SolverTypeName::Bh2) {
                SolverTypeName::Bh1 => BVariant::Bh1,
                _ => BVariant::Bh2, // diffusers maps midpoint / heun / logrho to bh2
            };
            let corrector = match &c.disable_corrector {
                Some(list) if !list.is_empty() => Corrector::Except(list.clone()),
                _ => Corrector::All,
            };
            SolverChoice::Fixed(AnySolver::new(UniPc {
                policy: OrderPolicy {
                    order,
                    lower_order_final: if lower_order_final { LowerOrderFinal::Always } else { LowerOrderFinal::Never },
                    euler_at_final: false,
                },
                variant,
                form: if get(c.predict_x0, true) { Form::Data } else { Form::Noise },
                corrector,
                end: UniPcEnd::Clean,
            }))
        }
        SchedulerClass::EulerDiscrete | SchedulerClass::FlowMatchEulerDiscrete => {
            SolverChoice::Fixed(AnySolver::new(Euler))
        }
        SchedulerClass::HeunDiscrete => SolverChoice::Fixed(AnySolver::new(Heun::default())),
        SchedulerClass::LmsDiscrete => SolverChoice::Fixed(AnySolver::new(Lms::diffusers_default())),
        SchedulerClass::Pndm => SolverChoice::Pndm { skip_prk_steps: get(c.skip_prk_steps, false) },
        SchedulerClass::EulerAncestralDiscrete => {
            SolverChoice::Fixed(AnySolver::new(EulerAncestral::diffusers_default()))
        }
        SchedulerClass::Ddpm => {
            let variance = match get(c.variance_type, VarianceType::FixedSmall) {
                v @ (VarianceType::FixedSmall | VarianceType::FixedSmallLog | VarianceType::FixedLarge) => v,
                VarianceType::FixedLargeLog => {
                    return cfg_err(
                        "variance_type",
                        "fixed_large_log: diffusers' DDPMScheduler.step takes the square root of log(beta) (NaN); \
                         use fixed_large",
                    )
                }
                VarianceType::Learned | VarianceType::LearnedRange => {
                    return cfg_err(
                        "variance_type",
                        "learned variances are not implemented: use fixed_small or fixed_large",
                    )
                }
            };
            SolverChoice::Fixed(AnySolver::new(Ddpm { variance, final_noise: FinalNoise::Diffusers }))
        }
        SchedulerClass::KDpm2Discrete => SolverChoice::Fixed(AnySolver::new(Dpm2::default())),
        SchedulerClass::KDpm2AncestralDiscrete => SolverChoice::Fixed(AnySolver::new(Dpm2Ancestral::default())),
        SchedulerClass::DpmSolverSde => SolverChoice::Fixed(AnySolver::new(DpmPpSde::default())),
        SchedulerClass::EdmEuler => SolverChoice::Fixed(AnySolver::new(Euler)),
        SchedulerClass::EdmDpmSolverMultistep | SchedulerClass::CosineDpmSolverMultistep => {
            let cosine = class == SchedulerClass::CosineDpmSolverMultistep;
            // CosineDPMSolverMultistep's step has no third-order update (diffusers fails there)
            check_order(if cosine { 2 } else { 3 })?;
            let sde = match get(c.algorithm_type, AlgorithmType::DpmSolverPP) {
                _ if cosine => true,
                AlgorithmType::DpmSolverPP | AlgorithmType::Deis => false,
                AlgorithmType::SdeDpmSolverPP => true,
                other => {
                    return cfg_err(
                        "algorithm_type",
                        format!(
                            "{other:?} is not implemented by {} (diffusers: dpmsolver++ or sde-dpmsolver++)",
                            class.name()
                        ),
                    )
                }
            };
            let solver_type = match get(c.solver_type, SolverTypeName::Midpoint) {
                SolverTypeName::Heun => SolverType::Heun,
                _ => SolverType::Midpoint, // diffusers maps logrho / bh1 / bh2 to midpoint
            };
            let policy = OrderPolicy {
                order,
                lower_order_final: lower_order_final_of(lower_order_final),
                euler_at_final: get(c.euler_at_final, false),
            };
            if sde {
                SolverChoice::Fixed(AnySolver::new(SdeDpmSolverPP {
                    policy,
                    solver_type,
                    third_order: ThirdOrder::Reference,
                    clean_step: CleanStepDraw::Draw,
                    ..SdeDpmSolverPP::diffusers_default()
                }))
            } else {
                SolverChoice::Fixed(AnySolver::new(DpmSolverMultistep {
                    algorithm: Algorithm::DpmSolverPP,
                    policy,
                    solver_type,
                    third_order: ThirdOrder::Reference,
                }))
            }
        }
        SchedulerClass::Tcd => SolverChoice::Fixed(AnySolver::new(Tcd { gamma: 0.3, time: TcdTime::FloorIndex })),
        SchedulerClass::Ipndm => SolverChoice::Fixed(AnySolver::new(Ipndm::diffusers_default())),
        SchedulerClass::FlowMatchHeunDiscrete => SolverChoice::Fixed(AnySolver::new(FlowHeun)),
        SchedulerClass::Lcm => SolverChoice::Fixed(AnySolver::new(Lcm::diffusers(get(c.timestep_scaling, 10.0)))),
        SchedulerClass::SaSolver => {
            if variance_learned {
                return cfg_err(
                    "variance_type",
                    "learned variance channels are not implemented: return only the prediction channels and \
                     set variance_type to null",
                );
            }
            if !data_prediction {
                return cfg_err(
                    "algorithm_type",
                    "\"noise_prediction\" SA-Solver is not implemented: use \"data_prediction\" (diffusers' default)",
                );
            }
            SolverChoice::Fixed(AnySolver::new(SaSolver::diffusers(
                get(c.predictor_order, 2),
                get(c.corrector_order, 2),
                lower_order_final,
            )))
        }
    };

    // ---- options accepted but not implemented (numbers would differ): refuse
    if flow_class {
        if get(c.invert_sigmas, false) {
            return cfg_err("invert_sigmas", "not implemented (it runs the flow from data to noise)");
        }
        if get(c.stochastic_sampling, false) {
            return cfg_err(
                "stochastic_sampling",
                "not implemented: use the deterministic flow-matching Euler sampler",
            );
        }
    }
    let lu = accepted("use_lu_lambdas", c.use_lu_lambdas);
    let conversion = if karras {
        Conversion::Karras
    } else if lu {
        Conversion::Lu
    } else if exponential {
        Conversion::Exponential
    } else if beta {
        Conversion::Beta
    } else if flow_sigmas {
        Conversion::Flow
    } else {
        Conversion::Interp
    };
    use SchedulerClass as C;
    let spacing_default = match class {
        C::Ddim | C::DdimInverse | C::Ddpm | C::Pndm | C::Lcm | C::Tcd => TimestepSpacing::Leading,
        _ => TimestepSpacing::Linspace,
    };
    let set_alpha_to_one = match class {
        C::Ddim | C::DdimInverse => get(c.set_alpha_to_one, true),
        C::Pndm => get(c.set_alpha_to_one, false),
        C::Ddpm => true,
        _ => false,
    };
    Ok(Resolved {
        class,
        quirks,
        n_train,
        betas,
        alphas_cumprod,
        prediction,
        transform,
        solver,
        spacing: if class.accepts("timestep_spacing") {
            get(c.timestep_spacing, spacing_default)
        } else {
            spacing_default
        },
        steps_offset: if class.accepts("steps_offset") { get(c.steps_offset, 0) } else { 0 },
        set_alpha_to_one,
        skip_prk_steps: get(c.skip_prk_steps, false),
        conversion,
        flow_sigmas,
        sigma_bounds: (c.sigma_min, c.sigma_max),
        final_sigmas: if class.accepts("final_sigmas_type") {
            get(c.final_sigmas_type, FinalSigmas::Zero)
        } else {
            FinalSigmas::Zero
        },
        lambda_min_clipped: c.lambda_min_clipped.filter(|_| class.accepts("lambda_min_clipped")),
        interpolation: if class == C::EulerDiscrete {
            get(c.interpolation_type, InterpolationType::Linear)
        } else {
            InterpolationType::Linear
        },
        continuous_v: class == C::EulerDiscrete
            && get(c.timestep_type, TimestepType::Discrete) == TimestepType::Continuous
            && prediction == Prediction::VPrediction,
        round_karras: class != C::DpmSolverMultistep
            || get(c.beta_schedule, BetaScheduleName::Linear) != BetaScheduleName::SquaredCosCapV2,
        edm,
        original_steps: get(c.original_inference_steps, 50),
        noise_seed: c.noise_sampler_seed.filter(|_| class.accepts("noise_sampler_seed")),
        ipndm_betas: c.trained_betas.clone().filter(|_| class == C::Ipndm),
        flow: FlowOptions {
            shift: get(c.shift, 1.0),
            flow_shift: get(c.flow_shift, 1.0),
            dynamic: get(c.use_dynamic_shifting, false),
            time_shift: get(c.time_shift_type, TimeShiftType::Exponential),
            shift_terminal: c.shift_terminal,
            mu_line: [
                get(c.base_image_seq_len, 256) as f64,
                c.base_shift.unwrap_or(0.5),
                get(c.max_image_seq_len, 4096) as f64,
                c.max_shift.unwrap_or(1.15),
            ],
        },
    })
}

/// The EDM-style classes' options (their diffusers defaults applied); `None` for other classes.
fn edm_options(c: &SchedulerConfig, prediction: Prediction) -> Result<Option<EdmOptions>> {
    let class = c.class;
    if !class.is_edm() {
        return Ok(None);
    }
    let cosine = class == SchedulerClass::CosineDpmSolverMultistep;
    let (min_default, max_default, data_default, schedule_default) = if cosine {
        (0.3, 500.0, 1.0, EdmSigmaSchedule::Exponential)
    } else {
        (0.002, 80.0, 0.5, EdmSigmaSchedule::Karras)
    };
    let e = EdmOptions {
        sigma_min: get(c.sigma_min, min_default),
        sigma_max: get(c.sigma_max, max_default),
        sigma_data: get(c.sigma_data, data_default),
        schedule: get(c.sigma_schedule, schedule_default),
        rho: get(c.rho, 7.0),
        noise: if cosine { EdmNoise::Atan } else { EdmNoise::QuarterLog },
        negate: prediction == Prediction::Epsilon,
    };
    if !(e.sigma_min < e.sigma_max) {
        return cfg_err(
            "sigma_min",
            format!(
                "must be below sigma_max ({} >= {}): the noise levels run from sigma_max down",
                e.sigma_min, e.sigma_max
            ),
        );
    }
    Ok(Some(e))
}

/// The class's beta schedule (its defaults applied) and whether it is rescaled to zero terminal SNR.
fn beta_schedule(c: &SchedulerConfig) -> Result<(BetaSchedule, bool)> {
    let class = c.class;
    let name_default = match class {
        SchedulerClass::Lcm | SchedulerClass::Tcd => BetaScheduleName::ScaledLinear,
        _ => BetaScheduleName::Linear,
    };
    let name = get(c.beta_schedule, name_default);
    let allowed: &[BetaScheduleName] = match class {
        SchedulerClass::HeunDiscrete => &[
            BetaScheduleName::Linear,
            BetaScheduleName::ScaledLinear,
            BetaScheduleName::SquaredCosCapV2,
            BetaScheduleName::Exp,
        ],
        SchedulerClass::Ddpm => &[
            BetaScheduleName::Linear,
            BetaScheduleName::ScaledLinear,
            BetaScheduleName::SquaredCosCapV2,
            BetaScheduleName::Laplace,
            BetaScheduleName::Sigmoid,
        ],
        _ => &[BetaScheduleName::Linear, BetaScheduleName::ScaledLinear, BetaScheduleName::SquaredCosCapV2],
    };
    if c.trained_betas.is_none() && !allowed.contains(&name) {
        return cfg_err("beta_schedule", format!("{name:?} is not implemented by {} in diffusers", class.name()));
    }
    let (bs_default, be_default) = match class {
        SchedulerClass::HeunDiscrete
        | SchedulerClass::KDpm2Discrete
        | SchedulerClass::KDpm2AncestralDiscrete
        | SchedulerClass::DpmSolverSde
        | SchedulerClass::Lcm
        | SchedulerClass::Tcd => (0.00085, 0.012),
        _ => (0.0001, 0.02),
    };
    let (beta_start, beta_end) = (get(c.beta_start, bs_default), get(c.beta_end, be_default));
    let schedule = match (&c.trained_betas, name) {
        (Some(b), _) => BetaSchedule::Betas(b.clone()),
        (None, BetaScheduleName::Linear) => BetaSchedule::Linear { beta_start, beta_end },
        (None, BetaScheduleName::ScaledLinear) => BetaSchedule::ScaledLinear { beta_start, beta_end },
        (None, BetaScheduleName::SquaredCosCapV2) => BetaSchedule::SquaredCosCapV2 { max_beta: 0.999 },
        (None, BetaScheduleName::Exp) => BetaSchedule::Exp,
        (None, BetaScheduleName::Laplace) => BetaSchedule::Laplace,
        (None, BetaScheduleName::Sigmoid) => BetaSchedule::Sigmoid { beta_start, beta_end },
    };
    let rescale = get(c.rescale_betas_zero_snr, false) && class.accepts("rescale_betas_zero_snr");
    Ok((schedule, rescale))
}

/// diffusers' `alphas_cumprod` for the class: the crate's table builder in `precision`, with
/// diffusers' checks (naming the option) and its last-entry fix for zero-SNR tables.
fn build_table(
    schedule: &BetaSchedule,
    c: &SchedulerConfig,
    n: usize,
    rescale: bool,
    precision: TablePrecision,
) -> Result<Vec<f64>> {
    let class = c.class;
    match schedule {
        BetaSchedule::Betas(b) if b.len() != n => {
            return cfg_err(
                "trained_betas",
                format!("has {} values but num_train_timesteps is {n}: give one beta per training timestep", b.len()),
            )
        }
        BetaSchedule::Linear { beta_start, beta_end } | BetaSchedule::ScaledLinear { beta_start, beta_end } => {
            for (k, v) in [("beta_start", *beta_start), ("beta_end", *beta_end)] {
                if !(v > 0.0 && v < 1.0) {
                    return cfg_err(k, format!("must lie in (0, 1) for beta_schedule {schedule:?}, got {v}"));
                }
            }
        }
        _ => {}
    }
    let mut ac = alphas_cumprod(schedule, n, rescale, precision)?;
    // the zero-SNR classes that replace the last 0 by 2^-24 (diffusers, to keep sigma finite)
    let fix_last = rescale
        && matches!(
            class,
            SchedulerClass::DpmSolverMultistep
                | SchedulerClass::EulerDiscrete
                | SchedulerClass::EulerAncestralDiscrete
                | SchedulerClass::UniPcMultistep
        );
    if let (true, Some(last)) = (fix_last, ac.last_mut()) {
        *last = 2f64.powi(-24);
    }
    let trained = c.trained_betas.as_deref();
    let key = if trained.is_some() { "trained_betas" } else { "beta_end" };
    for (i, &a) in ac.iter().enumerate() {
        let last_zero = i + 1 == ac.len() && a == 0.0;
        if !(a > 0.0 && a <= 1.0 || last_zero) || !a.is_finite() {
            return cfg_err(key, format!("gives alphas_cumprod[{i}] = {a}: every beta must lie in (0, 1)"));
        }
        // sigma = sqrt((1 - a) / a) must be representable in the table's precision
        let ratio = (1.0 - a) / a;
        let overflow = match precision {
            TablePrecision::Float32 => !((ratio as f32).is_finite()),
            TablePrecision::Float64 => !ratio.is_finite(),
        };
        if overflow && !last_zero {
            return cfg_err(
                key,
                format!(
                    "drives alphas_cumprod[{i}] down to {a:e}: its noise level overflows {precision:?} (diffusers \
                 would compute infinite sigmas); use smaller betas"
                ),
            );
        }
    }
    Ok(ac)
}

/// diffusers' `lower_order_final` flag: lower the order of the last steps on grids of fewer than
/// 15 steps.
fn lower_order_final_of(flag: bool) -> LowerOrderFinal {
    if flag {
        LowerOrderFinal::BelowSteps(15)
    } else {
        LowerOrderFinal::Never
    }
}
