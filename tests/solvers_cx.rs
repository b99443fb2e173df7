//! ComfyUI's own samplers (group CX) against a second formulation of their update formulas.
//!
//! None of them is in k-diffusion 0.1.1.post1 (the installable reference), so each is checked
//! against its paper's update written independently here: in k-diffusion's variables (the
//! scaled sample `y = x / alpha` against the noise level `s = sigma / alpha`, per element, in
//! plain f64), with the closed-form denoiser of Gaussian data `N(mu, s0^2)`,
//! `D(y, s) = mu + s0^2 / (s0^2 + s^2) (y - mu)`, and the same noise draws. The crate runs the
//! same problem through its own pieces (variance-preserving `x`, `lincomb`, the Gaussian-mixture
//! denoiser behind a `Model`, `TensorNoise`), so agreement to rounding checks both the formulas
//! and the plumbing (noise order and count included). CFG++ samplers get a guided network whose
//! conditional and unconditional halves are different Gaussians. Orders are measured in
//! `tests/solvers_cx_orders.rs`, weak errors in `tests/solvers_cx_sde.rs`.

mod common;

use candle_core::{Device, Tensor};
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;

/// Unconditional data `N(MU, S0^2)`, conditional `N(MU_C, S0_C^2)`, guidance scale `W`.
const MU: f64 = 0.3;
const S0: f64 = 0.5;
const MU_C: f64 = -0.4;
const S0_C: f64 = 0.35;
const W: f64 = 2.5;
const ROWS: usize = 5;
const TOL: f64 = 1e-9;

fn schedule() -> DiscreteVp {
    DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap()
}

fn d_gauss(y: f64, s: f64, mu: f64, s0: f64) -> f64 {
    mu + s0 * s0 / (s0 * s0 + s * s) * (y - mu)
}

/// The unconditional denoiser in k-diffusion's variables.
fn du(y: f64, s: f64) -> f64 {
    d_gauss(y, s, MU, S0)
}

/// The guided denoiser `u + W (c - u)`.
fn dg(y: f64, s: f64) -> f64 {
    let u = du(y, s);
    u + W * (d_gauss(y, s, MU_C, S0_C) - u)
}

/// Karras noise levels of ComfyUI's `karras` scheduler on the schedule's table, then 0.
fn karras(n: usize) -> Grid {
    Grid::new(&schedule(), &Spacing::Karras { rho: 7.0 }, n, End::Clean).unwrap()
}

fn sigmas(steps: &[Step]) -> Vec<f64> {
    let mut v: Vec<f64> = steps.iter().map(|st| st.from.ksigma()).collect();
    v.push(steps[steps.len() - 1].to.ksigma());
    v
}

/// Starts in `y` at the first noise level and a bank of noise draws `[draw][row]`.
fn inputs(s_max: f64) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut rng = SeededNoise::new(42);
    let y0 = rng.normal_vec(ROWS).into_iter().map(|z| MU + z * (S0 * S0 + s_max * s_max).sqrt()).collect();
    let bank = (0..400).map(|_| rng.normal_vec(ROWS)).collect();
    (y0, bank)
}

fn column(v: &[f64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), (v.len(), 1), &Device::Cpu).unwrap()
}

/// Run `solver` over `steps` on the Gaussian problem from `y0` with the noise `bank`: returns the
/// final `y = x / alpha` per row and the number of draws taken.
fn run_crate<S: Solver + ?Sized>(
    solver: &S,
    steps: &[Step],
    guided: bool,
    y0: &[f64],
    bank: &[Vec<f64>],
) -> (Vec<f64>, usize) {
    let s = schedule();
    let gu = GaussianMixture::new(vec![vec![MU]], vec![S0], vec![1.0]).unwrap();
    let gc = GaussianMixture::new(vec![vec![MU_C]], vec![S0_C], vec![1.0]).unwrap();
    let mut model = if guided {
        // the network of a guided model: unconditional half first, conditional half second
        let (mut u, mut c) = (gu.denoiser(&s, Prediction::Epsilon), gc.denoiser(&s, Prediction::Epsilon));
        let pair = move |x: &Tensor, t: f64| {
            let b = x.dim(0)? / 2;
            Tensor::cat(&[u(&x.narrow(0, 0, b)?, t)?, c(&x.narrow(0, b, b)?, t)?], 0)
        };
        Model::new(ClassifierFreeGuidance { denoiser: pair, scale: W, rescale: 0.0 }, &s, Prediction::Epsilon)
    } else {
        Model::new(gu.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon)
    };
    let start = steps[0].from;
    let x: Vec<f64> = y0.iter().map(|y| y * start.alpha).collect();
    let mut noise = TensorNoise::new(bank.iter().map(|z| column(z)));
    let out = sample_with(solver, &mut model, steps, &column(&x), &mut noise, |_| {}).unwrap();
    let end = steps[steps.len() - 1].to;
    let y = out.flatten_all().unwrap().to_vec1::<f64>().unwrap().into_iter().map(|v| v / end.alpha).collect();
    (y, bank.len() - noise.remaining())
}

/// A reference sampler: `(y0, sigmas, next noise) -> y_end` for one row.
type Reference<'a> = &'a dyn Fn(f64, &[f64], &mut dyn FnMut() -> f64) -> f64;

/// The reference run row by row with the same draws; returns the rows and the draws per row.
fn run_reference(reference: Reference, sig: &[f64], y0: &[f64], bank: &[Vec<f64>]) -> (Vec<f64>, usize) {
    let mut draws = 0;
    let ys = (0..y0.len())
        .map(|row| {
            let mut k = 0;
            let y = reference(y0[row], sig, &mut || {
                k += 1;
                bank[k - 1][row]
            });
            draws = k;
            y
        })
        .collect();
    (ys, draws)
}

/// The crate and the reference agree to `tol` and take the same number of draws.
fn check<S: Solver + ?Sized>(label: &str, solver: &S, steps: &[Step], guided: bool, reference: Reference, tol: f64) {
    let sig = sigmas(steps);
    let (y0, bank) = inputs(sig[0]);
    let (got, n_got) = run_crate(solver, steps, guided, &y0, &bank);
    let (want, n_want) = run_reference(reference, &sig, &y0, &bank);
    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("{label:<34} max |crate - reference| = {err:.2e}, {n_got} draws");
    assert!(err <= tol, "{label}: {err:e} (crate {got:?}, reference {want:?})");
    assert_eq!(n_got, n_want, "{label}: noise draws");
    assert!(got.iter().all(|v| v.is_finite()));
}

