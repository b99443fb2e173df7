//! PNDM: pseudo numerical methods for diffusion models (Liu et al. 2022, arXiv:2202.09778,
//! Eq. 9-13; diffusers' `PNDMScheduler`).
//!
//! Every update moves `x` with the DDIM transfer `T(x, from -> to, e) = (alpha_to/alpha) x +
//! (sigma_to - alpha_to sigma/alpha) e` (exact when the noise prediction `e` is constant) and
//! only the noise prediction fed to it is a classical-method combination:
//!
//! - PLMS (pseudo linear multistep, Eq. 12): `e = sum_j b_j eps_j` with the fixed
//!   Adams-Bashforth weights of order `min(4, steps so far + 1)`; 1 NFE per step;
//! - PRK warm-up (pseudo Runge-Kutta, Eq. 13), the first 3 steps ([`Warmup::RungeKutta`]):
//!   `e1 = eps(x, from)`, `e2 = eps(T(x, from -> mid, e1), mid)`, `e3 = eps(T(x, from -> mid, e2), mid)`,
//!   `e4 = eps(T(x, from -> to, e3), to)`, `e = (e1 + 2 e2 + 2 e3 + e4) / 6`; 4 NFE per step;
//! - PIE warm-up (pseudo improved Euler, diffusers' `skip_prk_steps = True`,
//!   [`Warmup::ImprovedEuler`]): the first step uses `e = (e1 + eps(T(x, from -> to, e1), to)) / 2`
//!   (2 NFE), the next steps PLMS of orders 2, 3, 4.
//!
//! Order: PRK with the default midpoint is classical RK4 in `ksigma = sigma/alpha` (local error
//! `O(h^5)`), PIE is second order. PLMS's fixed weights are exact only for steps uniform in
//! `ksigma` (the variable the transfer integrates in); on uniform-lambda grids the measured global
//! order is 2 ([`MultistepWeights::Uniform`], the published method and diffusers'), and 4 with the
//! variable-step weights of [`MultistepWeights::Lagrange`] (`tests/solvers_c2.rs`). With a
//! v-prediction network, diffusers combines raw outputs instead of noise predictions
//! ([`PndmCombine`]), which is first order. Steps into `sigma = 0` are PLMS steps (finite). The
//! grid must not start at `alpha = 0` (the transfer is singular there).

use candle_core::Tensor;

use super::{refuse_zero_alpha_start, Solver, StepContext};
use crate::error::{Error, Result};
use crate::grid::{diffusers_timesteps, DiffusersTimesteps, Grid, Step};
use crate::math::expint::{weights, Form};
use crate::math::multistep::{ksigma_multistep, ksigma_weights, MultistepWeights};
use crate::math::History;
use crate::model::Model;
use crate::ops::lincomb;
use crate::schedule::{Point, Scheduler};

/// Where the pseudo Runge-Kutta warm-up evaluates its two middle stages.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum PrkMidpoint {
    /// At the mean noise level `(ksigma + ksigma_to) / 2`: the classical RK4 nodes in the variable
    /// the DDIM transfer integrates in (this crate's default).
    #[default]
    Ksigma,
    /// diffusers' integer stride: the first stage is moved to time `t - half` and the network is
    /// called at `t_to + half` (the same point when the step's stride `2 half` is even; diffusers
    /// uses `half = (num_train_timesteps // steps) // 2`). For a discrete schedule whose time is
    /// the training index.
    HalfStride {
        /// Half the stride, in the schedule's time.
        half: f64,
    },
}

/// How PNDM starts its 4th-order pseudo linear multistep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Warmup {
    /// Three pseudo Runge-Kutta steps of 4 NFE each (diffusers' `skip_prk_steps = False`).
    RungeKutta {
        /// Where the middle stages are evaluated.
        midpoint: PrkMidpoint,
    },
    /// One pseudo improved Euler step (2 NFE), then PLMS of increasing order (diffusers'
    /// `skip_prk_steps = True`, as Stable Diffusion's configs set).
    ImprovedEuler,
}

