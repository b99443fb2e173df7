//! [`DiffusersSampler`]: a diffusers config resolved into the crate's own pieces (schedule,
//! steps, solver, model options, start and end scaling: a [`Plan`]), run through the crate's one
//! loop ([`crate::sample_with`]).

use candle_core::Tensor;

use super::config::{cfg_err, SchedulerClass, SchedulerConfig};
use super::resolve::{resolve, EdmClock, FlowClock, QuarterLogKsigma, Resolved, SolverChoice};
use super::Quirks;
use crate::error::{Error, Result};
use crate::grid::{check_time, Step, StepKind};
use crate::model::{DataTransform, Denoiser, Model, Prediction};
use crate::noise::{NoiseSource, SeededNoise};
use crate::sample::{sample_with, Progress};
use crate::schedule::{CosineVp, DiscreteVp, Scheduler};
use crate::solvers::{AnySolver, Ddim, Tcd, TcdTime};

/// Largest number of inference steps accepted ([`crate::limits::MAX_STEPS`]).
pub use crate::limits::MAX_STEPS;

/// What diffusers' `set_timesteps` is called with: a step count (`set_timesteps(n)`; a `usize`
/// converts into it), or custom lists where the class takes them (diffusers 0.42.1):
///
/// | argument | classes |
/// |---|---|
/// | `timesteps` | DDPM, DPMSolverMultistep, DPMSolverSinglestep (integers), EulerDiscrete, HeunDiscrete, FlowMatchEulerDiscrete, LCM, TCD (integers) |
/// | `sigmas` | EulerDiscrete (each step's sigma and the final one), FlowMatchEulerDiscrete (unshifted flow sigmas), UniPCMultistep with `use_flow_sigmas`, EDMEuler (a ramp in `[0, 1]` through its sigma schedule) |
/// | both | FlowMatchEulerDiscrete |
///
/// Lists a class does not take, or takes but not with its options (e.g. `timesteps` with
/// `use_karras_sigmas`, as diffusers refuses), are [`Error::DiffusersConfig`] errors naming the
/// argument (`key` = `"timesteps"` or `"sigmas"`). Timesteps must be descending training
/// timesteps of the table (integers where diffusers casts them to int64).
///
/// ```
/// use diffusion_samplers::diffusers::{DiffusersSampler, SetTimesteps};
/// let euler = DiffusersSampler::from_json(r#"{"_class_name": "EulerDiscreteScheduler"}"#)?;
/// let plan = euler.plan(SetTimesteps::Timesteps(vec![999.0, 750.0, 500.0, 250.0]))?;
/// assert_eq!(plan.timesteps, [999.0, 750.0, 500.0, 250.0]);
/// assert_eq!(plan.sigmas.len(), 5); // and the final 0
/// let ddim = DiffusersSampler::from_json(r#"{"_class_name": "DDIMScheduler"}"#)?;
/// assert!(ddim.plan(SetTimesteps::Sigmas(vec![10.0, 1.0, 0.0])).is_err()); // DDIM takes no custom lists
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum SetTimesteps {
    /// `set_timesteps(num_inference_steps)`.
    Steps(usize),
    /// `set_timesteps(timesteps=[...])`: the model times, descending.
    Timesteps(Vec<f64>),
    /// `set_timesteps(sigmas=[...])`.
    Sigmas(Vec<f64>),
    /// `set_timesteps(timesteps=[...], sigmas=[...])` (FlowMatchEulerDiscrete): the sigmas drive
    /// the steps, the timesteps go to the network.
    Both {
        /// The model times.
        timesteps: Vec<f64>,
        /// The flow sigmas (before the scheduler's shift).
        sigmas: Vec<f64>,
    },
}

impl From<usize> for SetTimesteps {
    fn from(steps: usize) -> SetTimesteps {
        SetTimesteps::Steps(steps)
    }
}

