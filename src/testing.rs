//! A diffusion problem with exact answers, for testing solvers and your own setup.
//!
//! Data `x0 ~ sum_k w_k N(mu_k, s_k^2 I)` in `D` dimensions. For `x = alpha x0 + sigma eps` the
//! posterior mean `E[x0 | x]` is known in closed form, so the [`GaussianMixture::denoiser`] is the
//! exact (optimal) denoiser, and the probability-flow ODE it defines can be integrated to any
//! accuracy ([`GaussianMixture::exact_endpoint`]): solver error is measured, not guessed.

use candle_core::{DType, Tensor};

use crate::error::{config_err, Error, Result};
use crate::model::Prediction;
use crate::noise::Rng;
use crate::schedule::{Point, Scheduler};

/// An isotropic Gaussian mixture with its exact denoiser and exact ODE solution.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{testing::GaussianMixture, DiscreteVp, Scheduler};
/// let gm = GaussianMixture::new(vec![vec![-1.0, 0.0], vec![1.0, 0.5]], vec![0.2, 0.3], vec![0.5, 0.5])?;
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let (from, to) = (s.point(999.0), s.point(0.0));
/// let noise = Tensor::new(&[[0.3f64, -1.2]], &Device::Cpu)?;
/// let x_end = gm.exact_endpoint(&noise, &from, &to)?;
/// assert_eq!(x_end.dims(), &[1, 2]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianMixture {
    means: Vec<Vec<f64>>,
    stds: Vec<f64>,
    log_weights: Vec<f64>,
    dim: usize,
}

/// Relative tolerance of [`GaussianMixture::exact_endpoint`]'s integrator.
pub const ENDPOINT_RTOL: f64 = 1e-12;

impl GaussianMixture {
    /// A mixture of `means.len()` components; `weights` are normalised.
    pub fn new(means: Vec<Vec<f64>>, stds: Vec<f64>, weights: Vec<f64>) -> Result<GaussianMixture> {
        let k = means.len();
        if k == 0 || stds.len() != k || weights.len() != k {
            return config_err(format!(
                "a mixture needs as many means, stds and weights (got {}, {}, {}) and at least one component",
                k,
                stds.len(),
                weights.len()
            ));
        }
        let dim = means[0].len();
        if dim == 0 || means.iter().any(|m| m.len() != dim || m.iter().any(|v| !v.is_finite())) {
            return config_err("all means must be finite and share one non-zero dimension");
        }
        if stds.iter().any(|s| !(*s > 0.0 && s.is_finite())) || weights.iter().any(|w| !(*w > 0.0 && w.is_finite())) {
            return config_err("stds and weights must be positive and finite");
        }
        let total: f64 = weights.iter().sum();
        let log_weights = weights.iter().map(|w| (w / total).ln()).collect();
        Ok(GaussianMixture { means, stds, log_weights, dim })
    }

    /// The mixture of `c x0` for `x0` from this one (means and standard deviations times `c > 0`).
    ///
    /// ```
    /// use diffusion_samplers::testing::GaussianMixture;
    /// let gm = GaussianMixture::new(vec![vec![1.0, -2.0]], vec![0.5], vec![1.0])?;
    /// let (x0, _) = gm.scaled(2.0)?.posterior(&[2.0, -4.0], 1.0, 0.0);
    /// assert_eq!(x0, vec![2.0, -4.0]);
    /// # Ok::<(), diffusion_samplers::Error>(())
    /// ```
    pub fn scaled(&self, c: f64) -> Result<GaussianMixture> {
        if !(c > 0.0 && c.is_finite()) {
            return config_err(format!("a mixture scales by a finite positive factor, got {c}"));
        }
        let means = self.means.iter().map(|m| m.iter().map(|v| v * c).collect()).collect();
        let stds = self.stds.iter().map(|s| s * c).collect();
        let weights = self.log_weights.iter().map(|w| w.exp()).collect();
        GaussianMixture::new(means, stds, weights)
    }

    /// A reproducible mixture: `k` components in `dim` dimensions, means uniform in
    /// `[-0.7, 0.7]`, stds in `[0.1, 0.3]`, weights in `[0.5, 1.5]` (normalised). At most
    /// [`crate::limits::MAX_MIXTURE_VALUES`] means (`dim * k`).
    pub fn example(dim: usize, k: usize, seed: u64) -> Result<GaussianMixture> {
        let values = dim.saturating_mul(k);
        crate::limits::check("dim * k", values, crate::limits::MAX_MIXTURE_VALUES)?;
        let mut rng = Rng::new(seed);
        let means = (0..k).map(|_| (0..dim).map(|_| 1.4 * rng.uniform() - 0.7).collect()).collect();
        let stds = (0..k).map(|_| 0.1 + 0.2 * rng.uniform()).collect();
        let weights = (0..k).map(|_| 0.5 + rng.uniform()).collect();
        GaussianMixture::new(means, stds, weights)
    }

