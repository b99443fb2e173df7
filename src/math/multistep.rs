//! Linear-multistep weights, written once: the fixed Adams-Bashforth weights of a uniform grid
//! (PLMS, iPNDM) and exact integrals of Lagrange basis polynomials on arbitrary nodes (LMS,
//! variable-step Adams-Bashforth).
//!
//! A linear multistep step integrates the interpolating polynomial of the last `m` derivative
//! values: `y_to = y_from + sum_j w_j f_j`, `w_j = int_a^b L_j(s) ds`, where `L_j` is the
//! Lagrange basis polynomial of the nodes (`L_j(s_k) = 1` if `j = k`, else 0). On a uniform grid,
//! newest node first, the weights divided by the step are the classical Adams-Bashforth ones.

use candle_core::Tensor;

use super::History;
use crate::error::{Error, Result};
use crate::ops::lincomb;
use crate::schedule::Point;

/// Adams-Bashforth weights of `order` 1-4 on a uniform grid, newest value first, in units of
/// the step (`y_to = y + h sum_j w_j f_j`). Orders above 4 give the fourth-order weights, 0
/// the first-order one.
///
/// ```
/// use diffusion_samplers::math::multistep::adams_bashforth;
/// assert_eq!(adams_bashforth(2), &[1.5, -0.5]);
/// assert!((adams_bashforth(4).iter().sum::<f64>() - 1.0).abs() < 1e-15);
/// ```
pub fn adams_bashforth(order: usize) -> &'static [f64] {
    const AB: [&[f64]; 4] = [
        &[1.0],
        &[1.5, -0.5],
        &[23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0],
        &[55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0],
    ];
    AB[order.clamp(1, 4) - 1]
}

/// `int_a^b L_j(s) ds` for every node `j`: the weights of the polynomial that interpolates
/// values at `nodes`, integrated from `a` to `b` (either direction, any finite endpoints).
///
/// Computed exactly (up to rounding) by expanding each basis polynomial in `s - a` and
/// integrating the monomials, so the result is exact for every polynomial of degree below
/// `nodes.len()`; no quadrature. Fails for an empty, non-finite or repeated node or a non-finite
/// endpoint.
///
/// ```
/// use diffusion_samplers::math::multistep::lagrange_integrals;
/// // nodes 0, -1, -2 integrated over [0, 1]: the third-order Adams-Bashforth weights
/// let w = lagrange_integrals(&[0.0, -1.0, -2.0], 0.0, 1.0)?;
/// assert!((w[0] - 23.0 / 12.0).abs() < 1e-15 && (w[2] - 5.0 / 12.0).abs() < 1e-15);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn lagrange_integrals(nodes: &[f64], a: f64, b: f64) -> Result<Vec<f64>> {
    let m = nodes.len();
    if m == 0 || !a.is_finite() || !b.is_finite() || nodes.iter().any(|n| !n.is_finite()) {
        return Err(Error::InvalidConfig(format!(
            "Lagrange integration needs at least one node and finite nodes and endpoints, got nodes {nodes:?} on [{a}, {b}]"
        )));
    }
    let h = b - a;
    let mut weights = Vec::with_capacity(m);
    let mut coeffs = Vec::with_capacity(m);
    for j in 0..m {
        // coefficients of prod_{k != j} (u - d_k) in powers of u = s - a, lowest first
        coeffs.clear();
        coeffs.push(1.0);
        let mut denom = 1.0;
        for (k, &node) in nodes.iter().enumerate() {
            if k == j {
                continue;
            }
            let d = node - a;
            coeffs.push(0.0);
            for i in (0..coeffs.len() - 1).rev() {
                let c = coeffs[i];
                coeffs[i + 1] += c;
                coeffs[i] = -d * c;
            }
            denom *= nodes[j] - node;
        }
        if denom == 0.0 {
            return Err(Error::InvalidConfig(format!(
                "Lagrange integration needs distinct nodes, got {nodes:?}: remove repeated points from the grid"
            )));
        }
        // int_0^h u^i du = h^(i+1) / (i + 1), summed by Horner in h
        let integral = coeffs.iter().enumerate().rev().fold(0.0, |acc, (i, c)| acc * h + c / (i + 1) as f64) * h;
        weights.push(integral / denom);
    }
    Ok(weights)
}

