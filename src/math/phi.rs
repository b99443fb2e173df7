//! The phi functions of exponential integrators, `phi_k(z) = sum_{j>=0} z^j / (j + k)!`
//! (`phi_1(z) = (e^z - 1)/z`, `phi_{k+1}(z) = (phi_k(z) - 1/k!)/z`), accurate for tiny `|z|`
//! (Taylor series) and with their limits at `z = -inf` (0) and `z = +inf` (inf).

const SERIES_RADIUS: f64 = 0.5;

/// `k!` in f64.
pub(crate) fn factorial(k: usize) -> f64 {
    (1..=k).map(|i| i as f64).product()
}

fn series(k: usize, z: f64) -> f64 {
    // |z| <= 0.5: terms fall by >= 2x each; 30 terms reach f64 precision
    let mut term = 1.0 / factorial(k);
    let mut sum = term;
    for j in 1..30 {
        term *= z / (j + k) as f64;
        sum += term;
        if term.abs() < 1e-18 * sum.abs() {
            break;
        }
    }
    sum
}

/// `phi_k(z)` for `k >= 0` (`phi_0 = e^z`).
///
/// ```
/// use diffusion_samplers::math::phi::phi;
/// assert!((phi(1, 1e-12) - (1.0 + 0.5e-12)).abs() < 1e-15);
/// assert!((phi(2, -3.0) - ((-3f64).exp() - 1.0 + 3.0) / 9.0).abs() < 1e-15);
/// assert_eq!(phi(3, f64::NEG_INFINITY), 0.0);
/// ```
pub fn phi(k: usize, z: f64) -> f64 {
    if k == 0 {
        return z.exp();
    }
    if z == f64::NEG_INFINITY {
        return 0.0;
    }
    if z == f64::INFINITY {
        return f64::INFINITY;
    }
    if z.abs() <= SERIES_RADIUS {
        return series(k, z);
    }
    let mut p = z.exp_m1() / z;
    for j in 1..k {
        p = (p - 1.0 / factorial(j)) / z;
    }
    p
}

/// `1/k! - phi_k(-h)` for `h >= 0`, written without cancellation at small `h`
/// (`= h phi_{k+1}(-h)`) and with its limit `1/k!` at `h = inf`.
///
/// These are the weights of the k-th divided difference in the data-prediction exponential
/// integrator (DPM-Solver++, UniPC, DEIS in lambda).
///
/// ```
/// use diffusion_samplers::math::phi::{phi, tail};
/// assert!((tail(1, 1e-9) - 0.5e-9).abs() < 1e-18);
/// assert_eq!(tail(2, f64::INFINITY), 0.5);
/// assert!((tail(1, 2.0) - (1.0 - phi(1, -2.0))).abs() < 1e-15);
/// ```
pub fn tail(k: usize, h: f64) -> f64 {
    if h.abs() <= SERIES_RADIUS {
        h * phi(k + 1, -h)
    } else {
        1.0 / factorial(k) - phi(k, -h)
    }
}