impl Default for Warmup {
    fn default() -> Self {
        Warmup::RungeKutta { midpoint: PrkMidpoint::Ksigma }
    }
}

/// What PNDM's multistep and Runge-Kutta combinations average.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PndmCombine {
    /// The noise predictions, each converted where the network was called (the published
    /// method; this crate's default).
    #[default]
    Noise,
    /// The network's raw outputs, converted to one noise prediction afterwards with the sample
    /// and noise level of the step's start (diffusers' `PNDMScheduler`). Identical to
    /// [`PndmCombine::Noise`] for epsilon-prediction networks; for v-prediction networks it
    /// converts outputs taken at other points with the wrong `(alpha, sigma, x)`, an `O(h)` error
    /// in every combined noise prediction that makes the run first-order accurate (measured in
    /// `tests/solvers_c2.rs`).
    RawOutput,
}

/// The PNDM solver (PRK or PIE warm-up, then PLMS).
///
/// diffusers' `PNDMScheduler` maps onto it as: `skip_prk_steps` -> [`Pndm::warmup`] (see
/// [`Pndm::diffusers`]); `timestep_spacing = "leading"`, `steps_offset`, `set_alpha_to_one` -> the grid
/// ([`Pndm::diffusers_grid`]); `prediction_type` -> the [`Model`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, Grid, Model, Pndm, Prediction};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// // Stable Diffusion 1.5: skip_prk_steps, steps_offset 1, set_alpha_to_one false
/// let grid = Pndm::diffusers_grid(&s, 50, 1, false)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Epsilon);
/// let x = Tensor::ones(4, candle_core::DType::F64, &Device::Cpu)?;
/// sample(&Pndm::diffusers(true, 1000, 50), &mut model, &grid, &x)?;
/// assert_eq!(model.nfe(), 51); // diffusers' 51 timesteps (one repeated)
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Pndm {
    /// The warm-up.
    pub warmup: Warmup,
    /// The PLMS weights: PNDM's fixed Adams-Bashforth weights ([`MultistepWeights::Uniform`],
    /// the paper's method and diffusers') or the variable-step ones of the actual noise levels
    /// ([`MultistepWeights::Lagrange`], fourth order on every grid).
    pub weights: MultistepWeights,
    /// What the combinations average: noise predictions, or diffusers' raw outputs.
    pub combine: PndmCombine,
}

/// Steps of the pseudo Runge-Kutta warm-up (PNDM's order 4 minus one).
const PRK_STEPS: usize = 3;

impl Pndm {
    /// diffusers' `PNDMScheduler` for `steps` inference steps on a table of `train_timesteps`
    /// (bit-compatible, for every `prediction_type`): PIE warm-up if `skip_prk_steps`, else PRK
    /// with diffusers' integer half stride; fixed PLMS weights; raw outputs combined
    /// ([`PndmCombine::RawOutput`]). Use it with [`Pndm::diffusers_grid`]. (With PRK and fewer than
    /// 4 steps diffusers stops before the grid's last point; this solver does not.)
    pub fn diffusers(skip_prk_steps: bool, train_timesteps: usize, steps: usize) -> Pndm {
        let warmup = if skip_prk_steps {
            Warmup::ImprovedEuler
        } else {
            let half = (train_timesteps / steps.max(1) / 2) as f64;
            Warmup::RungeKutta { midpoint: PrkMidpoint::HalfStride { half } }
        };
        Pndm { warmup, weights: MultistepWeights::Uniform, combine: PndmCombine::RawOutput }
    }