/// k-diffusion's `get_ancestral_step`.
fn split(s: f64, sn: f64, eta: f64) -> (f64, f64) {
    if eta == 0.0 || sn == 0.0 {
        return (sn, 0.0);
    }
    let su = sn.min(eta * (sn * sn * (s * s - sn * sn) / (s * s)).sqrt());
    ((sn * sn - su * su).sqrt(), su)
}

fn alpha(s: f64) -> f64 {
    1.0 / (1.0 + s * s).sqrt()
}

/// `int_a^b f` by composite Simpson with `n` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    let mut sum = f(a) + f(b);
    for i in 1..n {
        sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(a + i as f64 * h);
    }
    sum * h / 3.0
}

/// The Lagrange basis polynomial `j` of `nodes` at `x`.
fn basis(nodes: &[f64], j: usize, x: f64) -> f64 {
    (0..nodes.len()).filter(|&k| k != j).map(|k| (x - nodes[k]) / (nodes[j] - nodes[k])).product()
}

// ---------------------------------------------------------------------------------------------
// CFG++

#[test]
fn euler_cfg_pp_is_ddim_renoised_with_the_unconditional_noise() {
    // Chung et al. 2024, Algorithm 1 (CFG++ DDIM): x_next = alpha_n x0_guided + sigma_n eps_uncond
    let reference = |y: f64, sig: &[f64], _: &mut dyn FnMut() -> f64| {
        let mut y = y;
        for w in sig.windows(2) {
            let (s, sn) = (w[0], w[1]);
            let (a, an) = (alpha(s), alpha(sn));
            let x = a * y;
            let eps_u = (x - a * du(y, s)) / (a * s);
            let x_next = an * dg(y, s) + an * sn * eps_u;
            y = x_next / an;
        }
        y
    };
    check(
        "euler_cfg_pp",
        &EulerAncestral { eta: 0.0, ..EulerAncestral::cfg_pp() },
        karras(12).as_ref(),
        true,
        &reference,
        TOL,
    );
}

#[test]
fn euler_ancestral_cfg_pp_splits_the_step_as_k_diffusion() {
    let reference = |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
        let mut y = y;
        for w in sig.windows(2) {
            let (s, sn) = (w[0], w[1]);
            let (d, u) = (dg(y, s), du(y, s));
            if sn == 0.0 {
                y = d;
            } else {
                let (sd, su) = split(s, sn, 1.0);
                y = d + sd * (y - u) / s + su * z();
            }
        }
        y
    };
    check("euler_ancestral_cfg_pp", &EulerAncestral::cfg_pp(), karras(12).as_ref(), true, &reference, TOL);
    let half = EulerAncestral { eta: 0.5, s_noise: 0.8, guidance: Guidance::CfgPp };
    let reference = |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
        let mut y = y;
        for w in sig.windows(2) {
            let (s, sn) = (w[0], w[1]);
            let (d, u) = (dg(y, s), du(y, s));
            let (sd, su) = split(s, sn, 0.5);
            y = if sn == 0.0 { d } else { d + sd * (y - u) / s + 0.8 * su * z() };
        }
        y
    };
    check("euler_ancestral_cfg_pp eta 0.5", &half, karras(9).as_ref(), true, &reference, TOL);
}

#[test]
fn dpmpp_2m_cfg_pp_second_formulation() {
    let reference = |y: f64, sig: &[f64], _: &mut dyn FnMut() -> f64| {
        let mut y = y;
        let mut u_old: Option<f64> = None;
        for i in 0..sig.len() - 1 {
            let (s, sn) = (sig[i], sig[i + 1]);
            let (d, u) = (dg(y, s), du(y, s));
            let h = -sn.ln() + s.ln();
            let mix = match u_old {
                Some(uo) if sn > 0.0 => {
                    let r = (sig[i - 1].ln() - s.ln()) / h;
                    -(-h).exp() * u - (-h).exp_m1() / (2.0 * r) * (d - uo)
                }
                _ => -(-h).exp() * u,
            };
            y = d + mix + (-h).exp() * y;
            u_old = Some(u);
        }
        y
    };
    check("dpmpp_2m_cfg_pp", &DpmPP2mCfgPp, karras(12).as_ref(), true, &reference, TOL);
}

#[test]
fn dpmpp_2s_ancestral_cfg_pp_second_formulation() {
    // eta = 1.5 takes ComfyUI's Euler branch (s_down = 0) on the large steps
    for eta in [1.0, 0.0, 1.5] {
        let reference = |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
            let mut y = y;
            for w in sig.windows(2) {
                let (s, sn) = (w[0], w[1]);
                let (d, u) = (dg(y, s), du(y, s));
                let (sd, su) = split(s, sn, eta);
                if sd == 0.0 {
                    y = u;
                } else {
                    let (t, tn) = (-s.ln(), -sd.ln());
                    let h = tn - t;
                    let sm = (-(t + h / 2.0)).exp();
                    let y2 = sm / s * y - (-h / 2.0).exp_m1() * u;
                    let u2 = du(y2, sm);
                    y = sd / s * y - (-h).exp_m1() * u2;
                }
                if sn > 0.0 && eta > 0.0 {
                    y += su * z();
                }
                y += d - u;
            }
            y
        };
        let solver = DpmPp2sAncestral { eta, ..DpmPp2sAncestral::cfg_pp() };
        check(&format!("dpmpp_2s_ancestral_cfg_pp eta {eta}"), &solver, karras(10).as_ref(), true, &reference, TOL);
    }
}

#[test]
fn cfg_pp_samplers_refuse_unguided_models_with_a_message() {
    let s = schedule();
    let grid = karras(4);
    let gm = GaussianMixture::new(vec![vec![MU]], vec![S0], vec![1.0]).unwrap();
    for name in [
        "euler_cfg_pp",
        "euler_ancestral_cfg_pp",
        "dpmpp_2m_cfg_pp",
        "dpmpp_2s_ancestral_cfg_pp",
        "res_multistep_cfg_pp",
        "gradient_estimation_cfg_pp",
    ] {
        let solver: AnySolver = name.parse().unwrap();
        assert!(solver.needs_unconditional(), "{name}");
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        let err = sample(&solver, &mut model, &grid, &column(&[0.1, 0.2])).unwrap_err();
        assert!(matches!(err.root(), Error::Unsupported(_)), "{name}: {err}");
        assert!(err.to_string().contains("ClassifierFreeGuidance"), "{name}: {err}");
        assert_eq!(model.nfe(), 0, "{name}: refused before any evaluation");
    }
    // the model-level call says the same
    let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
    let err = model.data_and_unconditional(&column(&[0.1]), &grid.points()[0]).unwrap_err();
    assert!(err.to_string().contains("ClassifierFreeGuidance"), "{err}");
}

