//! The sampling loop and its helpers: inversion round trip, NFE counts, progress callback,
//! img2img, stochastic DDIM/Heun, mixed-precision models, guidance and thresholding.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{max_abs, noise, rms};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;

fn sched() -> DiscreteVp {
    DiscreteVp::linear(1e-4, 0.02, 1000).unwrap()
}

#[test]
fn invert_then_sample_returns_the_data() {
    let s = sched();
    let gm = GaussianMixture::example(4, 3, 3).unwrap();
    let x0 = Tensor::from_vec(gm.sample_data(32, 8), (32, 4), &Device::Cpu).unwrap();
    for steps in [10usize, 20, 50] {
        let grid = Grid::new(&s, &Spacing::UniformLambda, steps, End::Min).unwrap();
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        let solver = DpmSolverMultistep::pp(2);
        let z = invert(&solver, &mut model, &grid, &x0).unwrap();
        // the encoding is a noise-like latent, far from the data
        assert!(rms(&z, &x0) > 0.5);
        let back = sample(&solver, &mut model, &grid, &z).unwrap();
        let err = rms(&back, &x0);
        println!("DPM-Solver++(2M) invert+sample, {steps} steps: RMSE {err:.2e}, NFE {}", model.nfe());
        assert_eq!(model.nfe(), 2 * steps);
        if steps == 50 {
            assert!(err <= 1e-3, "round trip RMSE {err}");
        }
    }
}

#[test]
fn exact_nfe_counts() {
    let s = sched();
    let gm = GaussianMixture::example(2, 2, 0).unwrap();
    let x = noise(3, 2, 1);
    for (end, heun_nfe) in [(End::Clean, 2 * 7 - 1), (End::Min, 2 * 7)] {
        let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 7, end).unwrap();
        let count = |solver: &dyn Fn(&mut Model) -> Result<Tensor>| {
            let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
            let out = solver(&mut model).unwrap();
            assert!(out.flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().all(|v| v.is_finite()));
            model.nfe()
        };
        assert_eq!(count(&|m| sample(&Ddim::default(), m, &grid, &x)), 7);
        assert_eq!(count(&|m| sample(&Euler, m, &grid, &x)), 7);
        assert_eq!(count(&|m| sample(&DpmSolverMultistep::pp(3), m, &grid, &x)), 7);
        assert_eq!(count(&|m| sample(&DpmSolverMultistep::noise(2), m, &grid, &x)), 7);
        assert_eq!(count(&|m| sample(&Heun::default(), m, &grid, &x)), heun_nfe);
    }
}

#[test]
fn into_sigma_zero_every_solver_returns_finite_data() {
    let s = sched();
    let gm = GaussianMixture::example(3, 3, 4).unwrap();
    let x = noise(16, 3, 2);
    let grid = Grid::new(&s, &Spacing::UniformLambda, 25, End::Clean).unwrap();
    let exact = gm.exact_endpoint(&x, &grid.points()[0], &grid.points()[25]).unwrap();
    let check = |name: &str, solver: &dyn Fn(&mut Model) -> Result<Tensor>, tol: f64| {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        let out = solver(&mut model).unwrap();
        let err = rms(&out, &exact);
        println!("{name}: RMSE vs exact clean endpoint at 25 steps {err:.2e}");
        assert!(err < tol, "{name}: {err}");
    };
    check("DDIM", &|m| sample(&Ddim::default(), m, &grid, &x), 0.05);
    check("Euler", &|m| sample(&Euler, m, &grid, &x), 0.05);
    check("Heun", &|m| sample(&Heun::default(), m, &grid, &x), 0.01);
    check("DPM-Solver++(2M)", &|m| sample(&DpmSolverMultistep::pp(2), m, &grid, &x), 0.01);
    check("DPM-Solver++(3M)", &|m| sample(&DpmSolverMultistep::pp(3), m, &grid, &x), 0.01);
    check("DPM-Solver(3M)", &|m| sample(&DpmSolverMultistep::noise(3), m, &grid, &x), 0.01);
}

#[test]
fn progress_callback_sees_every_step() {
    let s = sched();
    let gm = GaussianMixture::example(2, 2, 0).unwrap();
    let grid = Grid::new(&s, &Spacing::Trailing, 6, End::Clean).unwrap();
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let mut seen = vec![];
    let out =
        sample_with(&DpmSolverMultistep::pp(2), &mut model, &grid, &noise(2, 2, 0), &mut SeededNoise::new(0), |p| {
            seen.push((p.step, p.count, p.t, p.sigma, p.nfe));
        })
        .unwrap();
    assert_eq!(seen.len(), 6);
    for (i, (step, count, t, sigma, nfe)) in seen.iter().enumerate() {
        assert_eq!((*step, *count, *nfe), (i + 1, 6, i + 1));
        assert_eq!(*t, grid.points()[i + 1].t);
        assert_eq!(*sigma, grid.points()[i + 1].sigma);
    }
    assert_eq!(seen[5].3, 0.0);
    assert_eq!(out.dims(), &[2, 2]);
}