    /// diffusers' `PNDMScheduler` grid (`timestep_spacing = "leading"`): the timesteps
    /// `(steps - 1 - i) * (N / steps) + steps_offset` for a table of `N` training timesteps, then
    /// diffusers' `prev_timestep` of the last one: `last - N / steps` when that is a timestep of
    /// the table, else the clean point if `set_alpha_to_one`, else the table's first entry (time 0).
    /// When that end repeats the last timestep (`steps_offset = 0` without `set_alpha_to_one`),
    /// diffusers' final step is a no-op that still calls the network once; this grid leaves it out.
    pub fn diffusers_grid(
        schedule: &dyn Scheduler,
        steps: usize,
        steps_offset: usize,
        set_alpha_to_one: bool,
    ) -> Result<Grid> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        crate::limits::check("steps", steps, crate::limits::MAX_STEPS)?;
        schedule.validate()?;
        let n_train = schedule
            .train_timesteps()
            .ok_or_else(|| Error::Unsupported("PNDM's diffusers grid needs a discrete schedule (DiscreteVp)".into()))?;
        let ratio = n_train / steps;
        if ratio == 0 {
            return Err(Error::TooManySteps { steps, max: n_train });
        }
        let ts: Vec<f64> = diffusers_timesteps(DiffusersTimesteps::Leading { steps_offset }, n_train, steps)
            .into_iter()
            .rev()
            .collect();
        if ts[0] >= n_train as f64 {
            return Err(Error::InvalidConfig(format!(
                "steps_offset {steps_offset} puts the first timestep at {}, beyond the table's last ({}): lower \
                 steps_offset to at most {}",
                ts[0],
                n_train - 1,
                n_train - 1 - (steps - 1) * ratio
            )));
        }
        let mut points = diffusers_points(|t| schedule.point(t), &ts, ratio as f64, set_alpha_to_one, true);
        points.dedup_by(|b, a| a.lambda == b.lambda);
        Grid::from_points(points)
    }
}

/// The points diffusers' `PNDMScheduler` steps through for its timesteps `ts` (descending, a
/// uniform `stride` apart; `point(t)` is the table's point at timestep `t`): each timestep, then
/// `last - stride` when that is a timestep of the table and `uniform_stride` (diffusers'
/// `prev_timestep`), else the clean point (`set_alpha_to_one`) or the table's first entry,
/// timestep 0. With a last timestep of 0 that end repeats it: diffusers' final step then calls
/// the network and leaves the sample as it is.
pub(crate) fn diffusers_points(
    point: impl Fn(f64) -> Point,
    ts: &[f64],
    stride: f64,
    set_alpha_to_one: bool,
    uniform_stride: bool,
) -> Vec<Point> {
    let mut points: Vec<Point> = ts.iter().map(|&t| point(t)).collect();
    let final_t = ts.last().map_or(0.0, |&t| t - stride);
    points.push(if final_t >= 0.0 && uniform_stride {
        point(final_t)
    } else if set_alpha_to_one {
        Point::clean(-1.0)
    } else {
        point(0.0)
    });
    points
}

impl Pndm {
    fn midpoints(&self, model: &Model, from: &Point, to: &Point) -> (Point, Point) {
        let schedule = model.schedule();
        match self.warmup {
            Warmup::RungeKutta { midpoint: PrkMidpoint::HalfStride { half } } => {
                let dir = if to.t < from.t { 1.0 } else { -1.0 };
                (schedule.point(from.t - dir * half), schedule.point(to.t + dir * half))
            }
            _ => {
                let mid = schedule.point_of_lambda(-(0.5 * (from.ksigma() + to.ksigma())).ln());
                (mid, mid)
            }
        }
    }
}

impl Solver for Pndm {
    type State = History;

