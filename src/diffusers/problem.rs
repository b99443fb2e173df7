//! The `solve` example's contract as a library function: a problem (a Gaussian mixture with its
//! noise, or diffusers' test-suite dummy), a config, a step count -> the final sample, the model
//! times and the NFE, written as safetensors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::sampler::{DiffusersSampler, SetTimesteps};
use crate::error::{Error, Result};
use crate::model::Prediction;
use crate::noise::TensorNoise;
use crate::testing::GaussianMixture;

/// What `solve` samples.
#[derive(Clone, Debug)]
pub enum Problem {
    /// A Gaussian mixture (`means [K, D]`, `stds [K]`, `weights [K]`, f64) with the initial noise
    /// `noise [N, ...]` (trailing dims multiply to `D`). The model is the mixture's exact denoiser
    /// as a discrete-time network trained on the config's table would be: the model time `t` (a
    /// training index) maps to `sigma / alpha` by log-linear interpolation over the float64 table
    /// (for flow matching and flow sigmas: `sigma = t / num_train_timesteps`, `alpha = 1 - sigma`).
    /// An optional `step_noise [S, N, ...]` holds the noise of a stochastic class, one slice per
    /// draw, replayed in order.
    GaussianMixture {
        /// The mixture.
        gm: GaussianMixture,
        /// Initial noise, f64.
        noise: Tensor,
        /// Recorded per-step noise of stochastic classes.
        step_noise: Option<Tensor>,
    },
    /// diffusers' scheduler test-suite problem: the sample `arange(768)` reshaped to
    /// `(3, 8, 8, 4)`, divided by 768 and permuted to `(4, 3, 8, 8)`, with the model
    /// `out = x * t / (t + 1)`.
    DiffusersDummy,
}

impl Problem {
    /// `"diffusers-dummy"` or the path of a safetensors problem file.
    pub fn parse(arg: &str) -> Result<Problem> {
        if arg == "diffusers-dummy" {
            return Ok(Problem::DiffusersDummy);
        }
        Problem::from_file(arg)
    }

    /// Load a Gaussian-mixture problem from a safetensors file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Problem> {
        let path = path.as_ref();
        let bad = |what: String| Error::InvalidConfig(format!("problem file {}: {what}", path.display()));
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| bad(format!("cannot read it as safetensors ({e})")))?;
        let get = |name: &str| -> Result<Tensor> {
            let t = tensors.get(name).ok_or_else(|| bad(format!("missing tensor `{name}`")))?;
            Ok(t.to_dtype(DType::F64)?)
        };
        let means = get("means")?;
        let (k, d) = means.dims2().map_err(|_| bad(format!("`means` must be [K, D], got {:?}", means.dims())))?;
        let stds = get("stds")?.flatten_all()?.to_vec1::<f64>()?;
        let weights = get("weights")?.flatten_all()?.to_vec1::<f64>()?;
        if stds.len() != k || weights.len() != k {
            return Err(bad(format!("`stds` and `weights` must have K = {k} values")));
        }
        let means: Vec<Vec<f64>> = means.to_vec2::<f64>()?;
        let gm = GaussianMixture::new(means, stds, weights)?;
        let noise = get("noise")?;
        if noise.rank() < 2 || noise.dims()[1..].iter().product::<usize>() != d {
            return Err(bad(format!(
                "`noise` must be [N, ...] with trailing dims multiplying to D = {d}, got {:?}",
                noise.dims()
            )));
        }
        let step_noise = match tensors.get("step_noise") {
            Some(t) => {
                let t = t.to_dtype(DType::F64)?;
                if t.rank() != noise.rank() + 1 || t.dims()[1..] != *noise.dims() {
                    return Err(bad(format!("`step_noise` must be [S, {:?}], got {:?}", noise.dims(), t.dims())));
                }
                Some(t)
            }
            None => None,
        };
        Ok(Problem::GaussianMixture { gm, noise, step_noise })
    }

    /// The initial noise (diffusers-dummy: its deterministic sample).
    pub fn noise(&self) -> Result<Tensor> {
        match self {
            Problem::GaussianMixture { noise, .. } => Ok(noise.clone()),
            Problem::DiffusersDummy => {
                let n = 4 * 3 * 8 * 8;
                let v: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
                Ok(Tensor::from_vec(v, (3, 8, 8, 4), &Device::Cpu)?.permute((3, 0, 1, 2))?.contiguous()?)
            }
        }
    }
}

/// Options of [`solve_problem`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolveOptions {
    /// Inference steps.
    pub steps: usize,
    /// Working dtype of the sample (F64 or F32).
    pub dtype: DType,
}

