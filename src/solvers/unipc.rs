//! UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
//! Diffusion Models", arXiv:2302.04867, Algorithms 1-2; diffusers' `UniPCMultistepScheduler`):
//! the multistep predictor UniP-p and the corrector UniC-p, orders 1-3, 1 NFE per step.
//!
//! With `h = lambda_to - lambda_from`, the model outputs `m0` (at `from`) and `m_i` (at older
//! points, `r_i = (lambda_i - lambda_from)/h < 0`), `D1_i = (m_i - m0)/r_i`, and the
//! exponential-integrator weights `c_x, c_k` of [`crate::math::expint`] and
//! [`crate::math::lagrange::taylor_weight`] (data form for `predict_x0`, noise form otherwise), the
//! predictor is
//!
//! `x_to = c_x x + c0 m0 + sum_i g_i D1_i`,
//!
//! where the `g_i` solve the moment conditions `sum_i r_i^{k-1} g_i = k! c_k`, `k = 1..p-1`
//! (the paper's `R_p(h) a_p = Phi_p(h) / B(h)` times `B(h)`), except for order 2, where UniPC fixes
//! `a = 1/2`, i.e. `g = B(h)/2` scaled like `c0` ([`BVariant`]). The corrector redoes the previous
//! step `s -> t` once the model output `m_t` at its end is known, adding the node `r = 1`:
//! `x_t^c = c_x x_s + c0 m_s + sum_i g_i D1_i + g_t (m_t - m_s)` with `p` moment conditions
//! (order 1: `g_t = B(h)/2`). The corrected `x_t^c` continues the chain while `m_t` (taken at the
//! predicted `x_t`) is reused, so the corrector costs no evaluation; UniPC-p has order `p + 1`.
//!
//! Into `sigma = 0` (`h = inf`) the [`OrderPolicy`] takes a first-order predictor step, which
//! returns the data prediction (its exact value); no term weighted by `B(h)` enters it, so `bh1`
//! gives a finite, correct result there, equal to diffusers' run with its `B(h) * 0 = -inf * 0 =
//! NaN` on that step replaced by the limit (`tests/solvers_c1_parity.rs`, `unipc_bh1zero_*`). The
//! step into `sigma = 0` is first order even with `lower_order_final = false` (diffusers' higher
//! order there divides by `r = 0` and returns inf/NaN, with bh2 as well), and in the noise form
//! the step uses the finite limit of its weights (diffusers: `0 * inf = NaN`).

use candle_core::Tensor;

use super::{validate_expint, Solver, StepContext};
use crate::error::{Error, Result};
use crate::grid::Step;
use crate::math::expint::{weights, Form};
use crate::math::lagrange::{moment_weights, taylor_weight};
use crate::math::phi::factorial;
use crate::math::{History, OrderPolicy};
use crate::ops::lincomb;
use crate::schedule::Point;

/// UniPC's `B(h)` (diffusers' `solver_type`), which sets the fixed second-order weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BVariant {
    /// `B(h) = h` (`bh1`, recommended by the paper for unconditional sampling).
    Bh1,
    /// `B(h) = e^h - 1` (`bh2`, diffusers' default, recommended for guided sampling).
    #[default]
    Bh2,
}

/// When the corrector runs.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Corrector {
    /// After every step (diffusers' `disable_corrector=[]`).
    #[default]
    All,
    /// Never: plain UniP.
    None,
    /// After every step except the listed ones (diffusers' `disable_corrector`: the 0-based
    /// indices of the steps whose result is not corrected).
    Except(Vec<usize>),
}

impl Corrector {
    fn after(&self, index: usize) -> bool {
        match self {
            Corrector::All => true,
            Corrector::None => false,
            Corrector::Except(list) => !list.contains(&index),
        }
    }
}

/// How UniPC ends a grid that ends at `sigma = 0`.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum UniPcEnd {
    /// A first-order step to `sigma = 0` (it returns the data prediction).
    #[default]
    Clean,
    /// ComfyUI's `uni_pc` / `uni_pc_bh2`: the last step goes to the noise level
    /// `sigma / alpha = s` instead (ComfyUI: 0.001, a first-order UniP step without corrector)
    /// and returns `x / alpha` there as the clean sample.
    StopAt(f64),
}