/// How a linear multistep method in `ksigma` weighs its stored derivatives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MultistepWeights {
    /// The fixed Adams-Bashforth weights of a uniform grid times the step (PNDM's PLMS, iPNDM,
    /// diffusers' `PNDMScheduler` and `IPNDMScheduler`). Of order `m` on grids uniform in
    /// `ksigma` only; on uniform-lambda or uniform-timestep grids the mismatch between the
    /// uniform weights and the actual node spacing leaves a local error `O(h^3)`: globally second
    /// order.
    #[default]
    Uniform,
    /// The Lagrange polynomial through the actual noise levels, integrated exactly
    /// ([`lagrange_integrals`]; variable-step Adams-Bashforth, as LMS): order `m` on every grid.
    Lagrange,
    /// ComfyUI's `ipndm_v` weights (`sample_ipndm_v`, from the `diff-solvers` code it cites):
    /// step-size-dependent, exact for `m = 2` (they equal [`MultistepWeights::Lagrange`]
    /// there), but for `m = 3` exact only for linear polynomials on non-uniform steps, and for
    /// `m = 4` unlike Adams-Bashforth even on uniform steps (see [`crate::Ipndm`]).
    ComfyVariable,
}

/// The weights of one linear multistep step of the probability-flow ODE in `s = ksigma`,
/// `d(x/alpha)/ds = eps`: returns `(ds, b)` with `ds = s_to - s` and
/// `x_to = (alpha_to/alpha) x + alpha_to ds sum_j b_j eps_j` over the derivative at `from`
/// (`j = 0`) and the newest `m - 1` entries of `hist`, `m = min(order, hist.len() + 1)`.
/// [`MultistepWeights::Uniform`] gives the Adams-Bashforth weights `b_j`; on a zero-length step
/// (`ds = 0`, a no-op) both kinds return them.
pub(crate) fn ksigma_weights(
    from: &Point,
    to: &Point,
    hist: &History,
    order: usize,
    kind: MultistepWeights,
) -> Result<(f64, Vec<f64>)> {
    let m = order.min(hist.len() + 1).max(1);
    let (s0, s1) = (from.ksigma(), to.ksigma());
    let ds = s1 - s0;
    if kind == MultistepWeights::Uniform || ds == 0.0 {
        return Ok((ds, adams_bashforth(m).to_vec()));
    }
    let nodes: Vec<f64> =
        std::iter::once(s0).chain((0..m - 1).filter_map(|k| hist.get(k).map(|(p, _)| p.ksigma()))).collect();
    match kind {
        MultistepWeights::ComfyVariable => Ok((ds, comfy_variable_weights(&nodes, s1))),
        _ => Ok((ds, lagrange_integrals(&nodes, s0, s1)?.into_iter().map(|w| w / ds).collect())),
    }
}

