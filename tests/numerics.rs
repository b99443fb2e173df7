//! The shared numerics: phi functions and exponential-integrator weights at tiny h, huge h and
//! h = +inf; schedule inverses; the Gaussian mixture's exact endpoint.

mod common;

use diffusion_samplers::math::expint::{weights, Form};
use diffusion_samplers::math::phi::{phi, tail};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;

/// phi_k by its integral definition, `int_0^1 e^{(1-s) z} s^{k-1}/(k-1)! ds`, with Gauss-Legendre
/// on many panels: independent of the series/recurrence used in the crate.
fn phi_quadrature(k: usize, z: f64) -> f64 {
    let nodes = [
        (-0.906_179_845_938_664, 0.236_926_885_056_189),
        (-0.538_469_310_105_683, 0.478_628_670_499_366),
        (0.0, 0.568_888_888_888_889),
        (0.538_469_310_105_683, 0.478_628_670_499_366),
        (0.906_179_845_938_664, 0.236_926_885_056_189),
    ];
    let fact: f64 = (1..k).map(|i| i as f64).product();
    let panels = 400;
    let mut sum = 0.0;
    for p in 0..panels {
        let (a, b) = (p as f64 / panels as f64, (p + 1) as f64 / panels as f64);
        for (x, w) in nodes {
            let s = 0.5 * (a + b) + 0.5 * (b - a) * x;
            sum += 0.5 * (b - a) * w * ((1.0 - s) * z).exp() * s.powi(k as i32 - 1) / fact;
        }
    }
    sum
}

#[test]
fn phi_functions_match_their_integral_definition() {
    for k in 1..=4 {
        for z in [-30.0, -5.0, -1.0, -0.5, -0.3, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.3, 0.5, 1.0, 4.0] {
            let (a, b) = (phi(k, z), phi_quadrature(k, z));
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-300), "phi_{k}({z}) = {a}, quadrature {b}");
        }
        assert_eq!(phi(k, f64::NEG_INFINITY), 0.0);
        assert_eq!(phi(k, f64::INFINITY), f64::INFINITY);
    }
}

#[test]
fn tail_weights_are_stable_at_tiny_and_infinite_h() {
    for k in 0..=2 {
        let fact: f64 = (1..=k).map(|i| i as f64).product();
        // tiny h: tail = h phi_{k+1}(-h) ~ h / (k+1)!, no cancellation
        for h in [1e-15, 1e-10, 1e-6] {
            let expected = h * phi_quadrature(k + 1, -h);
            assert!((tail(k, h) - expected).abs() <= 1e-12 * expected, "tail({k}, {h})");
        }
        // huge and infinite h: the limit 1/k!
        assert!((tail(k, 50.0) - 1.0 / fact).abs() < 0.05 / fact);
        assert_eq!(tail(k, f64::INFINITY), 1.0 / fact);
        // continuity across the series/closed-form switch
        let (below, above) = (tail(k, 0.5 - 1e-12), tail(k, 0.5 + 1e-12));
        assert!((below - above).abs() < 1e-11);
    }
}

#[test]
fn exponential_integrator_weights_at_the_ends() {
    let from = Point::new(0.0, 0.8, 0.6);
    // into sigma = 0 the data form returns the data prediction, the noise form DDIM's limit
    let clean = Point::clean(-1.0);
    let d = weights(Form::Data, &from, &clean);
    assert_eq!(d.c_x, 0.0);
    assert_eq!(d.c, [1.0, 1.0, 0.5]);
    let n = weights(Form::Noise, &from, &clean);
    assert_eq!(n.c_x, 1.0 / 0.8);
    assert!((n.c[0] + 0.6 / 0.8).abs() < 1e-15);
    // a tiny step is nearly the identity and its weights are finite and accurate
    let (a2, s2) = (0.8f64 + 1e-9, (1.0 - (0.8f64 + 1e-9).powi(2)).sqrt());
    let to = Point::new(0.0, a2, s2);
    let h = to.lambda - from.lambda;
    let d = weights(Form::Data, &from, &to);
    assert!((d.c[0] - a2 * (-(-h).exp_m1())).abs() < 1e-24);
    assert!((d.c[1] - a2 * h * (0.5 - h / 6.0)).abs() < 1e-15 * h);
    let n = weights(Form::Noise, &from, &to);
    assert!((n.c[0] + s2 * h.exp_m1()).abs() < 1e-24);
    // from alpha = 0 (pure noise) the data form is finite
    let start = Point::new(1.0, 0.0, 1.0);
    let w = weights(Form::Data, &start, &Point::new(0.5, 0.5, 0.5));
    assert!(w.c_x.is_finite() && w.c.iter().all(|c| c.is_finite()));
    assert_eq!(w.c[0], 0.5);
}