/// The UniPC solver.
///
/// diffusers option -> field (`UniPCMultistepScheduler`): `solver_order` -> `policy.order`;
/// `lower_order_final` (default true) -> `policy.lower_order_final = LowerOrderFinal::Always`
/// (UniPC lowers the order on the last steps whatever the step count; false:
/// `LowerOrderFinal::Never`); `solver_type` -> `variant`; `predict_x0` -> `form` (true:
/// [`Form::Data`]); `disable_corrector` -> `corrector = Corrector::Except(list)`. `solver_p` (an
/// external predictor) is not supported.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, testing::GaussianMixture, DiscreteVp, End, Grid, Model, Prediction, Spacing, UniPc};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Min)?;
/// let gm = GaussianMixture::example(3, 2, 0)?;
/// let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
/// let noise = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(12), (4, 3), &Device::Cpu)?;
/// let x = sample(&UniPc::diffusers_default(), &mut model, &grid, &noise)?;
/// let exact = gm.exact_endpoint(&noise, &grid.points()[0], &grid.points()[10])?;
/// assert!((x - exact)?.abs()?.max_all()?.to_scalar::<f64>()? < 2e-2);
/// assert_eq!(model.nfe(), 10); // the corrector reuses the next step's evaluation
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct UniPc {
    /// Order `p` of UniP / UniC (1-3) and when to lower it.
    pub policy: OrderPolicy,
    /// `B(h)`.
    pub variant: BVariant,
    /// Data (`predict_x0`, UniPC with DPM-Solver++'s form) or noise prediction.
    pub form: Form,
    /// Which steps get the corrector.
    pub corrector: Corrector,
    /// The step into `sigma = 0`.
    pub end: UniPcEnd,
}

impl UniPc {
    /// UniPC-`order` (1-3), bh2, data prediction, corrector after every step, full order to the end.
    pub fn order(order: usize) -> UniPc {
        UniPc {
            policy: OrderPolicy::fixed(order),
            variant: BVariant::Bh2,
            form: Form::Data,
            corrector: Corrector::All,
            end: UniPcEnd::Clean,
        }
    }

    /// ComfyUI's `uni_pc` (`variant: Bh1`) and `uni_pc_bh2` (`Bh2`): order 3 (ComfyUI uses
    /// `min(3, steps - 1)`, which the warm-up and the lower order on the last two steps make the
    /// same), data prediction, corrector after every step but the last, and the last step to
    /// `sigma / alpha = 0.001` ([`UniPcEnd::StopAt`]). ComfyUI's KSampler also drops the
    /// penultimate noise level of the schedule for these samplers (it computes `steps + 1` levels
    /// and removes the second-to-last): that is part of the grid, not of the solver.
    pub fn comfy(variant: BVariant) -> UniPc {
        UniPc {
            policy: OrderPolicy { order: 3, lower_order_final: crate::LowerOrderFinal::Always, euler_at_final: false },
            variant,
            end: UniPcEnd::StopAt(0.001),
            ..UniPc::order(3)
        }
    }

    /// diffusers' `UniPCMultistepScheduler` defaults: order 2, bh2, `predict_x0`, lower order on
    /// the last steps, corrector everywhere.
    pub fn diffusers_default() -> UniPc {
        UniPc {
            policy: OrderPolicy { order: 2, lower_order_final: crate::LowerOrderFinal::Always, euler_at_final: false },
            ..UniPc::order(2)
        }
    }

    /// `-scale_to * B(h)` for the step `from -> to`: the weight that a unit `rho` gives a
    /// difference term (equal to `c0` for bh2). Finite wherever `h` is.
    fn b_weight(&self, from: &Point, to: &Point, c0: f64) -> f64 {
        let h = to.lambda - from.lambda;
        match (self.variant, self.form) {
            (BVariant::Bh2, _) => c0,
            (BVariant::Bh1, Form::Data) => to.alpha * h,
            (BVariant::Bh1, Form::Noise) => -to.sigma * h,
        }
    }