    /// The components: means (`[K][D]`), standard deviations and the normalised weights.
    pub fn parameters(&self) -> (&[Vec<f64>], &[f64], Vec<f64>) {
        (&self.means, &self.stds, self.log_weights.iter().map(|l| l.exp()).collect())
    }

    /// The dimension `D`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `n` data samples `x0`, row-major `[n, D]`.
    pub fn sample_data(&self, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let weights: Vec<f64> = self.log_weights.iter().map(|l| l.exp()).collect();
        let mut out = Vec::with_capacity(n * self.dim);
        for _ in 0..n {
            let u = rng.uniform();
            let mut acc = 0.0;
            let mut k = weights.len() - 1;
            for (i, w) in weights.iter().enumerate() {
                acc += w;
                if u <= acc {
                    k = i;
                    break;
                }
            }
            for d in 0..self.dim {
                out.push(self.means[k][d] + self.stds[k] * rng.normal());
            }
        }
        out
    }

    /// Posterior means `(E[x0 | x], E[eps | x])` for rows of `x` (`[n, D]` row-major) at
    /// `(alpha, sigma)`. Both are finite at `sigma = 0` and at `alpha = 0`.
    pub fn posterior(&self, x: &[f64], alpha: f64, sigma: f64) -> (Vec<f64>, Vec<f64>) {
        let d = self.dim;
        let k = self.means.len();
        let mut x0 = vec![0.0; x.len()];
        let mut eps = vec![0.0; x.len()];
        let mut logr = vec![0.0; k];
        for (row, (x0_row, eps_row)) in x.chunks(d).zip(x0.chunks_mut(d).zip(eps.chunks_mut(d))) {
            for j in 0..k {
                let var = alpha * alpha * self.stds[j] * self.stds[j] + sigma * sigma;
                let dist: f64 = row.iter().zip(&self.means[j]).map(|(xi, m)| (xi - alpha * m).powi(2)).sum();
                logr[j] = self.log_weights[j] - 0.5 * d as f64 * var.ln() - 0.5 * dist / var;
            }
            let max = logr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let norm: f64 = logr.iter().map(|l| (l - max).exp()).sum();
            for j in 0..k {
                let r = (logr[j] - max).exp() / norm;
                let var = alpha * alpha * self.stds[j] * self.stds[j] + sigma * sigma;
                let gain = alpha * self.stds[j] * self.stds[j] / var;
                for i in 0..d {
                    let resid = row[i] - alpha * self.means[j][i];
                    x0_row[i] += r * (self.means[j][i] + gain * resid);
                    eps_row[i] += r * sigma * resid / var;
                }
            }
        }
        (x0, eps)
    }

