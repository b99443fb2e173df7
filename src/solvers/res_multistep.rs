//! RES multistep: the second-order multistep exponential integrator of Zhang et al. 2023
//! ("Improved Order Analysis and Design of Exponential Integrator for Diffusion Models Sampling",
//! arXiv:2308.02157, the "RES" multistep scheme; ComfyUI's `res_multistep`, `res_multistep_cfg_pp`,
//! `res_multistep_ancestral`, `res_multistep_ancestral_cfg_pp`).
//!
//! The data prediction is interpolated linearly in `lambda` through the current prediction `x0`
//! and the previous one `x0'` and integrated exactly against the exponential-integrator kernel.
//! With `h = lambda_down - lambda` (the step to the ancestral noise level `s_down`,
//! [`crate::math::ancestral::ancestral`]; `s_down = s_to` for `eta = 0`) and
//! `c2 = (lambda' - lambda_down') / h` (the previous prediction's `lambda` relative to the
//! previous step's end, i.e. `-h_prev / h` for `eta = 0`), in `y = x / alpha`:
//!
//! `y_to = e^{-h} y + h (b1 x0 + b2 x0') + s_noise s_up z`,
//! `b1 = phi_1(-h) - phi_2(-h) / c2`, `b2 = phi_2(-h) / c2`
//!
//! (`h phi_1(-h) = 1 - e^{-h}`, `h phi_2(-h) = 1 - phi_1(-h)`, the `tail` weights of
//! [`crate::math::phi`]). The first step, and the step into `sigma = 0`, are ancestral Euler
//! steps. For `eta = 0` it is DPM-Solver++(2M) with the exact second-order weight (diffusers'
//! `solver_type = "heun"`), second order. With [`Guidance::CfgPp`] (CFG++, arXiv:2406.08070) the
//! step interpolates the unconditional predictions, and the guidance `x0 - x0_u` is added to
//! `y` before the step (Euler steps: after it), as ComfyUI does ([`crate::GuidedData`]). 1 NFE
//! per step; one noise draw per step before `sigma = 0` when `eta > 0`.

use candle_core::Tensor;

use super::{validate_noise, Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::ancestral::ancestral;
use crate::math::expint::{weights, Form};
use crate::math::phi::tail;
use crate::model::Guidance;
use crate::ops::lincomb;

/// RES multistep (second order, data prediction), with ancestral noise and CFG++ variants.
///
/// ComfyUI: `res_multistep` is the default (`eta = 0`); `res_multistep_cfg_pp` adds
/// `guidance: Guidance::CfgPp`; `res_multistep_ancestral(_cfg_pp)` have `eta = 1`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, testing::GaussianMixture, DiscreteVp, End, Grid, Model, Prediction, ResMultistep, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 20, End::Min)?;
/// let gm = GaussianMixture::example(3, 2, 0)?;
/// let mut model = Model::new(gm.denoiser(&s, Prediction::Epsilon), &s, Prediction::Epsilon);
/// let noise = Tensor::from_vec(diffusion_samplers::SeededNoise::new(1).normal_vec(12), (4, 3), &Device::Cpu)?;
/// let x = sample(&ResMultistep::default(), &mut model, &grid, &noise)?;
/// let exact = gm.exact_endpoint(&noise, &grid.points()[0], &grid.points()[20])?;
/// assert!((x - exact)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-2);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ResMultistep {
    /// Fraction of the ancestral noise (0 = deterministic).
    pub eta: f64,
    /// Scale of the added noise.
    pub s_noise: f64,
    /// Standard guidance or CFG++.
    pub guidance: Guidance,
}

impl ResMultistep {
    /// ComfyUI's `res_multistep_ancestral`: `eta = 1`, `s_noise = 1`.
    pub fn ancestral() -> ResMultistep {
        ResMultistep { eta: 1.0, s_noise: 1.0, guidance: Guidance::Standard }
    }

    fn noisy(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }
}

/// The previous step's data prediction and where it was taken.
#[derive(Clone, Debug)]
pub struct ResState {
    /// `lambda` of the previous step's start (where `x0` was predicted).
    lambda: f64,
    /// `lambda` of the previous step's ancestral end (`s_down`).
    lambda_down: f64,
    /// The previous data prediction (unconditional with CFG++).
    x0: Tensor,
}

impl Solver for ResMultistep {
    type State = Option<ResState>;

    fn name(&self) -> &'static str {
        match (self.noisy(), self.guidance) {
            (false, Guidance::Standard) => "RES multistep",
            (false, Guidance::CfgPp) => "RES multistep CFG++",
            (true, Guidance::Standard) => "RES multistep ancestral",
            (true, Guidance::CfgPp) => "RES multistep ancestral CFG++",
        }
    }

    fn order(&self) -> usize {
        if self.noisy() {
            1
        } else {
            2
        }
    }

    fn is_stochastic(&self) -> bool {
        self.noisy()
    }

    fn needs_unconditional(&self) -> bool {
        self.guidance.needs_unconditional()
    }

    fn validate(&self, _steps: &[Step]) -> Result<()> {
        validate_noise("RES multistep", self.eta, self.s_noise)
    }

    fn init_state(&self) -> Option<ResState> {
        None
    }

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut Option<ResState>) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let g = ctx.model.guided_data(self.guidance, x, from)?;
        // what the step integrates (the unconditional prediction under CFG++), kept for the next
        let x0 = g.data.materialize(x)?;
        let eta = if self.noisy() { self.eta } else { 0.0 };
        let split = ancestral(from, to, eta);
        let down = split.down;
        let mut terms: Vec<(f64, &Tensor)> = vec![];
        match state.as_ref() {
            Some(prev) if !down.is_clean() => {
                let h = down.lambda - from.lambda;
                let c2 = (prev.lambda - prev.lambda_down) / h;
                let (t0, t1) = (tail(0, h), tail(1, h));
                let (hb1, hb2) = if c2 == 0.0 || !c2.is_finite() { (t0, 0.0) } else { (t0 - t1 / c2, t1 / c2) };
                terms.extend([(down.sigma / from.sigma, x), (to.alpha * hb1, &x0), (to.alpha * hb2, &prev.x0)]);
                // the guidance enters y before the step: scaled by e^{-h} = s_down / s
                terms.extend(g.guidance_terms(down.sigma / from.sigma * from.alpha));
            }
            _ => {
                // an ancestral Euler step; the guidance after it
                let w = weights(Form::Data, from, &down);
                terms.extend([(w.c_x, x), (w.c[0], &x0)]);
                terms.extend(g.guidance_terms(to.alpha));
            }
        }
        let c_z = if to.is_clean() { 0.0 } else { self.s_noise * split.noise };
        let z = ctx.noise_if(c_z, x, from, to)?;
        terms.extend(z.as_ref().map(|z| (c_z, z)));
        let out = lincomb(&terms)?;
        *state = Some(ResState { lambda: from.lambda, lambda_down: down.lambda, x0 });
        Ok(out)
    }
}
