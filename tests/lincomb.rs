//! The fused `lincomb` against the unfused `lincomb_reference` and against an f64 host
//! computation: every dtype, 1-19 terms (chained groups), zero and unit coefficients, offsets,
//! transposed / narrowed / broadcast views, and the errors.

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::{lincomb, lincomb_reference, Error, SeededNoise};

/// Deterministic N(0,1) values (f64) with a sprinkling of large and tiny magnitudes.
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut v = SeededNoise::new(seed).normal_vec(n);
    for (i, x) in v.iter_mut().enumerate() {
        match i % 97 {
            3 => *x *= 1e3,
            5 => *x *= 1e-3,
            _ => {}
        }
    }
    v
}

fn tensor(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(values(n, seed), shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Coefficients with zeros, ones, negatives and awkward magnitudes.
fn coefs(m: usize, seed: u64) -> Vec<f64> {
    let r = SeededNoise::new(seed + 1000).normal_vec(m);
    r.iter()
        .enumerate()
        .map(|(i, &c)| match (i + seed as usize) % 7 {
            0 => 1.0,
            4 if m > 2 => 0.0,
            5 => -c * 1e-4,
            _ => c,
        })
        .collect()
}

/// max over elements of |a - b| / (sum_i |c_i x_i| + tiny): error relative to the terms' scale.
fn rel_err(got: &[f64], want: &[f64], scale: &[f64]) -> f64 {
    rel_err_floor(got, want, scale, 1e-300)
}

/// [`rel_err`] with the scale floored at `floor` (the dtype's smallest normal number, below
/// which rounding errors are absolute).
fn rel_err_floor(got: &[f64], want: &[f64], scale: &[f64], floor: f64) -> f64 {
    got.iter().zip(want).zip(scale).map(|((g, w), s)| (g - w).abs() / (s + floor)).fold(0.0, f64::max)
}

/// Exact-ish f64 value and scale of the combination from the host copies.
fn exact(terms: &[(f64, &Tensor)]) -> (Vec<f64>, Vec<f64>) {
    let hs: Vec<Vec<f64>> = terms.iter().map(|(_, t)| host(t)).collect();
    let n = hs[0].len();
    let mut want = vec![0.0; n];
    let mut scale = vec![0.0; n];
    for ((c, _), h) in terms.iter().zip(&hs) {
        if *c == 0.0 {
            continue;
        }
        for j in 0..n {
            want[j] += c * h[j];
            scale[j] += (c * h[j]).abs();
        }
    }
    (want, scale)
}

fn ulps(a: f64, b: f64) -> u64 {
    if a == b {
        return 0;
    }
    let (ia, ib) = (a.to_bits() as i64, b.to_bits() as i64);
    let key = |i: i64| if i < 0 { i64::MIN - i } else { i };
    key(ia).abs_diff(key(ib))
}

fn ulps32(a: f32, b: f32) -> u64 {
    if a == b {
        return 0;
    }
    let (ia, ib) = (a.to_bits() as i32 as i64, b.to_bits() as i32 as i64);
    let key = |i: i64| if i < 0 { i32::MIN as i64 - i } else { i };
    key(ia).abs_diff(key(ib))
}

/// Shapes: tiny, odd (not a multiple of any vector width or of the 512 block), a latent.
const SHAPES: [&[usize]; 4] = [&[1], &[3, 5], &[2, 3, 171], &[1, 4, 16, 16]];

#[test]
fn f64_fused_equals_reference_to_one_ulp() {
    let mut worst = 0;
    for shape in SHAPES {
        for m in 1..=19 {
            let ts: Vec<Tensor> = (0..m).map(|i| tensor(shape, 10 * m as u64 + i as u64, DType::F64)).collect();
            let cs = coefs(m, m as u64);
            let terms: Vec<(f64, &Tensor)> = cs.iter().copied().zip(&ts).collect();
            let fused = host(&lincomb(&terms).unwrap());
            let reference = host(&lincomb_reference(&terms).unwrap());
            for (a, b) in fused.iter().zip(&reference) {
                worst = worst.max(ulps(*a, *b));
            }
            let (want, scale) = exact(&terms);
            let err = rel_err(&fused, &want, &scale);
            assert!(err < 1e-15 * m as f64, "f64 {shape:?} m={m}: error {err:e} against the f64 host sum");
        }
    }
    println!("f64: worst fused-vs-reference difference {worst} ulp");
    assert!(worst <= 1, "f64 fused differs from the reference by {worst} ulp");
}

#[test]
fn f32_fused_equals_reference_within_1e6() {
    let mut worst_ulp = 0;
    let mut worst_rel: f64 = 0.0;
    for shape in SHAPES {
        for m in 1..=19 {
            let ts: Vec<Tensor> = (0..m).map(|i| tensor(shape, 7 * m as u64 + i as u64, DType::F32)).collect();
            let cs = coefs(m, 3 + m as u64);
            let terms: Vec<(f64, &Tensor)> = cs.iter().copied().zip(&ts).collect();
            let fused_t = lincomb(&terms).unwrap();
            assert_eq!(fused_t.dtype(), DType::F32);
            let fused = fused_t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let reference = lincomb_reference(&terms).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (want, scale) = exact(&terms);
            for (j, (a, b)) in fused.iter().zip(&reference).enumerate() {
                worst_ulp = worst_ulp.max(ulps32(*a, *b));
                worst_rel = worst_rel.max((*a as f64 - *b as f64).abs() / (scale[j] + 1e-300));
            }
            let f: Vec<f64> = fused.iter().map(|&v| v as f64).collect();
            let err = rel_err(&f, &want, &scale);
            assert!(err < 2e-7 * m as f64, "f32 {shape:?} m={m}: error {err:e} against the f64 host sum");
        }
    }
    println!("f32: worst fused-vs-reference difference {worst_ulp} ulp, {worst_rel:e} relative to sum |c_i x_i|");
    assert!(worst_rel <= 1e-6, "f32 fused differs from the reference by {worst_rel:e}");
}

#[test]
fn f16_bf16_fused_is_accurate() {
    // Fused F16/BF16 accumulate in F32 and round once per group of up to 8 terms: within one
    // rounding per group (plus the F32 rounding of the coefficients) of the exact sum, and
    // never worse than the reference, which rounds after every operation. Errors are relative
    // to sum_i |c_i x_i| (floored at the smallest normal number) and per rounding.
    // (dtype, machine epsilon, smallest normal number)
    for (dtype, eps, tiny) in
        [(DType::F16, 2f64.powi(-10), 2f64.powi(-14)), (DType::BF16, 2f64.powi(-7), 2f64.powi(-126))]
    {
        let mut worst_fused: f64 = 0.0;
        let mut worst_ref: f64 = 0.0;
        for shape in SHAPES {
            for m in 1..=10 {
                // keep F16 in range: no 1e3 magnitudes times large coefficients overflow here
                let ts: Vec<Tensor> = (0..m).map(|i| tensor(shape, 5 * m as u64 + i as u64, dtype)).collect();
                let cs = coefs(m, 11 + m as u64);
                let terms: Vec<(f64, &Tensor)> = cs.iter().copied().zip(&ts).collect();
                let fused = lincomb(&terms).unwrap();
                assert_eq!(fused.dtype(), dtype);
                let fused = host(&fused);
                let reference = host(&lincomb_reference(&terms).unwrap());
                let (want, scale) = exact(&terms);
                // more than 8 non-zero terms are fused in chained groups, each rounded once
                let live = cs.iter().filter(|c| **c != 0.0).count();
                let roundings = if live <= 8 { 1 } else { 1 + (live - 8).div_ceil(7) };
                let e = rel_err_floor(&fused, &want, &scale, tiny) / roundings as f64;
                worst_fused = worst_fused.max(e);
                worst_ref = worst_ref.max(rel_err_floor(&reference, &want, &scale, tiny));
            }
        }
        println!(
            "{dtype:?}: fused error {worst_fused:e} per rounding, reference error {worst_ref:e} (unit roundoff {:e})",
            eps / 2.0
        );
        // one final rounding (eps/2) plus F32 accumulation (negligible) and coefficient rounding
        assert!(worst_fused <= 0.51 * eps, "{dtype:?}: fused error {worst_fused:e}");
        assert!(worst_fused <= worst_ref, "{dtype:?}: fused {worst_fused:e} worse than reference {worst_ref:e}");
    }
}

#[test]
fn non_contiguous_and_offset_views() {
    let dev = Device::Cpu;
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-15 } else { 3e-7 };
        let base = tensor(&[6, 10, 12], 1, dtype);
        let other = tensor(&[6, 10, 12], 2, dtype);
        // contiguous with a start offset (narrow on dim 0) and plain contiguous
        let off = base.narrow(0, 2, 3).unwrap();
        assert!(off.is_contiguous());
        let plain = other.narrow(0, 0, 3).unwrap();
        // transposed (strided) view with the same shape as `off`
        let tr = tensor(&[3, 12, 10], 3, dtype).transpose(1, 2).unwrap();
        assert!(!tr.is_contiguous());
        // narrowed on the last dimension (strided)
        let nar = tensor(&[3, 10, 20], 4, dtype).narrow(2, 5, 12).unwrap();
        assert!(!nar.is_contiguous());
        // broadcast views (stride 0): a per-channel vector and a scalar
        let row = tensor(&[1, 10, 1], 5, dtype).broadcast_as((3, 10, 12)).unwrap();
        let scalar = Tensor::new(&[0.25f64], &dev).unwrap().to_dtype(dtype).unwrap().broadcast_as((3, 10, 12)).unwrap();
        assert!(!row.is_contiguous() && !scalar.is_contiguous());

        let views = [&off, &plain, &tr, &nar, &row, &scalar];
        let cs = [0.7, -1.3, 1.0, 0.011, -2.5, 3.0];
        for m in 1..=views.len() {
            for rot in 0..views.len() {
                let terms: Vec<(f64, &Tensor)> = (0..m).map(|i| (cs[i], views[(i + rot) % views.len()])).collect();
                let got = lincomb(&terms).unwrap();
                assert_eq!(got.dims(), &[3, 10, 12]);
                // the same combination of contiguous copies must give the same values
                let copies: Vec<Tensor> = terms.iter().map(|(_, t)| t.contiguous().unwrap().copy().unwrap()).collect();
                let cterms: Vec<(f64, &Tensor)> = terms.iter().map(|(c, _)| *c).zip(&copies).collect();
                let want_t = lincomb_reference(&cterms).unwrap();
                let (exact_v, scale) = exact(&cterms);
                let g = host(&got);
                assert!(
                    rel_err(&g, &host(&want_t), &scale) <= tol,
                    "{dtype:?} m={m} rot={rot}: differs from contiguous copies"
                );
                assert!(
                    rel_err(&g, &exact_v, &scale) <= tol * 4.0,
                    "{dtype:?} m={m} rot={rot}: differs from the host sum"
                );
            }
        }
    }
}

