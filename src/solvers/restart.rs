//! Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes",
//! arXiv:2306.14878, Algorithm 1 / Appendix B.2; the authors' EDM and Stable Diffusion code).
//!
//! The main backward process is Heun's method on the probability-flow ODE ([`crate::Heun`], EDM
//! Algorithm 1, 2 NFE per step, an Euler step into `sigma = 0`). At the grid point nearest to a
//! segment's `t_min` (a noise level `sigma / alpha`), the sample is sent back up to `t_max` by
//! fresh forward noise, `y += s_noise sqrt(t_max^2 - t_min^2) z` in `y = x / alpha`, and the ODE
//! is solved down again with `N` Karras-spaced noise levels (`N - 1` Heun steps, `rho = 7`); this
//! restart is repeated `K` times. The stochastic forward jumps contract the errors the ODE steps
//! accumulated.
//!
//! In this crate the restart passes are ordinary steps: [`Restart::steps`] builds the list of
//! steps (main grid plus restart passes) for the sampling loop, and the [`Restart`] solver takes a
//! Heun step from wherever a step starts, first adding the forward noise when the step starts
//! above the level where the previous one ended. The noise of each jump is a fresh draw
//! ([`crate::NoiseSource::noise_like`]): the `K` passes over one interval need independent noise,
//! which a Brownian path indexed by noise level would not give. NFE: the Heun count of every
//! step in the list (exact metadata, [`crate::nfe_of`]).
//!
//! The default segment is the paper's Stable Diffusion setting (`t_min = 0.1`, `t_max = 2`,
//! `K = 2`, `N = 10`, the authors' code for guidance 5 and 8); [`Restart::cifar10_vp`] and
//! [`Restart::imagenet64_edm`] are the published benchmark configurations.

use candle_core::Tensor;

use super::{Heun, Solver, StepContext};
use crate::error::{config_err, Error, Result};
use crate::grid::{Grid, Step};
use crate::math::ancestral::ksigma_point;
use crate::math::ksigma::renoise;
use crate::schedule::{Point, Scheduler};
use crate::sigmas::karras_levels;

/// One restart interval: `repeats` passes from `t_max` down to the grid point nearest `t_min`
/// through `points` Karras-spaced noise levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RestartSegment {
    /// Noise level (`sigma / alpha`) the restart returns to; snapped to the nearest grid point.
    pub t_min: f64,
    /// Noise level the forward jump goes up to.
    pub t_max: f64,
    /// Noise levels of a restart pass, both ends included (`N_restart`; `points - 1` Heun steps).
    pub points: usize,
    /// Number of restarts `K`.
    pub repeats: usize,
}

/// Restart sampling: Heun steps with forward-noise jumps between the steps of a restart step
/// list ([`Restart::steps`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{nfe_of, sample, DiscreteVp, End, Grid, Model, Prediction, Restart, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 20, End::Clean)?;
/// let restart = Restart::default(); // t_min 0.1, t_max 2, K = 2, N = 10
/// let steps = restart.steps(&s, &grid)?;
/// assert_eq!(steps.len(), 20 + 2 * 9);
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&restart, &mut model, &steps, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// assert_eq!((model.nfe(), nfe_of(&restart, &steps)), (75, 75)); // 19 Heun + 1 Euler + 18 Heun
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Restart {
    /// The restart intervals.
    pub segments: Vec<RestartSegment>,
    /// Scale of the forward noise.
    pub s_noise: f64,
    /// Karras exponent of the restart passes' noise levels.
    pub rho: f64,
}

impl Default for Restart {
    fn default() -> Self {
        Restart::stable_diffusion()
    }
}

impl Restart {
    /// The paper's Stable Diffusion setting: one interval `[0.1, 2]`, `K = 2`, `N = 10`.
    pub fn stable_diffusion() -> Restart {
        Restart::with(vec![RestartSegment { t_min: 0.1, t_max: 2.0, points: 10, repeats: 2 }])
    }

    /// The published CIFAR-10 (VP) configuration for 18 main steps (the authors' README and
    /// `params_cifar10_vp.txt`): `[0.06, 0.30]`, `K = 2`, `N = 3`.
    pub fn cifar10_vp() -> Restart {
        Restart::with(vec![RestartSegment { t_min: 0.06, t_max: 0.30, points: 3, repeats: 2 }])
    }

