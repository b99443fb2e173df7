//! Noise for stochastic solvers: caller-supplied tensors or a seeded, platform-independent
//! generator (the same seed gives the same numbers on every device).

use candle_core::Tensor;

use crate::error::Result;

/// A source of standard normal noise shaped like a given tensor.
pub trait NoiseSource {
    /// Standard normal noise with `like`'s shape, dtype and device.
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor>;
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