#[test]
fn schedules_invert_lambda_and_model_time() {
    let schedules: Vec<Box<dyn Scheduler>> = vec![
        Box::new(DiscreteVp::linear(1e-4, 0.02, 1000).unwrap()),
        Box::new(DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap()),
        Box::new(DiscreteVp::new(BetaSchedule::SquaredCosCapV2 { max_beta: 0.999 }, 1000).unwrap()),
        Box::new(ContinuousVp::default()),
        Box::new(Edm { model_time: EdmModelTime::QuarterLogSigma, ..Default::default() }),
        Box::new(RectifiedFlow { shift: 3.0, ..Default::default() }),
    ];
    for s in &schedules {
        let (t0, t1) = s.t_range();
        for i in 0..=20 {
            let t = t0 + (t1 - t0) * (0.02 + 0.96 * i as f64 / 20.0);
            let p = s.point(t);
            assert!((s.t_of_lambda(p.lambda) - t).abs() < 1e-9 * t1.max(1.0), "{s:?} t = {t}");
            assert!((s.t_of_model_time(s.model_time(t)) - t).abs() < 1e-9 * t1.max(1.0));
            assert!(p.alpha > 0.0 && p.sigma > 0.0);
        }
        // lambda decreases with t
        let (pa, pb) = (s.point(t0 + 0.1 * (t1 - t0)), s.point(t0 + 0.9 * (t1 - t0)));
        assert!(pa.lambda > pb.lambda, "{s:?}");
        assert!(s.clean_point().is_clean());
    }
}

#[test]
fn discrete_vp_interpolates_log_sigma_and_rescales_to_zero_snr() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    let (a, b) = (s.point(500.0), s.point(501.0));
    let mid = s.point(500.25);
    let expected = 0.75 * a.ksigma().ln() + 0.25 * b.ksigma().ln();
    assert!((mid.ksigma().ln() - expected).abs() < 1e-13);
    let z = s.clone().rescale_zero_terminal_snr().unwrap();
    let ac = z.alphas_cumprod();
    assert_eq!(ac[999], 0.0);
    assert!((ac[0] - s.alphas_cumprod()[0]).abs() < 1e-15);
    assert_eq!(z.point(999.0).alpha, 0.0);
    assert_eq!(z.point(999.0).lambda, f64::NEG_INFINITY);
    // a trailing grid from alpha = 0 samples a v-prediction model
    let gm = GaussianMixture::example(3, 2, 0).unwrap();
    let x = common::noise(4, 3, 0);
    let mut errors = vec![];
    for n in [20, 80] {
        let grid = Grid::new(&z, &Spacing::Trailing, n, End::Clean).unwrap();
        assert_eq!(grid.points()[0].alpha, 0.0);
        let mut model = Model::new(gm.denoiser(&z, Prediction::VPrediction), &z, Prediction::VPrediction);
        let out = sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &x).unwrap();
        let exact = gm.exact_endpoint(&x, &grid.points()[0], &grid.points()[n]).unwrap();
        errors.push(common::rms(&out, &exact));
    }
    println!("zero-SNR trailing, DPM-Solver++(2M) from alpha = 0: RMSE at 20 / 80 steps {errors:?}");
    // measured 0.050 -> 0.0037: second order once the steps resolve the low-noise end
    assert!(errors[1] < 0.15 * errors[0] && errors[1] < 0.01, "{errors:?}");
}

#[test]
fn exact_endpoint_is_consistent_and_reversible() {
    let gm = GaussianMixture::example(3, 3, 1).unwrap();
    let s = ContinuousVp::default();
    let x = common::noise(5, 3, 2);
    let (p0, p1, p2) = (s.point(1.0), s.point(0.4), s.point(1e-3));
    let direct = gm.exact_endpoint(&x, &p0, &p2).unwrap();
    let two_legs = gm.exact_endpoint(&gm.exact_endpoint(&x, &p0, &p1).unwrap(), &p1, &p2).unwrap();
    assert!(common::max_abs(&direct, &two_legs) < 1e-9);
    let back = gm.exact_endpoint(&direct, &p2, &p0).unwrap();
    assert!(common::max_abs(&back, &x) < 1e-8);
    // a very fine DPM-Solver++(3M) run agrees with it
    let grid = Grid::new(&s, &Spacing::UniformLambda, 400, End::Min).unwrap();
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let fine = sample(&DpmSolverMultistep::pp(3), &mut model, &grid, &x).unwrap();
    assert!(common::max_abs(&fine, &direct) < 1e-6);
}