    /// The published ImageNet-64 (EDM) configuration for 36 main steps (the authors' README,
    /// NFE 203).
    pub fn imagenet64_edm() -> Restart {
        let seg = |points, repeats, t_min, t_max| RestartSegment { t_min, t_max, points, repeats };
        Restart::with(vec![
            seg(4, 1, 19.35, 40.79),
            seg(4, 1, 1.09, 1.92),
            seg(4, 5, 0.59, 1.09),
            seg(4, 5, 0.30, 0.59),
            seg(6, 6, 0.06, 0.30),
        ])
    }

    fn with(segments: Vec<RestartSegment>) -> Restart {
        Restart { segments, s_noise: 1.0, rho: 7.0 }
    }

    fn check(&self) -> Result<()> {
        for seg in &self.segments {
            if !(seg.t_min >= 0.0 && seg.t_min < seg.t_max && seg.t_max.is_finite() && seg.points >= 2) {
                return config_err(format!(
                    "a restart segment needs 0 <= t_min < t_max (finite) and at least 2 points, got {seg:?}"
                ));
            }
        }
        if !(self.s_noise >= 0.0 && self.s_noise.is_finite() && self.rho > 0.0 && self.rho.is_finite()) {
            return config_err(format!(
                "Restart needs finite s_noise >= 0 and rho > 0, got s_noise = {}, rho = {}",
                self.s_noise, self.rho
            ));
        }
        Ok(())
    }

    /// The steps of a restart run on `grid` (a sampling grid of `schedule`): the grid's steps, and
    /// after the step that reaches the grid point nearest each segment's `t_min`, `repeats` passes
    /// of `points - 1` steps from `t_max` down to that point (skipped when that point is the
    /// grid's start or not below `t_max`, as in the authors' code). Run them with this solver.
    pub fn steps(&self, schedule: &dyn Scheduler, grid: &Grid) -> Result<Vec<Step>> {
        self.check()?;
        if !grid.is_denoising() {
            return Err(Error::InvalidGrid("Restart needs a sampling grid (towards less noise)".into()));
        }
        let points = grid.points();
        let nearest = |t: f64| {
            (0..points.len())
                .min_by(|&a, &b| (points[a].ksigma() - t).abs().total_cmp(&(points[b].ksigma() - t).abs()))
                .unwrap_or(0)
        };
        let restart_at: Vec<(usize, &RestartSegment)> = self.segments.iter().map(|s| (nearest(s.t_min), s)).collect();
        let mut pairs: Vec<(Point, Point)> = vec![];
        for (i, w) in points.windows(2).enumerate() {
            pairs.push((w[0], w[1]));
            for (_, seg) in restart_at.iter().filter(|(j, _)| *j == i + 1) {
                let end = w[1];
                if end.ksigma() >= seg.t_max {
                    continue;
                }
                let levels = karras_levels(seg.t_max, end.ksigma(), seg.points, self.rho);
                let mut pass: Vec<Point> =
                    levels[..levels.len() - 1].iter().map(|&s| ksigma_point(schedule, s)).collect();
                pass.push(end);
                for _ in 0..seg.repeats {
                    pairs.extend(pass.windows(2).map(|p| (p[0], p[1])));
                }
            }
        }
        let count = pairs.len();
        Ok(pairs.into_iter().enumerate().map(|(index, (from, to))| Step::new(index, count, from, to)).collect())
    }
}

impl Solver for Restart {
    /// Where the previous step ended.
    type State = Option<Point>;

    fn name(&self) -> &'static str {
        "Restart"
    }

    fn order(&self) -> usize {
        2
    }

    fn nfe(&self, step: &Step) -> usize {
        Heun::default().nfe(step)
    }

    fn is_stochastic(&self) -> bool {
        self.s_noise > 0.0 && !self.segments.is_empty()
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        self.check()?;
        Heun::default().validate(steps)
    }

    fn init_state(&self) -> Option<Point> {
        None
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, last: &mut Option<Point>) -> Result<Tensor> {
        let from = &step.from;
        let jumped;
        let x = match *last {
            Some(end) if from.lambda < end.lambda => {
                // forward noise from the level reached up to the step's start
                let z = ctx.noise.noise_like(x)?;
                jumped = renoise(x, &end, from, self.s_noise, &z)?;
                &jumped
            }
            _ => x,
        };
        let out = Heun::default().step(ctx, step, x, &mut ())?;
        *last = Some(step.to);
        Ok(out)
    }
}
