//! [`DiffusersSampler`]: a resolved diffusers config, its timesteps, sigmas and solver (a
//! [`Plan`]), run through the crate's one loop ([`crate::sample_with`]).

use candle_core::Tensor;

use super::config::{
    cfg_err, AlgorithmType, BetaScheduleName, FinalSigmas, InterpolationType, SchedulerClass, SchedulerConfig,
    SolverTypeName, TimeShiftType, TimestepSpacing, TimestepType, VarianceType,
};
use super::tables::{self, np_arange, np_interp, np_linspace};
use super::{DdimTarget, FlowShift, Quirks, TablePrecision, TimestepRounding};
use crate::error::{Error, Result};
use crate::grid::{Step, StepKind};
use crate::math::expint::Form;
use crate::math::{LowerOrderFinal, OrderPolicy};
use crate::model::{DataTransform, Denoiser, DynamicThresholding, Model, Prediction};
use crate::noise::{NoiseSource, SeededNoise};
use crate::sample::{sample_with, Progress};
use crate::schedule::{BetaSchedule, DiscreteVp, Point, Scheduler};
use crate::solvers::{
    Algorithm, AnySolver, BVariant, Corrector, Ddim, Ddpm, DdpmVariance, Deis, DpmSolverMultistep, DpmSolverSinglestep,
    Euler, EulerAncestral, FinalNoise, Heun, Lms, Pndm, SdeDpmSolverPP, SolverType, ThirdOrder, UniPc, UniPcEnd,
};

/// Largest number of inference steps accepted.
pub const MAX_STEPS: usize = 100_000;

/// diffusers' schedule for one step count, in this crate's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// diffusers' `scheduler.timesteps`: the model times, in the order the model is called.
    pub timesteps: Vec<f64>,
    /// diffusers' `scheduler.sigmas` where the class has them (k-sigmas `sigma / alpha` for the
    /// discrete classes, `sigma` for flow sigmas; for Heun the de-duplicated list); empty for
    /// DDIM, DDPM and PNDM.
    pub sigmas: Vec<f64>,
    /// diffusers' `init_noise_sigma`: the pipeline starts from `noise * init_noise_sigma`.
    pub init_noise_sigma: f64,
    /// The steps the loop takes (each from a point to a point; with [`DdimTarget::UniformStride`]
    /// a step may end off the next step's start, as in diffusers; a repeated sigma is a
    /// [`StepKind::EvaluateOnly`] step, except for UniPC and singlestep DPM-Solver, whose
    /// diffusers `step` still moves the sample there). Run them with [`crate::sample_with`].
    pub steps: Vec<Step>,
    /// True when the class works on the scaled sample `x / alpha` (Euler, Heun, LMS,
    /// Euler-ancestral): the pipeline's sample is `x / alpha` of this crate's `x`.
    pub scaled: bool,
    /// The step count asked for (`set_timesteps(steps)`).
    pub inference_steps: usize,
    /// The solver the class runs for this step count.
    pub solver: AnySolver,
}

/// A planner's output: [`Plan`] without the solver and the step count.
struct Timetable {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    steps: Vec<Step>,
    scaled: bool,
}

impl Plan {
    /// The crate's starting `x` for diffusers' initial noise: `noise * init_noise_sigma`, times
    /// `alpha` of the first point for the scaled classes.
    pub fn start_scale(&self) -> f64 {
        let alpha = if self.scaled { self.steps.first().map_or(1.0, |s| s.from.alpha) } else { 1.0 };
        self.init_noise_sigma * alpha
    }

    /// Factor from the crate's final `x` to the pipeline's final sample (`1 / alpha` of the last
    /// point for the scaled classes).
    pub fn end_scale(&self) -> f64 {
        if self.scaled {
            self.steps.last().map_or(1.0, |s| 1.0 / s.to.alpha)
        } else {
            1.0
        }
    }
}

/// The result of [`DiffusersSampler::run`].
#[derive(Debug)]
pub struct DiffusersRun {
    /// The pipeline's final sample.
    pub sample: Tensor,
    /// The model times passed to the network, in order.
    pub model_times: Vec<f64>,
    /// Network evaluations.
    pub nfe: usize,
}

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
        let s = if lambda >= 0.0 {
            let e = (-lambda).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + lambda.exp())
        };
        s * self.n
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

/// The solver a class runs: one configuration, or (PNDM) one that depends on the step count.
#[derive(Clone, Debug)]
enum SolverChoice {
    Fixed(AnySolver),
    /// PNDM's Runge-Kutta half stride is `num_train_timesteps // steps // 2`.
    Pndm {
        skip_prk_steps: bool,
    },
}

/// A diffusers scheduler, resolved: the class, every option at its value or diffusers' default,
/// the float32 tables, and the solver. Built by [`DiffusersSampler::from_config`] (diffusers'
/// `SchedulerClass.from_config`).
#[derive(Clone, Debug)]
pub struct DiffusersSampler {
    config: SchedulerConfig,
    quirks: Quirks,
    n_train: usize,
    /// alphas_cumprod (float32 values unless TablePrecision::Float64); empty for flow matching
    alphas_cumprod: Vec<f64>,
    prediction: Prediction,
    transform: DataTransform,
    solver: SolverChoice,
    mu: Option<f64>,
    noise_seed: u64,
}

fn get<T: Copy>(v: Option<T>, default: T) -> T {
    v.unwrap_or(default)
}

impl DiffusersSampler {
    /// Resolve `config` for its class (diffusers' `Class.from_config(config)`): apply the class's
    /// defaults, check the options against what the class accepts, build the tables.
    ///
    /// Errors ([`Error::DiffusersConfig`]) name the option: a value diffusers itself rejects, or
    /// an option this layer does not implement.
    pub fn from_config(config: &SchedulerConfig) -> Result<DiffusersSampler> {
        DiffusersSampler::with_quirks(config, Quirks::default())
    }

