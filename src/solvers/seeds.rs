//! SEEDS-2 and SEEDS-3: stochastic explicit exponential derivative-free solvers (Gonzalez et al.
//! 2023, "SEEDS: Exponential SDE Solvers for Fast High-Quality Sampling from Diffusion Models",
//! arXiv:2305.14267, VP data prediction, Algorithms 2-3; ComfyUI's `seeds_2`, `seeds_3`,
//! `exp_heun_2_x0`, `exp_heun_2_x0_sde`).
//!
//! Exponential Runge-Kutta stages for the reverse SDE with noise fraction `eta`
//! ([`crate::math::sde`]; `eta = 0` is the probability-flow ODE). With `h = lambda_to - lambda`,
//! stage points `lambda_k = lambda + r_k h`, `h_eta = (1 + eta) h` and `phi_1`, `phi_2` the
//! exponential-integrator functions (`h phi_1(-h) = 1 - e^{-h}`, `h phi_2(-h) = 1 - phi_1(-h)`):
//!
//! - SEEDS-2 (`r`, default 1/2): `x_1 = (sigma_1/sigma) e^{-r h eta} x + alpha_1 (1 - e^{-r h_eta}) x0 + noise`,
//!   then `x_to = (sigma_to/sigma) e^{-h eta} x + alpha_to (1 - e^{-h_eta}) x0_d + noise` with
//!   `x0_d = (1 - 1/(2r)) x0 + 1/(2r) x0_1` ([`SeedsUpdate::Phi1`]) or the weights
//!   `b2 = h_eta phi_2(-h_eta) / r`, `b1 = h_eta phi_1(-h_eta) - b2` on `(x0, x0_1)`
//!   ([`SeedsUpdate::Phi2`]);
//! - SEEDS-3 (`r1 = 1/3`, `r2 = 2/3`): `x_1` as above, then
//!   `x_2 = (sigma_2/sigma) e^{-r2 h eta} x + alpha_2 [a1 x0 + a2 x0_1] + noise` with
//!   `a2 = (r2/r1) r2 h_eta phi_2(-r2 h_eta)`, `a1 = r2 h_eta phi_1(-r2 h_eta) - a2`, and
//!   `x_to = ... + alpha_to [b1 x0 + b3 x0_2] + noise`, `b3 = h_eta phi_2(-h_eta) / r2`.
//!
//! The noise of each stage is one Brownian path sampled at the stage points: the standard normal
//! `n_1 = sqrt(1 - e^{-2 r1 h eta}) z_1` enters `x_1` as `sigma_1 n_1`, and each later stage
//! carries it on as `n_k = e^{-(r_k - r_{k-1}) h eta} n_{k-1} + sqrt(1 - e^{-2 (r_k - r_{k-1}) h eta}) z_k`
//! ([`crate::math::sde::ou_factors`]), added as `sigma_k n_k`: one noise draw per stage, each over
//! its sub-interval. With `eta = 0`, SEEDS-2 (`Phi1`, `r = 1/2`) is DPM-Solver++(2S) (second
//! order) and SEEDS-3 the third-order singlestep DPM-Solver++(3S) stages; with `eta > 0` they
//! are weakly convergent SDE solvers. Into `sigma = 0` a step returns `x0` (1 NFE). 2 (SEEDS-2) or
//! 3 (SEEDS-3) NFE per step otherwise.

use candle_core::Tensor;

use super::{stages_unless_clean, validate_noise, Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::math::phi::tail;
use crate::math::sde::{ou_factors, sde_weights};
use crate::ops::lincomb;
use crate::schedule::Point;

/// The final update of SEEDS-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SeedsUpdate {
    /// `alpha_to (1 - e^{-h_eta})` times the mix `(1 - 1/(2r)) x0 + 1/(2r) x0_1` (the paper's
    /// SEEDS-2, ComfyUI's default `solver_type = "phi_1"`).
    #[default]
    Phi1,
    /// The exact `phi_2` weights on `(x0, x0_1)` (ComfyUI's `solver_type = "phi_2"`,
    /// `exp_heun_2_x0` with `r = 1`).
    Phi2,
}

