//! The network side: what it predicts ([`Prediction`]), how it is called ([`Denoiser`]), and
//! [`Model`], which converts its output to data or noise predictions, counts evaluations and
//! checks what comes back. Classifier-free guidance and x0 clipping / dynamic thresholding live
//! here too, as wrappers, not as solver flags.

use candle_core::{DType, Tensor};

use crate::error::{config_err, Error, Result};
use crate::ops::{all_finite, lincomb};
use crate::schedule::{Point, Scheduler};

/// What the network outputs, for `x = alpha x0 + sigma eps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Prediction {
    /// The noise `eps` (DDPM, Stable Diffusion 1.x).
    #[default]
    Epsilon,
    /// The clean sample `x0` (diffusers' `sample`).
    Sample,
    /// `v = alpha eps - sigma x0` (Salimans & Ho 2022, arXiv:2202.00512; SD 2.x 768).
    VPrediction,
    /// The flow velocity `eps - x0` (rectified flow: SD3, Flux).
    Flow,
}

/// A network: called with the current sample and the model time (see
/// [`Scheduler::model_time`]), returns its prediction with the input's shape, dtype and device.
///
/// Every `FnMut(&Tensor, f64) -> candle_core::Result<Tensor>` is a denoiser.
pub trait Denoiser {
    /// Evaluate the network once.
    fn denoise(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<Tensor>;

    /// True when [`Denoiser::denoise_with_unconditional`] also returns the unconditional output
    /// of a guided network ([`ClassifierFreeGuidance`] does); the CFG++ samplers need it.
    fn has_unconditional(&self) -> bool {
        false
    }

    /// The output and, for a guided network, its unconditional output from the same
    /// evaluation (one network call). The default returns [`Denoiser::denoise`] and `None`.
    fn denoise_with_unconditional(
        &mut self,
        x: &Tensor,
        model_time: f64,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        Ok((self.denoise(x, model_time)?, None))
    }
}

impl<F> Denoiser for F
where
    F: FnMut(&Tensor, f64) -> candle_core::Result<Tensor>,
{
    fn denoise(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<Tensor> {
        self(x, model_time)
    }
}

/// What is done to every data prediction before a solver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum DataTransform {
    /// Nothing.
    #[default]
    None,
    /// Clamp `x0` to `[-range, range]` (diffusers' `clip_sample`).
    Clip {
        /// Half-width of the allowed interval.
        range: f64,
    },
    /// Dynamic thresholding (Saharia et al. 2022, "Imagen", arXiv:2205.11487, Sec. 2.3).
    DynamicThreshold(DynamicThresholding),
}

/// Dynamic thresholding: per sample, `s = clamp(quantile(|x0|, ratio), 1, max_value)`, then
/// `x0 = clamp(x0, -s, s) / s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DynamicThresholding {
    /// Quantile of `|x0|` (diffusers' `dynamic_thresholding_ratio`, 0.995).
    pub ratio: f64,
    /// Upper bound of the threshold (diffusers' `sample_max_value`). Below 1 every sample's
    /// threshold is `max_value` (torch's `clamp(s, min=1, max=max_value)` applies the max last).
    pub max_value: f64,
}

impl Default for DynamicThresholding {
    fn default() -> Self {
        DynamicThresholding { ratio: 0.995, max_value: 1.0 }
    }
}

/// A [`Denoiser`] bound to its schedule and prediction type: the only place that converts
/// network outputs, so solvers ask for a data (`x0`) or noise (`eps`) prediction.
///
/// It casts the sample to the network's dtype (see [`Model::with_model_dtype`]) and the output
/// back, counts network evaluations (NFE), and rejects outputs of the wrong shape, dtype or
/// device, or (by default) holding NaN/inf.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{DiscreteVp, Model, Prediction, Scheduler};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
/// let x = Tensor::new(&[0.5f64], &Device::Cpu)?;
/// let p = s.point(500.0);
/// let x0 = model.data(&x, &p)?; // eps = 0, so x0 = x / alpha
/// assert!((x0.to_vec1::<f64>()?[0] - 0.5 / p.alpha).abs() < 1e-12);
/// assert_eq!(model.nfe(), 1);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub struct Model<'a> {
    denoiser: Box<dyn Denoiser + 'a>,
    schedule: &'a dyn Scheduler,
    prediction: Prediction,
    model_dtype: Option<DType>,
    transform: DataTransform,
    check_finite: bool,
    nfe: usize,
}