    /// [`DiffusersSampler::from_config`] with some of diffusers' numerical quirks turned off.
    pub fn with_quirks(config: &SchedulerConfig, quirks: Quirks) -> Result<DiffusersSampler> {
        let class = config.class;
        let c = config;
        let n_train = get(c.num_train_timesteps, 1000);
        let flow_class = class == SchedulerClass::FlowMatchEulerDiscrete;

        // ---- prediction type
        let prediction = if flow_class { Prediction::Flow } else { get(c.prediction_type, Prediction::Epsilon) };
        let allowed: &[Prediction] = match class {
            SchedulerClass::DpmSolverMultistep
            | SchedulerClass::DpmSolverMultistepInverse
            | SchedulerClass::DpmSolverSinglestep
            | SchedulerClass::DeisMultistep
            | SchedulerClass::UniPcMultistep => {
                &[Prediction::Epsilon, Prediction::Sample, Prediction::VPrediction, Prediction::Flow]
            }
            SchedulerClass::Pndm => &[Prediction::Epsilon, Prediction::VPrediction],
            SchedulerClass::FlowMatchEulerDiscrete => &[Prediction::Flow],
            _ => &[Prediction::Epsilon, Prediction::Sample, Prediction::VPrediction],
        };
        if !allowed.contains(&prediction) {
            return cfg_err("prediction_type", format!("{prediction:?} is not accepted by {}", class.name()));
        }
        let flow_sigmas = get(c.use_flow_sigmas, false) && class.accepts("use_flow_sigmas");
        if prediction == Prediction::Flow && !flow_class && !flow_sigmas {
            return cfg_err(
                "prediction_type",
                "flow_prediction needs use_flow_sigmas=true (diffusers would mix flow outputs with VP sigmas)",
            );
        }

        // ---- sigma conversions: only one
        let (karras, exponential, beta) = (
            get(c.use_karras_sigmas, false) && class.accepts("use_karras_sigmas"),
            get(c.use_exponential_sigmas, false) && class.accepts("use_exponential_sigmas"),
            get(c.use_beta_sigmas, false) && class.accepts("use_beta_sigmas"),
        );
        if [karras, exponential, beta].iter().filter(|b| **b).count() > 1 {
            return cfg_err(
                "use_karras_sigmas",
                "only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be true",
            );
        }

        // ---- tables
        let alphas_cumprod = if flow_class {
            Vec::new()
        } else {
            let schedule = get(c.beta_schedule, BetaScheduleName::Linear);
            let allowed_betas: &[BetaScheduleName] = match class {
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
            if c.trained_betas.is_none() && !allowed_betas.contains(&schedule) {
                return cfg_err(
                    "beta_schedule",
                    format!("{schedule:?} is not implemented by {} in diffusers", class.name()),
                );
            }
            let (bs_default, be_default) =
                if class == SchedulerClass::HeunDiscrete { (0.00085, 0.012) } else { (0.0001, 0.02) };
            let (bs, be) = (get(c.beta_start, bs_default), get(c.beta_end, be_default));
            let rescale = get(c.rescale_betas_zero_snr, false) && class.accepts("rescale_betas_zero_snr");
            build_table(schedule, bs, be, c.trained_betas.as_deref(), n_train, rescale, class, quirks.precision)?
        };

        // ---- data transform
        let thresholding = get(c.thresholding, false) && class.accepts("thresholding");
        let clip = class.accepts("clip_sample")
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
                return cfg_err(
                    "solver_order",
                    format!("{} supports solver_order 1..={max}, got {order}", class.name()),
                );
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
                    lower_order_final: if lower_order_final {
                        LowerOrderFinal::BelowSteps(15)
                    } else {
                        LowerOrderFinal::Never
                    },
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
                        }))
                    }
                    AlgorithmType::SdeDpmSolver => {
                        return cfg_err(
                            "algorithm_type",
                            "\"sde-dpmsolver\" (noise-prediction SDE) is not implemented: use \"sde-dpmsolver++\"",
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
                        lower_order_final: if lower_order_final {
                            LowerOrderFinal::Always
                        } else {
                            LowerOrderFinal::Never
                        },
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
                        return cfg_err(
                            "algorithm_type",
                            format!("{other:?} is not implemented by DEISMultistepScheduler"),
                        )
                    }
                }
                if matches!(prediction, Prediction::Flow) {
                    return cfg_err("prediction_type", "flow_prediction with DEIS is not implemented");
                }
                SolverChoice::Fixed(AnySolver::new(Deis {
                    policy: OrderPolicy {
                        order,
                        lower_order_final: if lower_order_final {
                            LowerOrderFinal::BelowSteps(15)
                        } else {
                            LowerOrderFinal::Never
                        },
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
                        lower_order_final: if lower_order_final {
                            LowerOrderFinal::Always
                        } else {
                            LowerOrderFinal::Never
                        },
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
                let variance =
                    match get(c.variance_type, VarianceType::FixedSmall) {
                        VarianceType::FixedSmall => DdpmVariance::FixedSmall,
                        VarianceType::FixedSmallLog => DdpmVariance::FixedSmallLog,
                        VarianceType::FixedLarge => DdpmVariance::FixedLarge,
                        VarianceType::FixedLargeLog => return cfg_err(
                            "variance_type",
                            "fixed_large_log: diffusers' DDPMScheduler.step takes the square root of log(beta) (NaN); \
                             use fixed_large",
                        ),
                        VarianceType::Learned | VarianceType::LearnedRange => {
                            return cfg_err(
                                "variance_type",
                                "learned variances are not implemented: use fixed_small or fixed_large",
                            )
                        }
                    };
                SolverChoice::Fixed(AnySolver::new(Ddpm { variance, final_noise: FinalNoise::Diffusers }))
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
        if !flow_class && class.accepts("use_dynamic_shifting") && get(c.use_dynamic_shifting, false) && !flow_sigmas {
            // diffusers ignores dynamic shifting without flow sigmas unless mu is passed
        }
        let sampler = DiffusersSampler {
            config: config.clone(),
            quirks,
            n_train,
            alphas_cumprod,
            prediction,
            transform,
            solver,
            mu: None,
            noise_seed: 0,
        };
        Ok(sampler)
    }

    /// The same config under another class, with this sampler's quirks, `mu` and seed (diffusers'
    /// `pipe.scheduler = OtherScheduler.from_config(pipe.scheduler.config)`). DDIM's `eta` is not
    /// carried over.
    ///
    /// ```
    /// use diffusion_samplers::diffusers::{DiffusersSampler, SchedulerClass};
    /// let pndm = DiffusersSampler::from_json(r#"{"_class_name": "PNDMScheduler", "steps_offset": 1}"#)?;
    /// let unipc = pndm.switch_to(SchedulerClass::UniPcMultistep)?;
    /// assert_eq!(unipc.class(), SchedulerClass::UniPcMultistep);
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn switch_to(&self, class: SchedulerClass) -> Result<DiffusersSampler> {
        let mut s = DiffusersSampler::with_quirks(&self.config.with_class(class), self.quirks)?;
        s.mu = self.mu;
        s.noise_seed = self.noise_seed;
        Ok(s)
    }

    /// Parse `json` and resolve it ([`SchedulerConfig::from_json`] then
    /// [`DiffusersSampler::from_config`]).
    pub fn from_json(json: &str) -> Result<DiffusersSampler> {
        DiffusersSampler::from_config(&SchedulerConfig::from_json(json)?)
    }

    /// Read, parse and resolve a `scheduler_config.json` file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<DiffusersSampler> {
        DiffusersSampler::from_config(&SchedulerConfig::from_file(path)?)
    }

    /// DDIM's `eta` (the pipeline's `eta` passed to `DDIMScheduler.step`; 0 = deterministic, the
    /// default). Only `DDIMScheduler` takes it.
    pub fn eta(mut self, eta: f64) -> Result<DiffusersSampler> {
        if self.config.class != SchedulerClass::Ddim {
            return Err(Error::Unsupported(format!(
                "eta is a DDIMScheduler argument, not one of {}",
                self.config.class.name()
            )));
        }
        if !(eta >= 0.0 && eta.is_finite()) {
            return Err(Error::InvalidConfig(format!("DDIM eta must be finite and >= 0, got {eta}")));
        }
        self.solver = SolverChoice::Fixed(AnySolver::new(Ddim { eta }));
        Ok(self)
    }

    /// `mu` for dynamic shifting (`set_timesteps(mu=...)`; Flux and similar pipelines compute it
    /// from the image size, see [`DiffusersSampler::flux_mu`]).
    pub fn mu(mut self, mu: f64) -> Result<DiffusersSampler> {
        if !mu.is_finite() {
            return Err(Error::InvalidConfig(format!("mu must be finite, got {mu}")));
        }
        self.mu = Some(mu);
        Ok(self)
    }

    /// Seed of the default noise generator of the stochastic classes (`SeededNoise`).
    pub fn seed(mut self, seed: u64) -> DiffusersSampler {
        self.noise_seed = seed;
        self
    }

    /// The default noise source: `SeededNoise::new(seed)` with the seed of [`DiffusersSampler::seed`].
    pub fn noise(&self) -> SeededNoise {
        SeededNoise::new(self.noise_seed)
    }

    /// The `mu` Flux-style pipelines pass for `image_seq_len` tokens: linear in the sequence
    /// length between (`base_image_seq_len`, `base_shift`) and (`max_image_seq_len`, `max_shift`).
    pub fn flux_mu(&self, image_seq_len: usize) -> f64 {
        let c = &self.config;
        let (b, m) = (get(c.base_image_seq_len, 256) as f64, get(c.max_image_seq_len, 4096) as f64);
        let (bs, ms) = (c.base_shift.unwrap_or(0.5), c.max_shift.unwrap_or(1.15));
        let slope = (ms - bs) / (m - b);
        image_seq_len as f64 * slope + (bs - slope * b)
    }

    /// The config this sampler was resolved from.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The quirks in effect.
    pub fn quirks(&self) -> Quirks {
        self.quirks
    }

    /// The scheduler class.
    pub fn class(&self) -> SchedulerClass {
        self.config.class
    }

    /// What the network predicts.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// The clipping / thresholding of data predictions the class applies.
    pub fn data_transform(&self) -> DataTransform {
        self.transform
    }

    /// diffusers' `alphas_cumprod` (float32 values unless [`TablePrecision::Float64`]); empty for
    /// flow matching.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// The noise schedule of the table (the discrete-time schedule a model trained on it sees).
    pub fn schedule(&self) -> Result<Box<dyn Scheduler>> {
        if self.alphas_cumprod.is_empty() || self.flow_sigmas() {
            return Ok(Box::new(FlowClock { n: self.n_train as f64 }));
        }
        Ok(Box::new(DiscreteVp::new(BetaSchedule::AlphasCumprod(self.alphas_cumprod.clone()), self.n_train)?))
    }

    /// diffusers' `scheduler.timesteps` after `set_timesteps(steps)`.
    pub fn timesteps(&self, steps: usize) -> Result<Vec<f64>> {
        Ok(self.plan(steps)?.timesteps)
    }

    /// diffusers' `init_noise_sigma` after `set_timesteps(steps)`.
    pub fn init_noise_sigma(&self, steps: usize) -> Result<f64> {
        Ok(self.plan(steps)?.init_noise_sigma)
    }

    fn flow_sigmas(&self) -> bool {
        get(self.config.use_flow_sigmas, false) && self.config.class.accepts("use_flow_sigmas")
    }

    fn f32(&self, x: f64) -> f64 {
        match self.quirks.precision {
            TablePrecision::Float32 => x as f32 as f64,
            TablePrecision::Float64 => x,
        }
    }

    fn ksigmas(&self) -> Vec<f64> {
        let ac = &self.alphas_cumprod;
        match self.quirks.precision {
            TablePrecision::Float32 => ac.iter().map(|&a| ((1.0 - a as f32) / a as f32).sqrt() as f64).collect(),
            TablePrecision::Float64 => ac.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect(),
        }
    }

    fn log_ksigmas(&self, ks: &[f64]) -> Vec<f64> {
        match self.quirks.precision {
            TablePrecision::Float32 => ks.iter().map(|&s| (s as f32).ln() as f64).collect(),
            TablePrecision::Float64 => ks.iter().map(|s| s.ln()).collect(),
        }
    }

    fn vp_point(&self, t: f64, index: usize) -> Point {
        let a = self.alphas_cumprod[index];
        if a >= 1.0 {
            return Point::clean(t);
        }
        Point::new(t, a.sqrt(), (1.0 - a).sqrt())
    }

    /// A point from diffusers' k-sigma `ks = sigma / alpha` (0 = clean), or from a flow sigma.
    fn sigma_point(&self, t: f64, s: f64, flow: bool) -> Point {
        if s == 0.0 {
            return Point::clean(t);
        }
        if flow {
            return Point::new(t, 1.0 - s, s);
        }
        let alpha = 1.0 / (s * s + 1.0).sqrt();
        Point::new(t, alpha, s * alpha)
    }

    fn spacing(&self, default: TimestepSpacing) -> TimestepSpacing {
        if self.config.class.accepts("timestep_spacing") {
            get(self.config.timestep_spacing, default)
        } else {
            default
        }
    }

    fn steps_offset(&self) -> usize {
        if self.config.class.accepts("steps_offset") {
            get(self.config.steps_offset, 0)
        } else {
            0
        }
    }

    /// diffusers' schedule for `steps` inference steps.
    pub fn plan(&self, steps: usize) -> Result<Plan> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        if steps > MAX_STEPS {
            return Err(Error::TooManySteps { steps, max: MAX_STEPS });
        }
        use SchedulerClass as C;
        let class = self.config.class;
        let mut table = match class {
            C::Ddim | C::Ddpm => self.plan_ddim(steps),
            C::DdimInverse => self.plan_ddim_inverse(steps),
            C::Pndm => self.plan_pndm(steps),
            C::DpmSolverMultistep | C::DpmSolverSinglestep | C::DeisMultistep | C::UniPcMultistep => {
                self.plan_multistep(steps)
            }
            C::DpmSolverMultistepInverse => self.plan_dpm_inverse(steps),
            C::EulerDiscrete | C::HeunDiscrete | C::LmsDiscrete | C::EulerAncestralDiscrete => self.plan_euler(steps),
            C::FlowMatchEulerDiscrete => self.plan_flow_match(steps),
        }?;
        // a repeated sigma still calls the model in diffusers; most classes' `step` leaves the
        // sample as it is there, UniPC (its corrector for the previous step runs) and singlestep
        // DPM-Solver (it recomputes its group from the group's start) move it
        if !matches!(class, C::UniPcMultistep | C::DpmSolverSinglestep) {
            for st in table.steps.iter_mut().filter(|st| st.from.lambda == st.to.lambda) {
                st.kind = StepKind::EvaluateOnly;
            }
        }
        Ok(Plan {
            timesteps: table.timesteps,
            sigmas: table.sigmas,
            init_noise_sigma: table.init_noise_sigma,
            steps: table.steps,
            scaled: table.scaled,
            inference_steps: steps,
            solver: self.solver(steps),
        })
    }

    /// The solver the class runs for `steps` inference steps (only PNDM's depends on the count).
    pub fn solver(&self, steps: usize) -> AnySolver {
        match &self.solver {
            SolverChoice::Fixed(s) => s.clone(),
            SolverChoice::Pndm { skip_prk_steps } => {
                AnySolver::new(Pndm::diffusers(*skip_prk_steps, self.n_train, steps))
            }
        }
    }

    /// The class's model: `denoiser` bound to `schedule` (normally [`DiffusersSampler::schedule`])
    /// with the class's prediction type and data transform.
    pub fn model<'a>(&self, denoiser: impl Denoiser + 'a, schedule: &'a dyn Scheduler) -> Result<Model<'a>> {
        Model::new(denoiser, schedule, self.prediction).with_data_transform(self.transform)
    }

    fn check_timesteps(&self, ts: &[f64], key: &str) -> Result<()> {
        let last = (self.n_train - 1) as f64;
        for &t in ts {
            if !(t >= 0.0 && t <= last) {
                return cfg_err(
                    key,
                    format!(
                        "gives timestep {t}, outside the table 0..={last} (diffusers would index out of range): \
                         change steps_offset, timestep_spacing or the step count"
                    ),
                );
            }
        }
        Ok(())
    }

    /// DDIM / DDPM / PNDM integer timesteps (`steps` of them).
    fn ddim_timesteps(&self, steps: usize, spacing: TimestepSpacing) -> Result<Vec<f64>> {
        let n = self.n_train;
        if steps > n {
            return Err(Error::TooManySteps { steps, max: n });
        }
        let ts: Vec<f64> = match spacing {
            TimestepSpacing::Linspace => {
                np_linspace(0.0, (n - 1) as f64, steps).into_iter().rev().map(f64::round_ties_even).collect()
            }
            TimestepSpacing::Leading => {
                let ratio = n / steps;
                (0..steps).rev().map(|i| (i * ratio + self.steps_offset()) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                np_arange(n as f64, 0.0, -ratio).into_iter().map(|t| t.round_ties_even() - 1.0).collect()
            }
        };
        self.check_timesteps(&ts, "timestep_spacing")?;
        Ok(ts)
    }

    fn plan_ddim(&self, steps: usize) -> Result<Timetable> {
        let default = TimestepSpacing::Leading;
        let ts = self.ddim_timesteps(steps, self.spacing(default))?;
        let stride = (self.n_train / steps) as i64;
        let final_point = |t: f64| -> Point {
            let set_one = self.config.class == SchedulerClass::Ddim && get(self.config.set_alpha_to_one, true);
            if set_one || self.config.class == SchedulerClass::Ddpm {
                Point::clean(t)
            } else {
                self.vp_point(t, 0)
            }
        };
        let count = ts.len();
        let mut out = Vec::with_capacity(count);
        for (i, &t) in ts.iter().enumerate() {
            let from = self.vp_point(t, t as usize);
            let to = match (self.quirks.ddim_target, self.config.class) {
                // DDPM's previous_timestep is the next grid timestep
                (_, SchedulerClass::Ddpm) | (DdimTarget::NextTimestep, _) => match ts.get(i + 1) {
                    Some(&tn) => self.vp_point(tn, tn as usize),
                    None => final_point(-1.0),
                },
                (DdimTarget::UniformStride, _) => {
                    let prev = t as i64 - stride;
                    if prev >= 0 {
                        self.vp_point(prev as f64, prev as usize)
                    } else {
                        final_point(prev as f64)
                    }
                }
            };
            out.push(Step::new(i, count, from, to));
        }
        Ok(Timetable { timesteps: ts, sigmas: Vec::new(), init_noise_sigma: 1.0, steps: out, scaled: false })
    }

    fn plan_ddim_inverse(&self, steps: usize) -> Result<Timetable> {
        let n = self.n_train;
        if steps > n {
            return Err(Error::TooManySteps { steps, max: n });
        }
        let ts: Vec<f64> = match self.spacing(TimestepSpacing::Leading) {
            TimestepSpacing::Leading => {
                let ratio = n / steps;
                (0..steps).map(|i| (i * ratio + self.steps_offset()) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                let mut v: Vec<f64> =
                    np_arange(n as f64, 0.0, -ratio).into_iter().map(|t| t.round_ties_even() - 1.0).collect();
                v.reverse();
                v
            }
            TimestepSpacing::Linspace => {
                return cfg_err("timestep_spacing", "DDIMInverseScheduler supports \"leading\" and \"trailing\" only")
            }
        };
        self.check_timesteps(&ts, "timestep_spacing")?;
        let stride = (n / steps) as i64;
        let set_one = get(self.config.set_alpha_to_one, true);
        let count = ts.len();
        let mut out = Vec::with_capacity(count);
        for (i, &t) in ts.iter().enumerate() {
            let start = match self.quirks.ddim_target {
                DdimTarget::UniformStride => Some((t as i64 - stride).min(n as i64 - 1)),
                DdimTarget::NextTimestep => {
                    if i == 0 {
                        Some(-1)
                    } else {
                        Some(ts[i - 1] as i64)
                    }
                }
            };
            // the model is called at `t`; the sample is taken to be at `start` (its alphas)
            let from = match start {
                Some(s) if s >= 0 => {
                    let p = self.vp_point(t, s as usize);
                    Point { t, ..p }
                }
                _ => {
                    if set_one {
                        Point::clean(t)
                    } else {
                        Point { t, ..self.vp_point(t, 0) }
                    }
                }
            };
            let to = self.vp_point(t, t as usize);
            out.push(Step::new(i, count, from, to));
        }
        Ok(Timetable { timesteps: ts, sigmas: Vec::new(), init_noise_sigma: 1.0, steps: out, scaled: false })
    }

    fn plan_pndm(&self, steps: usize) -> Result<Timetable> {
        if steps < 4 && !get(self.config.skip_prk_steps, false) {
            return cfg_err(
                "skip_prk_steps",
                format!(
                    "PNDM's Runge-Kutta warm-up needs at least 4 steps (with {steps} diffusers stops before the last \
                     timestep): ask for more steps or set skip_prk_steps"
                ),
            );
        }
        let ts = self.ddim_timesteps(steps, self.spacing(TimestepSpacing::Leading))?;
        let stride = (self.n_train / steps) as f64;
        for w in ts.windows(2) {
            if w[0] - stride != w[1] && self.quirks.ddim_target == DdimTarget::UniformStride {
                return cfg_err(
                    "timestep_spacing",
                    format!(
                        "PNDM with this spacing steps by {stride} from timestep {} but the next timestep is {}: \
                         diffusers' off-grid PNDM steps are not implemented; use \"leading\" (or a step count that \
                         divides num_train_timesteps with \"trailing\")",
                        w[0], w[1]
                    ),
                );
            }
        }
        let set_one = get(self.config.set_alpha_to_one, false);
        let count = ts.len();
        let last = ts[count - 1];
        let mut points: Vec<Point> = ts.iter().map(|&t| self.vp_point(t, t as usize)).collect();
        let final_t = last - stride;
        if final_t >= 0.0 && self.quirks.ddim_target == DdimTarget::UniformStride {
            points.push(self.vp_point(final_t, final_t as usize));
        } else if set_one {
            points.push(Point::clean(-1.0));
        } else {
            // alpha_prev = alphas_cumprod[0]: with `last == 0` diffusers' final step is a no-op that
            // still calls the model (a step of length 0, see `run_steps`)
            points.push(self.vp_point(0.0, 0));
        }
        let steps_out = Step::chain(&points);
        // diffusers' timesteps (prk_timesteps + plms_timesteps), from the ascending list
        let asc: Vec<f64> = ts.iter().rev().copied().collect();
        let n = asc.len();
        let timesteps: Vec<f64> = if get(self.config.skip_prk_steps, false) {
            let mut v: Vec<f64> = asc[..n - 1].to_vec();
            if n >= 2 {
                v.push(asc[n - 2]);
            }
            v.push(asc[n - 1]);
            v.reverse();
            v
        } else {
            let half = ((self.n_train / steps) / 2) as f64;
            let last4 = &asc[n.saturating_sub(4)..];
            let mut prk: Vec<f64> = last4.iter().flat_map(|&a| [a, a + half]).collect();
            prk.pop();
            let rep: Vec<f64> = prk.iter().flat_map(|&a| [a, a]).collect();
            let mut prk: Vec<f64> = rep[1..rep.len() - 1].to_vec();
            prk.reverse();
            let mut plms: Vec<f64> = asc[..n.saturating_sub(3)].to_vec();
            plms.reverse();
            prk.extend(plms);
            prk
        };
        Ok(Timetable { timesteps, sigmas: Vec::new(), init_noise_sigma: 1.0, steps: steps_out, scaled: false })
    }

    /// lambda_min_clipped's last timestep (DPM-Solver family).
    fn last_timestep(&self) -> Result<usize> {
        let n = self.n_train;
        let clip = match self.config.lambda_min_clipped {
            Some(l) if self.config.class.accepts("lambda_min_clipped") => l,
            _ => return Ok(n),
        };
        // searchsorted(flip(lambda_t), clip): count of table lambdas below `clip`
        let below = self
            .alphas_cumprod
            .iter()
            .filter(|&&a| {
                let lambda = match self.quirks.precision {
                    TablePrecision::Float32 => {
                        let a = a as f32;
                        (a.sqrt().ln() - (1.0 - a).sqrt().ln()) as f64
                    }
                    TablePrecision::Float64 => a.sqrt().ln() - (1.0 - a).sqrt().ln(),
                };
                lambda < clip
            })
            .count();
        if n - below < 2 {
            return cfg_err(
                "lambda_min_clipped",
                format!("{clip} clips away all but {} training timesteps: lower it", n - below),
            );
        }
        Ok(n - below)
    }

    /// Timesteps of the multistep classes: `steps + 1` spaced, the last (0) dropped.
    fn multistep_timesteps(&self, steps: usize, last_timestep: usize) -> Result<Vec<f64>> {
        let n = self.n_train;
        let ts: Vec<f64> = if self.config.class == SchedulerClass::DpmSolverSinglestep {
            let mut v: Vec<f64> =
                np_linspace(0.0, (last_timestep - 1) as f64, steps + 1).into_iter().map(f64::round_ties_even).collect();
            v.reverse();
            v.truncate(steps);
            v
        } else {
            match self.spacing(TimestepSpacing::Linspace) {
                TimestepSpacing::Linspace => {
                    let mut v: Vec<f64> = np_linspace(0.0, last_timestep as f64 - 1.0, steps + 1)
                        .into_iter()
                        .map(f64::round_ties_even)
                        .collect();
                    v.reverse();
                    v.truncate(steps);
                    v
                }
                TimestepSpacing::Leading => {
                    let ratio = last_timestep / (steps + 1);
                    (0..steps).rev().map(|i| ((i + 1) * ratio + self.steps_offset()) as f64).collect()
                }
                TimestepSpacing::Trailing => {
                    let ratio = n as f64 / steps as f64;
                    np_arange(last_timestep as f64, 0.0, -ratio)
                        .into_iter()
                        .map(|t| t.round_ties_even() - 1.0)
                        .collect()
                }
            }
        };
        if ts.is_empty() {
            return Err(Error::ZeroSteps);
        }
        // no range check: diffusers interpolates sigmas (np.interp clamps to the table's ends)
        Ok(ts)
    }

    fn sigma_bounds(&self, in_min: f64, in_max: f64) -> (f64, f64) {
        // diffusers reads config.sigma_min / sigma_max whenever the config has them (any class)
        (self.config.sigma_min.unwrap_or(in_min), self.config.sigma_max.unwrap_or(in_max))
    }

    fn conversion(&self) -> Conversion {
        let c = &self.config;
        let cls = c.class;
        if get(c.use_karras_sigmas, false) && cls.accepts("use_karras_sigmas") {
            Conversion::Karras
        } else if get(c.use_lu_lambdas, false) && cls.accepts("use_lu_lambdas") {
            Conversion::Lu
        } else if get(c.use_exponential_sigmas, false) && cls.accepts("use_exponential_sigmas") {
            Conversion::Exponential
        } else if get(c.use_beta_sigmas, false) && cls.accepts("use_beta_sigmas") {
            Conversion::Beta
        } else if self.flow_sigmas() {
            Conversion::Flow
        } else {
            Conversion::Interp
        }
    }

    fn convert(&self, conv: Conversion, table_desc: &[f64], steps: usize) -> Vec<f64> {
        let (in_min, in_max) = (table_desc[table_desc.len() - 1], table_desc[0]);
        match conv {
            Conversion::Karras => {
                let (lo, hi) = self.sigma_bounds(in_min, in_max);
                tables::karras(lo, hi, steps)
            }
            Conversion::Exponential => {
                let (lo, hi) = self.sigma_bounds(in_min, in_max);
                tables::exponential(lo, hi, steps)
            }
            Conversion::Beta => {
                let (lo, hi) = self.sigma_bounds(in_min, in_max);
                tables::beta_sigmas(lo, hi, steps)
            }
            // diffusers' _convert_to_lu over the (float32) log-sigma table's ends
            Conversion::Lu => tables::lu_sigmas(self.log_ksigmas(&[in_min])[0], self.log_ksigmas(&[in_max])[0], steps),
            Conversion::Interp | Conversion::Flow => Vec::new(),
        }
    }

    /// Flow sigmas of the multistep classes (`use_flow_sigmas`), `steps` of them, descending.
    fn multistep_flow_sigmas(&self, steps: usize) -> Vec<f64> {
        let n = self.n_train as f64;
        let shift = match self.mu {
            Some(mu) => mu.exp(),
            None => get(self.config.flow_shift, 1.0),
        };
        let mut s: Vec<f64> = np_linspace(1.0, 1.0 / n, steps + 1)
            .into_iter()
            .map(|a| 1.0 - a)
            .map(|s| shift * s / (1.0 + (shift - 1.0) * s))
            .collect();
        s.reverse();
        s.truncate(steps);
        s
    }

    fn plan_multistep(&self, steps: usize) -> Result<Timetable> {
        let class = self.config.class;
        let conv = self.conversion();
        let table = self.ksigmas();
        let log_table = self.log_ksigmas(&table);
        let exact = self.quirks.timestep_rounding == TimestepRounding::Exact;
        // DPMSolverMultistep skips the rounding of Karras / Lu timesteps for squaredcos_cap_v2
        let round_karras = class != SchedulerClass::DpmSolverMultistep
            || get(self.config.beta_schedule, BetaScheduleName::Linear) != BetaScheduleName::SquaredCosCapV2;
        let final_type = if class.accepts("final_sigmas_type") {
            get(self.config.final_sigmas_type, FinalSigmas::Zero)
        } else {
            FinalSigmas::SigmaMin
        };
        if self.flow_sigmas() && !matches!(conv, Conversion::Flow) {
            return cfg_err(
                "use_flow_sigmas",
                "flow sigmas combined with karras / exponential / beta sigmas are not implemented",
            );
        }
        let flow = conv == Conversion::Flow;
        let (timesteps, sigmas): (Vec<f64>, Vec<f64>) = match conv {
            Conversion::Interp => {
                let ts = self.multistep_timesteps(steps, self.last_timestep()?)?;
                let s = ts.iter().map(|&t| np_interp(t, &table)).collect();
                (ts, s)
            }
            Conversion::Flow => {
                let s = if class == SchedulerClass::UniPcMultistep {
                    self.unipc_flow_sigmas(steps)?
                } else {
                    self.multistep_flow_sigmas(steps)
                };
                let n = self.n_train as f64;
                let ts = s.iter().map(|&x| if exact { x * n } else { (x * n).trunc() }).collect();
                (ts, s)
            }
            _ => {
                let desc: Vec<f64> = table.iter().rev().copied().collect();
                let s = self.convert(conv, &desc, steps);
                let round = matches!(conv, Conversion::Karras | Conversion::Lu) && round_karras;
                let ts = s
                    .iter()
                    .map(|&x| {
                        let t = tables::sigma_to_t(x, &log_table);
                        if exact {
                            t
                        } else if round {
                            t.round_ties_even()
                        } else {
                            t.trunc()
                        }
                    })
                    .collect();
                (ts, s)
            }
        };
        // the final sigma
        let own_last = if conv == Conversion::Interp { table[0] } else { sigmas[sigmas.len() - 1] };
        let sigma_last = match class {
            // DEIS: the table's smallest sigma, or its converted sigmas' last one repeated
            SchedulerClass::DeisMultistep => Some(own_last),
            SchedulerClass::UniPcMultistep => match final_type {
                FinalSigmas::Zero => None,
                FinalSigmas::SigmaMin => Some(own_last),
            },
            _ => match final_type {
                FinalSigmas::Zero => None,
                FinalSigmas::SigmaMin => Some(table[0]),
            },
        };
        let mut all: Vec<f64> = sigmas.iter().map(|&s| self.f32(s)).collect();
        all.push(sigma_last.map_or(0.0, |s| self.f32(s)));
        let count = timesteps.len();
        let points: Vec<Point> = (0..=count)
            .map(|i| {
                let t = if i < count { timesteps[i] } else { 0.0 };
                self.sigma_point(t, all[i], flow)
            })
            .collect();
        let steps_out = Step::chain(&points);
        Ok(Timetable { timesteps, sigmas: all, init_noise_sigma: 1.0, steps: steps_out, scaled: false })
    }

    fn unipc_flow_sigmas(&self, steps: usize) -> Result<Vec<f64>> {
        let c = &self.config;
        let n = self.n_train as f64;
        let base: Vec<f64> = np_linspace(1.0, 1.0 / n, steps + 1)[..steps].to_vec();
        let dynamic = get(c.use_dynamic_shifting, false);
        let mut s: Vec<f64> = if dynamic {
            let mu = self.mu.ok_or_else(|| Error::DiffusersConfig {
                key: "use_dynamic_shifting".into(),
                message: "needs mu: call DiffusersSampler::mu (diffusers: set_timesteps(mu=...))".into(),
            })?;
            base.iter().map(|&t| time_shift(get(c.time_shift_type, TimeShiftType::Exponential), mu, t)).collect()
        } else {
            let shift = get(c.flow_shift, 1.0);
            base.iter().map(|&x| shift * x / (1.0 + (shift - 1.0) * x)).collect()
        };
        if let Some(term) = c.shift_terminal {
            stretch_to_terminal(&mut s, term);
        }
        if (s[0] - 1.0).abs() < 1e-6 {
            s[0] -= 1e-6;
        }
        Ok(s)
    }

    fn plan_dpm_inverse(&self, steps: usize) -> Result<Timetable> {
        let conv = self.conversion();
        if conv != Conversion::Interp {
            return cfg_err(
                "use_karras_sigmas",
                "DPMSolverMultistepInverseScheduler with karras / exponential / beta / flow sigmas is not implemented \
                 (diffusers repeats the last sigma there); use the default sigmas",
            );
        }
        let n = self.n_train;
        let table = self.ksigmas();
        let noisiest = self.last_timestep()? - 1;
        let ts: Vec<f64> = match self.spacing(TimestepSpacing::Linspace) {
            TimestepSpacing::Linspace => {
                let mut v: Vec<f64> =
                    np_linspace(0.0, noisiest as f64, steps + 1).into_iter().map(f64::round_ties_even).collect();
                v.truncate(steps);
                v
            }
            TimestepSpacing::Leading => {
                let ratio = (noisiest + 1) / (steps + 1);
                (0..steps).map(|i| (i * ratio + self.steps_offset()) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                let mut v: Vec<f64> = np_arange((noisiest + 1) as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| t.round_ties_even() - 1.0)
                    .collect();
                v.reverse();
                v
            }
        };
        // no range check: sigmas are interpolated (clamped to the table's ends)
        let mut all: Vec<f64> = ts.iter().map(|&t| self.f32(np_interp(t, &table))).collect();
        all.push(self.f32(table[noisiest]));
        // diffusers drops repeated timesteps but keeps the sigmas; the loop walks the unique ones
        let mut unique = ts.clone();
        unique.dedup();
        if unique.len() != ts.len() {
            return cfg_err(
                "timestep_spacing",
                "these settings repeat a timestep (diffusers then misaligns its sigmas)",
            );
        }
        let count = ts.len();
        let points: Vec<Point> = (0..=count)
            .map(|i| self.sigma_point(if i < count { ts[i] } else { noisiest as f64 }, all[i], false))
            .collect();
        let steps_out = Step::chain(&points);
        Ok(Timetable { timesteps: ts, sigmas: all, init_noise_sigma: 1.0, steps: steps_out, scaled: false })
    }

    fn plan_euler(&self, steps: usize) -> Result<Timetable> {
        let c = &self.config;
        let class = c.class;
        let n = self.n_train;
        let spacing = self.spacing(TimestepSpacing::Linspace);
        // float32 timesteps
        let mut ts: Vec<f64> = match spacing {
            TimestepSpacing::Linspace => {
                np_linspace(0.0, (n - 1) as f64, steps).into_iter().rev().map(|t| t as f32 as f64).collect()
            }
            TimestepSpacing::Leading => {
                let ratio = n / steps;
                if ratio == 0 {
                    return Err(Error::TooManySteps { steps, max: n });
                }
                (0..steps).rev().map(|i| ((i * ratio) as f32 + self.steps_offset() as f32) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                np_arange(n as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| (t.round_ties_even() as f32 - 1.0) as f64)
                    .collect()
            }
        };
        // no range check: sigmas are interpolated (clamped to the table's ends)
        let table = self.ksigmas();
        let log_table = self.log_ksigmas(&table);
        let interp_type = if class == SchedulerClass::EulerDiscrete {
            get(c.interpolation_type, InterpolationType::Linear)
        } else {
            InterpolationType::Linear
        };
        let mut sigmas: Vec<f64> = match interp_type {
            InterpolationType::Linear => ts.iter().map(|&t| np_interp(t, &table)).collect(),
            InterpolationType::LogLinear => {
                // torch.linspace(log(sigmas[-1]), log(sigmas[0]), steps + 1).exp(), float32
                let (lo, hi) = (table[table.len() - 1].ln(), table[0].ln());
                match self.quirks.precision {
                    TablePrecision::Float32 => {
                        tables::torch_linspace_f32(lo, hi, steps + 1).into_iter().map(|v| v.exp() as f64).collect()
                    }
                    TablePrecision::Float64 => np_linspace(lo, hi, steps + 1).into_iter().map(f64::exp).collect(),
                }
            }
        };
        let conv = self.conversion();
        if !matches!(conv, Conversion::Interp) {
            // converted from the interpolated sigmas (their ends), timesteps from _sigma_to_t
            let desc = sigmas.clone();
            sigmas = match conv {
                Conversion::Karras | Conversion::Exponential | Conversion::Beta => self.convert(conv, &desc, steps),
                _ => sigmas,
            };
            ts = sigmas.iter().map(|&s| self.f32(tables::sigma_to_t(s, &log_table))).collect();
        }
        let final_sigma = if class == SchedulerClass::EulerDiscrete
            && get(c.final_sigmas_type, FinalSigmas::Zero) == FinalSigmas::SigmaMin
        {
            table[0]
        } else {
            0.0
        };
        let mut all: Vec<f64> = sigmas.iter().map(|&s| self.f32(s)).collect();
        all.push(self.f32(final_sigma));
        let continuous_v = class == SchedulerClass::EulerDiscrete
            && get(c.timestep_type, TimestepType::Discrete) == TimestepType::Continuous
            && self.prediction == Prediction::VPrediction;
        if continuous_v {
            ts = all[..all.len() - 1].iter().map(|&s| self.f32(0.25 * (s as f32).ln() as f64)).collect();
        }
        let count = ts.len();
        if all.len() < count + 1 {
            return cfg_err("interpolation_type", "diffusers' sigmas are shorter than its timesteps here");
        }
        let points: Vec<Point> =
            (0..=count).map(|i| self.sigma_point(if i < count { ts[i] } else { -1.0 }, all[i], false)).collect();
        let max_sigma = all.iter().cloned().fold(0.0f64, f64::max);
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma,
            TimestepSpacing::Leading => self.f32((max_sigma * max_sigma + 1.0).sqrt()),
        };
        let steps_out = Step::chain(&points);
        let timesteps = if class == SchedulerClass::HeunDiscrete {
            // the model is called at t_0, then t_i twice for i >= 1 (the last step into sigma = 0 once)
            let mut v = vec![ts[0]];
            for &t in &ts[1..] {
                v.push(t);
                v.push(t);
            }
            v
        } else {
            ts
        };
        Ok(Timetable { timesteps, sigmas: all, init_noise_sigma, steps: steps_out, scaled: true })
    }

    fn plan_flow_match(&self, steps: usize) -> Result<Timetable> {
        let c = &self.config;
        let n = self.n_train as f64;
        let shift = get(c.shift, 1.0);
        let dynamic = get(c.use_dynamic_shifting, false);
        // constructor: sigmas = linspace(1, N, N)[::-1] / N (float32), shifted unless dynamic
        let shift_f32 = |s: f32| -> f32 {
            let sh = shift as f32;
            sh * s / (1.0 + (sh - 1.0) * s)
        };
        let min_train = 1.0f32 / self.n_train as f32;
        let (sigma_max, sigma_min) = if dynamic || self.quirks.flow_shift == FlowShift::Single {
            (1.0f64, min_train as f64)
        } else {
            (shift_f32(1.0) as f64, shift_f32(min_train) as f64)
        };
        let ts_lin = np_linspace(sigma_max * n, sigma_min * n, steps);
        let mut s: Vec<f64> = ts_lin.iter().map(|t| t / n).collect();
        if dynamic {
            let mu = self.mu.ok_or_else(|| Error::DiffusersConfig {
                key: "use_dynamic_shifting".into(),
                message: "needs mu: call DiffusersSampler::mu (diffusers: set_timesteps(mu=...))".into(),
            })?;
            let kind = get(c.time_shift_type, TimeShiftType::Exponential);
            s = s.iter().map(|&t| time_shift(kind, mu, t)).collect();
        } else {
            s = s.iter().map(|&x| shift * x / (1.0 + (shift - 1.0) * x)).collect();
        }
        if let Some(term) = c.shift_terminal {
            stretch_to_terminal(&mut s, term);
        }
        let conv = self.conversion();
        if matches!(conv, Conversion::Karras | Conversion::Exponential | Conversion::Beta) {
            s = self.convert(conv, &s, steps);
        }
        let s: Vec<f64> = s.iter().map(|&x| self.f32(x)).collect();
        let ts: Vec<f64> = s.iter().map(|&x| self.f32(x * n)).collect();
        let mut all = s.clone();
        all.push(0.0);
        let count = ts.len();
        let points: Vec<Point> =
            (0..=count).map(|i| self.sigma_point(if i < count { ts[i] } else { 0.0 }, all[i], true)).collect();
        for p in &points {
            if !(p.alpha >= 0.0 && p.sigma >= 0.0) {
                return cfg_err("shift", "gives flow sigmas outside [0, 1]");
            }
        }
        let steps_out = Step::chain(&points);
        Ok(Timetable { timesteps: ts, sigmas: all, init_noise_sigma: 1.0, steps: steps_out, scaled: false })
    }

    /// Run the pipeline loop: start from `noise * init_noise_sigma` and take `steps` steps with
    /// the network `denoiser` (called with the model input and the timestep, as
    /// `unet(scale_model_input(x, t), t)`); returns the final sample. Stochastic classes draw
    /// their noise from a [`SeededNoise`] (see [`DiffusersSampler::seed`]).
    pub fn sample(&self, denoiser: &mut dyn Denoiser, noise: &Tensor, steps: usize) -> Result<Tensor> {
        self.sample_with(denoiser, noise, steps, &mut self.noise(), |_| {})
    }

    /// [`DiffusersSampler::sample`] with the stochastic classes' noise from `source` (e.g. noise
    /// recorded from a diffusers run, as a [`crate::TensorNoise`]) and a callback after every
    /// step. It is [`crate::sample_with`] on the resolved pieces ([`DiffusersSampler::plan`],
    /// [`DiffusersSampler::schedule`], [`DiffusersSampler::model`]):
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use diffusion_samplers::diffusers::DiffusersSampler;
    /// use diffusion_samplers::{sample_with, SeededNoise};
    /// let sampler = DiffusersSampler::from_json(r#"{"_class_name": "EulerDiscreteScheduler",
    ///   "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#)?;
    /// let noise = Tensor::ones((1, 4), candle_core::DType::F32, &Device::Cpu)?;
    /// let mut unet = |x: &Tensor, _t: f64| x.affine(0.1, 0.0);
    /// let mut seen = vec![];
    /// let a = sampler.sample_with(&mut unet, &noise, 8, &mut SeededNoise::new(0), |p| seen.push((p.step, p.count)))?;
    /// assert_eq!(seen.last(), Some(&(8, 8)));
    ///
    /// // the same run, assembled from the crate's own pieces
    /// let plan = sampler.plan(8)?;
    /// let schedule = sampler.schedule()?;
    /// let mut model = sampler.model(&mut unet, schedule.as_ref())?;
    /// let x = noise.affine(plan.start_scale(), 0.0)?;
    /// let out = sample_with(&plan.solver, &mut model, &plan.steps, &x, &mut SeededNoise::new(0), |_| {})?;
    /// let b = out.affine(plan.end_scale(), 0.0)?;
    /// assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
    /// assert_eq!(plan.solver.to_string(), "euler");
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn sample_with(
        &self,
        denoiser: &mut dyn Denoiser,
        noise: &Tensor,
        steps: usize,
        source: &mut dyn NoiseSource,
        on_step: impl FnMut(&Progress),
    ) -> Result<Tensor> {
        let plan = self.plan(steps)?;
        let schedule = self.schedule()?;
        let mut model = self.model(|x: &Tensor, t: f64| denoiser.denoise(x, t), schedule.as_ref())?;
        let x = noise.affine(plan.start_scale(), 0.0)?;
        let out = sample_with(&plan.solver, &mut model, &plan.steps, &x, source, on_step)?;
        Ok(out.affine(plan.end_scale(), 0.0)?)
    }

    /// [`DiffusersSampler::sample_with`] without a callback, reporting the model times and NFE.
    pub fn run(
        &self,
        denoiser: &mut dyn Denoiser,
        noise: &Tensor,
        steps: usize,
        source: &mut dyn NoiseSource,
    ) -> Result<DiffusersRun> {
        let mut model_times = Vec::new();
        let mut recorder = |x: &Tensor, t: f64| -> candle_core::Result<Tensor> {
            model_times.push(t);
            denoiser.denoise(x, t)
        };
        let sample = self.sample_with(&mut recorder, noise, steps, source, |_| {})?;
        let nfe = model_times.len();
        Ok(DiffusersRun { sample, model_times, nfe })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conversion {
    Interp,
    Karras,
    Lu,
    Exponential,
    Beta,
    Flow,
}

fn time_shift(kind: TimeShiftType, mu: f64, t: f64) -> f64 {
    match kind {
        TimeShiftType::Exponential => mu.exp() / (mu.exp() + (1.0 / t - 1.0)),
        TimeShiftType::Linear => mu / (mu + (1.0 / t - 1.0)),
    }
}

fn stretch_to_terminal(s: &mut [f64], terminal: f64) {
    let last = 1.0 - s[s.len() - 1];
    let scale = last / (1.0 - terminal);
    for v in s.iter_mut() {
        *v = 1.0 - (1.0 - *v) / scale;
    }
}

#[allow(clippy::too_many_arguments)]
fn build_table(
    schedule: BetaScheduleName,
    beta_start: f64,
    beta_end: f64,
    trained: Option<&[f64]>,
    n: usize,
    rescale: bool,
    class: SchedulerClass,
    precision: TablePrecision,
) -> Result<Vec<f64>> {
    let fix_last = rescale
        && matches!(
            class,
            SchedulerClass::DpmSolverMultistep
                | SchedulerClass::EulerDiscrete
                | SchedulerClass::EulerAncestralDiscrete
                | SchedulerClass::UniPcMultistep
        );
    let ac: Vec<f64> = match precision {
        TablePrecision::Float32 => {
            let mut betas = tables::betas_f32(schedule, beta_start, beta_end, trained, n)?;
            if rescale {
                betas = tables::rescale_zero_terminal_snr_f32(&betas);
            }
            let mut ac = tables::cumprod_f32(&betas);
            if fix_last {
                let last = ac.len() - 1;
                ac[last] = 2f32.powi(-24);
            }
            ac.into_iter().map(|a| a as f64).collect()
        }
        TablePrecision::Float64 => {
            let betas: Vec<f64> = match (trained, schedule) {
                (Some(_), _)
                | (None, BetaScheduleName::Sigmoid | BetaScheduleName::Laplace | BetaScheduleName::Exp) => {
                    tables::betas_f32(schedule, beta_start, beta_end, trained, n)?
                        .into_iter()
                        .map(|b| b as f64)
                        .collect()
                }
                (None, BetaScheduleName::Linear) => {
                    tables::betas_f32(schedule, beta_start, beta_end, None, n)?;
                    np_linspace(beta_start, beta_end, n)
                }
                (None, BetaScheduleName::ScaledLinear) => {
                    tables::betas_f32(schedule, beta_start, beta_end, None, n)?;
                    np_linspace(beta_start.sqrt(), beta_end.sqrt(), n).into_iter().map(|b| b * b).collect()
                }
                (None, BetaScheduleName::SquaredCosCapV2) => {
                    let ab = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                    (0..n).map(|i| (1.0 - ab((i + 1) as f64 / n as f64) / ab(i as f64 / n as f64)).min(0.999)).collect()
                }
            };
            let mut acc = 1.0;
            let mut ac: Vec<f64> = betas
                .iter()
                .map(|b| {
                    acc *= 1.0 - b;
                    acc
                })
                .collect();
            if rescale {
                let s: Vec<f64> = ac.iter().map(|a| a.sqrt()).collect();
                let (s0, st) = (s[0], s[s.len() - 1]);
                ac = s.iter().map(|v| ((v - st) * s0 / (s0 - st)).powi(2)).collect();
            }
            if fix_last {
                let last = ac.len() - 1;
                ac[last] = 2f64.powi(-24);
            }
            ac
        }
    };
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