    fn name(&self) -> &'static str {
        match self.warmup {
            Warmup::RungeKutta { .. } => "PNDM",
            Warmup::ImprovedEuler => "PNDM (PLMS)",
        }
    }

    fn order(&self) -> usize {
        4
    }

    fn nfe(&self, step: &Step) -> usize {
        // the warm-up steps are the first ones of a run (the history holds one entry per step)
        match self.warmup {
            _ if step.to.is_clean() => 1,
            Warmup::RungeKutta { .. } if step.index < PRK_STEPS => 4,
            Warmup::ImprovedEuler if step.index == 0 => 2,
            _ => 1,
        }
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        if let Warmup::RungeKutta { midpoint: PrkMidpoint::HalfStride { half } } = self.warmup {
            if !(half >= 0.0 && half.is_finite()) {
                return Err(Error::InvalidConfig(format!("PNDM's half stride must be finite and >= 0, got {half}")));
            }
            // the stages at `from.t - half` and `to.t + half` must lie within the step (the
            // network is not called off the grid's range)
            for st in steps.iter().take(PRK_STEPS).filter(|st| !st.to.is_clean()) {
                if half > (st.from.t - st.to.t).abs() {
                    return Err(Error::InvalidConfig(format!(
                        "PNDM's half stride {half} is longer than warm-up step {} (t = {} to {}): use at most half \
                         the step's length (diffusers: (num_train_timesteps / steps) / 2) or PrkMidpoint::Ksigma",
                        st.index, st.from.t, st.to.t
                    )));
                }
            }
        }
        refuse_zero_alpha_start(
            steps,
            "PNDM cannot start at alpha = 0 (its DDIM transfer divides by alpha): start the grid below t_max, or \
             use iPNDM or DPM-Solver++",
        )
    }

    fn init_state(&self) -> History {
        History::new(3)
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, hist: &mut History) -> Result<Tensor> {
        let model = &mut *ctx.model;
        let (from, to) = (&step.from, &step.to);
        let e1 = self.eval(model, x, from)?;
        let out = match self.warmup {
            Warmup::RungeKutta { .. } if hist.len() < PRK_STEPS && !to.is_clean() => {
                let (m1, m2) = self.midpoints(model, from, to);
                let e2 = self.eval(model, &self.transfer(model, from, &m1, x, &[(1.0, &e1)])?, &m2)?;
                let e3 = self.eval(model, &self.transfer(model, from, &m2, x, &[(1.0, &e2)])?, &m2)?;
                let e4 = self.eval(model, &self.transfer(model, from, to, x, &[(1.0, &e3)])?, to)?;
                let (a, b) = (1.0 / 6.0, 1.0 / 3.0);
                self.transfer(model, from, to, x, &[(a, &e1), (b, &e2), (b, &e3), (a, &e4)])?
            }
            Warmup::ImprovedEuler if hist.is_empty() && !to.is_clean() => {
                let e2 = self.eval(model, &self.transfer(model, from, to, x, &[(1.0, &e1)])?, to)?;
                self.transfer(model, from, to, x, &[(0.5, &e1), (0.5, &e2)])?
            }
            _ => match self.combine {
                PndmCombine::Noise => ksigma_multistep(from, to, x, &e1, hist, 4, self.weights)?,
                PndmCombine::RawOutput => {
                    let (_, b) = ksigma_weights(from, to, hist, 4, self.weights)?;
                    let mut terms = vec![(b[0], &e1)];
                    for (k, bk) in b.iter().enumerate().skip(1) {
                        if let Some((_, e)) = hist.get(k - 1) {
                            terms.push((*bk, e));
                        }
                    }
                    self.transfer(model, from, to, x, &terms)?
                }
            },
        };
        hist.push(*from, e1);
        Ok(out)
    }
}

impl Pndm {
    /// One network evaluation: a noise prediction, or the raw output for [`PndmCombine::RawOutput`].
    fn eval(&self, model: &mut Model, x: &Tensor, p: &Point) -> Result<Tensor> {
        match self.combine {
            PndmCombine::Noise => model.noise(x, p),
            PndmCombine::RawOutput => model.raw(x, p),
        }
    }

    /// The DDIM transfer `T(x, from -> to, e)` of the combination `e = sum_k c_k o_k` of outputs
    /// of [`Pndm::eval`] (raw outputs are converted at `(x, from)` after combining).
    fn transfer(
        &self,
        model: &Model,
        from: &Point,
        to: &Point,
        x: &Tensor,
        outputs: &[(f64, &Tensor)],
    ) -> Result<Tensor> {
        let w = weights(Form::Noise, from, to);
        match self.combine {
            PndmCombine::Noise => {
                let mut terms = vec![(w.c_x, x)];
                terms.extend(outputs.iter().map(|&(c, o)| (w.c[0] * c, o)));
                lincomb(&terms)
            }
            PndmCombine::RawOutput => {
                let e = model.noise_from_raw(x, &lincomb(outputs)?, from)?;
                lincomb(&[(w.c_x, x), (w.c[0], &e)])
            }
        }
    }
}