impl<'a> Model<'a> {
    /// Bind `denoiser` to `schedule` and its prediction type.
    pub fn new(denoiser: impl Denoiser + 'a, schedule: &'a dyn Scheduler, prediction: Prediction) -> Model<'a> {
        Model {
            denoiser: Box::new(denoiser),
            schedule,
            prediction,
            model_dtype: None,
            transform: DataTransform::None,
            check_finite: true,
            nfe: 0,
        }
    }

    /// Run the network in `dtype` (e.g. F16/BF16) while the sampler state keeps its own dtype.
    /// It must be F16, BF16, F32 or F64: another dtype (an integer one) is refused
    /// ([`Error::Unsupported`]) when a run starts, before any network call.
    pub fn with_model_dtype(mut self, dtype: DType) -> Self {
        self.model_dtype = Some(dtype);
        self
    }

    /// Clip or threshold every data prediction.
    pub fn with_data_transform(mut self, transform: DataTransform) -> Result<Self> {
        match transform {
            DataTransform::Clip { range } if !(range > 0.0) => {
                return config_err(format!("clip range must be positive, got {range}"))
            }
            DataTransform::DynamicThreshold(d) if !(d.ratio >= 0.0 && d.ratio <= 1.0 && d.max_value > 0.0) => {
                return config_err(format!("dynamic thresholding needs 0 <= ratio <= 1 and max_value > 0, got {d:?}"))
            }
            _ => {}
        }
        self.transform = transform;
        Ok(self)
    }

    /// Check every network output for NaN/inf (default on), and the sampling loop's result. The
    /// check cannot overflow (finite outputs of any size pass) and reads at most one scalar back
    /// from a non-CPU device per evaluation (a CPU tensor is scanned in place); turn it off to avoid
    /// that synchronisation. A non-finite output is [`Error::NonFinite`], unless the network's
    /// input was already non-finite ([`Error::NonFiniteSample`]: the network is not at fault).
    pub fn with_finite_check(mut self, on: bool) -> Self {
        self.check_finite = on;
        self
    }

    /// Whether outputs are checked for NaN/inf ([`Model::with_finite_check`]).
    pub fn checks_finite(&self) -> bool {
        self.check_finite
    }

    /// The checks a sampling run makes once before its first step: the sample's dtype `state` and
    /// the network's dtype are F16, BF16, F32 or F64 ([`Error::Unsupported`] otherwise), and the
    /// schedule's settings are valid ([`Scheduler::validate`]).
    pub fn validate(&self, state: DType) -> Result<()> {
        check_float_dtype(state, "the sample")?;
        if let Some(dt) = self.model_dtype {
            check_float_dtype(dt, "the network's dtype (Model::with_model_dtype)")?;
        }
        self.schedule.validate()
    }

    /// Network evaluations so far.
    pub fn nfe(&self) -> usize {
        self.nfe
    }

    /// The schedule the model is bound to.
    pub fn schedule(&self) -> &'a dyn Scheduler {
        self.schedule
    }

    /// The prediction type.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// The network's raw output at `point`, in `x`'s dtype.
    pub fn raw(&mut self, x: &Tensor, point: &Point) -> Result<Tensor> {
        check_float_dtype(x.dtype(), "the sample")?;
        if let Some(dt) = self.model_dtype {
            check_float_dtype(dt, "the network's dtype (Model::with_model_dtype)")?;
        }
        let model_time = self.schedule.model_time(point.t);
        check_finite_model_time(model_time, point)?;
        let input = self.network_input(x)?;
        let out = self.denoiser.denoise(&input, model_time)?;
        self.nfe += 1;
        self.checked_output(x, out, model_time, "denoiser output")
    }

    /// True when the denoiser also returns its unconditional output (a [`ClassifierFreeGuidance`]
    /// wrapper), as the CFG++ samplers need ([`Model::data_and_unconditional`]).
    pub fn has_unconditional(&self) -> bool {
        self.denoiser.has_unconditional()
    }

    /// The guided data prediction and the unconditional one, `(x0, x0_uncond)`, from one
    /// evaluation of a [`ClassifierFreeGuidance`] network (one NFE), both converted with this
    /// model's prediction type and data transform. CFG++ (Chung et al. 2024, arXiv:2406.08070)
    /// renoises with the unconditional prediction. A network without an unconditional output is
    /// [`Error::Unsupported`].
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use diffusion_samplers::{ClassifierFreeGuidance, DiscreteVp, Model, Prediction, Scheduler};
    /// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
    /// // uncond half predicts x0 = 0, cond half x0 = 1
    /// let net = |x: &Tensor, _t: f64| {
    ///     let b = x.dim(0)? / 2;
    ///     Tensor::cat(&[x.narrow(0, 0, b)?.zeros_like()?, x.narrow(0, b, b)?.ones_like()?], 0)
    /// };
    /// let guided = ClassifierFreeGuidance { denoiser: net, scale: 2.0, rescale: 0.0 };
    /// let mut model = Model::new(guided, &s, Prediction::Sample);
    /// let x = Tensor::zeros((1, 2), candle_core::DType::F64, &Device::Cpu)?;
    /// let (x0, x0_uncond) = model.data_and_unconditional(&x, &s.point(500.0))?;
    /// assert_eq!((x0.to_vec2::<f64>()?[0][0], x0_uncond.to_vec2::<f64>()?[0][0]), (2.0, 0.0));
    /// assert_eq!(model.nfe(), 1);
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn data_and_unconditional(&mut self, x: &Tensor, point: &Point) -> Result<(Tensor, Tensor)> {
        if !self.denoiser.has_unconditional() {
            return Err(no_unconditional());
        }
        check_float_dtype(x.dtype(), "the sample")?;
        let model_time = self.schedule.model_time(point.t);
        check_finite_model_time(model_time, point)?;
        let input = self.network_input(x)?;
        let (out, uncond) = self.denoiser.denoise_with_unconditional(&input, model_time)?;
        self.nfe += 1;
        let uncond = uncond.ok_or_else(no_unconditional)?;
        let out = self.checked_output(x, out, model_time, "denoiser output")?;
        let uncond = self.checked_output(x, uncond, model_time, "unconditional denoiser output")?;
        let x0 = self.transform_data(self.raw_to_data(x, &out, point)?)?;
        let x0_uncond = self.transform_data(self.raw_to_data(x, &uncond, point)?)?;
        Ok((x0, x0_uncond))
    }

    /// One evaluation for a sampler with a [`Guidance`] choice: the data prediction its step
    /// integrates and, under [`Guidance::CfgPp`], the guidance it adds. Standard guidance is
    /// [`Model::data_linear`]; CFG++ is [`Model::data_and_unconditional`], integrating the
    /// unconditional prediction. One NFE either way.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use diffusion_samplers::{ClassifierFreeGuidance, DiscreteVp, Guidance, Model, Prediction, Scheduler};
    /// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
    /// let net = |x: &Tensor, _t: f64| {
    ///     let b = x.dim(0)? / 2;
    ///     Tensor::cat(&[x.narrow(0, 0, b)?.zeros_like()?, x.narrow(0, b, b)?.ones_like()?], 0)
    /// };
    /// let mut model = Model::new(ClassifierFreeGuidance { denoiser: net, scale: 2.0, rescale: 0.0 }, &s, Prediction::Sample);
    /// let x = Tensor::zeros((1, 2), candle_core::DType::F64, &Device::Cpu)?;
    /// let g = model.guided_data(Guidance::CfgPp, &x, &s.point(500.0))?;
    /// // the step integrates the unconditional x0 = 0 and adds c (x0 - x0_u) = c * 2
    /// assert_eq!(g.data.materialize(&x)?.to_vec2::<f64>()?[0][0], 0.0);
    /// assert_eq!(g.guidance_terms(0.5).len(), 2);
    /// let g = model.guided_data(Guidance::Standard, &x, &s.point(500.0))?;
    /// assert_eq!((g.data.materialize(&x)?.to_vec2::<f64>()?[0][0], g.guidance_terms(0.5).len()), (2.0, 0));
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn guided_data(&mut self, guidance: Guidance, x: &Tensor, point: &Point) -> Result<GuidedData> {
        match guidance {
            Guidance::Standard => Ok(GuidedData { data: self.data_linear(x, point)?, cfg_pp: None }),
            Guidance::CfgPp => {
                let (x0, x0_u) = self.data_and_unconditional(x, point)?;
                Ok(GuidedData { data: Linear::of(x0_u.clone()), cfg_pp: Some((x0, x0_u)) })
            }
        }
    }

    /// `x` in the network's dtype.
    fn network_input(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.model_dtype {
            Some(dt) if dt != x.dtype() => x.to_dtype(dt)?,
            _ => x.clone(),
        })
    }

    /// A network output checked against its input (shape, dtype, device; finiteness if on) and
    /// cast back to the sample's dtype.
    fn checked_output(&self, x: &Tensor, out: Tensor, model_time: f64, what: &'static str) -> Result<Tensor> {
        let input_dtype = self.model_dtype.unwrap_or(x.dtype());
        check_output(
            (x.shape(), input_dtype, x.device().location()),
            (out.shape(), out.dtype(), out.device().location()),
            model_time,
        )?;
        let out = if out.dtype() != x.dtype() { out.to_dtype(x.dtype())? } else { out };
        if self.check_finite && !all_finite(&out)? {
            // only on this error path: whose NaN is it?
            if !all_finite(x)? {
                return Err(Error::NonFiniteSample {
                    when: format!("before the network call at model time {model_time}"),
                });
            }
            return Err(Error::NonFinite { what, model_time });
        }
        Ok(out)
    }

    /// The data prediction `x0` at `point` (after the data transform): one network evaluation.
    pub fn data(&mut self, x: &Tensor, point: &Point) -> Result<Tensor> {
        let raw = self.raw(x, point)?;
        let x0 = self.raw_to_data(x, &raw, point)?;
        self.transform_data(x0)
    }

    /// The noise prediction `eps` at `point`: one network evaluation. With a data transform the
    /// noise is re-derived from the transformed `x0`, as diffusers' DPM-Solver does.
    pub fn noise(&mut self, x: &Tensor, point: &Point) -> Result<Tensor> {
        let raw = self.raw(x, point)?;
        if self.transform == DataTransform::None {
            return self.raw_to_noise(x, &raw, point);
        }
        let x0 = self.transform_data(self.raw_to_data(x, &raw, point)?)?;
        self.noise_from_data(x, &x0, point)
    }

    /// Both predictions from one evaluation: `x0` after the data transform, and the network's
    /// own `eps` estimate before it (DDIM's convention when clipping).
    pub fn data_and_noise(&mut self, x: &Tensor, point: &Point) -> Result<(Tensor, Tensor)> {
        let raw = self.raw(x, point)?;
        let eps = self.raw_to_noise(x, &raw, point)?;
        let x0 = self.transform_data(self.raw_to_data(x, &raw, point)?)?;
        Ok((x0, eps))
    }

    /// The data prediction at `point` as `c_x x + c_out out`, without materialising it: a solver
    /// folds the conversion into its own update and touches memory once instead of twice. With a
    /// data transform `out` is the transformed `x0` (`c_x = 0`, `c_out = 1`). One evaluation.
    pub fn data_linear(&mut self, x: &Tensor, point: &Point) -> Result<Linear> {
        let raw = self.raw(x, point)?;
        if self.transform != DataTransform::None {
            return Ok(Linear::of(self.transform_data(self.raw_to_data(x, &raw, point)?)?));
        }
        let (c_x, c_out) = self.data_coefficients(point)?;
        Ok(Linear { c_x, c_out, out: raw })
    }

    /// [`Model::data_and_noise`] as linear forms in `x` and the network output (see
    /// [`Model::data_linear`]): `x0` after the data transform, `eps` the network's own estimate.
    pub fn data_and_noise_linear(&mut self, x: &Tensor, point: &Point) -> Result<(Linear, Linear)> {
        let raw = self.raw(x, point)?;
        let (e_x, e_out) = self.noise_coefficients(point)?;
        let eps = Linear { c_x: e_x, c_out: e_out, out: raw.clone() };
        if self.transform != DataTransform::None {
            return Ok((Linear::of(self.transform_data(self.raw_to_data(x, &raw, point)?)?), eps));
        }
        let (c_x, c_out) = self.data_coefficients(point)?;
        Ok((Linear { c_x, c_out, out: raw }, eps))
    }

    /// The noise prediction at `point` for the sample `x` from a raw network output (or a
    /// combination of raw outputs) without calling the network; no data transform is applied.
    /// diffusers' `PNDMScheduler` converts its combined outputs this way (see
    /// [`crate::PndmCombine::RawOutput`]).
    pub fn noise_from_raw(&self, x: &Tensor, raw: &Tensor, point: &Point) -> Result<Tensor> {
        self.raw_to_noise(x, raw, point)
    }

    fn raw_to_data(&self, x: &Tensor, raw: &Tensor, p: &Point) -> Result<Tensor> {
        let (c_x, c_out) = self.data_coefficients(p)?;
        lincomb(&[(c_x, x), (c_out, raw)])
    }

    fn raw_to_noise(&self, x: &Tensor, raw: &Tensor, p: &Point) -> Result<Tensor> {
        let (c_x, c_out) = self.noise_coefficients(p)?;
        lincomb(&[(c_x, x), (c_out, raw)])
    }

    /// `x0 = c_x x + c_out raw` for this prediction type at `p`.
    fn data_coefficients(&self, p: &Point) -> Result<(f64, f64)> {
        let (a, s) = (p.alpha, p.sigma);
        Ok(match self.prediction {
            Prediction::Epsilon => {
                if a == 0.0 {
                    return Err(Error::Unsupported(
                        "an epsilon-prediction model gives no data prediction at alpha = 0 (zero terminal \
                         SNR or flow start): use a v- or x0-prediction model, or start below t_max"
                            .into(),
                    ));
                }
                (1.0 / a, -s / a)
            }
            Prediction::Sample => (0.0, 1.0),
            Prediction::VPrediction => {
                let n2 = a * a + s * s;
                (a / n2, -s / n2)
            }
            Prediction::Flow => {
                let n = a + s;
                (1.0 / n, -s / n)
            }
        })
    }

    /// `eps = c_x x + c_out raw` for this prediction type at `p`.
    fn noise_coefficients(&self, p: &Point) -> Result<(f64, f64)> {
        let (a, s) = (p.alpha, p.sigma);
        Ok(match self.prediction {
            Prediction::Epsilon => (0.0, 1.0),
            Prediction::Sample => {
                if s == 0.0 {
                    return Err(noise_at_sigma_zero());
                }
                (1.0 / s, -a / s)
            }
            Prediction::VPrediction => {
                let n2 = a * a + s * s;
                (s / n2, a / n2)
            }
            Prediction::Flow => {
                let n = a + s;
                (1.0 / n, a / n)
            }
        })
    }

    fn noise_from_data(&self, x: &Tensor, x0: &Tensor, p: &Point) -> Result<Tensor> {
        if p.sigma == 0.0 {
            return Err(noise_at_sigma_zero());
        }
        lincomb(&[(1.0 / p.sigma, x), (-p.alpha / p.sigma, x0)])
    }

    fn transform_data(&self, x0: Tensor) -> Result<Tensor> {
        match self.transform {
            DataTransform::None => Ok(x0),
            DataTransform::Clip { range } => Ok(x0.clamp(-range, range)?),
            DataTransform::DynamicThreshold(d) => dynamic_threshold(&x0, d),
        }
    }
}