    /// The exact denoiser as a network would be: called with `x` (any shape `[n, ...]` whose
    /// trailing dims multiply to `D`, any float dtype) and the model time of `schedule`, it
    /// returns the exact `prediction` in `x`'s dtype and device.
    pub fn denoiser<'a>(
        &'a self,
        schedule: &'a dyn Scheduler,
        prediction: Prediction,
    ) -> impl FnMut(&Tensor, f64) -> candle_core::Result<Tensor> + 'a {
        move |x: &Tensor, model_time: f64| {
            let p = schedule.point(schedule.t_of_model_time(model_time));
            let v = self.flat(x).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let (x0, eps) = self.posterior(&v, p.alpha, p.sigma);
            let out: Vec<f64> = match prediction {
                Prediction::Epsilon => eps,
                Prediction::Sample => x0,
                Prediction::VPrediction => eps.iter().zip(&x0).map(|(e, d)| p.alpha * e - p.sigma * d).collect(),
                Prediction::Flow => eps.iter().zip(&x0).map(|(e, d)| e - d).collect(),
            };
            Tensor::from_vec(out, x.shape(), x.device())?.to_dtype(x.dtype())
        }
    }

    fn flat(&self, x: &Tensor) -> Result<Vec<f64>> {
        if x.elem_count() % self.dim != 0 {
            return Err(Error::InvalidConfig(format!(
                "tensor of shape {:?} does not hold whole samples of dimension {}",
                x.dims(),
                self.dim
            )));
        }
        Ok(x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
    }

    /// The exact solution at `to` of the probability-flow ODE started from `x` at `from`
    /// (adaptive Dormand-Prince 5(4) in f64 with relative tolerance [`ENDPOINT_RTOL`]).
    ///
    /// The ODE is integrated in the scale-free angle `theta = atan2(sigma, alpha)` on
    /// `y = x / sqrt(alpha^2 + sigma^2)`: `dy/dtheta = -sin(theta) E[x0|y] + cos(theta) E[eps|y]`,
    /// which is smooth on the closed interval from pure noise to clean data, so `from`/`to` may
    /// be at `alpha = 0` or `sigma = 0`.
    pub fn exact_endpoint(&self, x: &Tensor, from: &Point, to: &Point) -> Result<Tensor> {
        let v = self.flat(x)?;
        let out = self.exact_endpoint_vec(&v, from, to);
        if out.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "exact ODE endpoint (start or end point not finite?)",
                model_time: to.t,
            });
        }
        Ok(Tensor::from_vec(out, x.shape(), x.device())?.to_dtype(x.dtype())?)
    }

    /// [`GaussianMixture::exact_endpoint`] on a row-major `[n, D]` slice (NaN where the
    /// integration cannot proceed, e.g. from a non-finite start).
    pub fn exact_endpoint_vec(&self, x: &[f64], from: &Point, to: &Point) -> Vec<f64> {
        let (rho0, rho1) = (from.alpha.hypot(from.sigma), to.alpha.hypot(to.sigma));
        let (th0, th1) = (from.sigma.atan2(from.alpha), to.sigma.atan2(to.alpha));
        let y0: Vec<f64> = x.iter().map(|v| v / rho0).collect();
        let f = |th: f64, y: &[f64]| -> Vec<f64> {
            let (s, c) = th.sin_cos();
            let (d, e) = self.posterior(y, c, s);
            d.iter().zip(&e).map(|(d, e)| -s * d + c * e).collect()
        };
        let y1 = dopri5(f, th0, th1, y0, ENDPOINT_RTOL);
        y1.into_iter().map(|v| v * rho1).collect()
    }
}

/// Adaptive Dormand-Prince 5(4) from `t0` to `t1` (either direction).
fn dopri5(f: impl Fn(f64, &[f64]) -> Vec<f64>, t0: f64, t1: f64, mut y: Vec<f64>, rtol: f64) -> Vec<f64> {
    const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
    const A: [[f64; 6]; 7] = [
        [0.0; 6],
        [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
        [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
        [19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0, 0.0, 0.0],
        [9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0, 0.0],
        [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
    ];
    const B5: [f64; 7] = [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0, 0.0];
    const B4: [f64; 7] =
        [5179.0 / 57600.0, 0.0, 7571.0 / 16695.0, 393.0 / 640.0, -92097.0 / 339200.0, 187.0 / 2100.0, 1.0 / 40.0];
    let atol = rtol;
    let dir = if t1 >= t0 { 1.0 } else { -1.0 };
    let span = (t1 - t0).abs();
    if span == 0.0 {
        return y;
    }
    let mut t = t0;
    let mut h = span * 1e-3;
    let n = y.len();
    let mut k: Vec<Vec<f64>> = vec![vec![0.0; n]; 7];
    k[0] = f(t, &y);
    let mut tmp = vec![0.0; n];
    const MAX_STEPS: usize = 10_000_000;
    let mut steps = 0usize;
    while (t1 - t) * dir > 0.0 {
        h = h.min((t1 - t).abs());
        for s in 1..7 {
            for i in 0..n {
                tmp[i] = y[i] + dir * h * (0..s).map(|j| A[s][j] * k[j][i]).sum::<f64>();
            }
            k[s] = f(t + dir * h * C[s], &tmp);
        }
        // tmp now holds the 5th-order solution (FSAL: stage 7 is at it)
        let mut err: f64 = 0.0;
        for i in 0..n {
            let y4 = y[i] + dir * h * (0..7).map(|j| B4[j] * k[j][i]).sum::<f64>();
            let y5 = y[i] + dir * h * (0..7).map(|j| B5[j] * k[j][i]).sum::<f64>();
            let scale = atol + rtol * y[i].abs().max(y5.abs());
            let e = ((y5 - y4) / scale).abs();
            err = if e.is_nan() { f64::NAN } else { err.max(e) };
        }
        steps += 1;
        if err.is_nan() || steps > MAX_STEPS || h < 1e-14 * span {
            return vec![f64::NAN; n];
        }
        if err <= 1.0 {
            t += dir * h;
            y.copy_from_slice(&tmp);
            k[0] = k[6].clone();
        }
        let factor = if err == 0.0 { 5.0 } else { (0.9 * err.powf(-0.2)).clamp(0.2, 5.0) };
        h *= factor;
        if (t1 - t).abs() < 1e-15 * span {
            break;
        }
    }
    y
}