#[test]
fn cfg_pp_samplers_without_guidance_are_their_base_samplers() {
    // with both halves equal (x0 = x0_uncond) CFG++ is the sampler it modifies
    let grid = karras(10);
    let (y0, bank) = inputs(grid.points()[0].ksigma());
    let pairs: Vec<(AnySolver, AnySolver)> = vec![
        (AnySolver::new(EulerAncestral { eta: 0.0, ..EulerAncestral::cfg_pp() }), AnySolver::new(Euler)),
        (AnySolver::new(EulerAncestral::cfg_pp()), AnySolver::new(EulerAncestral::default())),
        (AnySolver::new(DpmPP2mCfgPp), AnySolver::new(DpmSolverMultistep::pp(2))),
        (
            AnySolver::new(ResMultistep { guidance: Guidance::CfgPp, ..Default::default() }),
            AnySolver::new(ResMultistep::default()),
        ),
        (
            AnySolver::new(GradientEstimation { guidance: Guidance::CfgPp, ..Default::default() }),
            AnySolver::new(GradientEstimation::default()),
        ),
        (
            AnySolver::new(DpmPp2sAncestral { eta: 0.0, ..DpmPp2sAncestral::cfg_pp() }),
            AnySolver::new(Seeds { eta: 0.0, ..Seeds::two() }),
        ),
        (AnySolver::new(DpmPp2sAncestral::cfg_pp()), AnySolver::new(DpmPp2sAncestral::default())),
        (
            AnySolver::new(DpmPp2sAncestral { eta: 1.5, ..DpmPp2sAncestral::cfg_pp() }),
            AnySolver::new(DpmPp2sAncestral { eta: 1.5, ..DpmPp2sAncestral::default() }),
        ),
    ];
    for (cfg_pp, base) in pairs {
        // a guided run with equal halves: the denoiser of `run_crate` with W = 0 is the
        // unconditional one, so compare against the base on the unconditional model
        let s = schedule();
        let gu = GaussianMixture::new(vec![vec![MU]], vec![S0], vec![1.0]).unwrap();
        let mut guided = Model::new(
            ClassifierFreeGuidance { denoiser: gu.denoiser(&s, Prediction::Epsilon), scale: W, rescale: 0.0 },
            &s,
            Prediction::Epsilon,
        );
        let x = column(&y0.iter().map(|y| y * grid.points()[0].alpha).collect::<Vec<_>>());
        let mut n1 = TensorNoise::new(bank.iter().map(|z| column(z)));
        let a = sample_with(&cfg_pp, &mut guided, &grid, &x, &mut n1, |_| {}).unwrap();
        let (b, _) = run_crate(&base, grid.as_ref(), false, &y0, &bank);
        let a: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
        let err = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "{cfg_pp} vs {base}: {err:e}");
    }
}

// ---------------------------------------------------------------------------------------------
// RES multistep, gradient estimation

/// ComfyUI's `res_multistep` written with the paper's phi functions.
fn res_reference(eta: f64, cfg: bool) -> impl Fn(f64, &[f64], &mut dyn FnMut() -> f64) -> f64 {
    move |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
        let phi1 = |t: f64| t.exp_m1() / t;
        let phi2 = |t: f64| (phi1(t) - 1.0) / t;
        let den = |y: f64, s: f64| if cfg { (dg(y, s), du(y, s)) } else { (du(y, s), du(y, s)) };
        let mut y = y;
        let mut old: Option<(f64, f64)> = None; // (x0, sigma_down) of the previous step
        for i in 0..sig.len() - 1 {
            let (s, sn) = (sig[i], sig[i + 1]);
            let (d, u) = den(y, s);
            let (sd, su) = split(s, sn, eta);
            match old {
                Some((x0_old, sd_old)) if sd > 0.0 => {
                    let (t, t_old, t_next, t_prev) = (-s.ln(), -sd_old.ln(), -sd.ln(), -sig[i - 1].ln());
                    let h = t_next - t;
                    let c2 = (t_prev - t_old) / h;
                    let (b1, b2) = (phi1(-h) - phi2(-h) / c2, phi2(-h) / c2);
                    if cfg {
                        y += d - u;
                        y = (-h).exp() * y + h * (b1 * u + b2 * x0_old);
                    } else {
                        y = (-h).exp() * y + h * (b1 * d + b2 * x0_old);
                    }
                }
                _ => {
                    y = if cfg { d + (y - u) / s * sd } else { y + (y - d) / s * (sd - s) };
                }
            }
            if sn > 0.0 && eta > 0.0 {
                y += su * z();
            }
            old = Some((if cfg { u } else { d }, sd));
        }
        y
    }
}

#[test]
fn res_multistep_family_second_formulation() {
    let grid = karras(12);
    check("res_multistep", &ResMultistep::default(), grid.as_ref(), false, &res_reference(0.0, false), TOL);
    let cfg = ResMultistep { guidance: Guidance::CfgPp, ..Default::default() };
    check("res_multistep_cfg_pp", &cfg, grid.as_ref(), true, &res_reference(0.0, true), TOL);
    check("res_multistep_ancestral", &ResMultistep::ancestral(), grid.as_ref(), false, &res_reference(1.0, false), TOL);
    let cfg_a = ResMultistep { guidance: Guidance::CfgPp, ..ResMultistep::ancestral() };
    check("res_multistep_ancestral_cfg_pp", &cfg_a, grid.as_ref(), true, &res_reference(1.0, true), TOL);
}

#[test]
fn res_multistep_is_dpm_solver_pp_2m_with_the_exact_second_order_weight() {
    // RES's phi_2 weight is DPM-Solver++(2M)'s `solver_type = "heun"` (diffusers), to rounding
    let grid = karras(15);
    let (y0, bank) = inputs(grid.points()[0].ksigma());
    let (a, _) = run_crate(&ResMultistep::default(), grid.as_ref(), false, &y0, &bank);
    let heun = DpmSolverMultistep { solver_type: SolverType::Heun, ..DpmSolverMultistep::pp(2) };
    let (b, _) = run_crate(&heun, grid.as_ref(), false, &y0, &bank);
    let err = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-13, "{err:e}");
}