impl std::fmt::Debug for Model<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("schedule", &self.schedule)
            .field("prediction", &self.prediction)
            .field("model_dtype", &self.model_dtype)
            .field("transform", &self.transform)
            .field("nfe", &self.nfe)
            .finish()
    }
}

/// The dtypes the sampler works in: F16, BF16, F32, F64 (integer dtypes would silently truncate
/// every update; candle has no arithmetic for the 8-bit-and-smaller floats).
pub(crate) fn check_float_dtype(dtype: DType, what: &str) -> Result<()> {
    match dtype {
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => Ok(()),
        other => Err(Error::Unsupported(format!(
            "{what} has dtype {other:?}: sampling needs a floating-point dtype (F32 or F64; F16 and BF16 also work)"
        ))),
    }
}

/// The network is only called at finite model times (a NaN time in a grid or a NaN schedule
/// parameter would otherwise reach it).
fn check_finite_model_time(model_time: f64, point: &Point) -> Result<()> {
    if model_time.is_finite() {
        return Ok(());
    }
    Err(Error::InvalidGrid(format!(
        "the point t = {} has model time {model_time}: the network is only called at finite model times \
         (check the grid's times and the schedule's settings)",
        point.t
    )))
}

fn no_unconditional() -> Error {
    Error::Unsupported(
        "this sampler (CFG++) needs the unconditional prediction of a guided network: wrap the network in \
         ClassifierFreeGuidance (or implement Denoiser::denoise_with_unconditional), or use the sampler without \
         the _cfg_pp suffix"
            .into(),
    )
}

