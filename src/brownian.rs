//! A Brownian path over the noise level: the noise of stochastic (SDE) samplers as increments
//! of one Brownian motion `W(sigma)`, so that the same seed gives the same path whatever the step
//! count, the order of the queries, the dtype or the device.
//!
//! This is the property k-diffusion's `BrownianTreeNoiseSampler` (torchsde's `BrownianTree`, the
//! "virtual Brownian tree" of Li et al. 2020, arXiv:2001.01328) gives `dpmpp_sde`,
//! `dpmpp_2m_sde` and `dpmpp_3m_sde`: a sampler asks for the noise between two noise levels,
//! and a grid with twice the steps sees increments that add up to the coarse grid's. The
//! construction is ours, not torchsde's (its random numbers are not reproduced):
//!
//! - `W(lo) = 0` and `W(hi) ~ N(0, hi - lo)`;
//! - a dyadic tree over `[lo, hi]`: the value at the midpoint `m` of a node `[a, b]` is drawn from
//!   the Brownian bridge, `W(m) ~ N(W(a) + (m - a)/(b - a) (W(b) - W(a)), (m - a)(b - m)/(b - a))`,
//!   with normals from a generator keyed by (seed, node), so every node has one fixed value;
//! - a query time `t` descends `depth` levels to the leaf holding it and is drawn from the bridge
//!   between the leaf's ends, with normals keyed by (seed, leaf, the bits of `t`).
//!
//! `W(t)` is thus a fixed function of the seed and `t`: increments add up exactly, any query
//! order gives the same numbers, and any set of query times in distinct leaves has exactly the
//! joint law of Brownian motion (by the Markov property of the bridge). Two query times inside
//! one leaf (closer than `(hi - lo) / 2^depth`, 9e-13 of the range at the default depth 40) are
//! not jointly Brownian; solvers never ask for such intervals.
//!
//! All numbers are drawn in f64 on the host (the crate's xoshiro256** / Box-Muller generator),
//! cast to the requested dtype on the host, then moved to the requested device: the same seed
//! gives the same values on every device and, up to the dtype's rounding, in every dtype. Element
//! `i` of a tensor depends only on the seed, the times and `i`, not on the tensor's size.
//!
//! A `BrownianPath` is a [`NoiseSource`]: hand it to the loop and the stochastic solvers draw their
//! noise from it ([`NoiseSource::noise_between`]).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use diffusion_samplers::{sample_with, testing::GaussianMixture, BrownianPath, BrownianTime, DiscreteVp, End, Grid};
//! use diffusion_samplers::{Model, Prediction, SdeDpmSolverPP, SeededNoise, SigmaSchedule, Spacing};
//! let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
//! let gm = GaussianMixture::example(4, 3, 0)?;
//! let x_t = Tensor::from_vec(SeededNoise::new(1).normal_vec(32), (8, 4), &Device::Cpu)?;
//! let run = |steps: usize| -> diffusion_samplers::Result<Tensor> {
//!     let grid = Grid::new(&sd, &Spacing::Sigmas(SigmaSchedule::Karras { rho: 7.0 }), steps, End::Clean)?;
//!     let mut model = Model::new(gm.denoiser(&sd, Prediction::Epsilon), &sd, Prediction::Epsilon);
//!     let mut noise = BrownianPath::for_schedule(42, &sd, BrownianTime::KSigma)?; // seed 42
//!     sample_with(&SdeDpmSolverPP::order(2), &mut model, &grid, &x_t, &mut noise, |_| {})
//! };
//! // the same seed at 100 and 200 steps: the same Brownian path, nearly the same sample
//! let gap = (run(100)? - run(200)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
//! assert!(gap < 0.05, "{gap}");
//! # Ok::<(), diffusion_samplers::Error>(())
//! ```

use candle_core::{DType, Device, Tensor};

use crate::error::{config_err, Error, Result};
use crate::noise::{NoiseSource, Rng};
use crate::schedule::{Point, Scheduler};

/// Which noise coordinate of a [`Point`] the path runs over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BrownianTime {
    /// `sigma / alpha` ([`Point::ksigma`]): k-diffusion's and ComfyUI's sigma for VP and VE
    /// (EDM) models.
    #[default]
    KSigma,
    /// `sigma` ([`Point::sigma`]): ComfyUI's sigma for flow models (`x = (1 - sigma) x0 + sigma
    /// eps`), whose `sigma / alpha` is infinite at the start.
    Sigma,
}