/// What [`solve_problem`] returns (and `solve` writes).
#[derive(Debug)]
pub struct SolveOutput {
    /// The final sample, in the working dtype.
    pub sample: Tensor,
    /// The model times passed to the network, in order.
    pub timesteps: Vec<f64>,
    /// Network evaluations.
    pub nfe: usize,
}

impl SolveOutput {
    /// Write `sample` (f64, or f32 when the working dtype is f32), `timesteps` (f64) and `nfe`
    /// (u32, shape `[1]`) to a safetensors file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        let sample =
            if self.sample.dtype() == DType::F32 { self.sample.clone() } else { self.sample.to_dtype(DType::F64)? };
        map.insert("sample".into(), sample);
        map.insert("timesteps".into(), Tensor::new(self.timesteps.as_slice(), &Device::Cpu)?);
        map.insert("nfe".into(), Tensor::new(&[self.nfe as u32], &Device::Cpu)?);
        candle_core::safetensors::save(&map, path.as_ref())?;
        Ok(())
    }
}

/// Run `sampler` on `problem` as the `solve` example does: start from `noise * init_noise_sigma`,
/// take `opts.steps` steps of the configured scheduler with the problem's model, return the final
/// sample, the model times called and the NFE.
///
/// ```
/// use candle_core::DType;
/// use diffusion_samplers::diffusers::{solve_problem, DiffusersSampler, Problem, SolveOptions};
/// let sampler = DiffusersSampler::from_json(r#"{"_class_name": "DDIMScheduler", "clip_sample": true}"#)?;
/// let out = solve_problem(&sampler, &Problem::DiffusersDummy, SolveOptions { steps: 10, dtype: DType::F32 })?;
/// let mean = out.sample.abs()?.mean_all()?.to_scalar::<f32>()?;
/// assert!((mean - 0.223967).abs() < 1e-3); // diffusers' test_full_loop_no_noise
/// assert_eq!(out.nfe, 10);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn solve_problem(sampler: &DiffusersSampler, problem: &Problem, opts: SolveOptions) -> Result<SolveOutput> {
    solve_problem_with(sampler, problem, opts.steps, opts.dtype)
}

/// [`solve_problem`] after `set_timesteps(request)`: a step count or custom timesteps / sigmas
/// ([`SetTimesteps`]), in the working `dtype` (F32 or F64).
///
/// ```
/// use candle_core::DType;
/// use diffusion_samplers::diffusers::{solve_problem_with, DiffusersSampler, Problem, SetTimesteps};
/// let sampler = DiffusersSampler::from_json(r#"{"_class_name": "DDPMScheduler"}"#)?;
/// let custom = SetTimesteps::Timesteps(vec![999.0, 600.0, 300.0, 100.0, 0.0]);
/// let out = solve_problem_with(&sampler, &Problem::DiffusersDummy, custom, DType::F64)?;
/// assert_eq!(out.timesteps, [999.0, 600.0, 300.0, 100.0, 0.0]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn solve_problem_with(
    sampler: &DiffusersSampler,
    problem: &Problem,
    request: impl Into<SetTimesteps>,
    dtype: DType,
) -> Result<SolveOutput> {
    let request: SetTimesteps = request.into();
    if !matches!(dtype, DType::F32 | DType::F64) {
        return Err(Error::InvalidConfig(format!("working dtype must be f32 or f64, got {dtype:?}")));
    }
    let noise = problem.noise()?.to_dtype(dtype)?;
    let run = match problem {
        Problem::GaussianMixture { gm, step_noise, .. } => {
            let schedule = sampler.schedule_f64()?;
            let prediction: Prediction = sampler.prediction();
            // the EDM-style classes work on x0 / sigma_data, and their "epsilon" network returns -v
            let (gm, negate) = match sampler.edm_frame() {
                Some((sigma_data, negate)) => (gm.scaled(1.0 / sigma_data)?, negate),
                None => (gm.clone(), false),
            };
            let mut exact = gm.denoiser(schedule.as_ref(), prediction);
            let mut denoiser = |x: &Tensor, t: f64| -> candle_core::Result<Tensor> {
                let out = exact(x, t)?;
                if negate {
                    out.neg()
                } else {
                    Ok(out)
                }
            };
            match step_noise {
                Some(t) => sampler.run(&mut denoiser, &noise, request.clone(), &mut TensorNoise::stacked(t)?)?,
                None => sampler.run(&mut denoiser, &noise, request.clone(), &mut sampler.noise())?,
            }
        }
        Problem::DiffusersDummy => {
            let mut denoiser = |x: &Tensor, t: f64| -> candle_core::Result<Tensor> { x.affine(t / (t + 1.0), 0.0) };
            sampler.run(&mut denoiser, &noise, request.clone(), &mut sampler.noise())?
        }
    };
    Ok(SolveOutput { sample: run.sample, timesteps: run.model_times, nfe: run.nfe })
}
