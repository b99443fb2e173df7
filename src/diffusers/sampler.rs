//! [`DiffusersSampler`]: a diffusers config resolved into the crate's own pieces (schedule,
//! steps, solver, model options, start and end scaling: a [`Plan`]), run through the crate's one
//! loop ([`crate::sample_with`]).

use candle_core::Tensor;

use super::config::{cfg_err, SchedulerClass, SchedulerConfig};
use super::resolve::{resolve, FlowClock, QuarterLogKsigma, Resolved, SolverChoice};
use super::Quirks;
use crate::error::{Error, Result};
use crate::grid::{check_time, Step, StepKind};
use crate::model::{DataTransform, Denoiser, Model, Prediction};
use crate::noise::{NoiseSource, SeededNoise};
use crate::sample::{sample_with, Progress};
use crate::schedule::{DiscreteVp, Scheduler};
use crate::solvers::{AnySolver, Ddim};

/// Largest number of inference steps accepted ([`crate::limits::MAX_STEPS`]).
pub use crate::limits::MAX_STEPS;

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
    /// Euler-ancestral): the pipeline's sample is `x / alpha` of this crate's `x`.
    pub scaled: bool,
    /// The step count asked for (`set_timesteps(steps)`).
    pub inference_steps: usize,
    /// The solver the class runs for this step count.
    pub solver: AnySolver,
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
        Ok(DiffusersSampler { config, resolved, mu: None, noise_seed: 0 })
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
        self.resolved.solver = SolverChoice::Fixed(AnySolver::new(Ddim { eta }));
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

    /// What the network predicts.
    pub fn prediction(&self) -> Prediction {
        self.resolved.prediction
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

    /// The continuous-timestep clock (EulerDiscrete, `timestep_type = "continuous"`, v-prediction).
    fn quarter_log_clock(&self) -> Option<QuarterLogKsigma> {
        let r = &self.resolved;
        let (first, last) = (*r.alphas_cumprod.first()?, *r.alphas_cumprod.last()?);
        let ks = |a: f64| ((1.0 - a) / a).sqrt();
        r.continuous_v.then(|| QuarterLogKsigma { ks_min: ks(first), ks_max: ks(last) })
    }

    /// diffusers' `scheduler.timesteps` after `set_timesteps(steps)`.
    pub fn timesteps(&self, steps: usize) -> Result<Vec<f64>> {
        Ok(self.plan(steps)?.timesteps)
    }

    /// diffusers' `init_noise_sigma` after `set_timesteps(steps)`.
    pub fn init_noise_sigma(&self, steps: usize) -> Result<f64> {
        Ok(self.plan(steps)?.init_noise_sigma)
    }

    /// diffusers' schedule for `steps` inference steps, with the solver for that count.
    pub fn plan(&self, steps: usize) -> Result<Plan> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        if steps > MAX_STEPS {
            // a table class names its table (fewer steps than training timesteps), others the limit
            return Err(match self.resolved.alphas_cumprod.len() {
                0 => Error::TooLarge { what: "steps", requested: steps, limit: MAX_STEPS },
                n => Error::TooManySteps { steps, max: n },
            });
        }
        let mut table = self.resolved.timetable(steps, self.mu)?;
        // a repeated sigma still calls the model in diffusers; most classes' `step` leaves the
        // sample as it is there, UniPC (its corrector for the previous step runs) and singlestep
        // DPM-Solver (it recomputes its group from the group's start) move it
        if !matches!(self.class(), SchedulerClass::UniPcMultistep | SchedulerClass::DpmSolverSinglestep) {
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
    pub fn model<'a>(&self, denoiser: impl Denoiser + 'a, schedule: &'a dyn Scheduler) -> Result<Model<'a>> {
        Model::new(denoiser, schedule, self.resolved.prediction).with_data_transform(self.resolved.transform)
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
