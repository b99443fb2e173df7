//! k-diffusion's coordinates, written in `x` so the k-diffusion samplers run on every schedule.
//!
//! k-diffusion (and ComfyUI) sample the scaled variable `y = x / alpha` against the noise level
//! `s = ksigma = sigma / alpha`, where the probability-flow ODE is `dy/ds = d` with the slope
//! `d = (y - D) / s` (`to_d`; Karras et al. 2022, arXiv:2206.00364, Eq. 3) and `D` the data
//! prediction. Euler, Heun, DPM-2 and heunpp2 are combinations of slopes taken at a few stages:
//! `y_to = y + sum_j c_j d_j`; [`combine`] writes such a step as one linear combination in `x`,
//! the samples of the stages and the network outputs (through the [`Linear`] data predictions,
//! so every tensor is read once). [`euler`] is the Euler step written with the
//! exponential-integrator weights, exact into `sigma = 0` and from `alpha = 0`.

use candle_core::Tensor;

use super::expint::{weights, Form};
use crate::error::Result;
use crate::model::Linear;
use crate::ops::lincomb;
use crate::schedule::Point;

/// The slope `d = (x / alpha - D) / ksigma` at one stage of a step: the sample the data
/// prediction was made at, its point (with `sigma > 0`) and the prediction.
#[derive(Clone, Copy, Debug)]
pub struct Slope<'a> {
    /// The stage's sample.
    pub x: &'a Tensor,
    /// The stage's point.
    pub at: &'a Point,
    /// The data prediction at `(x, at)`.
    pub data: &'a Linear,
}

/// The terms of `x_to = alpha_to (x / alpha_from + sum_j c_j d_j)` for the slopes `d_j` with
/// weights `c_j` (in units of `ksigma`), as `(coefficient, tensor)` pairs for
/// [`crate::lincomb`]; a tensor used twice (the step's own sample as a stage) appears once.
/// `from` must have `alpha > 0`.
pub fn combine_terms<'a>(
    x: &'a Tensor,
    from: &Point,
    alpha_to: f64,
    slopes: &[(f64, Slope<'a>)],
) -> Vec<(f64, &'a Tensor)> {
    let mut terms: Vec<(f64, &'a Tensor)> = Vec::with_capacity(1 + 2 * slopes.len());
    let mut add = |c: f64, t: &'a Tensor| match terms.iter_mut().find(|(_, u)| u.id() == t.id()) {
        Some(term) => term.0 += c,
        None => terms.push((c, t)),
    };
    add(alpha_to / from.alpha, x);
    for (c, d) in slopes {
        // alpha_to c d = alpha_to c / s (x_j / alpha_j - D_j), with alpha_j s = sigma_j
        let k = alpha_to * c / d.at.ksigma();
        add(alpha_to * c / d.at.sigma - k * d.data.c_x, d.x);
        add(-k * d.data.c_out, &d.data.out);
    }
    terms
}

/// [`combine_terms`] evaluated.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{math::ksigma::{combine, Slope}, Linear, Point};
/// // at ksigma 2 (alpha = 1) with D = 0 the slope is x / 2; an Euler step to ksigma 1 halves x
/// let (from, x) = (Point::new(0.0, 1.0, 2.0), Tensor::new(&[4.0f64], &Device::Cpu)?);
/// let d0 = Linear::of(x.zeros_like()?);
/// let y = combine(&x, &from, 1.0, &[(-1.0, Slope { x: &x, at: &from, data: &d0 })])?;
/// assert_eq!(y.to_vec1::<f64>()?, vec![2.0]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn combine(x: &Tensor, from: &Point, alpha_to: f64, slopes: &[(f64, Slope)]) -> Result<Tensor> {
    lincomb(&combine_terms(x, from, alpha_to, slopes))
}

/// The terms of the Euler step from `(x, from)` with the data prediction `d0` there to `to`:
/// `x_to = (sigma_to / sigma) x + alpha_to (1 - e^{-h}) D0` (k-diffusion's
/// `x + (s_to - s) d`, DDIM, DPM-Solver++(1)). `to` may be off the schedule (an ancestral
/// step's `down` point); exactly `alpha_to D0` into `sigma = 0`, finite from `alpha = 0`.
pub fn euler_terms<'a>(x: &'a Tensor, from: &Point, d0: &'a Linear, to: &Point) -> [(f64, &'a Tensor); 2] {
    let w = weights(Form::Data, from, to);
    [(w.c_x + w.c[0] * d0.c_x, x), (w.c[0] * d0.c_out, &d0.out)]
}