/// The stages of a SEEDS step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeedsStages {
    /// SEEDS-2 with its intermediate point at `lambda + r h`.
    Two {
        /// Position of the intermediate stage in `(0, 1]`.
        r: f64,
        /// The final update.
        update: SeedsUpdate,
    },
    /// SEEDS-3 with its intermediate points at `lambda + r1 h` and `lambda + r2 h`.
    Three {
        /// First intermediate stage, in `(0, r2)`.
        r1: f64,
        /// Second intermediate stage, in `(r1, 1]`.
        r2: f64,
    },
}

/// SEEDS-2 / SEEDS-3 (VP, data prediction).
///
/// ComfyUI: `seeds_2` is [`Seeds::two`] (`r = 1/2`, `Phi1`, `eta = 1`), `seeds_3` is
/// [`Seeds::three`] (`r1 = 1/3`, `r2 = 2/3`, `eta = 1`); `exp_heun_2_x0_sde` is SEEDS-2 with
/// `r = 1`, `Phi2`, and `exp_heun_2_x0` the same with `eta = 0`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, nfe_of, DiscreteVp, End, Grid, Model, Prediction, Seeds, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&Seeds::three(), &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// assert_eq!(model.nfe(), 28); // 3 per step, 1 into sigma = 0
/// assert_eq!(nfe_of(&Seeds::three(), grid.as_ref()), 28);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seeds {
    /// SEEDS-2 or SEEDS-3 and where its stages lie.
    pub stages: SeedsStages,
    /// Noise fraction of the reverse SDE (0 = probability-flow ODE, 1 = the reverse SDE).
    pub eta: f64,
    /// Scale of the added noise.
    pub s_noise: f64,
}

impl Seeds {
    /// ComfyUI's `seeds_2`: `r = 1/2`, [`SeedsUpdate::Phi1`], `eta = 1`, `s_noise = 1`.
    pub fn two() -> Seeds {
        Seeds { stages: SeedsStages::Two { r: 0.5, update: SeedsUpdate::Phi1 }, eta: 1.0, s_noise: 1.0 }
    }

    /// ComfyUI's `seeds_3`: `r1 = 1/3`, `r2 = 2/3`, `eta = 1`, `s_noise = 1`.
    pub fn three() -> Seeds {
        Seeds { stages: SeedsStages::Three { r1: 1.0 / 3.0, r2: 2.0 / 3.0 }, eta: 1.0, s_noise: 1.0 }
    }

    /// ComfyUI's `exp_heun_2_x0_sde` (`r = 1`, [`SeedsUpdate::Phi2`], `eta = 1`); with `eta = 0`
    /// its `exp_heun_2_x0` (the exponential Heun method in data prediction).
    pub fn exp_heun() -> Seeds {
        Seeds { stages: SeedsStages::Two { r: 1.0, update: SeedsUpdate::Phi2 }, eta: 1.0, s_noise: 1.0 }
    }

    fn noisy(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }

    /// The stage positions `r_k` (ending with 1).
    fn positions(&self) -> Vec<f64> {
        match self.stages {
            SeedsStages::Two { r, .. } => vec![r, 1.0],
            SeedsStages::Three { r1, r2 } => vec![r1, r2, 1.0],
        }
    }
}

impl Solver for Seeds {
    type State = ();