#[test]
fn gradient_estimation_second_formulation() {
    for (cfg, gamma) in [(false, 2.0), (true, 2.0), (false, 1.6)] {
        let reference = |y: f64, sig: &[f64], _: &mut dyn FnMut() -> f64| {
            // Permenter & Yuan, Algorithm 2: eps_bar = gamma eps + (1 - gamma) eps_prev
            let mut y = y;
            let mut eps_prev: Option<f64> = None;
            for w in sig.windows(2) {
                let (s, sn) = (w[0], w[1]);
                let (d, u) = if cfg { (dg(y, s), du(y, s)) } else { (du(y, s), du(y, s)) };
                let eps = (y - u) / s;
                if sn == 0.0 {
                    y = d;
                } else {
                    let eps_bar = eps_prev.map_or(eps, |e| gamma * eps + (1.0 - gamma) * e);
                    y = if cfg { d + eps * sn + (eps_bar - eps) * (sn - s) } else { y + eps_bar * (sn - s) };
                }
                eps_prev = Some(eps);
            }
            y
        };
        let guidance = if cfg { Guidance::CfgPp } else { Guidance::Standard };
        check(
            &format!("gradient_estimation cfg {cfg} gamma {gamma}"),
            &GradientEstimation { gamma, guidance },
            karras(12).as_ref(),
            cfg,
            &reference,
            TOL,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ER-SDE, SEEDS, SA-Solver

#[test]
fn er_sde_second_formulation() {
    for (scaler, stages) in [(NoiseScaler::ErSde, 3), (NoiseScaler::ErSde, 2), (NoiseScaler::Ode, 3)] {
        let phi = |l: f64| match scaler {
            NoiseScaler::ErSde => l * (l.powf(0.3).exp() + 10.0),
            NoiseScaler::Ode => l,
        };
        let reference = |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
            // Cui et al. Eq. 19 with x0', x0'' by divided differences; integrals by ComfyUI's
            // 200-point left Riemann sums
            let mut y = y;
            let (mut d_prev, mut dd_prev): (Option<f64>, Option<f64>) = (None, None);
            for i in 0..sig.len() - 1 {
                let (ls, lt) = (sig[i], sig[i + 1]);
                let d = du(y, ls);
                if lt == 0.0 {
                    y = d;
                    break;
                }
                let r = phi(lt) / phi(ls);
                let mut ynew = r * y + (1.0 - r) * d;
                if let (true, Some(dp)) = (stages >= 2, d_prev) {
                    let dl = lt - ls;
                    let width = -dl / 200.0;
                    let s1: f64 = (0..200).map(|k| 1.0 / phi(lt + k as f64 * width)).sum::<f64>() * width;
                    let dd = (d - dp) / (ls - sig[i - 1]);
                    ynew += (dl + s1 * phi(lt)) * dd;
                    if let (true, Some(ddp)) = (stages >= 3, dd_prev) {
                        let s2: f64 =
                            (0..200).map(|k| (lt + k as f64 * width - ls) / phi(lt + k as f64 * width)).sum::<f64>()
                                * width;
                        let ddd = (dd - ddp) / ((ls - sig[i - 2]) / 2.0);
                        ynew += (dl * dl / 2.0 + s2 * phi(lt)) * ddd;
                    }
                    dd_prev = Some(dd);
                }
                if scaler == NoiseScaler::ErSde {
                    ynew += (lt * lt - ls * ls * r * r).sqrt() * z();
                }
                y = ynew;
                d_prev = Some(d);
            }
            y
        };
        let solver = ErSde { noise_scaler: scaler, max_stage: stages, ..ErSde::default() };
        check(&format!("er_sde {scaler:?} {stages} stages"), &solver, karras(12).as_ref(), false, &reference, TOL);
    }
}

/// SEEDS-2 / SEEDS-3 (Gonzalez et al. 2023, VP data prediction) in k-diffusion's variables.
fn seeds_reference(stages: SeedsStages, eta: f64) -> impl Fn(f64, &[f64], &mut dyn FnMut() -> f64) -> f64 {
    move |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
        let p1 = |t: f64| t.exp_m1(); // h phi_1(h)
        let p2 = |t: f64| (t.exp_m1() - t) / t; // h phi_2(h)
        let mut y = y;
        for w in sig.windows(2) {
            let (s, sn) = (w[0], w[1]);
            let d = du(y, s);
            if sn == 0.0 {
                y = d;
                continue;
            }
            let h = s.ln() - sn.ln();
            let he = h * (eta + 1.0);
            let sig_at = |r: f64| (-(-s.ln() + r * h)).exp();
            let noise_on = eta > 0.0;
            match stages {
                SeedsStages::Two { r, update } => {
                    let s1 = sig_at(r);
                    let mut n = 0.0;
                    let mut y2 = s1 / s * (-r * h * eta).exp() * y - p1(-r * he) * d;
                    if noise_on {
                        n = (-(-2.0 * r * h * eta).exp_m1()).sqrt() * z();
                        y2 += n * s1;
                    }
                    let d2 = du(y2, s1);
                    y = match update {
                        SeedsUpdate::Phi1 => {
                            let dd = d + (d2 - d) / (2.0 * r);
                            sn / s * (-h * eta).exp() * y - p1(-he) * dd
                        }
                        SeedsUpdate::Phi2 => {
                            let b2 = p2(-he) / r;
                            let b1 = p1(-he) - b2;
                            sn / s * (-h * eta).exp() * y - (b1 * d + b2 * d2)
                        }
                    };
                    if noise_on {
                        let f = (r - 1.0) * h * eta;
                        n = n * f.exp() + (-(2.0 * f).exp_m1()).sqrt() * z();
                        y += n * sn;
                    }
                }
                SeedsStages::Three { r1, r2 } => {
                    let (s1, s2) = (sig_at(r1), sig_at(r2));
                    let mut n = 0.0;
                    let mut y2 = s1 / s * (-r1 * h * eta).exp() * y - p1(-r1 * he) * d;
                    if noise_on {
                        n = (-(-2.0 * r1 * h * eta).exp_m1()).sqrt() * z();
                        y2 += n * s1;
                    }
                    let d2 = du(y2, s1);
                    let a32 = r2 / r1 * p2(-r2 * he);
                    let a31 = p1(-r2 * he) - a32;
                    let mut y3 = s2 / s * (-r2 * h * eta).exp() * y - (a31 * d + a32 * d2);
                    if noise_on {
                        let f = (r1 - r2) * h * eta;
                        n = n * f.exp() + (-(2.0 * f).exp_m1()).sqrt() * z();
                        y3 += n * s2;
                    }
                    let d3 = du(y3, s2);
                    let b3 = p2(-he) / r2;
                    let b1 = p1(-he) - b3;
                    y = sn / s * (-h * eta).exp() * y - (b1 * d + b3 * d3);
                    if noise_on {
                        let f = (r2 - 1.0) * h * eta;
                        n = n * f.exp() + (-(2.0 * f).exp_m1()).sqrt() * z();
                        y += n * sn;
                    }
                }
            }
        }
        y
    }
}

#[test]
fn seeds_second_formulation() {
    let grid = karras(10);
    for solver in [
        Seeds::two(),
        Seeds::three(),
        Seeds::exp_heun(),
        Seeds { eta: 0.0, ..Seeds::three() },
        Seeds { eta: 0.5, ..Seeds::two() },
    ] {
        let label = format!("{} {:?} eta {}", solver.name(), solver.stages, solver.eta);
        check(&label, &solver, grid.as_ref(), false, &seeds_reference(solver.stages, solver.eta), TOL);
    }
    // SEEDS-2 with eta = 0 is DPM-Solver++(2S) with r = 1/2 (k-diffusion's dpmpp_2s_ancestral at
    // eta = 0), written with the midpoint's own evaluation
    let reference = |y: f64, sig: &[f64], _: &mut dyn FnMut() -> f64| {
        let mut y = y;
        for w in sig.windows(2) {
            let (s, sn) = (w[0], w[1]);
            let d = du(y, s);
            if sn == 0.0 {
                y = d;
            } else {
                let sm = (s * sn).sqrt();
                let y2 = sm / s * y + (1.0 - sm / s) * d;
                y = sn / s * y + (1.0 - sn / s) * du(y2, sm);
            }
        }
        y
    };
    check(
        "seeds_2 eta 0 = DPM-Solver++(2S)",
        &Seeds { eta: 0.0, ..Seeds::two() },
        grid.as_ref(),
        false,
        &reference,
        TOL,
    );
}

/// ComfyUI's `sample_sa_solver` loop in k-diffusion's variables, with the stochastic Adams
/// coefficients integrated numerically (Simpson) instead of by moments.
fn sa_reference(pece: bool, band: (f64, f64)) -> impl Fn(f64, &[f64], &mut dyn FnMut() -> f64) -> f64 {
    move |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
        let tau = |s: f64| if band.0 <= s && s <= band.1 { 1.0 } else { 0.0 };
        let lam: Vec<f64> = sig.iter().map(|s| -s.ln()).collect();
        // sum_j b_j x0_j, b_j = int (1 + tau^2) e^{-(1 + tau^2)(l_t - l)} L_j(l) dl over [l_s, l_t]
        let adams = |nodes: &[f64], preds: &[f64], ls: f64, lt: f64, t: f64| -> f64 {
            let k = 1.0 + t * t;
            (0..nodes.len())
                .map(|j| preds[j] * simpson(|l| k * (-k * (lt - l)).exp() * basis(nodes, j, l), ls, lt, 20_000))
                .sum()
        };
        let n = sig.len() - 1;
        let (mut x, mut x_pred) = (y, y);
        let (mut h, mut tau_t, mut noise): (f64, f64, f64) = (0.0, 0.0, 0.0);
        let mut preds: Vec<f64> = vec![];
        for i in 0..n {
            let mut d = du(x_pred, sig[i]);
            preds.push(d);
            if preds.len() > 4 {
                preds.remove(0);
            }
            let mut p = 3.min(preds.len()).min(n - 1 - i);
            let mut c = if i == 0 || (sig[i + 1] == 0.0 && !pece) { 0 } else { 4.min(preds.len()) };
            c = c.min(n - i);
            if c == 0 {
                x = x_pred;
            } else {
                let k = preds.len() - c;
                x = sig[i] / sig[i - 1] * (-tau_t * tau_t * h).exp() * x
                    + adams(&lam[i + 1 - c..=i], &preds[k..], lam[i - 1], lam[i], tau_t);
                if tau_t > 0.0 {
                    x += noise;
                }
                if pece {
                    d = du(x, sig[i]);
                    *preds.last_mut().unwrap() = d;
                }
            }
            if sig[i + 1] == 0.0 {
                x_pred = d;
            } else {
                p = p.max(1);
                tau_t = tau(sig[i + 1]);
                let k = preds.len() - p;
                h = lam[i + 1] - lam[i];
                x_pred = sig[i + 1] / sig[i] * (-tau_t * tau_t * h).exp() * x
                    + adams(&lam[i + 1 - p..=i], &preds[k..], lam[i], lam[i + 1], tau_t);
                if tau_t > 0.0 {
                    noise = z() * sig[i + 1] * (-(-2.0 * tau_t * tau_t * h).exp_m1()).sqrt();
                    x_pred += noise;
                }
            }
        }
        x_pred
    }
}