#[test]
fn img2img_runs_the_last_steps_from_noised_data() {
    let s = sched();
    let gm = GaussianMixture::example(3, 2, 1).unwrap();
    let grid = Grid::new(&s, &Spacing::Leading { steps_offset: 1, skip_zero: false }, 50, End::Clean).unwrap();
    let sub = grid.img2img(0.3).unwrap();
    assert_eq!(sub.len(), 15);
    assert_eq!(sub.points(), &grid.points()[35..]);
    let x0 = Tensor::from_vec(gm.sample_data(64, 2), (64, 3), &Device::Cpu).unwrap();
    let mut distances = vec![];
    for strength in [0.1, 0.3, 0.6, 1.0] {
        let sub = grid.img2img(strength).unwrap();
        let start = add_noise(&x0, &noise(64, 3, 4), &sub.points()[0]).unwrap();
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        let out = sample(&DpmSolverMultistep::pp(2), &mut model, &sub, &start).unwrap();
        assert_eq!(model.nfe(), sub.len());
        distances.push(rms(&out, &x0));
    }
    println!("img2img RMSE to the input for strength 0.1/0.3/0.6/1.0: {distances:?}");
    // low strength keeps the result close to the input; strength 1 forgets it
    assert!(distances[0] < 0.25 && distances.windows(2).all(|w| w[0] < w[1]), "{distances:?}");
    assert_eq!(grid.img2img(1.0).unwrap(), grid);
}

/// Stochastic DDIM (eta = 1) is DDPM ancestral sampling: with many steps its samples follow the
/// data distribution, whose mean and variance the mixture gives exactly.
#[test]
fn ddim_eta_one_samples_the_data_distribution() {
    let s = sched();
    let gm = GaussianMixture::new(vec![vec![-0.5, 0.2], vec![0.6, -0.3]], vec![0.2, 0.3], vec![0.4, 0.6]).unwrap();
    // every training step: with fewer steps ancestral sampling under-disperses (the reverse
    // transition ignores the posterior variance of x0; Bao et al. 2022, arXiv:2201.06503)
    let n = 4000;
    let grid = Grid::new(&s, &Spacing::Leading { steps_offset: 0, skip_zero: false }, 1000, End::Clean).unwrap();
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let x =
        sample_with(&Ddim { eta: 1.0 }, &mut model, &grid, &noise(n, 2, 99), &mut SeededNoise::new(7), |_| {}).unwrap();
    let v = x.to_vec2::<f64>().unwrap();
    let (w, m, sd) = ([0.4, 0.6], [[-0.5, 0.2], [0.6, -0.3]], [0.2, 0.3]);
    for d in 0..2 {
        let mean_true: f64 = (0..2).map(|k| w[k] * m[k][d]).sum();
        let var_true: f64 =
            (0..2).map(|k| w[k] * (sd[k] * sd[k] + m[k][d] * m[k][d])).sum::<f64>() - mean_true * mean_true;
        let mean: f64 = v.iter().map(|r| r[d]).sum::<f64>() / n as f64;
        let var: f64 = v.iter().map(|r| (r[d] - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = (var_true / n as f64).sqrt();
        println!("dim {d}: mean {mean:.4} (true {mean_true:.4}, se {se:.4}), var {var:.4} (true {var_true:.4})");
        assert!((mean - mean_true).abs() < 4.0 * se);
        assert!((var / var_true - 1.0).abs() < 0.06);
    }
    // deterministic DDIM from the same noise is a different (but also valid) map
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let det = sample(&Ddim::default(), &mut model, &grid, &noise(n, 2, 99)).unwrap();
    assert!(rms(&det, &x) > 0.1);
}

#[test]
fn ddim_uses_the_supplied_noise_and_the_seed() {
    let s = sched();
    let gm = GaussianMixture::example(2, 2, 5).unwrap();
    let grid = Grid::new(&s, &Spacing::UniformTime, 10, End::Clean).unwrap();
    let x = noise(4, 2, 1);
    let run = |solver: Ddim, noise: &mut dyn NoiseSource| {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        sample_with(&solver, &mut model, &grid, &x, noise, |_| {}).unwrap()
    };
    let a = run(Ddim { eta: 0.7 }, &mut SeededNoise::new(1));
    let b = run(Ddim { eta: 0.7 }, &mut SeededNoise::new(1));
    let c = run(Ddim { eta: 0.7 }, &mut SeededNoise::new(2));
    assert_eq!(max_abs(&a, &b), 0.0);
    assert!(max_abs(&a, &c) > 1e-3);
    // zero injected noise: each step is alpha x0 + sqrt(sigma^2 - s^2) eps, checked by hand below
    let zero = run(Ddim { eta: 0.7 }, &mut |like: &Tensor| like.zeros_like());
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let mut y = x.clone();
    for st in grid.steps() {
        let (x0, eps) = model.data_and_noise(&y, &st.from).unwrap();
        let sd = 0.7 * st.to.sigma * (1.0 - (-2.0 * st.h()).exp()).sqrt();
        y = lincomb(&[(st.to.alpha, &x0), ((st.to.sigma.powi(2) - sd * sd).max(0.0).sqrt(), &eps)]).unwrap();
    }
    assert!(max_abs(&zero, &y) < 1e-12);
    assert!(max_abs(&zero, &run(Ddim::default(), &mut SeededNoise::new(0))) > 1e-3);
}

#[test]
fn heun_churn_is_seeded_and_stays_accurate_without_churn() {
    let s = Edm::default();
    let gm = GaussianMixture::example(2, 3, 5).unwrap();
    let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 36, End::Clean).unwrap();
    let x = (noise(64, 2, 3) * 80.0).unwrap();
    let run = |heun: Heun| {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Sample), &s, Prediction::Sample);
        let out = sample_with(&heun, &mut model, &grid, &x, &mut SeededNoise::new(3), |_| {}).unwrap();
        (out, model.nfe())
    };
    let churn = Heun { churn: Some(Churn { s_churn: 40.0, s_tmin: 0.05, s_tmax: 50.0, s_noise: 1.003 }) };
    let (a, nfe) = run(churn);
    let (b, _) = run(churn);
    assert_eq!(nfe, 71);
    assert_eq!(max_abs(&a, &b), 0.0);
    let (det, _) = run(Heun::default());
    assert!(max_abs(&a, &det) > 1e-3);
    // at equal NFE (71) Heun beats Euler clearly on this 2-D mixture with narrow components
    let exact = gm.exact_endpoint(&x, &grid.points()[0], &grid.points()[36]).unwrap();
    let euler_grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 71, End::Clean).unwrap();
    let mut model = Model::new(gm.denoiser(&s, Prediction::Sample), &s, Prediction::Sample);
    let euler = sample(&Euler, &mut model, &euler_grid, &x).unwrap();
    let (e_heun, e_euler) = (rms(&det, &exact), rms(&euler, &exact));
    println!("EDM, 71 NFE: Heun RMSE vs exact {e_heun:.2e}, Euler {e_euler:.2e}");
    assert!(e_heun < e_euler / 2.0);
}