fn noise_at_sigma_zero() -> Error {
    Error::Unsupported(
        "a noise prediction at sigma = 0 is undefined for an x0-prediction model or with a data transform: \
         end the grid at sigma > 0"
            .into(),
    )
}

type TensorMeta<'a> = (&'a candle_core::Shape, DType, candle_core::DeviceLocation);

fn check_output(expected: TensorMeta, got: TensorMeta, model_time: f64) -> Result<()> {
    if got.0 != expected.0 {
        return Err(Error::DenoiserShape { expected: expected.0.clone(), got: got.0.clone(), model_time });
    }
    if got.1 != expected.1 {
        return Err(Error::DenoiserDType { expected: expected.1, got: got.1, model_time });
    }
    if got.2 != expected.2 {
        return Err(Error::DenoiserDevice {
            expected: format!("{:?}", expected.2),
            got: format!("{:?}", got.2),
            model_time,
        });
    }
    Ok(())
}

fn dynamic_threshold(x0: &Tensor, d: DynamicThresholding) -> Result<Tensor> {
    let dims = x0.dims().to_vec();
    let batch = dims.first().copied().unwrap_or(1).max(1);
    let flat = x0.reshape((batch, ()))?;
    let n = flat.dim(1)?;
    if n == 0 {
        return Ok(x0.clone());
    }
    let (sorted, _) = flat.abs()?.sort_last_dim(true)?;
    // torch.quantile's linear interpolation between order statistics
    let pos = d.ratio * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    let q_lo = sorted.narrow(1, lo, 1)?;
    let q_hi = sorted.narrow(1, hi, 1)?;
    let s = lincomb(&[(1.0 - frac, &q_lo), (frac, &q_hi)])?.clamp(1.0, d.max_value)?;
    let clamped = flat.broadcast_minimum(&s)?.broadcast_maximum(&s.neg()?)?;
    Ok(clamped.broadcast_div(&s)?.reshape(dims)?)
}

