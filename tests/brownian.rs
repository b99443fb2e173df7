//! The Brownian path (`src/brownian.rs`): one path per seed whatever the step count, query order,
//! tensor size, dtype or device; its increments have the law of Brownian motion.
//!
//! The statistical checks use 40,000 independent elements per interval and bounds of 6 standard
//! errors: a correct path fails one with probability below 1e-8, while a wrong scale (variance
//! 1/2 or 2), independent draws per interval (no shared path) or correlated elements fail by
//! tens of standard errors.

mod common;

use candle_core::{DType, Device, Tensor};
use common::refinement_gaps;
use diffusion_samplers::brownian::{BrownianPath, BrownianTime};
use diffusion_samplers::sigmas::SigmaSchedule;
use diffusion_samplers::{
    DiscreteVp, End, Error, EulerAncestral, Grid, NoiseSource, RectifiedFlow, Scheduler, SdeDpmSolverPP, SeededNoise,
};

const N: usize = 40_000;

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn moment(v: &[f64], k: i32) -> f64 {
    v.iter().map(|x| x.powi(k)).sum::<f64>() / v.len() as f64
}

fn corr(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Normalised increment `(W(to) - W(from)) / sqrt(|to - from|)` for N elements.
fn normalised(w: &mut BrownianPath, from: f64, to: f64) -> Vec<f64> {
    let s = (to - from).abs().sqrt();
    w.increment_vec(from, to, N).unwrap().into_iter().map(|d| d / s).collect()
}

/// Standard normal: mean 0, variance 1, fourth moment 3, each within 6 standard errors.
fn assert_standard_normal(z: &[f64], what: &str) {
    let n = z.len() as f64;
    let (m, v, k) = (mean(z), moment(z, 2), moment(z, 4));
    assert!(m.abs() < 6.0 / n.sqrt(), "{what}: mean {m}");
    assert!((v - 1.0).abs() < 6.0 * (2.0 / n).sqrt(), "{what}: variance {v}");
    assert!((k - 3.0).abs() < 6.0 * (96.0 / n).sqrt(), "{what}: fourth moment {k}");
}

#[test]
fn increments_add_up_across_step_counts() {
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let like = Tensor::zeros((2, 4, 8, 8), DType::F64, &Device::Cpu).unwrap();
    let sum_over = |w: &mut BrownianPath, sigmas: &[f64]| -> Vec<f64> {
        let mut acc = vec![0.0; like.elem_count()];
        for pair in sigmas.windows(2) {
            let inc = w.increment(&like, pair[0], pair[1]).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            acc.iter_mut().zip(inc).for_each(|(a, d)| *a += d);
        }
        acc
    };
    // karras grids of 5, 10 and 30 steps share only their ends; each sees the same total
    // increment from sigma_max to sigma_min (one path, whatever the step count)
    let mut totals = vec![];
    for steps in [5, 10, 30] {
        let grid =
            Grid::new(&sd, &diffusion_samplers::Spacing::Sigmas(SigmaSchedule::Karras { rho: 7.0 }), steps, End::Min)
                .unwrap();
        let sigmas: Vec<f64> = grid.points().iter().map(|p| p.ksigma()).collect();
        let mut w = BrownianPath::for_schedule(7, &sd, BrownianTime::KSigma).unwrap();
        totals.push(sum_over(&mut w, &sigmas));
    }
    for t in &totals[1..] {
        let diff = t.iter().zip(&totals[0]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-12, "total increment differs by {diff}");
    }
    // and a single step over [s0, s2] is the sum of the steps over [s0, s1] and [s1, s2]
    let mut w = BrownianPath::new(3, 0.0, 20.0).unwrap();
    for (s0, s1, s2) in [(14.6, 3.0, 0.03), (0.5, 0.4999999, 0.2), (20.0, 10.0, 0.0)] {
        let one = w.increment_vec(s0, s2, N).unwrap();
        let (a, b) = (w.increment_vec(s0, s1, N).unwrap(), w.increment_vec(s1, s2, N).unwrap());
        let diff = one.iter().zip(a.iter().zip(&b)).map(|(o, (x, y))| (o - x - y).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-12, "[{s0}, {s2}] vs the sum through {s1}: {diff}");
    }
}

#[test]
fn same_numbers_whatever_the_query_order() {
    let times = [14.6, 0.03, 7.0, 7.0000001, 0.5, 13.0, 2.0, 0.0, 20.0, 1e-6];
    let in_order: Vec<Vec<f64>> = {
        let mut w = BrownianPath::new(11, 0.0, 20.0).unwrap();
        times.iter().map(|&t| w.value(t, 64).unwrap()).collect()
    };
    // reversed, and interleaved with other queries on a fresh path and on a path that has
    // answered a thousand queries: bit-identical
    let mut w = BrownianPath::new(11, 0.0, 20.0).unwrap();
    for (i, &t) in times.iter().enumerate().rev() {
        assert_eq!(w.value(t, 64).unwrap(), in_order[i], "reversed, t = {t}");
    }
    let mut w = BrownianPath::new(11, 0.0, 20.0).unwrap();
    for k in 0..1000 {
        w.value(20.0 * k as f64 / 1000.0, 64).unwrap();
    }
    for (i, &t) in times.iter().enumerate() {
        w.value(t * 0.5, 64).unwrap();
        assert_eq!(w.value(t, 64).unwrap(), in_order[i], "interleaved, t = {t}");
    }
    // element i does not depend on the tensor size
    let mut w = BrownianPath::new(11, 0.0, 20.0).unwrap();
    assert_eq!(w.value(7.0, 10).unwrap(), in_order[2][..10].to_vec());
    // W(lo) = 0; another seed is another path
    assert!(in_order[7].iter().all(|&x| x == 0.0));
    let mut other = BrownianPath::new(12, 0.0, 20.0).unwrap();
    let a = BrownianPath::new(11, 0.0, 20.0).unwrap().increment_vec(20.0, 5.0, N).unwrap();
    let b = other.increment_vec(20.0, 5.0, N).unwrap();
    assert!(corr(&a, &b).abs() < 6.0 / (N as f64).sqrt(), "seeds 11 and 12 correlate: {}", corr(&a, &b));
}

#[test]
fn increments_are_standard_normal_at_every_scale() {
    // intervals from the whole range down to 2^-26 of it (the default tree is 40 levels deep),
    // at the ends and in the middle of the range
    let (lo, hi) = (0.0, 14.6);
    let mut w = BrownianPath::new(5, lo, hi).unwrap();
    for width in [1.0, 0.3, 1e-2, 1e-4, 1e-6, 1.5e-8] {
        for start in [0.0, 0.37, 1.0 - width] {
            let a = lo + start * (hi - lo);
            let b = (a + width * (hi - lo)).min(hi);
            // sampling direction: from the higher level to the lower
            let z = normalised(&mut w, b, a);
            assert_standard_normal(&z, &format!("width {width} at {start}"));
        }
    }
    // increments over disjoint intervals are independent; nested ones correlate as
    // sqrt(|I| / |J|) for I inside J (an iid draw per interval would give 0)
    let se = 6.0 / (N as f64).sqrt();
    let (i1, i2) = (normalised(&mut w, 10.0, 6.0), normalised(&mut w, 6.0, 1.0));
    assert!(corr(&i1, &i2).abs() < se, "adjacent intervals correlate: {}", corr(&i1, &i2));
    let outer = normalised(&mut w, 10.0, 1.0);
    let rho = corr(&i1, &outer);
    let want = (4.0f64 / 9.0).sqrt();
    assert!((rho - want).abs() < se * (1.0 - want * want), "nested correlation {rho}, want {want}");
    // the sum of the two adjacent normalised increments, reweighted, is the outer one exactly
    for k in 0..N {
        let recombined = (i1[k] * 4f64.sqrt() + i2[k] * 5f64.sqrt()) / 9f64.sqrt();
        assert!((recombined - outer[k]).abs() < 1e-12);
    }
    // neighbouring elements are independent
    assert!(corr(&i1[..N - 1], &i1[1..]).abs() < se, "elements correlate");
}

#[test]
fn noise_is_the_normalised_increment_in_every_dtype() {
    let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
    let (from, to) = (sd.point(900.0), sd.point(700.0));
    let mut w = BrownianPath::for_schedule(9, &sd, BrownianTime::KSigma).unwrap();
    assert_eq!(w.range(), (0.0, 2.0 * sd.point(999.0).ksigma()));
    let like64 = Tensor::zeros((3, 5), DType::F64, &Device::Cpu).unwrap();
    let exact: Vec<f64> = w
        .increment_vec(from.ksigma(), to.ksigma(), 15)
        .unwrap()
        .into_iter()
        .map(|d| d / (from.ksigma() - to.ksigma()).sqrt())
        .collect();
    let n64 = w.noise_between(&like64, &from, &to).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(n64, exact);
    // every CPU dtype holds the f64 values rounded once, on the host (CUDA and Metal take the
    // same host tensor and only copy it; they could not be run here)
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let like = Tensor::zeros((3, 5), dtype, &Device::Cpu).unwrap();
        let got = w.noise_between(&like, &from, &to).unwrap();
        assert_eq!(got.dtype(), dtype);
        let want = Tensor::new(exact.as_slice(), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        let (g, e) = (
            got.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap(),
            want.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap(),
        );
        assert_eq!(g, e, "{dtype:?}");
    }
    // a flow schedule runs over sigma (its sigma / alpha is infinite at the start)
    let flow = RectifiedFlow::default();
    assert!(BrownianPath::for_schedule(1, &flow, BrownianTime::KSigma).is_err());
    let mut wf = BrownianPath::for_schedule(1, &flow, BrownianTime::Sigma).unwrap();
    let (a, b) = (flow.point(1.0), flow.point(0.5));
    let z = wf.noise_between(&like64, &a, &b).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let want: Vec<f64> =
        wf.increment_vec(1.0, b.sigma, 15).unwrap().into_iter().map(|d| d / (1.0 - b.sigma).sqrt()).collect();
    assert_eq!(z, want);
}

#[test]
fn seeded_noise_is_not_a_path() {
    // the contrast the statistical tests rely on: iid draws per interval (SeededNoise) do not
    // correlate nested intervals, a Brownian path does (sqrt(1/2) for half an interval)
    let like = Tensor::zeros(N, DType::F64, &Device::Cpu).unwrap();
    let mut iid = SeededNoise::new(1);
    let (a, b) = (
        iid.noise_like(&like).unwrap().to_vec1::<f64>().unwrap(),
        iid.noise_like(&like).unwrap().to_vec1::<f64>().unwrap(),
    );
    assert!(corr(&a, &b).abs() < 6.0 / (N as f64).sqrt());
    let mut w = BrownianPath::new(1, 0.0, 2.0).unwrap();
    let (half, whole) = (normalised(&mut w, 2.0, 1.0), normalised(&mut w, 2.0, 0.0));
    assert!((corr(&half, &whole) - 0.5f64.sqrt()).abs() < 6.0 / (N as f64).sqrt());
}

#[test]
fn errors_are_typed() {
    for (lo, hi) in [(-1.0, 1.0), (1.0, 1.0), (0.0, f64::INFINITY), (f64::NAN, 1.0)] {
        assert!(matches!(BrownianPath::new(0, lo, hi), Err(Error::InvalidConfig(_))), "{lo} {hi}");
    }
    let mut w = BrownianPath::new(0, 0.0, 10.0).unwrap();
    let like = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    let r = w.noise(&like, 11.0, 5.0);
    assert!(matches!(r, Err(Error::InvalidConfig(ref m)) if m.contains("outside")), "{r:?}");
    assert!(matches!(w.noise(&like, 5.0, 5.0), Err(Error::InvalidConfig(_))));
    assert!(matches!(w.value(f64::NAN, 4), Err(Error::InvalidConfig(_))));
    for depth in [0, 53] {
        assert!(matches!(BrownianPath::new(0, 0.0, 1.0).unwrap().with_depth(depth), Err(Error::InvalidConfig(_))));
    }
    // another depth is another (valid) path
    let mut shallow = BrownianPath::new(0, 0.0, 1.0).unwrap().with_depth(8).unwrap();
    assert_standard_normal(&normalised(&mut shallow, 0.9, 0.4), "depth 8");
}

#[test]
fn sde_samplers_converge_on_one_path() {
    // With iid noise per step, 100 and 200 steps of an SDE sampler are two different random
    // samples; on one Brownian path they approximate the same pathwise solution, and refining
    // the grid closes the gap (strong convergence), the property k-diffusion's Brownian-tree noise
    // sampler exists for.
    let brownian = || -> Box<dyn NoiseSource> {
        let sd = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap();
        Box::new(BrownianPath::for_schedule(21, &sd, BrownianTime::KSigma).unwrap())
    };
    let iid = || -> Box<dyn NoiseSource> { Box::new(SeededNoise::new(21)) };
    for (name, path, fresh) in [
        (
            "SDE-DPM-Solver++(2M)",
            refinement_gaps(&SdeDpmSolverPP::order(2), brownian),
            refinement_gaps(&SdeDpmSolverPP::order(2), iid),
        ),
        (
            "Euler-ancestral",
            refinement_gaps(&EulerAncestral::diffusers_default(), brownian),
            refinement_gaps(&EulerAncestral::diffusers_default(), iid),
        ),
    ] {
        println!("{name}: gaps 25/50, 50/100, 100/200 steps: Brownian path {path:.4?}, iid noise {fresh:.4?}");
        assert!(path[2] < path[0] / 2.0, "{name}: refining does not converge on one path: {path:?}");
        assert!(path[2] < fresh[2] / 4.0, "{name}: Brownian {path:?} vs iid {fresh:?}");
    }
}