/// A seeded Brownian motion `W` on `[lo, hi]` (see the [module docs](self)).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use diffusion_samplers::brownian::BrownianPath;
/// let like = Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?;
/// let mut w = BrownianPath::new(42, 0.0, 14.6)?;
/// // one step from sigma 10 to 2, or two steps through 5: the same total increment
/// let one = w.increment(&like, 10.0, 2.0)?;
/// let two = (w.increment(&like, 10.0, 5.0)? + w.increment(&like, 5.0, 2.0)?)?;
/// let diff = (one - two)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert!(diff < 1e-6);
/// // the noise a sampler uses is the increment over sqrt(|interval|): standard normal
/// let eps = w.noise(&like, 10.0, 5.0)?;
/// assert_eq!(eps.dims(), &[2, 4]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BrownianPath {
    seed: u64,
    lo: f64,
    hi: f64,
    depth: u32,
    time: BrownianTime,
    /// `W` at the most recent query times: (time bits, element count, values)
    recent: Vec<(u64, usize, Vec<f64>)>,
}

/// Queries whose values are kept (a solver asks for `(s_i, s_{i+1})`, then `(s_{i+1}, ...)`).
const RECENT: usize = 4;
/// The deepest tree allowed (dyadic positions stay exact in f64).
const MAX_DEPTH: u32 = 52;

impl BrownianPath {
    /// A path on `[lo, hi]` (noise levels, `0 <= lo < hi < inf`) with the default depth 40 and
    /// time coordinate [`BrownianTime::KSigma`].
    pub fn new(seed: u64, lo: f64, hi: f64) -> Result<BrownianPath> {
        if !(lo >= 0.0 && hi > lo && hi.is_finite()) {
            return config_err(format!(
                "a Brownian path needs 0 <= lo < hi < inf, got lo = {lo}, hi = {hi}: pass the smallest and \
                 largest noise level the sampler will use (0 and the schedule's sigma_max cover every grid)"
            ));
        }
        Ok(BrownianPath { seed, lo, hi, depth: 40, time: BrownianTime::KSigma, recent: Vec::new() })
    }

    /// A path on `[0, 2 sigma_max]` of `schedule` in the given coordinate: every grid on the
    /// schedule stays inside it, also Heun's churn (which raises the noise level by at most
    /// `sqrt(2)`), so the same seed gives the same path for every step count and spacing.
    pub fn for_schedule(seed: u64, schedule: &dyn Scheduler, time: BrownianTime) -> Result<BrownianPath> {
        let (_, t_max) = schedule.t_range();
        let top = coordinate(time, &schedule.point(t_max));
        if !(top > 0.0 && top.is_finite()) {
            return config_err(format!(
                "the schedule's largest noise level in {time:?} is {top}: a schedule that starts at alpha = 0 \
                 (flow, zero terminal SNR) needs BrownianTime::Sigma"
            ));
        }
        Ok(BrownianPath::new(seed, 0.0, 2.0 * top)?.with_time(time))
    }

    /// The same path run over another coordinate of the points ([`NoiseSource::noise_between`]).
    pub fn with_time(mut self, time: BrownianTime) -> BrownianPath {
        self.time = time;
        self
    }

    /// The same seed and range with another tree depth (1..=52): leaves of width
    /// `(hi - lo) / 2^depth`, and `depth` normals per element and query time. Another depth is
    /// another path.
    pub fn with_depth(mut self, depth: u32) -> Result<BrownianPath> {
        if !(1..=MAX_DEPTH).contains(&depth) {
            return config_err(format!("Brownian tree depth must lie in 1..={MAX_DEPTH}, got {depth}"));
        }
        self.depth = depth;
        self.recent.clear();
        Ok(self)
    }

    /// `(lo, hi)`: the noise levels the path is defined on.
    pub fn range(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }

    /// The coordinate the path runs over.
    pub fn time(&self) -> BrownianTime {
        self.time
    }

    /// `W(t)` for `n` elements, in f64.
    pub fn value(&mut self, t: f64, n: usize) -> Result<Vec<f64>> {
        if !(t >= self.lo && t <= self.hi) {
            return Err(Error::InvalidConfig(format!(
                "noise level {t} is outside the Brownian path's range [{}, {}]: build the path on a range \
                 that covers the whole grid (BrownianPath::for_schedule)",
                self.lo, self.hi
            )));
        }
        let key = t.to_bits();
        if let Some((_, _, w)) = self.recent.iter().find(|(k, m, _)| *k == key && *m == n) {
            return Ok(w.clone());
        }
        let w = self.evaluate(t, n);
        if self.recent.len() == RECENT {
            self.recent.remove(0);
        }
        self.recent.push((key, n, w.clone()));
        Ok(w)
    }

    /// `W(to) - W(from)` for `n` elements, in f64 (k-diffusion's sign: sampling from a higher to a
    /// lower noise level gives `W(lower) - W(higher)`).
    pub fn increment_vec(&mut self, from: f64, to: f64, n: usize) -> Result<Vec<f64>> {
        let w0 = self.value(from, n)?;
        let w1 = self.value(to, n)?;
        Ok(w1.iter().zip(&w0).map(|(b, a)| b - a).collect())
    }