    fn name(&self) -> &'static str {
        match self.stages {
            SeedsStages::Two { .. } => "SEEDS-2",
            SeedsStages::Three { .. } => "SEEDS-3",
        }
    }

    fn order(&self) -> usize {
        match (self.noisy(), self.stages) {
            (true, _) => 1,
            (false, SeedsStages::Two { .. }) => 2,
            (false, SeedsStages::Three { .. }) => 3,
        }
    }

    fn nfe(&self, step: &Step) -> usize {
        stages_unless_clean(step, self.positions().len())
    }

    fn is_stochastic(&self) -> bool {
        self.noisy()
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        let ok_stages = match self.stages {
            SeedsStages::Two { r, .. } => r > 0.0 && r <= 1.0,
            SeedsStages::Three { r1, r2 } => r1 > 0.0 && r1 < r2 && r2 <= 1.0,
        };
        if !ok_stages {
            return config_err(format!(
                "SEEDS needs stage positions 0 < r <= 1 (SEEDS-3: 0 < r1 < r2 <= 1), got {:?}",
                self.stages
            ));
        }
        validate_noise("SEEDS", self.eta, self.s_noise)
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let x0 = ctx.model.data(x, from)?;
        if to.is_clean() {
            return Ok(x0);
        }
        let eta = if self.noisy() { self.eta } else { 0.0 };
        let h = step.h();
        let he = (1.0 + eta) * h;
        let schedule = ctx.model.schedule();
        let stage_point = |r: f64| if r == 1.0 { *to } else { schedule.point_of_lambda(from.lambda + r * h) };
        // the Brownian noise carried across the stages: (n_k, its position r_k)
        let mut carried: Option<(Tensor, f64)> = None;
        let mut noise_at = |ctx: &mut StepContext, p: &Point, r: f64, last: &Point| -> Result<Option<Tensor>> {
            if eta == 0.0 {
                return Ok(None);
            }
            let r_prev = carried.as_ref().map_or(0.0, |(_, rp)| *rp);
            let (decay, fresh) = ou_factors((r - r_prev) * h, eta);
            // a zero-length sub-interval (r = 1) still takes its draw, as ComfyUI does, but not
            // as an increment of the noise source's path
            let z =
                if p.lambda == last.lambda { ctx.noise.noise_like(x)? } else { ctx.noise.noise_between(x, last, p)? };
            let n = match carried.take() {
                Some((n_prev, _)) => lincomb(&[(decay, &n_prev), (fresh, &z)])?,
                None => lincomb(&[(fresh, &z)])?,
            };
            carried = Some((n.clone(), r));
            Ok(Some(n))
        };
        // stage k: x_k = c_x x + alpha_k sum_j w_j x0_j + s_noise sigma_k n_k
        let combine = |p: &Point, weights: &[(f64, &Tensor)], n: Option<&Tensor>| -> Result<Tensor> {
            let (c_x, _, _) = sde_weights(from, p, eta);
            let mut terms = vec![(c_x, x)];
            terms.extend(weights.iter().map(|&(w, t)| (p.alpha * w, t)));
            if let Some(n) = n {
                terms.push((self.s_noise * p.sigma, n));
            }
            lincomb(&terms)
        };
        // h phi_1(-h) and h phi_2(-h) at the scaled step
        let phi1 = |r: f64| tail(0, r * he);
        let phi2 = |r: f64| tail(1, r * he);
        match self.stages {
            SeedsStages::Two { r, update } => {
                let p1 = stage_point(r);
                let n1 = noise_at(ctx, &p1, r, from)?;
                let x1 = combine(&p1, &[(phi1(r), &x0)], n1.as_ref())?;
                let x0_1 = ctx.model.data(&x1, &p1)?;
                let n = noise_at(ctx, to, 1.0, &p1)?;
                let (b1, b2) = match update {
                    SeedsUpdate::Phi1 => {
                        let fac = 1.0 / (2.0 * r);
                        (phi1(1.0) * (1.0 - fac), phi1(1.0) * fac)
                    }
                    SeedsUpdate::Phi2 => {
                        let b2 = phi2(1.0) / r;
                        (phi1(1.0) - b2, b2)
                    }
                };
                combine(to, &[(b1, &x0), (b2, &x0_1)], n.as_ref())
            }
            SeedsStages::Three { r1, r2 } => {
                let p1 = stage_point(r1);
                let n1 = noise_at(ctx, &p1, r1, from)?;
                let x1 = combine(&p1, &[(phi1(r1), &x0)], n1.as_ref())?;
                let x0_1 = ctx.model.data(&x1, &p1)?;
                let p2 = stage_point(r2);
                let n2 = noise_at(ctx, &p2, r2, &p1)?;
                let a2 = r2 / r1 * phi2(r2);
                let x2 = combine(&p2, &[(phi1(r2) - a2, &x0), (a2, &x0_1)], n2.as_ref())?;
                let x0_2 = ctx.model.data(&x2, &p2)?;
                let n = noise_at(ctx, to, 1.0, &p2)?;
                let b3 = phi2(1.0) / r2;
                combine(to, &[(phi1(1.0) - b3, &x0), (b3, &x0_2)], n.as_ref())
            }
        }
    }
}