    /// The update `x_to = c_x x + c0 m0 + sum_i g_i D1_i` from `x` at `from` with output `m0` and
    /// the difference nodes `(point, output)`: `g` from the moment conditions, or with `fixed` (a
    /// single node) UniPC's fixed `rho = 1/2`, `g = B(h)/2` scaled.
    fn update(
        &self,
        x: &Tensor,
        from: &Point,
        to: &Point,
        m0: &Tensor,
        nodes: &[(&Point, &Tensor)],
        fixed: bool,
    ) -> Result<Tensor> {
        let form = self.form;
        let w = weights(form, from, to);
        let mut terms: Vec<(f64, &Tensor)> = vec![(w.c_x, x), (w.c[0], m0)];
        if nodes.is_empty() {
            return lincomb(&terms);
        }
        let h = to.lambda - from.lambda;
        if !h.is_finite() {
            return Err(Error::Unsupported(
                "a UniPC step of order > 1 into sigma = 0 is undefined: take a first-order step there".into(),
            ));
        }
        if h == 0.0 {
            // a step of zero length (a repeated point): no difference term has weight
            return lincomb(&terms);
        }
        let r: Vec<f64> = nodes.iter().map(|(p, _)| (p.lambda - from.lambda) / h).collect();
        let g = if fixed {
            vec![0.5 * self.b_weight(from, to, w.c[0])]
        } else {
            let moments: Vec<f64> = (1..=r.len()).map(|k| factorial(k) * taylor_weight(form, from, to, k)).collect();
            moment_weights(&r, &moments)?
        };
        // sum_i g_i (m_i - m0) / r_i
        let mut c_m0 = w.c[0];
        for (i, (_, m)) in nodes.iter().enumerate() {
            let k = g[i] / r[i];
            terms.push((k, m));
            c_m0 -= k;
        }
        terms[1].0 = c_m0;
        lincomb(&terms)
    }
}

impl Default for UniPc {
    fn default() -> Self {
        UniPc::diffusers_default()
    }
}

/// The state of [`UniPc`]: the model outputs (newest first) and the pending corrector input.
#[derive(Debug, Default)]
pub struct UniPcState {
    history: History,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    /// The (corrected) sample the last predictor started from.
    x: Tensor,
    order: usize,
    index: usize,
}

impl Solver for UniPc {
    type State = UniPcState;

    fn name(&self) -> &'static str {
        match (self.variant, self.policy.order) {
            (BVariant::Bh1, 1) => "UniPC-1 (bh1)",
            (BVariant::Bh1, 2) => "UniPC-2 (bh1)",
            (BVariant::Bh1, _) => "UniPC-3 (bh1)",
            (BVariant::Bh2, 1) => "UniPC-1 (bh2)",
            (BVariant::Bh2, 2) => "UniPC-2 (bh2)",
            (BVariant::Bh2, _) => "UniPC-3 (bh2)",
        }
    }

    fn order(&self) -> usize {
        // the corrector raises UniP-p to order p + 1 at no extra evaluation
        match self.corrector {
            Corrector::None => self.policy.order,
            _ => self.policy.order + 1,
        }
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        if let UniPcEnd::StopAt(s) = self.end {
            if !(s > 0.0 && s.is_finite()) {
                return crate::error::config_err(format!("UniPC's final noise level must be positive, got {s}"));
            }
        }
        let message = "UniPC with noise prediction cannot step from alpha = 0: use the data form (predict_x0)";
        validate_expint(&self.policy, "UniPC", self.form, steps, message)
    }

    fn init_state(&self) -> UniPcState {
        UniPcState { history: History::new(self.policy.order), pending: None }
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut UniPcState) -> Result<Tensor> {
        let from = &step.from;
        let m_t = match self.form {
            Form::Data => ctx.model.data(x, from)?,
            Form::Noise => ctx.model.noise(x, from)?,
        };
        // UniC: redo the previous step s -> from with the new output m_t at its end
        let corrected;
        let x = match state.pending.take() {
            Some(p) if self.corrector.after(p.index) && p.index + 1 == step.index => {
                let hist = &state.history;
                let (s, m_s) =
                    hist.newest().ok_or_else(|| Error::InvalidConfig("UniPC state lost its history".into()))?;
                let mut nodes: Vec<(&Point, &Tensor)> = (1..p.order).filter_map(|i| hist.get(i)).collect();
                nodes.push((from, &m_t));
                corrected = self.update(&p.x, s, from, m_s, &nodes, p.order == 1)?;
                &corrected
            }
            _ => x,
        };
        state.history.push(*from, m_t);
        let order = self.policy.order_at(state.history.len(), step);
        let hist = &state.history;
        let (p0, m0) = hist.newest().ok_or_else(|| Error::InvalidConfig("UniPC state lost its history".into()))?;
        let nodes: Vec<(&Point, &Tensor)> = (1..order).filter_map(|i| hist.get(i)).collect();
        let stop = match self.end {
            UniPcEnd::StopAt(s) if step.to.is_clean() => {
                let alpha = 1.0 / s.hypot(1.0);
                Some(Point::new(step.to.t, alpha, s * alpha))
            }
            _ => None,
        };
        let out = self.update(x, p0, stop.as_ref().unwrap_or(&step.to), m0, &nodes, order == 2)?;
        let out = match stop {
            Some(p) => lincomb(&[(1.0 / p.alpha, &out)])?,
            None => out,
        };
        state.pending = Some(Pending { x: x.clone(), order, index: step.index });
        Ok(out)
    }
}