/// A prediction written as `c_x * x + c_out * out` for the sample `x` it was made at (see
/// [`Model::data_linear`]).
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight of the sample the prediction was made at.
    pub c_x: f64,
    /// Weight of `out`.
    pub c_out: f64,
    /// The network output (or an already materialised prediction).
    pub out: Tensor,
}

impl Linear {
    /// A materialised prediction (`0 x + 1 t`).
    pub fn of(t: Tensor) -> Linear {
        Linear { c_x: 0.0, c_out: 1.0, out: t }
    }

    /// The prediction as a tensor, for the sample `x` it was made at.
    pub fn materialize(&self, x: &Tensor) -> Result<Tensor> {
        if self.c_x == 0.0 && self.c_out == 1.0 {
            return Ok(self.out.clone());
        }
        lincomb(&[(self.c_x, x), (self.c_out, &self.out)])
    }
}

/// Which data prediction a sampler renoises with when the network is guided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Guidance {
    /// The guided prediction throughout (classifier-free guidance as usual).
    #[default]
    Standard,
    /// CFG++ (Chung et al. 2024, arXiv:2406.08070): the step is taken with the unconditional
    /// prediction and the guidance `x0 - x0_uncond` is added to its data part; needs a
    /// [`ClassifierFreeGuidance`] network ([`Model::data_and_unconditional`]).
    CfgPp,
}