#[test]
fn sa_solver_second_formulation() {
    let grid = karras(12);
    let band = (0.3, 4.0);
    for mode in [SaMode::Pec, SaMode::Pece] {
        let solver =
            SaSolver { mode, noise: SaNoise::Sigmas { eta: 1.0, s_min: band.0, s_max: band.1 }, ..SaSolver::default() };
        check(
            &format!("sa_solver {mode:?}"),
            &solver,
            grid.as_ref(),
            false,
            &sa_reference(mode == SaMode::Pece, band),
            1e-8,
        );
    }
    // ComfyUI's default band: tau = 1 between the noise levels at 20% and 80% of the timesteps
    // (its percent_to_sigma: sigma(999 (1 - p)) on the log-linearly interpolated table)
    let s = schedule();
    let at = |t: f64| {
        let (lo, hi) =
            (s.table_point(t.floor() as usize).ksigma().ln(), s.table_point(t.ceil() as usize).ksigma().ln());
        (lo + (t - t.floor()) * (hi - lo)).exp()
    };
    let band = (at(999.0 * 0.2), at(999.0 * 0.8));
    check("sa_solver (ComfyUI band)", &SaSolver::default(), grid.as_ref(), false, &sa_reference(false, band), 1e-8);
}

// ---------------------------------------------------------------------------------------------
// LCM, DDPM, DDIM, iPNDM, DEIS, UniPC, Restart

#[test]
fn lcm_second_formulation() {
    let reference = |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
        let mut y = y;
        for w in sig.windows(2) {
            y = du(y, w[0]);
            if w[1] > 0.0 {
                y += w[1] * z();
            }
        }
        y
    };
    check("lcm", &Lcm::default(), karras(6).as_ref(), false, &reference, TOL);
    // the noise scale interpolated over the steps
    let reference = |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
        let n = sig.len() - 1;
        let mut y = y;
        for (i, w) in sig.windows(2).enumerate() {
            y = du(y, w[0]);
            if w[1] > 0.0 {
                y += w[1] * (1.0 + (0.5 - 1.0) * i as f64 / (n - 1) as f64) * z();
            }
        }
        y
    };
    check(
        "lcm s_noise 1 -> 0.5",
        &Lcm { s_noise: 1.0, s_noise_end: Some(0.5), ..Lcm::default() },
        karras(6).as_ref(),
        false,
        &reference,
        TOL,
    );
}