impl SetTimesteps {
    /// The size of the request (the step count, or the longest list).
    fn len(&self) -> usize {
        match self {
            SetTimesteps::Steps(n) => *n,
            SetTimesteps::Timesteps(v) | SetTimesteps::Sigmas(v) => v.len(),
            SetTimesteps::Both { timesteps, sigmas } => timesteps.len().max(sigmas.len()),
        }
    }
}

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
    /// The steps the loop takes (each from a point to a point; with [`super::DdimTarget::UniformStride`]
    /// a step may end off the next step's start, as in diffusers; a repeated sigma is a
    /// [`StepKind::EvaluateOnly`] step, except for UniPC and singlestep DPM-Solver, whose
    /// diffusers `step` still moves the sample there). Run them with [`crate::sample_with`].
    pub steps: Vec<Step>,
    /// True when the class works on the scaled sample `x / alpha` (Euler, Heun, LMS,
    /// Euler-ancestral, KDPM2(-ancestral), DPMSolverSDE; the EDM-style classes): the pipeline's
    /// sample is `sigma_data x / alpha` of this crate's `x`.
    pub scaled: bool,
    /// The EDM-style classes' `sigma_data` (1 for the others): their network gets `c_in x_edm`,
    /// which is this crate's `x`, a variance-preserving sample of `x0 / sigma_data`.
    pub sigma_data: f64,
    /// diffusers' `num_inference_steps` (the step count asked for, or the custom list's length).
    pub inference_steps: usize,
    /// The solver the class runs for this step count.
    pub solver: AnySolver,
}

impl Plan {
    /// The crate's starting `x` for diffusers' initial noise: `noise * init_noise_sigma`, times
    /// `alpha` of the first point for the scaled classes.
    pub fn start_scale(&self) -> f64 {
        if !self.scaled {
            return self.init_noise_sigma;
        }
        let alpha = self.steps.first().map_or(1.0, |s| s.from.alpha);
        self.init_noise_sigma * alpha / self.sigma_data
    }