/// ComfyUI's `ipndm_v` weights per unit step, newest first, for the step from `nodes[0]` to
/// `s_to` with the earlier noise levels `nodes[1..]` (0 to 3 of them), as its `sample_ipndm_v`
/// computes them from the step sizes `h_n = s_to - s`, `h_{n-1} = s - s_1`, ...
fn comfy_variable_weights(nodes: &[f64], s_to: f64) -> Vec<f64> {
    match *nodes {
        [s, s1] => {
            let q = (s_to - s) / (s - s1);
            vec![1.0 + q / 2.0, -q / 2.0]
        }
        [s, s1, s2] => {
            let (h0, h1, h2) = (s_to - s, s - s1, s1 - s2);
            let t = (1.0 - h0 / (3.0 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2.0;
            vec![1.0 + h0 / h1 / 2.0 + t, -(h0 / h1) / 2.0 - (1.0 + h1 / h2) * t, t * h1 / h2]
        }
        [s, s1, s2, s3, ..] => {
            let (h0, h1, h2, h3) = (s_to - s, s - s1, s1 - s2, s2 - s3);
            let t1 = (1.0 - h0 / (3.0 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2.0;
            let t2 = ((1.0 - h0 / (3.0 * (h0 + h1))) / 2.0
                + (1.0 - h0 / (2.0 * (h0 + h1))) * h0 / (6.0 * (h0 + h1 + h2)))
                * (h0 * (h0 + h1) * (h0 + h1 + h2))
                / (h1 * (h1 + h2) * (h1 + h2 + h3));
            let q = h1 * (h1 + h2) / (h2 * (h2 + h3));
            vec![
                1.0 + h0 / h1 / 2.0 + t1 + t2,
                -(h0 / h1) / 2.0 - (1.0 + h1 / h2) * t1 - (1.0 + h1 / h2 + q) * t2,
                t1 * h1 / h2 + (h1 / h2 + q * (1.0 + h2 / h3)) * t2,
                -t2 * q * h1 / h2,
            ]
        }
        _ => vec![1.0],
    }
}

/// One linear multistep step in `ksigma` with the weights of [`ksigma_weights`]:
/// `x_to = (alpha_to/alpha) x + alpha_to ds (b_0 eps + sum_{j>0} b_j hist_j)` (for
/// [`MultistepWeights::Uniform`] PNDM's DDIM transfer of the combined noise prediction). `from`
/// must have `alpha > 0`; finite into `sigma = 0`.
pub(crate) fn ksigma_multistep(
    from: &Point,
    to: &Point,
    x: &Tensor,
    eps: &Tensor,
    hist: &History,
    order: usize,
    kind: MultistepWeights,
) -> Result<Tensor> {
    let (ds, b) = ksigma_weights(from, to, hist, order, kind)?;
    let c = to.alpha * ds;
    let mut terms: Vec<(f64, &Tensor)> = vec![(to.alpha / from.alpha, x), (c * b[0], eps)];
    for (k, bk) in b.iter().enumerate().skip(1) {
        if let Some((_, e)) = hist.get(k - 1) {
            terms.push((c * bk, e));
        }
    }
    lincomb(&terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_nodes_give_adams_bashforth() {
        for order in 1..=4 {
            let nodes: Vec<f64> = (0..order).map(|k| -(k as f64)).collect();
            let w = lagrange_integrals(&nodes, 0.0, 1.0).unwrap();
            for (a, b) in w.iter().zip(adams_bashforth(order)) {
                assert!((a - b).abs() < 1e-14, "order {order}: {w:?}");
            }
            // scaled and shifted grid: weights scale with the step
            let nodes: Vec<f64> = (0..order).map(|k| 3.0 + 0.25 * k as f64).collect();
            let w = lagrange_integrals(&nodes, 3.0, 2.75).unwrap();
            for (a, b) in w.iter().zip(adams_bashforth(order)) {
                assert!((a + 0.25 * b).abs() < 1e-14, "order {order}: {w:?}");
            }
        }
    }

    #[test]
    fn exact_for_polynomials_on_random_nodes() {
        // nodes as an LMS step in ksigma sees them: the current and earlier, larger noise levels
        let nodes = [0.8, 1.3, 2.9, 7.4];
        let (a, b) = (0.8, 0.35);
        let w = lagrange_integrals(&nodes, a, b).unwrap();
        for deg in 0..4 {
            let p = |s: f64| (0..=deg).map(|i| (i as f64 + 1.5) * s.powi(i)).sum::<f64>();
            let exact: f64 =
                (0..=deg).map(|i| (i as f64 + 1.5) * (b.powi(i + 1) - a.powi(i + 1)) / (i + 1) as f64).sum();
            let got: f64 = w.iter().zip(nodes).map(|(w, n)| w * p(n)).sum();
            assert!((got - exact).abs() < 1e-12 * exact.abs().max(1.0), "degree {deg}: {got} vs {exact}");
        }
    }

    #[test]
    fn into_zero_and_tiny_steps() {
        let w = lagrange_integrals(&[0.02, 0.05, 0.11, 0.2], 0.02, 0.0).unwrap();
        assert!(w.iter().all(|v| v.is_finite()));
        assert!((w.iter().sum::<f64>() + 0.02).abs() < 1e-15);
        // a tiny step (exactly representable nodes): the Adams-Bashforth weights times the step
        let d = 2f64.powi(-30);
        let w = lagrange_integrals(&[1.0, 1.0 + d], 1.0, 1.0 - d).unwrap();
        assert!((w[0] + 1.5 * d).abs() < 1e-15 * d && (w[1] - 0.5 * d).abs() < 1e-15 * d, "{w:?}");
        assert_eq!(lagrange_integrals(&[2.0], 2.0, 0.5).unwrap(), vec![-1.5]);
    }

    #[test]
    fn rejects_bad_nodes() {
        assert!(lagrange_integrals(&[], 0.0, 1.0).is_err());
        assert!(lagrange_integrals(&[1.0, 1.0], 0.0, 1.0).is_err());
        assert!(lagrange_integrals(&[1.0, f64::NAN], 0.0, 1.0).is_err());
        assert!(lagrange_integrals(&[1.0], 0.0, f64::INFINITY).is_err());
    }
}