#[test]
fn model_runs_in_half_precision_while_the_state_stays_f32() {
    let s = sched();
    let gm = GaussianMixture::example(4, 3, 6).unwrap();
    let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean).unwrap();
    let x = noise(8, 4, 6).to_dtype(DType::F32).unwrap();
    let mut seen = vec![];
    let mut inner = gm.denoiser(&s, Prediction::Epsilon);
    let den = |x: &Tensor, t: f64| {
        seen.push(x.dtype());
        inner(x, t)
    };
    let mut model = Model::new(den, &s, Prediction::Epsilon).with_model_dtype(DType::BF16);
    let half = sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &x).unwrap();
    drop(model);
    assert!(seen.iter().all(|d| *d == DType::BF16));
    assert_eq!(half.dtype(), DType::F32);
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let full = sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &x).unwrap();
    let err = max_abs(&half, &full);
    println!("bf16 network vs f32 network, DPM-Solver++(2M) 10 steps: max diff {err:.2e}");
    assert!(err > 0.0 && err < 0.05);
}

#[test]
fn classifier_free_guidance_combines_and_rescales() {
    // uncond predicts x, cond predicts 2x + 1: guided = x + s (x + 1)
    let inner = |x: &Tensor, _t: f64| -> candle_core::Result<Tensor> {
        let b = x.dim(0)? / 2;
        let half = x.narrow(0, 0, b)?;
        Tensor::cat(&[half.clone(), half.affine(2.0, 1.0)?], 0)
    };
    let x = noise(3, 5, 2);
    let mut cfg = ClassifierFreeGuidance { denoiser: inner, scale: 4.0, rescale: 0.0 };
    let out = cfg.denoise(&x, 10.0).unwrap();
    let expected = x.affine(5.0, 4.0).unwrap();
    assert!(max_abs(&out, &expected) < 1e-12);
    // full rescale gives each sample the conditional prediction's standard deviation
    let mut cfg = ClassifierFreeGuidance { denoiser: inner, scale: 4.0, rescale: 1.0 };
    let out = cfg.denoise(&x, 10.0).unwrap();
    let cond = x.affine(2.0, 1.0).unwrap();
    for i in 0..3 {
        let sd = |t: &Tensor| t.get(i).unwrap().var_keepdim(0).unwrap().sqrt().unwrap().to_vec1::<f64>().unwrap()[0];
        assert!((sd(&out) - sd(&cond)).abs() < 1e-12);
    }
}

