//! Strategic stochastic sampling of Trajectory Consistency Distillation (Zheng et al. 2024,
//! "Trajectory Consistency Distillation", arXiv:2402.19159, Sec. 4.3 / Algorithm 4; diffusers'
//! `TCDScheduler`).
//!
//! Each step from `t` to `t_to` first moves deterministically (the DDIM transfer with the model's
//! data and noise predictions `x0`, `eps` at `t`) to the intermediate time `s = (1 - gamma) t_to`,
//! then forward-diffuses from `s` back up to `t_to` with fresh noise:
//!
//! `x_s = alpha_s x0 + sigma_s eps`,
//! `x_to = (alpha_to / alpha_s) x_s + sqrt(sigma_to^2 - (alpha_to sigma_s / alpha_s)^2) z`.
//!
//! `gamma = 0` is deterministic DDIM to `t_to`; `gamma = 1` goes to the data prediction and
//! re-noises to `t_to` (multistep consistency sampling). 1 NFE per
//! step, one noise draw per step where the forward part is not empty. The paper (and diffusers)
//! place `s` on the training grid: [`TcdTime::FloorIndex`] floors `(1 - gamma) t_to` to an
//! integer timestep as diffusers does (in float32); [`TcdTime::Continuous`] uses the schedule at
//! `(1 - gamma) t_to` itself. A step into `sigma = 0` ends at `x0`.

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::ops::lincomb;
use crate::schedule::Point;

/// Where TCD's intermediate point `s = (1 - gamma) t_to` lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TcdTime {
    /// At the schedule's time `(1 - gamma) t_to`.
    #[default]
    Continuous,
    /// At the training index `floor((1 - gamma) t_to)`, the product taken in float32 (diffusers'
    /// `TCDScheduler` on a discrete table).
    FloorIndex,
}

/// TCD's strategic stochastic sampling (see the module docs). diffusers' `TCDScheduler.step`
/// defaults to `gamma = 0.3` (its `eta` argument); its pipelines pass their own `eta`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample_with, DiscreteVp, End, Grid, Model, Prediction, SeededNoise, Spacing, Tcd};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Trailing, 4, End::Clean)?;
/// // a network that always predicts x0 = 0.25: the step into sigma = 0 returns it
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?;
/// let out = sample_with(&Tcd::default(), &mut model, &grid, &x, &mut SeededNoise::new(1), |_| {})?;
/// for v in out.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tcd {
    /// The stochasticity `gamma` in `[0, 1]` (diffusers' `eta`).
    pub gamma: f64,
    /// Where the intermediate point lies.
    pub time: TcdTime,
}

impl Default for Tcd {
    fn default() -> Self {
        Tcd { gamma: 0.3, time: TcdTime::Continuous }
    }
}

impl Tcd {
    /// The intermediate point of a step ending at `to` on `schedule`'s time axis.
    fn intermediate(&self, ctx: &StepContext, to: &Point) -> Point {
        if to.is_clean() || self.gamma == 0.0 {
            return *to;
        }
        let t = match self.time {
            TcdTime::Continuous => (1.0 - self.gamma) * to.t,
            TcdTime::FloorIndex => ((1.0 - self.gamma) as f32 * to.t as f32).floor() as f64,
        };
        if t == to.t {
            return *to;
        }
        ctx.model.schedule().point(t)
    }
}

impl Solver for Tcd {
    type State = ();

    fn name(&self) -> &'static str {
        "TCD"
    }

    fn order(&self) -> usize {
        1
    }

    fn is_stochastic(&self) -> bool {
        self.gamma > 0.0
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        if !(0.0..=1.0).contains(&self.gamma) {
            return config_err(format!("TCD's gamma (diffusers' eta) must lie in [0, 1], got {}", self.gamma));
        }
        Ok(())
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let s = self.intermediate(ctx, to);
        let (x0, eps) = ctx.model.data_and_noise_linear(x, from)?;
        // x_to = alpha_to x0 + r sigma_s eps + c_z z with r = alpha_to / alpha_s
        let r = if s.is_clean() { 0.0 } else { to.alpha / s.alpha };
        let (c_d, c_e) = (to.alpha, r * s.sigma);
        // no forward part when s is `to` itself (gamma = 0, or the last step onto the grid's end)
        let c_z = if s == *to { 0.0 } else { (to.sigma * to.sigma - c_e * c_e).max(0.0).sqrt() };
        let mut terms = vec![(c_d * x0.c_x + c_e * eps.c_x, x)];
        if x0.out.id() == eps.out.id() {
            terms.push((c_d * x0.c_out + c_e * eps.c_out, &x0.out));
        } else {
            terms.extend([(c_d * x0.c_out, &x0.out), (c_e * eps.c_out, &eps.out)]);
        }
        if c_z == 0.0 || !self.is_stochastic() {
            return lincomb(&terms);
        }
        let z = ctx.noise.noise_between(x, from, to)?;
        terms.push((c_z, &z));
        lincomb(&terms)
    }
}