    /// Factor from the crate's final `x` to the pipeline's final sample (`1 / alpha` of the last
    /// point for the scaled classes).
    pub fn end_scale(&self) -> f64 {
        if self.scaled {
            self.steps.last().map_or(1.0, |s| self.sigma_data / s.to.alpha)
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

/// A diffusers scheduler, resolved: the class, every option at its value or diffusers' default,
/// the float32 tables, and the solver. Built by [`DiffusersSampler::from_config`] (diffusers'
/// `SchedulerClass.from_config`).
#[derive(Clone, Debug)]
pub struct DiffusersSampler {
    config: SchedulerConfig,
    resolved: Resolved,
    mu: Option<f64>,
    noise_seed: u64,
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
    ///
    /// The config's public fields may have been set after parsing: they are validated again here
    /// (the checks of [`SchedulerConfig::from_json`], each error naming its key) before anything is
    /// built, so e.g. `num_train_timesteps = Some(0)` or a value over
    /// [`crate::limits::MAX_TRAIN_TIMESTEPS`] is an error, not a panic or a huge allocation.
    pub fn with_quirks(config: &SchedulerConfig, quirks: Quirks) -> Result<DiffusersSampler> {
        let config = config.clone().validated()?;
        let resolved = resolve(&config, quirks)?;
        let noise_seed = resolved.noise_seed.unwrap_or(0);
        Ok(DiffusersSampler { config, resolved, mu: None, noise_seed })
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
        let mut s = DiffusersSampler::with_quirks(&self.config.with_class(class), self.resolved.quirks)?;
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

    /// The `eta` a pipeline passes to `step`: DDIM's (0 = deterministic, the default) or TCD's
    /// `gamma` (`TCDScheduler.step` defaults to 0.3; diffusers' pipelines pass their own `eta`,
    /// 0.0 unless set). Only `DDIMScheduler` and `TCDScheduler` take it.
    pub fn eta(mut self, eta: f64) -> Result<DiffusersSampler> {
        match self.config.class {
            SchedulerClass::Ddim => {
                if !(eta >= 0.0 && eta.is_finite()) {
                    return Err(Error::InvalidConfig(format!("DDIM eta must be finite and >= 0, got {eta}")));
                }
                self.resolved.solver = SolverChoice::Fixed(AnySolver::new(Ddim { eta }));
            }
            SchedulerClass::Tcd => {
                if !(0.0..=1.0).contains(&eta) {
                    return Err(Error::InvalidConfig(format!("TCD's eta (gamma) must lie in [0, 1], got {eta}")));
                }
                self.resolved.solver =
                    SolverChoice::Fixed(AnySolver::new(Tcd { gamma: eta, time: TcdTime::FloorIndex }));
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "eta is an argument of DDIMScheduler and TCDScheduler, not of {}",
                    other.name()
                )))
            }
        }
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

    /// The default noise source: `SeededNoise::new(seed)` with the seed of [`DiffusersSampler::seed`]
    /// (DPMSolverSDE: its config's `noise_sampler_seed` unless a seed was set; torchsde's Brownian
    /// tree is not reproduced).
    pub fn noise(&self) -> SeededNoise {
        SeededNoise::new(self.noise_seed)
    }

    /// The `mu` Flux-style pipelines pass for `image_seq_len` tokens: linear in the sequence
    /// length between (`base_image_seq_len`, `base_shift`) and (`max_image_seq_len`, `max_shift`).
    pub fn flux_mu(&self, image_seq_len: usize) -> f64 {
        let [b, bs, m, ms] = self.resolved.flow.mu_line;
        let slope = (ms - bs) / (m - b);
        image_seq_len as f64 * slope + (bs - slope * b)
    }

    /// The config this sampler was resolved from.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The quirks in effect.
    pub fn quirks(&self) -> Quirks {
        self.resolved.quirks
    }

    /// The scheduler class.
    pub fn class(&self) -> SchedulerClass {
        self.config.class
    }

    /// What the network predicts (the EDM-style classes: [`Prediction::VPrediction`] of this
    /// crate's sample, negated for `prediction_type = "epsilon"`; see [`DiffusersSampler::model`]).
    pub fn prediction(&self) -> Prediction {
        self.resolved.prediction
    }

    /// The EDM-style classes' `sigma_data` and whether their network's output is `-v`
    /// (`prediction_type = "epsilon"`).
    pub(crate) fn edm_frame(&self) -> Option<(f64, bool)> {
        self.resolved.edm.map(|e| (e.sigma_data, e.negate))
    }

    /// The clipping / thresholding of data predictions the class applies.
    pub fn data_transform(&self) -> DataTransform {
        self.resolved.transform
    }

    /// diffusers' `alphas_cumprod` (float32 values unless [`super::TablePrecision::Float64`]); empty for
    /// flow matching.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.resolved.alphas_cumprod
    }

    /// The noise schedule of the table (the discrete-time schedule a model trained on it sees).
    ///
    /// For EulerDiscrete with `timestep_type = "continuous"` and v-prediction the model time is
    /// `ln(sigma) / 4` (not a training index): the schedule is that time coordinate over the
    /// table's noise levels.
    pub fn schedule(&self) -> Result<Box<dyn Scheduler>> {
        let r = &self.resolved;
        if let Some(s) = self.own_clock() {
            return Ok(s);
        }
        if r.alphas_cumprod.is_empty() || r.flow_sigmas {
            return Ok(Box::new(FlowClock { n: r.n_train as f64 }));
        }
        if let Some(clock) = self.quarter_log_clock() {
            return Ok(Box::new(clock));
        }
        Ok(Box::new(DiscreteVp::from_diffusers_table(r.alphas_cumprod.clone())?))
    }

    /// The schedule of the class's betas computed in float64 (the continuous-time model a network
    /// trained on this table approximates; the Gaussian-mixture problem's time map).
    pub(crate) fn schedule_f64(&self) -> Result<Box<dyn Scheduler>> {
        let r = &self.resolved;
        if let Some(s) = self.own_clock() {
            return Ok(s);
        }
        if let Some(clock) = self.quarter_log_clock() {
            return Ok(Box::new(clock));
        }
        match &r.betas {
            Some((betas, rescale)) if !r.flow_sigmas => {
                let s = DiscreteVp::new(betas.clone(), r.n_train)?;
                Ok(Box::new(if *rescale { s.rescale_zero_terminal_snr()? } else { s }))
            }
            _ => Ok(Box::new(FlowClock { n: r.n_train as f64 })),
        }
    }

    /// The time coordinate of the classes without a beta table that are not flow matching: the
    /// EDM-style classes (the noise level, see [`Plan::sigma_data`]) and IPNDMScheduler (the
    /// v-diffusion cosine schedule's time, which its network gets).
    fn own_clock(&self) -> Option<Box<dyn Scheduler>> {
        let r = &self.resolved;
        if let Some(e) = r.edm {
            return Some(Box::new(EdmClock { sigma_data: e.sigma_data, noise: e.noise, range: (0.0, f64::MAX) }));
        }
        (self.class() == SchedulerClass::Ipndm).then(|| Box::new(CosineVp { t_eps: f64::MIN_POSITIVE }) as _)
    }

    /// The continuous-timestep clock (EulerDiscrete, `timestep_type = "continuous"`, v-prediction).
    fn quarter_log_clock(&self) -> Option<QuarterLogKsigma> {
        let r = &self.resolved;
        let (first, last) = (*r.alphas_cumprod.first()?, *r.alphas_cumprod.last()?);
        let ks = |a: f64| ((1.0 - a) / a).sqrt();
        r.continuous_v.then(|| QuarterLogKsigma { ks_min: ks(first), ks_max: ks(last) })
    }

    /// diffusers' `scheduler.timesteps` after `set_timesteps(steps)` (or a custom list, see
    /// [`SetTimesteps`]).
    pub fn timesteps(&self, steps: impl Into<SetTimesteps>) -> Result<Vec<f64>> {
        Ok(self.plan(steps)?.timesteps)
    }

    /// diffusers' `init_noise_sigma` after `set_timesteps(steps)`.
    pub fn init_noise_sigma(&self, steps: impl Into<SetTimesteps>) -> Result<f64> {
        Ok(self.plan(steps)?.init_noise_sigma)
    }

    /// diffusers' schedule after `set_timesteps(steps)`: a step count, or custom timesteps /
    /// sigmas where the class takes them ([`SetTimesteps`]), with the solver for it.
    pub fn plan(&self, steps: impl Into<SetTimesteps>) -> Result<Plan> {
        let request = steps.into();
        let size = request.len();
        if size == 0 {
            return Err(Error::ZeroSteps);
        }
        if size > MAX_STEPS {
            // a table class names its table (fewer steps than training timesteps), others the limit
            return Err(match self.resolved.alphas_cumprod.len() {
                0 => Error::TooLarge { what: "steps", requested: size, limit: MAX_STEPS },
                n => Error::TooManySteps { steps: size, max: n },
            });
        }
        let mut table = self.resolved.timetable(&request, self.mu)?;
        let steps = table.inference_steps;
        // a repeated sigma still calls the model in diffusers; most classes' `step` leaves the
        // sample as it is there, UniPC and SA-Solver (their corrector for the previous step runs)
        // and singlestep DPM-Solver (it recomputes its group from the group's start) move it
        if !matches!(
            self.class(),
            SchedulerClass::UniPcMultistep | SchedulerClass::DpmSolverSinglestep | SchedulerClass::SaSolver
        ) {
            for st in table.steps.iter_mut().filter(|st| st.from.lambda == st.to.lambda) {
                st.kind = StepKind::EvaluateOnly;
            }
        } else if let Some(st) = table.steps.iter().rev().skip(1).find(|st| st.from.lambda == st.to.lambda) {
            // there only a repeated *final* sigma is a step diffusers takes (of length 0, finite); a
            // repeat before it is a zero-length step whose divided differences divide by 0
            // (diffusers returns NaN)
            return Err(Error::InvalidConfig(format!(
                "{steps} steps of {} repeat timestep {} (more steps than the {} spacing gives distinct timesteps \
                 of the {}-timestep table; diffusers would divide by the zero step length and return NaN): use \
                 fewer steps",
                self.class().name(),
                st.from.t,
                format!("{:?}", self.resolved.spacing).to_lowercase(),
                self.resolved.n_train
            )));
        }
        Ok(Plan {
            timesteps: table.timesteps,
            sigmas: table.sigmas,
            init_noise_sigma: table.init_noise_sigma,
            steps: table.steps,
            scaled: table.scaled,
            sigma_data: table.sigma_data,
            inference_steps: steps,
            solver: self.solver(steps),
        })
    }

    /// The solver the class runs for `steps` inference steps (only PNDM's depends on the count).
    pub fn solver(&self, steps: usize) -> AnySolver {
        self.resolved.solver.for_steps(self.resolved.n_train, steps)
    }

    /// The class's model: `denoiser` bound to `schedule` (normally [`DiffusersSampler::schedule`])
    /// with the class's prediction type and data transform.
    ///
    /// The EDM-style classes' network returns EDM's `F` (`D = c_skip x + c_out F`): with
    /// `prediction_type = "v_prediction"` that is the v-prediction of this crate's sample (see
    /// [`Plan::sigma_data`]), with `"epsilon"` its negative, which the model negates.
    pub fn model<'a>(&self, denoiser: impl Denoiser + 'a, schedule: &'a dyn Scheduler) -> Result<Model<'a>> {
        let prediction = self.resolved.prediction;
        let model = if self.resolved.edm.is_some_and(|e| e.negate) {
            let mut inner = denoiser;
            let negated = move |x: &Tensor, t: f64| -> candle_core::Result<Tensor> { inner.denoise(x, t)?.neg() };
            Model::new(negated, schedule, prediction)
        } else {
            Model::new(denoiser, schedule, prediction)
        };
        model.with_data_transform(self.resolved.transform)
    }

    /// Run the pipeline loop: start from `noise * init_noise_sigma` and take `steps` steps with
    /// the network `denoiser` (called with the model input and the timestep, as
    /// `unet(scale_model_input(x, t), t)`); returns the final sample. Stochastic classes draw
    /// their noise from a [`SeededNoise`] (see [`DiffusersSampler::seed`]).
    pub fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        noise: &Tensor,
        steps: impl Into<SetTimesteps>,
    ) -> Result<Tensor> {
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
        steps: impl Into<SetTimesteps>,
        source: &mut dyn NoiseSource,
        on_step: impl FnMut(&Progress),
    ) -> Result<Tensor> {
        let request = steps.into();
        let steps = request.len();
        let plan = self.plan(request)?;
        let schedule = self.schedule()?;
        // the network is called at every step's start: a timestep of the table (diffusers would
        // clamp the sigma of one outside it and still pass the timestep to the network; the plan
        // shows diffusers' timesteps, the run refuses them)
        for st in &plan.steps {
            if check_time(schedule.as_ref(), st.from.t).is_err() {
                let (lo, hi) = schedule.t_range();
                return cfg_err(
                    "timestep_spacing",
                    format!(
                        "{steps} steps give the model time {} outside the table's {}..={} (diffusers would pass it to \
                         the network): use fewer steps, another timestep_spacing or a smaller steps_offset",
                        st.from.t,
                        lo.min(0.0),
                        hi
                    ),
                );
            }
        }
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
        steps: impl Into<SetTimesteps>,
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
