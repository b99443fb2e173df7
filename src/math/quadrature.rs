//! Gauss-Legendre quadrature on the host, for weights that have no closed form (ComfyUI's DEIS
//! coefficients in its VP time).

/// `int_a^b f(x) dx` by `n`-point Gauss-Legendre quadrature (exact for polynomials of degree
/// `2n - 1`). The nodes are the roots of the Legendre polynomial `P_n`, found by Newton's method.
///
/// ```
/// use diffusion_samplers::math::quadrature::gauss_legendre;
/// let v = gauss_legendre(|x| x.powi(7) - 2.0 * x, 0.0, 2.0, 4);
/// assert!((v - (256.0 / 8.0 - 4.0)).abs() < 1e-12);
/// assert!((gauss_legendre(f64::exp, 0.0, 1.0, 8) - (1f64.exp() - 1.0)).abs() < 1e-15);
/// ```
pub fn gauss_legendre(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
    let mut sum = 0.0;
    for i in 0..n {
        // Newton on P_n from the Chebyshev-like guess of the i-th root
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (p, d) = legendre(n, x);
            dp = d;
            let dx = p / d;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        let (_, d) = legendre(n, x);
        if d.is_finite() {
            dp = d;
        }
        let w = 2.0 / ((1.0 - x * x) * dp * dp);
        sum += w * f(mid + half * x);
    }
    sum * half
}

/// `(P_n(x), P_n'(x))` by the three-term recurrence.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
        p0 = p1;
        p1 = p2;
    }
    let d = n as f64 * (x * p1 - p0) / (x * x - 1.0);
    (p1, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_for_polynomials_up_to_degree_2n_minus_1() {
        for n in [1, 2, 5, 8, 16] {
            for deg in 0..(2 * n) {
                let got = gauss_legendre(|x| x.powi(deg as i32), -0.5, 1.5, n);
                let want = (1.5f64.powi(deg as i32 + 1) - (-0.5f64).powi(deg as i32 + 1)) / (deg + 1) as f64;
                assert!((got - want).abs() < 1e-12 * want.abs().max(1.0), "n {n} degree {deg}: {got} vs {want}");
            }
        }
        // reversed interval
        assert!((gauss_legendre(|x| x, 1.0, 0.0, 3) + 0.5).abs() < 1e-15);
    }
}