/// [`euler_terms`] evaluated.
pub fn euler(x: &Tensor, from: &Point, d0: &Linear, to: &Point) -> Result<Tensor> {
    lincomb(&euler_terms(x, from, d0, to))
}

/// Raise `x` at `lo` to the higher noise level of `hi` with fresh noise `z`: in
/// `y = x / alpha`, `y_hi = y + scale sqrt(s_hi^2 - s_lo^2) z` (EDM's churn, [`crate::Churn`];
/// Restart's forward jumps, [`crate::Restart`]). `lo` must have `alpha > 0`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{math::ksigma::renoise, Point};
/// let (lo, hi) = (Point::new(0.0, 1.0, 3.0), Point::new(0.0, 1.0, 5.0));
/// let (x, z) = (Tensor::new(&[1.0f64], &Device::Cpu)?, Tensor::new(&[0.5f64], &Device::Cpu)?);
/// // sqrt(25 - 9) = 4
/// assert_eq!(renoise(&x, &lo, &hi, 1.0, &z)?.to_vec1::<f64>()?, vec![3.0]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn renoise(x: &Tensor, lo: &Point, hi: &Point, scale: f64, z: &Tensor) -> Result<Tensor> {
    let (s, s_hi) = (lo.ksigma(), hi.ksigma());
    let std = ((s_hi - s) * (s_hi + s)).max(0.0).sqrt();
    lincomb(&[(hi.alpha / lo.alpha, x), (hi.alpha * scale * std, z)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn vp(s: f64) -> Point {
        Point::new(s, 1.0 / (1.0 + s * s).sqrt(), s / (1.0 + s * s).sqrt())
    }

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn heun_in_x_equals_heun_in_y() {
        // k-diffusion's Heun step in y against the same step written by combine on VP points
        let (p, q) = (vp(3.0), vp(1.7));
        let (s, s_to) = (p.ksigma(), q.ksigma());
        let y = [0.4, -1.3];
        let d0 = [0.1, -0.2];
        let d1 = [0.05, -0.3];
        let y2: Vec<f64> = (0..2).map(|i| y[i] + (s_to - s) * (y[i] - d0[i]) / s).collect();
        let want: Vec<f64> = (0..2)
            .map(|i| {
                let (a, b) = ((y[i] - d0[i]) / s, (y2[i] - d1[i]) / s_to);
                q.alpha * (y[i] + (s_to - s) * 0.5 * (a + b))
            })
            .collect();
        let x = t(&[y[0] * p.alpha, y[1] * p.alpha]);
        // D0 given as a linear form in x (c_x = 0.5 / alpha) to exercise the folding
        let out0 = t(&[d0[0] - 0.5 * y[0], d0[1] - 0.5 * y[1]]);
        let l0 = Linear { c_x: 0.5 / p.alpha, c_out: 1.0, out: out0 };
        let x2 = euler(&x, &p, &l0, &q).unwrap();
        let got2 = x2.to_vec1::<f64>().unwrap();
        for i in 0..2 {
            assert!((got2[i] - q.alpha * y2[i]).abs() < 1e-14, "{got2:?} vs {y2:?}");
        }
        let l1 = Linear::of(t(&d1));
        let half = 0.5 * (s_to - s);
        let slopes = [(half, Slope { x: &x, at: &p, data: &l0 }), (half, Slope { x: &x2, at: &q, data: &l1 })];
        let got = combine(&x, &p, q.alpha, &slopes).unwrap().to_vec1::<f64>().unwrap();
        for i in 0..2 {
            assert!((got[i] - want[i]).abs() < 1e-14, "{got:?} vs {want:?}");
        }
        // x appears once in the terms: x, out0, x2, out1
        assert_eq!(combine_terms(&x, &p, q.alpha, &slopes).len(), 4);
    }

    #[test]
    fn euler_is_exact_into_sigma_zero_and_from_pure_noise() {
        let x = t(&[0.3, 7.0]);
        let d0 = Linear::of(t(&[1.0, -2.0]));
        let out = euler(&x, &vp(0.8), &d0, &Point::clean(0.0)).unwrap();
        assert_eq!(out.to_vec1::<f64>().unwrap(), vec![1.0, -2.0]);
        let noise = Point::new(1.0, 0.0, 1.0);
        let to = vp(2.0);
        let out = euler(&x, &noise, &d0, &to).unwrap().to_vec1::<f64>().unwrap();
        // x_to = sigma_to x + alpha_to D0
        assert!((out[0] - (to.sigma * 0.3 + to.alpha)).abs() < 1e-15, "{out:?}");
    }
}
