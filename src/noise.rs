//! Noise for stochastic solvers, an input of the sampling loop: a seeded, platform-independent
//! generator ([`SeededNoise`]: the same seed gives the same numbers on every device),
//! caller-supplied tensors ([`TensorNoise`]) or any closure `FnMut(&Tensor) -> Result<Tensor>`.
//!
//! The loop ([`crate::sample_with`]) owns the source and hands it to every step through the
//! [`crate::StepContext`]; a stochastic solver draws with [`NoiseSource::noise_between`], naming
//! the interval the noise belongs to, so that a Brownian path can give increments that stay
//! consistent when the step count changes.

use std::collections::VecDeque;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::schedule::Point;

/// A source of standard normal noise shaped like a given tensor.
pub trait NoiseSource {
    /// Standard normal noise with `like`'s shape, dtype and device.
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor>;

    /// Standard normal noise for the interval from `from` to `to` (a step, or the part of one a
    /// solver adds noise over). Stochastic solvers draw through this method; a source indexed by
    /// noise level (a Brownian path) returns the normalised increment over the interval. The
    /// default ignores the interval and returns [`NoiseSource::noise_like`].
    fn noise_between(&mut self, like: &Tensor, from: &Point, to: &Point) -> Result<Tensor> {
        let _ = (from, to);
        self.noise_like(like)
    }
}

impl<F> NoiseSource for F
where
    F: FnMut(&Tensor) -> candle_core::Result<Tensor>,
{
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        Ok(self(like)?)
    }
}

/// Seeded standard normal noise (xoshiro256** with Box-Muller, drawn in f64 on the host).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{NoiseSource, SeededNoise};
/// let like = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
/// let a = SeededNoise::new(7).noise_like(&like)?.to_vec2::<f32>()?;
/// let b = SeededNoise::new(7).noise_like(&like)?.to_vec2::<f32>()?;
/// assert_eq!(a, b);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SeededNoise {
    rng: Rng,
}

impl SeededNoise {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SeededNoise {
        SeededNoise { rng: Rng::new(seed) }
    }

    /// `n` standard normal f64 values.
    pub fn normal_vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.rng.normal()).collect()
    }
}

impl NoiseSource for SeededNoise {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let v = self.normal_vec(like.elem_count());
        Ok(Tensor::from_vec(v, like.shape(), like.device())?.to_dtype(like.dtype())?)
    }
}

/// Caller-supplied noise: one tensor per draw, consumed in order (e.g. the noise recorded from a
/// diffusers run, to reproduce it). Each tensor must have the shape of the sample; it is cast to
/// the sample's dtype and moved to its device. Running out of tensors is
/// [`Error::NoiseExhausted`], a tensor of another shape [`Error::NoiseShape`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{NoiseSource, TensorNoise};
/// let like = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu)?;
/// let mut noise = TensorNoise::new([Tensor::new(&[1.0f64, 2.0, 3.0], &Device::Cpu)?]);
/// assert_eq!(noise.noise_like(&like)?.to_vec1::<f32>()?, vec![1.0, 2.0, 3.0]);
/// assert!(matches!(noise.noise_like(&like), Err(diffusion_samplers::Error::NoiseExhausted { supplied: 1 })));
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TensorNoise {
    tensors: VecDeque<Tensor>,
    used: usize,
}

impl TensorNoise {
    /// The draws, in the order they are handed out.
    pub fn new(tensors: impl IntoIterator<Item = Tensor>) -> TensorNoise {
        TensorNoise { tensors: tensors.into_iter().collect(), used: 0 }
    }

    /// The draws stacked along the first dimension (`[draws, ...sample shape]`).
    pub fn stacked(draws: &Tensor) -> Result<TensorNoise> {
        let n = draws.dim(0)?;
        Ok(TensorNoise::new((0..n).map(|i| draws.get(i)).collect::<candle_core::Result<Vec<_>>>()?))
    }

    /// Draws not handed out yet.
    pub fn remaining(&self) -> usize {
        self.tensors.len()
    }
}

impl NoiseSource for TensorNoise {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let z = self.tensors.pop_front().ok_or(Error::NoiseExhausted { supplied: self.used })?;
        self.used += 1;
        if z.dims() != like.dims() {
            return Err(Error::NoiseShape {
                draw: self.used - 1,
                expected: like.shape().clone(),
                got: z.shape().clone(),
            });
        }
        Ok(z.to_dtype(like.dtype())?.to_device(like.device())?)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // splitmix64 to fill the state
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng { s: [next(), next(), next(), next()], spare: None }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in (0, 1].
    pub(crate) fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    pub(crate) fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}
