//! numpy's `linspace`, `arange` and `interp` to the last bit, written once: diffusers computes
//! its timesteps and sigmas with them and rounds the results, so `999 * 15 / 30` must be numpy's
//! 499.49999999999994, not 499.5. Every spacing in the crate uses these.

/// `np.linspace(start, stop, num)` in float64: `i * step + start`, the last value exactly `stop`.
pub(crate) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    y[num - 1] = stop;
    y
}

/// `np.arange(start, stop, step)` for floats: `start + i * delta` with
/// `delta = (start + step) - start` and `ceil((stop - start) / step)` values.
pub(crate) fn arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if !(len > 0.0) || !len.is_finite() {
        return Vec::new();
    }
    let len = len as usize;
    let delta = (start + step) - start;
    (0..len).map(|i| if i == 0 { start } else { start + i as f64 * delta }).collect()
}

/// `np.interp(x, arange(fp.len()), fp)`.
pub(crate) fn interp(x: f64, fp: &[f64]) -> f64 {
    let last = fp.len() - 1;
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return fp[0];
    }
    if x >= last as f64 {
        return fp[last];
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return fp[j];
    }
    let slope = fp[j + 1] - fp[j];
    slope * (x - j as f64) + fp[j]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_values() {
        assert_eq!(arange(1000.0, 0.0, -250.0), vec![1000.0, 750.0, 500.0, 250.0]);
        assert_eq!(linspace(0.0, 999.0, 4), vec![0.0, 333.0, 666.0, 999.0]);
        assert_eq!(linspace(0.0, 999.0, 31)[15], 499.49999999999994);
        assert_eq!(interp(1.5, &[1.0, 3.0, 5.0]), 4.0);
    }
}