#[test]
fn dynamic_thresholding_matches_its_definition() {
    let s = sched();
    // a network predicting x0 = x, on two samples with different spreads
    let x = Tensor::new(&[[0.1f64, -0.2, 0.3, 0.05], [3.0, -1.0, 2.0, 0.5]], &Device::Cpu).unwrap();
    let t = DynamicThresholding { ratio: 0.75, max_value: 2.5 };
    let mut model = Model::new(|x: &Tensor, _t: f64| Ok(x.clone()), &s, Prediction::Sample)
        .with_data_transform(DataTransform::DynamicThreshold(t))
        .unwrap();
    let out = model.data(&x, &s.point(10.0)).unwrap().to_vec2::<f64>().unwrap();
    // sample 0: |x| quantile 0.75 of [0.05, 0.1, 0.2, 0.3] at position 2.25 = 0.225 -> clamped to 1
    assert_eq!(out[0], vec![0.1, -0.2, 0.3, 0.05]);
    // sample 1: quantile of [0.5, 1, 2, 3] at 2.25 = 2.25 -> s = 2.25; clip then divide
    let s1 = 2.25;
    let expected: Vec<f64> = [3.0f64, -1.0, 2.0, 0.5].iter().map(|v| v.clamp(-s1, s1) / s1).collect();
    for (a, b) in out[1].iter().zip(&expected) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    let mut clip = Model::new(|x: &Tensor, _t: f64| Ok(x.clone()), &s, Prediction::Sample)
        .with_data_transform(DataTransform::Clip { range: 1.0 })
        .unwrap();
    let c = clip.data(&x, &s.point(10.0)).unwrap().to_vec2::<f64>().unwrap();
    assert_eq!(c[1], vec![1.0, -1.0, 1.0, 0.5]);
}

#[test]
fn prediction_types_agree_on_the_exact_denoiser() {
    // the same exact denoiser expressed as eps, x0, v or flow velocity samples to the same result
    let schedules: Vec<Box<dyn Scheduler>> =
        vec![Box::new(sched()), Box::new(RectifiedFlow { shift: 2.0, ..Default::default() }), Box::new(Edm::default())];
    for s in &schedules {
        let s = s.as_ref();
        let gm = GaussianMixture::example(3, 3, 8).unwrap();
        let grid = Grid::new(s, &Spacing::UniformTime, 12, End::Clean).unwrap();
        let x = noise(6, 3, 3);
        let run = |p: Prediction| {
            let mut model = Model::new(gm.denoiser(s, p), s, p);
            sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &x).unwrap()
        };
        let base = run(Prediction::Sample);
        let preds: &[Prediction] = if grid.points()[0].alpha == 0.0 {
            &[Prediction::VPrediction, Prediction::Flow]
        } else {
            &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Flow]
        };
        for &p in preds {
            let d = max_abs(&run(p), &base);
            assert!(d < 1e-9, "{s:?} {p:?}: {d}");
        }
    }
}

#[test]
fn linear_forms_equal_the_materialised_predictions() {
    let s = sched();
    let gm = GaussianMixture::example(3, 2, 4).unwrap();
    let x = noise(5, 3, 8);
    let p = s.point(420.0);
    for pred in [Prediction::Epsilon, Prediction::Sample, Prediction::VPrediction, Prediction::Flow] {
        for transform in [DataTransform::None, DataTransform::Clip { range: 0.3 }] {
            let mut model = Model::new(gm.denoiser(&s, pred), &s, pred).with_data_transform(transform).unwrap();
            let (x0, eps) = model.data_and_noise(&x, &p).unwrap();
            let (lx0, leps) = model.data_and_noise_linear(&x, &p).unwrap();
            let d = model.data_linear(&x, &p).unwrap();
            assert_eq!(model.nfe(), 3);
            assert!(max_abs(&lx0.materialize(&x).unwrap(), &x0) < 1e-15, "{pred:?} {transform:?}");
            assert!(max_abs(&leps.materialize(&x).unwrap(), &eps) < 1e-15, "{pred:?} {transform:?}");
            assert!(max_abs(&d.materialize(&x).unwrap(), &x0) < 1e-15, "{pred:?} {transform:?}");
        }
    }
}