#[test]
fn ddpm_is_ho_et_al_algorithm_2_in_noise_form() {
    // ComfyUI's DDPMSampler_step: Ho et al. Eq. 11 with the posterior variance, abar = 1/(1 + s^2)
    let reference = |y: f64, sig: &[f64], z: &mut dyn FnMut() -> f64| {
        let mut y = y;
        for w in sig.windows(2) {
            let (s, sn) = (w[0], w[1]);
            let eps = (y - du(y, s)) / s;
            let (abar, abar_prev) = (1.0 / (1.0 + s * s), 1.0 / (1.0 + sn * sn));
            let a = abar / abar_prev;
            let x = y / (1.0 + s * s).sqrt();
            let mut mu = (1.0 / a).sqrt() * (x - (1.0 - a) * eps / (1.0 - abar).sqrt());
            if sn > 0.0 {
                mu += ((1.0 - a) * (1.0 - abar_prev) / (1.0 - abar)).sqrt() * z();
            }
            y = if sn > 0.0 { mu * (1.0 + sn * sn).sqrt() } else { mu };
        }
        y
    };
    let ddpm: AnySolver = "ddpm".parse().unwrap();
    check("ddpm", &ddpm, karras(12).as_ref(), false, &reference, TOL);
}

#[test]
fn ddim_is_comfyui_euler() {
    // ComfyUI's `ddim` runs k-diffusion's sample_euler
    let reference = |y: f64, sig: &[f64], _: &mut dyn FnMut() -> f64| {
        let mut y = y;
        for w in sig.windows(2) {
            y += (y - du(y, w[0])) / w[0] * (w[1] - w[0]);
        }
        y
    };
    let ddim: AnySolver = "ddim".parse().unwrap();
    check("ddim", &ddim, karras(12).as_ref(), false, &reference, TOL);
}

/// ComfyUI's `sample_ipndm` / `sample_ipndm_v` (max order 4).
fn ipndm_reference(variable: bool) -> impl Fn(f64, &[f64], &mut dyn FnMut() -> f64) -> f64 {
    move |y: f64, t: &[f64], _: &mut dyn FnMut() -> f64| {
        let mut x = y;
        let mut buf: Vec<f64> = vec![];
        for i in 0..t.len() - 1 {
            let (tc, tn) = (t[i], t[i + 1]);
            let den = du(x, tc);
            let d = (x - den) / tc;
            let order = 4.min(i + 1);
            let b = |k: usize| buf[buf.len() - k];
            x = if tn == 0.0 {
                den
            } else if !variable {
                x + (tn - tc)
                    * match order {
                        1 => d,
                        2 => (3.0 * d - b(1)) / 2.0,
                        3 => (23.0 * d - 16.0 * b(1) + 5.0 * b(2)) / 12.0,
                        _ => (55.0 * d - 59.0 * b(1) + 37.0 * b(2) - 9.0 * b(3)) / 24.0,
                    }
            } else {
                let hn = tn - tc;
                match order {
                    1 => x + hn * d,
                    2 => {
                        let h1 = tc - t[i - 1];
                        x + hn * ((2.0 + hn / h1) / 2.0 * d - (hn / h1) / 2.0 * b(1))
                    }
                    3 => {
                        let (h1, h2) = (tc - t[i - 1], t[i - 1] - t[i - 2]);
                        let tmp = (1.0 - hn / (3.0 * (hn + h1)) * (hn * (hn + h1)) / (h1 * (h1 + h2))) / 2.0;
                        let c1 = (2.0 + hn / h1) / 2.0 + tmp;
                        let c2 = -(hn / h1) / 2.0 - (1.0 + h1 / h2) * tmp;
                        let c3 = tmp * h1 / h2;
                        x + hn * (c1 * d + c2 * b(1) + c3 * b(2))
                    }
                    _ => {
                        let (h1, h2, h3) = (tc - t[i - 1], t[i - 1] - t[i - 2], t[i - 2] - t[i - 3]);
                        let t1 = (1.0 - hn / (3.0 * (hn + h1)) * (hn * (hn + h1)) / (h1 * (h1 + h2))) / 2.0;
                        let t2 = ((1.0 - hn / (3.0 * (hn + h1))) / 2.0
                            + (1.0 - hn / (2.0 * (hn + h1))) * hn / (6.0 * (hn + h1 + h2)))
                            * (hn * (hn + h1) * (hn + h1 + h2))
                            / (h1 * (h1 + h2) * (h1 + h2 + h3));
                        let q = h1 * (h1 + h2) / (h2 * (h2 + h3));
                        let c1 = (2.0 + hn / h1) / 2.0 + t1 + t2;
                        let c2 = -(hn / h1) / 2.0 - (1.0 + h1 / h2) * t1 - (1.0 + h1 / h2 + q) * t2;
                        let c3 = t1 * h1 / h2 + (h1 / h2 + q * (1.0 + h2 / h3)) * t2;
                        let c4 = -t2 * q * h1 / h2;
                        x + hn * (c1 * d + c2 * b(1) + c3 * b(2) + c4 * b(3))
                    }
                }
            };
            buf.push(d);
        }
        x
    }
}

#[test]
fn ipndm_and_ipndm_v_second_formulation() {
    let grid = karras(12);
    check("ipndm", &"ipndm".parse::<AnySolver>().unwrap(), grid.as_ref(), false, &ipndm_reference(false), TOL);
    check("ipndm_v", &"ipndm_v".parse::<AnySolver>().unwrap(), grid.as_ref(), false, &ipndm_reference(true), TOL);
}

#[test]
fn ipndm_v_weights_beyond_second_order_are_not_adams_bashforth() {
    // documents what ComfyUI's ipndm_v computes: on a Karras grid its 4th-order weights do not sum
    // to one (an O(h) inconsistency), the exact variable-step weights do
    let grid = karras(12);
    let (y0, _) = inputs(grid.points()[0].ksigma());
    // a network predicting x0 = 0 makes d = y / s: the run is linear in the weights' sums
    let s = schedule();
    let run = |solver: &Ipndm| {
        let mut m = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Sample);
        let pts: Vec<Point> = grid.points()[..9].to_vec();
        let g = Grid::from_points(pts).unwrap();
        let x = column(&y0.iter().map(|y| y * g.points()[0].alpha).collect::<Vec<_>>());
        let out = sample(solver, &mut m, &g, &x).unwrap();
        let end = g.points()[8];
        out.flatten_all().unwrap().to_vec1::<f64>().unwrap().into_iter().map(|v| v / end.alpha).collect::<Vec<_>>()
    };
    // exact solution of dy/ds = y / s: y_end = y0 s_end / s_0
    let (s0, s_end) = (grid.points()[0].ksigma(), grid.points()[8].ksigma());
    let exact: Vec<f64> = y0.iter().map(|y| y * s_end / s0).collect();
    let err = |v: Vec<f64>| v.iter().zip(&exact).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0, f64::max);
    let lagrange = err(run(&Ipndm { weights: MultistepWeights::Lagrange, ..Ipndm::comfy() }));
    let comfy = err(run(&Ipndm::comfy_variable()));
    println!("relative error on dy/ds = y/s over 8 Karras steps: Lagrange {lagrange:.2e}, ComfyUI ipndm_v {comfy:.2e}");
    // y is linear in s: every consistent multistep method of order >= 2 is exact
    assert!(lagrange < 1e-12, "{lagrange:e}");
    assert!(comfy > 1e-4, "{comfy:e}");
}

