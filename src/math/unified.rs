//! The predictor/corrector update of the UniPC family (Zhao et al. 2023, arXiv:2302.04867),
//! written once for the plan-following solver and the calibration's teacher-forced step costs,
//! and the extrapolation of data predictions to `sigma = 0`.
//!
//! `x_to = c_x x + c0 m0 + sum_i g_i (m_i - m0) / r_i` with `r_i = (lambda_i - lambda_from)/h` and
//! the `g_i` from the moment conditions `sum_i r_i^{k-1} g_i = k! c_k` (exact for polynomials of
//! degree `len(nodes)`), or, for a single node with a `B(h)` variant, UniPC's fixed
//! `g = B(h)/2`.

use candle_core::Tensor;

use super::expint::{weights, Form};
use super::lagrange::{moment_weights, taylor_weight};
use super::phi::factorial;
use crate::error::{Error, Result};
use crate::ops::lincomb;
use crate::schedule::Point;
use crate::solvers::SecondOrder;

/// The output in `form` of a model evaluation at `p` made at sample `x` with data prediction `d`
/// (`eps = (x - alpha d) / sigma`).
pub(crate) fn output(form: Form, p: &Point, x: &Tensor, d: &Tensor) -> Result<Tensor> {
    match form {
        Form::Data => Ok(d.clone()),
        Form::Noise => {
            if p.sigma == 0.0 {
                return Err(Error::Unsupported("a noise prediction at sigma = 0 is undefined".into()));
            }
            lincomb(&[(1.0 / p.sigma, x), (-p.alpha / p.sigma, d)])
        }
    }
}

/// `-scale_to B(h)`: the weight a unit `rho` gives a difference term.
fn b_weight(second: SecondOrder, form: Form, from: &Point, to: &Point, c0: f64) -> f64 {
    let h = to.lambda - from.lambda;
    match (second, form) {
        (SecondOrder::Bh1, Form::Data) => to.alpha * h,
        (SecondOrder::Bh1, Form::Noise) => -to.sigma * h,
        _ => c0,
    }
}

/// The scalar weights `(c_x, c_m0, [k_i])` of `x_to = c_x x + c_m0 m0 + sum_i k_i m_i` for the
/// step `from -> to` with older outputs at `nodes` (newest first).
pub(crate) fn update_weights(
    form: Form,
    second: SecondOrder,
    from: &Point,
    to: &Point,
    nodes: &[Point],
) -> Result<(f64, f64, Vec<f64>)> {
    if form == Form::Noise && from.alpha == 0.0 {
        return Err(Error::Unsupported(
            "a noise-form step cannot start at alpha = 0: plan the data form for the first step".into(),
        ));
    }
    let w = weights(form, from, to);
    if nodes.is_empty() {
        return Ok((w.c_x, w.c[0], vec![]));
    }
    let h = to.lambda - from.lambda;
    if !h.is_finite() {
        return Err(Error::Unsupported(
            "a step of order > 1 into sigma = 0 is undefined in lambda: extrapolate the data predictions".into(),
        ));
    }
    let r: Vec<f64> = nodes.iter().map(|p| (p.lambda - from.lambda) / h).collect();
    let g = if nodes.len() == 1 && second != SecondOrder::Taylor {
        vec![0.5 * b_weight(second, form, from, to, w.c[0])]
    } else {
        let moments: Vec<f64> = (1..=r.len()).map(|k| factorial(k) * taylor_weight(form, from, to, k)).collect();
        moment_weights(&r, &moments)?
    };
    let mut c_m0 = w.c[0];
    let mut k = Vec::with_capacity(r.len());
    for (gi, ri) in g.iter().zip(&r) {
        k.push(gi / ri);
        c_m0 -= gi / ri;
    }
    Ok((w.c_x, c_m0, k))
}

/// One update `x_to = c_x x + c0 m0 + sum_i g_i (m_i - m0)/r_i` (see the module docs).
pub(crate) fn update(
    form: Form,
    second: SecondOrder,
    x: &Tensor,
    from: &Point,
    to: &Point,
    m0: &Tensor,
    nodes: &[(Point, Tensor)],
) -> Result<Tensor> {
    let pts: Vec<Point> = nodes.iter().map(|(p, _)| *p).collect();
    let (c_x, c_m0, k) = update_weights(form, second, from, to, &pts)?;
    let mut terms: Vec<(f64, &Tensor)> = vec![(c_x, x), (c_m0, m0)];
    for (ki, (_, m)) in k.iter().zip(nodes) {
        terms.push((*ki, m));
    }
    lincomb(&terms)
}

/// The weights `w_i` of the value at `u = 0` of the polynomial through `(u_i, v_i)` (Lagrange).
pub(crate) fn zero_extrapolation_weights(u: &[f64]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(u.len());
    for (i, ui) in u.iter().enumerate() {
        let mut w = 1.0;
        for (j, uj) in u.iter().enumerate() {
            if j != i {
                let den = ui - uj;
                if !(den != 0.0 && den.is_finite()) {
                    return Err(Error::InvalidGrid(
                        "extrapolating to sigma = 0 needs distinct, finite noise levels".into(),
                    ));
                }
                w *= -uj / den;
            }
        }
        out.push(w);
    }
    Ok(out)
}

/// `scale` times the polynomial in `ksigma^2` through the data predictions `(point, x0)`,
/// evaluated at `ksigma = 0`.
pub(crate) fn extrapolate_clean(scale: f64, nodes: &[(&Point, &Tensor)]) -> Result<Tensor> {
    let u: Vec<f64> = nodes.iter().map(|(p, _)| p.ksigma().powi(2)).collect();
    let w = zero_extrapolation_weights(&u)?;
    let terms: Vec<(f64, &Tensor)> = w.iter().zip(nodes).map(|(w, (_, d))| (scale * w, *d)).collect();
    lincomb(&terms)
}