    /// `W(to) - W(from)` shaped like `like` (its dtype and device).
    pub fn increment(&mut self, like: &Tensor, from: f64, to: f64) -> Result<Tensor> {
        let v = self.increment_vec(from, to, like.elem_count())?;
        host_tensor(v, like)
    }

    /// The standard normal noise of the interval: `(W(to) - W(from)) / sqrt(|to - from|)`, what
    /// k-diffusion's `BrownianTreeNoiseSampler(sigma, sigma_next)` returns.
    pub fn noise(&mut self, like: &Tensor, from: f64, to: f64) -> Result<Tensor> {
        let width = (to - from).abs();
        if !(width > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "Brownian noise over an empty interval [{from}, {to}]: a stochastic step needs two distinct noise levels"
            )));
        }
        let s = width.sqrt();
        let v = self.increment_vec(from, to, like.elem_count())?.into_iter().map(|d| d / s).collect();
        host_tensor(v, like)
    }

    fn evaluate(&self, t: f64, n: usize) -> Vec<f64> {
        let range = self.hi - self.lo;
        let at = |depth: u32, k: u64| self.lo + range * (k as f64 / (1u64 << depth) as f64);
        let mut wa = vec![0.0; n];
        let mut wb = vec![0.0; n];
        self.fill_normals(&[ROOT], &mut wb);
        let root_scale = range.sqrt();
        wb.iter_mut().for_each(|z| *z *= root_scale);
        let mut wm = vec![0.0; n];
        let (mut a, mut b, mut k) = (self.lo, self.hi, 0u64);
        for d in 0..self.depth {
            let m = at(d + 1, 2 * k + 1);
            self.fill_normals(&[NODE, u64::from(d), k], &mut wm);
            bridge(&wa, &wb, &mut wm, a, m, b);
            if t < m {
                std::mem::swap(&mut wb, &mut wm);
                (b, k) = (m, 2 * k);
            } else {
                std::mem::swap(&mut wa, &mut wm);
                (a, k) = (m, 2 * k + 1);
            }
        }
        if t == a {
            return wa;
        }
        if t == b {
            return wb;
        }
        self.fill_normals(&[LEAF, k, t.to_bits()], &mut wm);
        bridge(&wa, &wb, &mut wm, a, t, b);
        wm
    }

    /// Standard normals from the generator keyed by the seed and `parts`, into `out`.
    fn fill_normals(&self, parts: &[u64], out: &mut [f64]) {
        let mut key = mix(self.seed ^ 0x6272_6f77_6e69_616e); // "brownian"
        for &p in parts {
            key = mix(key ^ p);
        }
        let mut rng = Rng::new(key);
        let zig = ziggurat();
        out.iter_mut().for_each(|z| *z = zig.normal(&mut rng));
    }
}

impl NoiseSource for BrownianPath {
    /// An error: a Brownian path gives noise for an interval of noise levels
    /// ([`NoiseSource::noise_between`]), and the caller named none.
    fn noise_like(&mut self, _like: &Tensor) -> Result<Tensor> {
        Err(Error::Unsupported(
            "a BrownianPath gives the noise of an interval of noise levels (noise_between) and this caller asked              for noise without one: use SeededNoise for it"
                .into(),
        ))
    }

    /// [`BrownianPath::noise`] between two points of a grid, in the path's coordinate
    /// ([`BrownianTime`]; a clean point is 0).
    fn noise_between(&mut self, like: &Tensor, from: &Point, to: &Point) -> Result<Tensor> {
        self.noise(like, coordinate(self.time, from), coordinate(self.time, to))
    }
}

const ROOT: u64 = 1;
const NODE: u64 = 2;
const LEAF: u64 = 3;

/// `W(m)` given `W(a) = wa`, `W(b) = wb` (a < m < b), written over the standard normals `z`.
fn bridge(wa: &[f64], wb: &[f64], z: &mut [f64], a: f64, m: f64, b: f64) {
    let frac = (m - a) / (b - a);
    let std = ((m - a) * (b - m) / (b - a)).max(0.0).sqrt();
    for ((z, x), y) in z.iter_mut().zip(wa).zip(wb) {
        *z = x + frac * (y - x) + std * *z;
    }
}

/// Standard normals by the ziggurat method (Marsaglia & Tsang 2000, J. Stat. Softw. 5(8); the
/// 128-layer table and the independent layer and position bits of Doornik 2005, "An improved
/// ziggurat method to generate normal random samples"): one 64-bit draw and a comparison for 98.8 %
/// of the samples, about ten times cheaper than Box-Muller's logarithm, square root and sine.
struct Ziggurat {
    /// Layer right edges; `x[0]` is the bottom layer's pseudo-width `V / f(R)`, `x[128] = 0`.
    x: [f64; 129],
    /// `x[i + 1] / x[i]`: below it a sample lies inside the layer's rectangle.
    r: [f64; 128],
}