#[test]
fn deis_weights_are_the_tab_integrals_in_the_vp_time() {
    // DEIS tAB: c_j = int_{t(s)}^{t(s_next)} s'(t) L_j(t) dt in ComfyUI's VP time, by Simpson in t
    // (the crate integrates in s with Gauss-Legendre, or with ComfyUI's sum)
    let (s_min, s_max, eps): (f64, f64, f64) = (0.002, 80.0, 1e-3);
    let bd = 2.0 * ((s_min * s_min + 1.0).ln() / eps - (s_max * s_max + 1.0).ln()) / (eps - 1.0);
    let b0 = (s_max * s_max + 1.0).ln() - 0.5 * bd;
    let t_of = move |s: f64| ((b0 * b0 + 2.0 * bd * (s * s + 1.0).ln()).sqrt() - b0) / bd;
    let ds_dt = move |t: f64| {
        let abar = (-0.5 * bd * t * t - b0 * t).exp();
        0.5 * (bd * t + b0) / (abar * (1.0 - abar)).sqrt()
    };
    for (quad, rule) in [
        (DeisQuadrature::GaussLegendre { points: 8 }, "simpson"),
        (DeisQuadrature::ComfyUi { points: 10_000 }, "comfy"),
    ] {
        let reference = move |y: f64, sig: &[f64], _: &mut dyn FnMut() -> f64| {
            let mut x = y;
            let mut buf: Vec<f64> = vec![];
            for i in 0..sig.len() - 1 {
                let (s, sn) = (sig[i], sig[i + 1]);
                let den = du(x, s);
                let d = (x - den) / s;
                let order = 3.min(i + 1);
                if sn == 0.0 || order == 1 {
                    x += (sn - s) * d;
                } else {
                    let nodes: Vec<f64> = (0..order).map(|k| t_of(sig[i - k])).collect();
                    let (a, b) = (t_of(s), t_of(sn));
                    let coeff = |j: usize| match rule {
                        "simpson" => simpson(|t| ds_dt(t) * basis(&nodes, j, t), a, b, 20_000),
                        _ => {
                            let n = 10_000;
                            (0..n)
                                .map(|k| a + k as f64 * (b - a) / (n - 1) as f64)
                                .map(|t| ds_dt(t) * basis(&nodes, j, t))
                                .sum::<f64>()
                                * (b - a)
                                / n as f64
                        }
                    };
                    let ds: Vec<f64> = std::iter::once(d).chain(buf.iter().rev().copied()).take(order).collect();
                    x += (0..order).map(|j| coeff(j) * ds[j]).sum::<f64>();
                }
                buf.push(d);
            }
            x
        };
        check(
            &format!("deis {quad:?}"),
            &DeisTab { max_order: 3, quadrature: quad },
            karras(10).as_ref(),
            false,
            &reference,
            1e-9,
        );
    }
}

#[test]
fn comfyui_uni_pc_ends_at_a_thousandth_and_its_order_cap_is_the_warm_up() {
    let (y0, bank) = inputs(karras(8).points()[0].ksigma());
    for variant in [BVariant::Bh1, BVariant::Bh2] {
        for n in [2, 3, 4, 8] {
            let grid = karras(n);
            // ComfyUI: order min(3, steps - 1), lower order on the last steps, last step to 0.001
            let capped = UniPc {
                policy: OrderPolicy {
                    order: 3.min(n - 1).max(1),
                    lower_order_final: LowerOrderFinal::Always,
                    euler_at_final: false,
                },
                variant,
                ..UniPc::order(3)
            };
            let mut pts = grid.points().to_vec();
            let a = 1.0 / (1.0f64 + 1e-6).sqrt();
            *pts.last_mut().unwrap() = Point::new(0.0, a, 0.001 * a);
            let stop = Grid::from_points(pts).unwrap();
            let (want, _) = run_crate(&capped, stop.as_ref(), false, &y0, &bank);
            let (got, _) = run_crate(&UniPc::comfy(variant), grid.as_ref(), false, &y0, &bank);
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-13, "{variant:?}, {n} steps: {err:e}");
            // and it differs from the exact step into sigma = 0 by about the last noise level
            let (clean, _) =
                run_crate(&UniPc { end: UniPcEnd::Clean, ..UniPc::comfy(variant) }, grid.as_ref(), false, &y0, &bank);
            let gap = got.iter().zip(&clean).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(gap > 1e-6 && gap < 1e-2, "{variant:?}, {n} steps: {gap:e}");
        }
    }
}

#[test]
fn restart_second_formulation() {
    // Xu et al. 2023, Algorithm 1 with the authors' EDM code: Heun main steps, at the grid point
    // nearest t_min a jump to t_max by forward noise and N - 1 Karras-spaced Heun steps back, K times
    let s = schedule();
    let grid = karras(20);
    let restart = Restart::default();
    let steps = restart.steps(&s, &grid).unwrap();
    let main = sigmas(grid.as_ref());
    let reference = move |y: f64, _: &[f64], z: &mut dyn FnMut() -> f64| {
        let heun = |y: f64, s: f64, sn: f64| {
            let d = (y - du(y, s)) / s;
            let y2 = y + d * (sn - s);
            if sn == 0.0 {
                return y2;
            }
            let d2 = (y2 - du(y2, sn)) / sn;
            y + (d + d2) / 2.0 * (sn - s)
        };
        let j = (0..main.len()).min_by(|&a, &b| (main[a] - 0.1).abs().total_cmp(&(main[b] - 0.1).abs())).unwrap();
        let mut y = y;
        for i in 0..main.len() - 1 {
            y = heun(y, main[i], main[i + 1]);
            if i + 1 == j {
                let (hi, lo) = (2.0f64.powf(1.0 / 7.0), main[j].powf(1.0 / 7.0));
                let levels: Vec<f64> = (0..10).map(|k| (hi + k as f64 / 9.0 * (lo - hi)).powf(7.0)).collect();
                for _ in 0..2 {
                    y += (4.0 - main[j] * main[j]).sqrt() * z();
                    for w in levels.windows(2) {
                        y = heun(y, w[0], w[1]);
                    }
                }
            }
        }
        y
    };
    check("restart (Stable Diffusion setting)", &restart, &steps, false, &reference, 1e-9);
    assert_eq!(steps.len(), 20 + 2 * 9);
    // no jump without restart segments: plain Heun
    let plain = Restart { segments: vec![], ..Restart::default() };
    let (y0, bank) = inputs(grid.points()[0].ksigma());
    let (a, _) = run_crate(&plain, &plain.steps(&s, &grid).unwrap(), false, &y0, &bank);
    let (b, _) = run_crate(&Heun::default(), grid.as_ref(), false, &y0, &bank);
    assert_eq!(a, b);
}