impl Guidance {
    /// True for [`Guidance::CfgPp`], which needs a guided network ([`crate::Solver::needs_unconditional`]).
    pub fn needs_unconditional(&self) -> bool {
        *self == Guidance::CfgPp
    }
}

/// What [`Model::guided_data`] returns: the data prediction a step integrates and, under CFG++,
/// the guidance it adds.
///
/// CFG++ (Chung et al. 2024, arXiv:2406.08070; ComfyUI's `*_cfg_pp` samplers) takes the step with
/// the unconditional prediction `x0_u` in place of the guided `x0`, and adds `alpha_to (x0 -
/// x0_u)` to the result: where a step maps `D` to `x_to = c_x x + c_d D + ...`, its CFG++ form is
/// `c_x x + c_d x0_u + ... + alpha_to (x0 - x0_u)`.
#[derive(Clone, Debug)]
pub struct GuidedData {
    /// The prediction the step integrates (the guided one, or the unconditional one under CFG++).
    pub data: Linear,
    /// CFG++ only: the guided and unconditional data predictions `(x0, x0_u)`.
    pub cfg_pp: Option<(Tensor, Tensor)>,
}

impl GuidedData {
    /// The terms of `c (x0 - x0_u)` for [`crate::lincomb`]; none under standard guidance.
    pub fn guidance_terms(&self, c: f64) -> Vec<(f64, &Tensor)> {
        match &self.cfg_pp {
            Some((x0, x0_u)) => vec![(c, x0), (-c, x0_u)],
            None => vec![],
        }
    }
}

/// Classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598) around a conditional network:
/// the inner denoiser is called once on the batch `[x, x]` and must return the unconditional
/// prediction for the first half and the conditional one for the second (it holds both
/// conditionings). The result is `uncond + scale (cond - uncond)`, optionally rescaled towards
/// the conditional prediction's standard deviation (Lin et al. 2023, arXiv:2305.08891, Sec. 3.4).
/// It also hands the unconditional half to the CFG++ samplers
/// ([`Denoiser::denoise_with_unconditional`], [`Model::data_and_unconditional`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{ClassifierFreeGuidance, Denoiser};
/// // a toy network: uncond half predicts 0, cond half predicts 1
/// let inner = |x: &Tensor, _t: f64| {
///     let b = x.dim(0)? / 2;
///     Tensor::cat(&[x.narrow(0, 0, b)?.zeros_like()?, x.narrow(0, b, b)?.ones_like()?], 0)
/// };
/// let mut cfg = ClassifierFreeGuidance { denoiser: inner, scale: 7.5, rescale: 0.0 };
/// let out = cfg.denoise(&Tensor::zeros((1, 3), candle_core::DType::F32, &Device::Cpu)?, 500.0)?;
/// assert_eq!(out.to_vec2::<f32>()?, vec![vec![7.5f32; 3]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClassifierFreeGuidance<D> {
    /// The network evaluated on `[x, x]` (unconditional half first).
    pub denoiser: D,
    /// Guidance scale (1 = conditional only).
    pub scale: f64,
    /// Guidance rescale factor `phi` in `[0, 1]` (0 = off; diffusers' `guidance_rescale`).
    pub rescale: f64,
}