#[test]
fn zero_and_unit_coefficients() {
    let x = tensor(&[4, 9], 1, DType::F32);
    let nan = Tensor::full(f32::NAN, (4, 9), &Device::Cpu).unwrap();
    // a zero-weighted term is not read, so NaN there is harmless
    let y = lincomb(&[(2.0, &x), (0.0, &nan)]).unwrap();
    assert_eq!(host(&y), host(&x).iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    // a lone unit term is returned as is
    let same = lincomb(&[(0.0, &nan), (1.0, &x)]).unwrap();
    assert_eq!(host(&same), host(&x));
    // all zero: zeros of the right shape and dtype
    let z = lincomb(&[(0.0, &nan), (0.0, &x)]).unwrap();
    assert_eq!((z.dims(), z.dtype()), (&[4usize, 9][..], DType::F32));
    assert!(host(&z).iter().all(|v| *v == 0.0));
    // a lone non-unit term is scaled
    let h = lincomb(&[(-0.5, &x)]).unwrap();
    assert_eq!(host(&h), host(&x).iter().map(|v| ((-0.5f32) * *v as f32) as f64).collect::<Vec<_>>());
}

#[test]
fn mismatches_are_typed_errors() {
    let dev = Device::Cpu;
    let a = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros((3, 2), DType::F32, &dev).unwrap();
    let c = Tensor::zeros((2, 3), DType::F64, &dev).unwrap();
    for f in [lincomb, lincomb_reference] {
        match f(&[(1.0, &a), (2.0, &b)]) {
            Err(Error::TermMismatch { index: 1, what: "shape", .. }) => {}
            other => panic!("shape mismatch gave {other:?}"),
        }
        // also when the offending term has a zero weight: the call is wrong either way
        match f(&[(1.0, &a), (0.5, &a), (0.0, &c)]) {
            Err(e @ Error::TermMismatch { index: 2, what: "dtype", .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("F64") && msg.contains("F32"), "{msg}");
            }
            other => panic!("dtype mismatch gave {other:?}"),
        }
        assert!(matches!(f(&[]), Err(Error::InvalidConfig(_))));
    }
}

/// The CUDA kernel against the CPU path (feature `cuda`, needs a GPU: `tools/gpu_check.sh`).
#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    fn gpu() -> Device {
        Device::new_cuda(0).expect("feature `cuda` tests need a CUDA device")
    }

    #[test]
    fn cuda_fused_matches_cpu() {
        let dev = gpu();
        // (dtype, tolerance relative to sum |c_i x_i| per rounding): F32/F64 are compiled without
        // FMA contraction and summed in the CPU order, so they should agree to the last bit
        for (dtype, tol) in
            [(DType::F64, 1e-15), (DType::F32, 1e-7), (DType::F16, 2f64.powi(-11)), (DType::BF16, 2f64.powi(-8))]
        {
            let mut worst: f64 = 0.0;
            for shape in [&[1usize][..], &[3, 5], &[2, 4, 33, 17], &[1, 4, 64, 64]] {
                for m in 1..=12 {
                    let ts: Vec<Tensor> = (0..m).map(|i| tensor(shape, 31 * m as u64 + i as u64, dtype)).collect();
                    let gs: Vec<Tensor> = ts.iter().map(|t| t.to_device(&dev).unwrap()).collect();
                    let cs = coefs(m, 17 + m as u64);
                    let cpu_terms: Vec<(f64, &Tensor)> = cs.iter().copied().zip(&ts).collect();
                    let gpu_terms: Vec<(f64, &Tensor)> = cs.iter().copied().zip(&gs).collect();
                    let want = host(&lincomb(&cpu_terms).unwrap());
                    let got_t = lincomb(&gpu_terms).unwrap();
                    assert!(got_t.device().is_cuda() && got_t.dtype() == dtype);
                    let got = host(&got_t.to_device(&Device::Cpu).unwrap());
                    let (_, scale) = exact(&cpu_terms);
                    let live = cs.iter().filter(|c| **c != 0.0).count();
                    let groups = if live <= 8 { 1 } else { 1 + (live - 8).div_ceil(7) };
                    let floor = if matches!(dtype, DType::F16) { 2f64.powi(-14) } else { 1e-300 };
                    worst = worst.max(rel_err_floor(&got, &want, &scale, floor) / groups as f64);
                }
            }
            println!("CUDA {dtype:?}: worst difference from the CPU path {worst:e} (relative to sum |c_i x_i|)");
            assert!(worst <= tol, "CUDA {dtype:?}: {worst:e} > {tol:e}");
        }
    }

    #[test]
    fn cuda_strided_views_fall_back() {
        let dev = gpu();
        let a = tensor(&[3, 12, 10], 1, DType::F32);
        let b = tensor(&[3, 10, 12], 2, DType::F32);
        let (ga, gb) = (a.to_device(&dev).unwrap(), b.to_device(&dev).unwrap());
        let at = a.transpose(1, 2).unwrap();
        let cpu_terms = [(0.5, &at), (2.0, &b)];
        let want = host(&lincomb(&cpu_terms).unwrap());
        let got = lincomb(&[(0.5, &ga.transpose(1, 2).unwrap()), (2.0, &gb)]).unwrap();
        let (_, scale) = exact(&cpu_terms);
        let err = rel_err(&host(&got.to_device(&Device::Cpu).unwrap()), &want, &scale);
        assert!(err <= 2e-7, "strided CUDA lincomb differs from the CPU by {err:e}");
    }

    /// Per-call time of the fused kernel and the unfused reference (run with `--ignored`).
    #[test]
    #[ignore]
    fn cuda_timing() {
        let dev = gpu();
        for shape in [[1usize, 4, 64, 64], [4, 4, 128, 128], [8, 4, 128, 128]] {
            let ts: Vec<Tensor> = (0..4).map(|i| tensor(&shape, i, DType::F32).to_device(&dev).unwrap()).collect();
            let copy = time(&dev, || ts[0].copy().unwrap());
            println!("CUDA {shape:?}: tensor copy {copy:.1} us");
            for m in 2..=4 {
                let terms: Vec<(f64, &Tensor)> = ts[..m].iter().enumerate().map(|(i, t)| (0.3 + i as f64, t)).collect();
                let fused = time(&dev, || lincomb(&terms).unwrap());
                let reference = time(&dev, || lincomb_reference(&terms).unwrap());
                println!(
                    "CUDA {shape:?} {m} terms: fused {fused:.1} us, unfused {reference:.1} us ({:.1}x)",
                    reference / fused
                );
            }
        }
    }

    fn time(dev: &Device, mut f: impl FnMut() -> Tensor) -> f64 {
        for _ in 0..20 {
            f();
        }
        dev.synchronize().unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t0 = std::time::Instant::now();
            for _ in 0..200 {
                std::hint::black_box(f());
            }
            dev.synchronize().unwrap();
            best = best.min(t0.elapsed().as_secs_f64() * 1e6 / 200.0);
        }
        best
    }
}
