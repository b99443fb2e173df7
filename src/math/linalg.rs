//! A tiny dense f64 linear solve for the few-by-few systems of multistep solvers (UniPC's
//! `R rho = b`, Lagrange/moment weights). Gaussian elimination with partial pivoting on the host.

use crate::error::{Error, Result};

/// Solve `a x = b` for a square `n x n` matrix `a` given row-major (`a[i * n + j]`).
///
/// Fails with [`Error::InvalidConfig`] when the sizes do not match, and with
/// [`Error::InvalidGrid`] when the system is singular or not finite (for the solvers here that
/// means repeated or infinite nodes, i.e. a degenerate grid).
///
/// ```
/// use diffusion_samplers::math::linalg::solve;
/// let x = solve(&[2.0, 1.0, 1.0, 3.0], &[3.0, 5.0])?;
/// assert!((x[0] - 0.8).abs() < 1e-15 && (x[1] - 1.4).abs() < 1e-15);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub fn solve(a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    let n = b.len();
    if a.len() != n * n {
        return Err(Error::InvalidConfig(format!(
            "linear solve: a {n}-vector needs a {n}x{n} matrix, got {} entries",
            a.len()
        )));
    }
    let mut m = a.to_vec();
    let mut x = b.to_vec();
    let singular = || {
        Error::InvalidGrid(format!(
            "singular {n}x{n} system in a multistep solver's weights (repeated or infinite nodes): \
             use a grid with distinct, finite log-SNR values"
        ))
    };
    for col in 0..n {
        let pivot =
            (col..n).max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs())).ok_or_else(singular)?;
        let p = m[pivot * n + col];
        if p == 0.0 || !p.is_finite() {
            return Err(singular());
        }
        if pivot != col {
            for j in 0..n {
                m.swap(pivot * n + j, col * n + j);
            }
            x.swap(pivot, col);
        }
        for i in col + 1..n {
            let f = m[i * n + col] / p;
            if f != 0.0 {
                for j in col..n {
                    m[i * n + j] -= f * m[col * n + j];
                }
                x[i] -= f * x[col];
            }
        }
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| m[i * n + j] * x[j]).sum();
        x[i] = (x[i] - s) / m[i * n + i];
    }
    if x.iter().all(|v| v.is_finite()) {
        Ok(x)
    } else {
        Err(singular())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_with_pivoting() {
        // zero in the top-left corner needs a row swap
        let a = [0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.0];
        let truth = [1.0, -2.0, 0.5];
        let b: Vec<f64> = (0..3).map(|i| (0..3).map(|j| a[i * 3 + j] * truth[j]).sum()).collect();
        let x = solve(&a, &b).unwrap();
        for (u, v) in x.iter().zip(truth) {
            assert!((u - v).abs() < 1e-14, "{x:?}");
        }
    }

    #[test]
    fn empty_and_scalar() {
        assert!(solve(&[], &[]).unwrap().is_empty());
        assert_eq!(solve(&[4.0], &[2.0]).unwrap(), vec![0.5]);
    }

    #[test]
    fn rejects_singular_nonfinite_and_bad_sizes() {
        assert!(matches!(solve(&[1.0, 2.0, 2.0, 4.0], &[1.0, 1.0]), Err(Error::InvalidGrid(_))));
        assert!(matches!(solve(&[f64::INFINITY, 0.0, 0.0, 1.0], &[1.0, 1.0]), Err(Error::InvalidGrid(_))));
        assert!(matches!(solve(&[f64::NAN], &[1.0]), Err(Error::InvalidGrid(_))));
        assert!(matches!(solve(&[1.0, 2.0, 3.0], &[1.0, 1.0]), Err(Error::InvalidConfig(_))));
    }
}
