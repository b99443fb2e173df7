//! A small derivative-free minimiser (Nelder & Mead 1965, with the adaptive coefficients of Gao &
//! Han 2012 for higher dimensions) for the few parameters of a step schedule: each evaluation is
//! a student solve, so no gradients are needed and the count of evaluations is what matters.

use crate::error::Result;

/// Options of [`minimize`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NelderMead {
    /// Largest number of objective evaluations.
    pub max_evals: usize,
    /// Initial simplex edge (in parameter units).
    pub step: f64,
    /// Stop when the simplex's values differ by less than this (relative to the best).
    pub ftol: f64,
}

impl Default for NelderMead {
    fn default() -> Self {
        NelderMead { max_evals: 400, step: 0.3, ftol: 1e-6 }
    }
}

/// The best point found and its value, and the evaluations spent.
#[derive(Clone, Debug, PartialEq)]
pub struct Minimum {
    /// The parameters.
    pub x: Vec<f64>,
    /// The objective there.
    pub value: f64,
    /// Objective evaluations made.
    pub evals: usize,
}

/// Minimise `f` from `x0`. A non-finite value counts as +inf (an infeasible point); errors from
/// `f` stop the search and are returned.
pub fn minimize(mut f: impl FnMut(&[f64]) -> Result<f64>, x0: &[f64], opts: NelderMead) -> Result<Minimum> {
    let n = x0.len();
    let mut evals = 0usize;
    let mut eval = |x: &[f64], evals: &mut usize| -> Result<f64> {
        *evals += 1;
        let v = f(x)?;
        Ok(if v.is_finite() { v } else { f64::INFINITY })
    };
    if n == 0 {
        let value = eval(x0, &mut evals)?;
        return Ok(Minimum { x: vec![], value, evals });
    }
    let nf = n as f64;
    let (alpha, beta, gamma, delta) = (1.0, 1.0 + 2.0 / nf, 0.75 - 1.0 / (2.0 * nf), 1.0 - 1.0 / nf);
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((x0.to_vec(), eval(x0, &mut evals)?));
    for i in 0..n {
        let mut x = x0.to_vec();
        x[i] += opts.step;
        let v = eval(&x, &mut evals)?;
        simplex.push((x, v));
    }
    while evals < opts.max_evals {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[n].1);
        if best.is_finite() && (worst - best).abs() <= opts.ftol * best.abs().max(1e-300) {
            break;
        }
        let centroid: Vec<f64> = (0..n).map(|j| simplex.iter().take(n).map(|(x, _)| x[j]).sum::<f64>() / nf).collect();
        let along =
            |t: f64| -> Vec<f64> { (0..n).map(|j| centroid[j] + t * (simplex[n].0[j] - centroid[j])).collect() };
        let xr = along(-alpha);
        let fr = eval(&xr, &mut evals)?;
        if fr < simplex[0].1 {
            let xe = along(-alpha * beta);
            let fe = eval(&xe, &mut evals)?;
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let (xc, fc) = if fr < simplex[n].1 {
                let xc = along(-alpha * gamma);
                let fc = eval(&xc, &mut evals)?;
                (xc, fc)
            } else {
                let xc = along(gamma);
                let fc = eval(&xc, &mut evals)?;
                (xc, fc)
            };
            if fc < fr.min(simplex[n].1) {
                simplex[n] = (xc, fc);
            } else {
                // shrink towards the best point
                let x_best = simplex[0].0.clone();
                for k in 1..=n {
                    let x: Vec<f64> = (0..n).map(|j| x_best[j] + delta * (simplex[k].0[j] - x_best[j])).collect();
                    let v = eval(&x, &mut evals)?;
                    simplex[k] = (x, v);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (x, value) = simplex.swap_remove(0);
    Ok(Minimum { x, value, evals })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_rosenbrock_valley() {
        let f = |x: &[f64]| Ok((1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2));
        let m = minimize(f, &[-1.2, 1.0], NelderMead { max_evals: 2000, step: 0.5, ftol: 1e-14 }).unwrap();
        assert!((m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4, "{m:?}");
        assert!(m.evals <= 2000);
    }

    #[test]
    fn quadratic_in_six_dimensions_and_infeasible_points() {
        // minimum at (1, 2, ..., 6); points with x0 < -5 are infeasible
        let f = |x: &[f64]| {
            if x[0] < -5.0 {
                return Ok(f64::NAN);
            }
            Ok(x.iter().enumerate().map(|(i, v)| (i as f64 + 1.0) * (v - (i as f64 + 1.0)).powi(2)).sum())
        };
        let m = minimize(f, &[0.0; 6], NelderMead { max_evals: 5000, step: 1.0, ftol: 1e-14 }).unwrap();
        for (i, v) in m.x.iter().enumerate() {
            assert!((v - (i as f64 + 1.0)).abs() < 1e-3, "{m:?}");
        }
    }

    #[test]
    fn stops_on_errors() {
        let f = |_: &[f64]| Err(crate::Error::ZeroSteps);
        assert!(minimize(f, &[0.0], NelderMead::default()).is_err());
    }
}