impl<D: Denoiser> Denoiser for ClassifierFreeGuidance<D> {
    fn denoise(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<Tensor> {
        Ok(self.guide(x, model_time)?.0)
    }

    fn has_unconditional(&self) -> bool {
        true
    }

    fn denoise_with_unconditional(
        &mut self,
        x: &Tensor,
        model_time: f64,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let (guided, uncond) = self.guide(x, model_time)?;
        Ok((guided, Some(uncond)))
    }
}

impl<D: Denoiser> ClassifierFreeGuidance<D> {
    /// The guided output and the unconditional half of one evaluation on `[x, x]`.
    fn guide(&mut self, x: &Tensor, model_time: f64) -> candle_core::Result<(Tensor, Tensor)> {
        let b = x.dim(0)?;
        let both = self.denoiser.denoise(&Tensor::cat(&[x, x], 0)?, model_time)?;
        if both.dim(0)? != 2 * b {
            candle_core::bail!(
                "classifier-free guidance: the network returned batch {} for input batch {}",
                both.dim(0)?,
                2 * b
            );
        }
        let uncond = both.narrow(0, 0, b)?;
        let cond = both.narrow(0, b, b)?;
        let guided = (&uncond + ((&cond - &uncond)?.affine(self.scale, 0.0))?)?;
        if self.rescale == 0.0 {
            return Ok((guided, uncond));
        }
        let std = |t: &Tensor| -> candle_core::Result<Tensor> { t.reshape((b, ()))?.var_keepdim(1)?.sqrt() };
        let ratio = (std(&cond)? / std(&guided)?)?;
        let shape = guided.shape().clone();
        let flat = guided.reshape((b, ()))?;
        let rescaled = flat.broadcast_mul(&ratio)?;
        let mixed = ((rescaled.affine(self.rescale, 0.0))? + flat.affine(1.0 - self.rescale, 0.0)?)?;
        Ok((mixed.reshape(shape)?, uncond))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DeviceLocation, Shape};

    // A second device is not available on a CPU-only machine, so the device comparison is
    // checked on the metadata it works on.
    #[test]
    fn output_on_another_device_is_rejected() {
        let shape = Shape::from((2, 3));
        let cpu = (&shape, DType::F32, DeviceLocation::Cpu);
        let gpu = (&shape, DType::F32, DeviceLocation::Cuda { gpu_id: 0 });
        let err = check_output(cpu, gpu, 250.0).unwrap_err();
        assert!(matches!(err, Error::DenoiserDevice { model_time, .. } if model_time == 250.0), "{err}");
        assert!(err.to_string().contains("Cuda"));
        assert!(check_output(cpu, cpu, 1.0).is_ok());
        let other_gpu = (&shape, DType::F32, DeviceLocation::Cuda { gpu_id: 1 });
        assert!(check_output(gpu, other_gpu, 1.0).is_err());
    }
}
