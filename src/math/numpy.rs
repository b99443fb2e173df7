//! numpy's `linspace`, `arange` and `interp` to the last bit, written once: diffusers computes
//! its timesteps and sigmas with them and rounds the results, so `999 * 15 / 30` must be numpy's
//! 499.49999999999994, not 499.5. Every spacing in the crate uses these. Also numpy's float32
//! `log` ([`log_f32`]): diffusers' `log_sigmas` tables are `np.log` of float32 sigmas, and its
//! sigma-to-timestep interpolation compares against them.

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

/// numpy's float32 `np.log` as numpy >= 1.20 computes it on x86-64 with AVX2/FMA3 or AVX-512F
/// (the machines diffusers' reference values come from): `x = m 2^e` with `m` in `[sqrt(1/2),
/// sqrt(2))`, then `ln(1 + y)`, `y = m - 1`, as the ratio of two degree-5 minimax polynomials
/// evaluated by Horner's rule with fused multiply-adds, plus `e ln 2` (one more fused
/// multiply-add). The coefficients are numpy's (`npy_simd_data.h`). Its error is up to 3.8 ulp,
/// so it differs from a correctly rounded `logf` (and from the platform's `f32::ln`) in the last
/// bit for about one value in five; written with `f32::mul_add` it gives numpy's bits on every
/// platform. Subnormal inputs are scaled into the normal range first, as numpy does.
#[allow(clippy::excessive_precision)] // numpy's constants as written in npy_simd_data.h
pub(crate) fn log_f32(x: f32) -> f32 {
    const P: [f32; 6] = [
        0.0,
        9.999_999_999_999_998e-1,
        2.112_677_543_073_053,
        1.480_000_633_576_506_6,
        3.808_837_741_388_408e-1,
        2.589_979_117_907_922_7e-2,
    ];
    const Q: [f32; 6] = [
        1.0,
        2.612_677_543_073_109,
        2.453_006_071_784_736_4,
        9.864_942_958_519_419e-1,
        1.546_476_374_983_906_7e-1,
        5.875_095_403_124_574e-3,
    ];
    const LN2: f32 = std::f32::consts::LN_2;
    const SQRT1_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    if x.is_nan() {
        return x;
    }
    if x < 0.0 {
        return -f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return x;
    }
    // subnormals: scale by 2^100 and take 100 off the exponent
    let (x, e_shift) = if x < f32::MIN_POSITIVE { (x * f32::from_bits(0x7180_0000), 100.0) } else { (x, 0.0) };
    let bits = x.to_bits();
    // x = m 2^e with m in [0.5, 1)
    let mut e = ((bits >> 23) as i32 - 126) as f32 - e_shift;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | (126 << 23));
    if m <= SQRT1_2 {
        m += m;
        e -= 1.0;
    }
    let y = m - 1.0;
    let num = P[5].mul_add(y, P[4]).mul_add(y, P[3]).mul_add(y, P[2]).mul_add(y, P[1]).mul_add(y, P[0]);
    let den = Q[5].mul_add(y, Q[4]).mul_add(y, Q[3]).mul_add(y, Q[2]).mul_add(y, Q[1]).mul_add(y, Q[0]);
    e.mul_add(LN2, num / den)
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

    #[test]
    fn numpy_float32_log() {
        // np.log(np.float32(v)) with numpy 2.4.6 on x86-64 (AVX-512), bit patterns: sigma_max and
        // sigma_min of diffusers' 1000-step linear (1e-4..0.02) and scaled-linear (0.00085..0.012)
        // tables, three values where numpy's log is one ulp above the rounded ln, 1, and the
        // smallest subnormal
        for (x, want) in [
            (0x431d_6843u32, 0x40a1_e1fdu32),
            (0x3c23_dc9e, 0xc093_5c77),
            (0x4169_d598, 0x402b_a649),
            (0x3cee_f0c1, 0xc062_3882),
            (0x3e19_c12e, 0xbff2_b3dd),
            (0x3e85_c228, 0xbfab_d023),
            (0x3e8c_946f, 0xbfa5_7241),
            (0x3f80_0000, 0x0000_0000),
            (0x0000_0001, 0xc2ce_8ed0),
        ] {
            let got = log_f32(f32::from_bits(x));
            assert_eq!(got.to_bits(), want, "log({:e}) = {got:e}, numpy {:e}", f32::from_bits(x), f32::from_bits(want));
        }
        assert!(log_f32(-1.0).is_nan() && log_f32(f32::NAN).is_nan());
        assert_eq!(log_f32(0.0), f32::NEG_INFINITY);
        if let Ok(path) = std::env::var("NUMPY_LOGF32_BIN") {
            // (x, np.log(x)) u32 pairs written by a numpy script: every one must match
            let bytes = std::fs::read(path).unwrap();
            let words: Vec<u32> = bytes.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let bad: Vec<_> = words
                .chunks(2)
                .filter(|p| log_f32(f32::from_bits(p[0])).to_bits() != p[1])
                .map(|p| (f32::from_bits(p[0]), f32::from_bits(p[1]), log_f32(f32::from_bits(p[0]))))
                .collect();
            assert!(bad.is_empty(), "{} of {} differ, e.g. {:?}", bad.len(), words.len() / 2, &bad[..bad.len().min(5)]);
        }
    }
}