const ZIG_R: f64 = 3.442619855899;
const ZIG_V: f64 = 9.91256303526217e-3;

fn ziggurat() -> &'static Ziggurat {
    static TABLE: std::sync::OnceLock<Ziggurat> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut x = [0.0; 129];
        let mut f = (-0.5 * ZIG_R * ZIG_R).exp();
        x[0] = ZIG_V / f;
        x[1] = ZIG_R;
        for i in 2..128 {
            x[i] = (-2.0 * (ZIG_V / x[i - 1] + f).ln()).sqrt();
            f = (-0.5 * x[i] * x[i]).exp();
        }
        let mut r = [0.0; 128];
        for (i, r) in r.iter_mut().enumerate() {
            *r = x[i + 1] / x[i];
        }
        Ziggurat { x, r }
    })
}

impl Ziggurat {
    fn normal(&self, rng: &mut Rng) -> f64 {
        loop {
            let bits = rng.next_u64();
            let i = (bits & 0x7f) as usize; // layer: the low 7 bits
            let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 52) as f64 - 1.0; // (-1, 1): the top 53 bits
            if u.abs() < self.r[i] {
                return u * self.x[i];
            }
            if i == 0 {
                return tail(rng, u < 0.0);
            }
            let x = u * self.x[i];
            let f0 = (-0.5 * (self.x[i] * self.x[i] - x * x)).exp();
            let f1 = (-0.5 * (self.x[i + 1] * self.x[i + 1] - x * x)).exp();
            if f1 + rng.uniform() * (f0 - f1) < 1.0 {
                return x;
            }
        }
    }
}

/// A normal beyond `ZIG_R` (Marsaglia 1964), on the side `negative` says.
fn tail(rng: &mut Rng, negative: bool) -> f64 {
    loop {
        let x = rng.uniform().ln() / ZIG_R;
        let y = rng.uniform().ln();
        if -2.0 * y >= x * x {
            return if negative { x - ZIG_R } else { ZIG_R - x };
        }
    }
}

/// splitmix64's finaliser: a bijective mix of 64 bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn coordinate(time: BrownianTime, p: &Point) -> f64 {
    match time {
        BrownianTime::KSigma => p.ksigma(),
        BrownianTime::Sigma => p.sigma,
    }
}

/// f64 host values shaped like `like`, cast to its dtype on the host, then moved to its device.
fn host_tensor(v: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let host = Tensor::from_vec(v, like.shape(), &Device::Cpu)?;
    let host = if like.dtype() == DType::F64 { host } else { host.to_dtype(like.dtype())? };
    Ok(host.to_device(like.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ziggurat_normals_have_the_normal_cdf() {
        // 4M samples: the empirical CDF at points across the body, the layer edges and the tail
        // (beyond R = 3.44) within 6 standard errors of Phi, and the first four moments
        let n = 4_000_000;
        let zig = ziggurat();
        let mut rng = Rng::new(123);
        let z: Vec<f64> = (0..n).map(|_| zig.normal(&mut rng)).collect();
        let phi = [
            (-4.0, 3.167124183311986e-05),
            (-ZIG_R, 0.0002880542561958196),
            (-2.5, 0.006209665325776132),
            (-1.0, 0.15865525393145707),
            (-0.3, 0.3820885778110474),
            (0.0, 0.5),
            (0.5, 0.6914624612740131),
            (1.5, 0.9331927987311419),
            (3.0, 0.9986501019683699),
            (3.6, 0.9998408914098424),
        ];
        for (x, p) in phi {
            let got = z.iter().filter(|&&v| v < x).count() as f64 / n as f64;
            let se = (p * (1.0 - p) / n as f64).sqrt();
            assert!((got - p).abs() < 6.0 * se, "P(z < {x}) = {got}, want {p}");
        }
        let m = |k: i32| z.iter().map(|v| v.powi(k)).sum::<f64>() / n as f64;
        let nf = n as f64;
        assert!(m(1).abs() < 6.0 / nf.sqrt() && (m(2) - 1.0).abs() < 6.0 * (2.0 / nf).sqrt());
        assert!(m(3).abs() < 6.0 * (15.0 / nf).sqrt() && (m(4) - 3.0).abs() < 6.0 * (96.0 / nf).sqrt());
        // the table: 128 layers closing at the top
        assert!(zig.x[127] > 0.0 && zig.x[127] < 0.3 && zig.x[128] == 0.0);
    }
}