#[test]
fn restart_presets_and_invalid_segments() {
    let s = schedule();
    let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 36, End::Clean).unwrap();
    // ImageNet-64 preset: 5 segments, N - 1 steps per pass, K passes each; a segment whose
    // nearest grid point is the start (or not below t_max) has nothing to restart
    let r = Restart::imagenet64_edm();
    let steps = r.steps(&s, &grid).unwrap();
    let pts = grid.points();
    let extra: usize = r
        .segments
        .iter()
        .filter(|seg| {
            let near = (0..pts.len())
                .min_by(|&a, &b| (pts[a].ksigma() - seg.t_min).abs().total_cmp(&(pts[b].ksigma() - seg.t_min).abs()))
                .unwrap();
            near > 0 && pts[near].ksigma() < seg.t_max
        })
        .map(|seg| (seg.points - 1) * seg.repeats)
        .sum();
    assert_eq!(steps.len(), 36 + extra);
    // the first segment (19.35..40.79) lies above the table's largest noise level (14.6): its
    // nearest point is the start, as in the authors' code
    assert_eq!(extra, 3 + 3 * 5 + 3 * 5 + 5 * 6);
    assert_eq!(Restart::cifar10_vp().segments.len(), 1);
    let bad = Restart {
        segments: vec![RestartSegment { t_min: 2.0, t_max: 1.0, points: 5, repeats: 1 }],
        ..Restart::default()
    };
    assert!(matches!(bad.steps(&s, &grid), Err(Error::InvalidConfig(_))));
    let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
    assert!(sample(&bad, &mut model, &grid, &column(&[1.0])).is_err());
}

// ---------------------------------------------------------------------------------------------
// metadata and configuration errors

#[test]
fn nfe_metadata_matches_on_restart_lists_and_option_variants() {
    let s = schedule();
    let gm = GaussianMixture::new(vec![vec![MU]], vec![S0], vec![1.0]).unwrap();
    let grid = karras(9);
    let restart = Restart::default();
    let restart_steps = restart.steps(&s, &karras(20)).unwrap();
    let cases: Vec<(AnySolver, Vec<Step>)> = vec![
        (AnySolver::new(restart), restart_steps),
        (
            AnySolver::new(SaSolver { mode: SaMode::Pece, corrector_order: 0, ..SaSolver::default() }),
            grid.as_ref().to_vec(),
        ),
        (
            AnySolver::new(Seeds { stages: SeedsStages::Three { r1: 0.25, r2: 0.5 }, ..Seeds::three() }),
            grid.as_ref().to_vec(),
        ),
        (AnySolver::new(ErSde { max_stage: 1, ..ErSde::default() }), grid.as_ref().to_vec()),
        (AnySolver::new(DeisTab { max_order: 4, ..DeisTab::default() }), grid.as_ref().to_vec()),
    ];
    for (solver, steps) in cases {
        let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
        let out = sample(&solver, &mut model, &steps, &column(&[0.5, -1.0])).unwrap();
        assert_eq!(model.nfe(), nfe_of(&solver, &steps), "{solver:?}");
        assert!(out.flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn invalid_configurations_are_typed_errors() {
    let s = schedule();
    let grid = karras(5);
    let bad: Vec<AnySolver> = vec![
        AnySolver::new(EulerAncestral { eta: -1.0, ..EulerAncestral::cfg_pp() }),
        AnySolver::new(DpmPp2sAncestral { s_noise: f64::NAN, ..DpmPp2sAncestral::cfg_pp() }),
        AnySolver::new(ResMultistep { eta: f64::NAN, ..Default::default() }),
        AnySolver::new(GradientEstimation { gamma: f64::INFINITY, ..Default::default() }),
        AnySolver::new(ErSde { max_stage: 4, ..ErSde::default() }),
        AnySolver::new(ErSde { integration_points: 0, ..ErSde::default() }),
        AnySolver::new(Seeds { stages: SeedsStages::Three { r1: 0.7, r2: 0.5 }, ..Seeds::three() }),
        AnySolver::new(Seeds { stages: SeedsStages::Two { r: 0.0, update: SeedsUpdate::Phi1 }, ..Seeds::two() }),
        AnySolver::new(SaSolver { predictor_order: 0, ..SaSolver::default() }),
        AnySolver::new(SaSolver { noise: SaNoise::Percent { eta: 1.0, start: 0.8, end: 0.2 }, ..SaSolver::default() }),
        AnySolver::new(Lcm { s_noise: -0.5, ..Lcm::default() }),
        AnySolver::new(DeisTab { max_order: 5, ..DeisTab::default() }),
        AnySolver::new(UniPc { end: UniPcEnd::StopAt(0.0), ..UniPc::comfy(BVariant::Bh1) }),
    ];
    let gm = GaussianMixture::new(vec![vec![MU]], vec![S0], vec![1.0]).unwrap();
    for solver in bad {
        let guided =
            ClassifierFreeGuidance { denoiser: gm.denoiser(&s, Prediction::Epsilon), scale: 2.0, rescale: 0.0 };
        let mut model = Model::new(guided, &s, Prediction::Epsilon);
        let err = sample(&solver, &mut model, &grid, &column(&[0.5])).unwrap_err();
        assert!(matches!(err.root(), Error::InvalidConfig(_)), "{solver:?}: {err}");
        assert_eq!(model.nfe(), 0);
    }
    // starts at alpha = 0 are refused where the method works in sigma / alpha
    let zsnr = DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap().rescale_zero_terminal_snr().unwrap();
    let grid = Grid::new(&zsnr, &Spacing::Trailing, 5, End::Clean).unwrap();
    for solver in
        [AnySolver::new(ErSde::default()), AnySolver::new(DeisTab::default()), AnySolver::new(SaSolver::default())]
    {
        let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &zsnr, Prediction::VPrediction);
        let err = sample(&solver, &mut model, &grid, &column(&[0.5])).unwrap_err();
        assert!(matches!(err.root(), Error::Unsupported(_)), "{solver:?}: {err}");
    }
}
