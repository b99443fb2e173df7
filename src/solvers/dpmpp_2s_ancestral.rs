//! DPM-Solver++(2S) ancestral: k-diffusion's `sample_dpmpp_2s_ancestral` (ComfyUI
//! `dpmpp_2s_ancestral`), the singlestep second-order DPM-Solver++ (Lu et al. 2022,
//! arXiv:2211.01095, Algorithm 1 with `r = 1/2`) on the deterministic part of an ancestral step.
//!
//! Each step splits `from -> to` into `down` and fresh noise ([`crate::math::ancestral`]); with
//! `h = lambda_down - lambda_from` and the midpoint `s` at `lambda_from + h / 2` (a schedule point):
//!
//! `u = (sigma_s / sigma) x + alpha_s (1 - e^{-h/2}) D(x, from)`,
//! `x_down = (sigma_down / sigma) x + alpha_down (1 - e^{-h}) D(u, s)`,
//! `x_to = x_down + s_noise sigma_to u z`,
//!
//! (the 2S update with `r = 1/2` weighs the midpoint prediction only); into `sigma = 0` (or
//! whenever `down` is clean) the deterministic part is the Euler step `x_down = alpha_to D(x, from)`.
//! 2 NFE per step, 1 into `sigma = 0`; one noise draw per step before `sigma = 0` (interval
//! `from -> to`). Weak order 1; `eta = 0` is DPM-Solver++(2S) with a midpoint evaluation, second
//! order.
//!
//! With [`Guidance::CfgPp`] (CFG++, Chung et al. 2024, arXiv:2406.08070; ComfyUI's
//! `dpmpp_2s_ancestral_cfg_pp`) both stages integrate the unconditional predictions `x0_u`,
//! `x0_u2` of a guided network and the step adds the guidance of its first evaluation
//! ([`crate::GuidedData`]): `x_to = x_down[D -> D_u] + s_noise sigma_to u z + alpha_to (x0 - x0_u)`,
//! `x0` into `sigma = 0`. Where `x0 = x0_u` it is the step above; with guidance the term
//! `x0 - x0_u` enters every step at full weight (no ODE limit).

use candle_core::Tensor;

use super::{order_unless_stochastic, refuse_zero_alpha_start, validate_noise, Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::ancestral::ancestral;
use crate::math::expint::{weights, Form};
use crate::math::ksigma::{euler, euler_terms};
use crate::model::Guidance;
use crate::ops::lincomb;

/// The DPM-Solver++(2S) ancestral solver (ComfyUI's `dpmpp_2s_ancestral` is
/// `DpmPp2sAncestral::default()`: `eta = 1`, `s_noise = 1`; its `dpmpp_2s_ancestral_cfg_pp`
/// [`DpmPp2sAncestral::cfg_pp`], which needs a guided network, [`crate::ClassifierFreeGuidance`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, DiscreteVp, DpmPp2sAncestral, End, Grid, Model, Prediction, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&DpmPp2sAncestral::default(), &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// assert_eq!(model.nfe(), 19);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmPp2sAncestral {
    /// Fraction of the ancestral noise (1 = ancestral sampling, 0 = deterministic).
    pub eta: f64,
    /// Scale of the added noise (k-diffusion's `s_noise`).
    pub s_noise: f64,
    /// Standard guidance or CFG++.
    pub guidance: Guidance,
}

impl Default for DpmPp2sAncestral {
    fn default() -> Self {
        DpmPp2sAncestral { eta: 1.0, s_noise: 1.0, guidance: Guidance::Standard }
    }
}

impl DpmPp2sAncestral {
    /// ComfyUI's `dpmpp_2s_ancestral_cfg_pp`: `eta = 1`, `s_noise = 1`, [`Guidance::CfgPp`]
    /// (needs a guided network, [`crate::ClassifierFreeGuidance`]).
    ///
    /// ```
    /// use diffusion_samplers::{AnySolver, DpmPp2sAncestral, Guidance, Solver};
    /// let solver = DpmPp2sAncestral::cfg_pp();
    /// assert!(solver.needs_unconditional() && !DpmPp2sAncestral::default().needs_unconditional());
    /// assert_eq!(AnySolver::new(solver).to_string(), "dpmpp_2s_ancestral_cfg_pp");
    /// assert_eq!(solver.guidance, Guidance::CfgPp);
    /// ```
    pub fn cfg_pp() -> DpmPp2sAncestral {
        DpmPp2sAncestral { guidance: Guidance::CfgPp, ..DpmPp2sAncestral::default() }
    }
}

impl Solver for DpmPp2sAncestral {
    type State = ();

    fn name(&self) -> &'static str {
        match self.guidance {
            Guidance::Standard => "DPM-Solver++(2S) ancestral",
            Guidance::CfgPp => "DPM-Solver++(2S) ancestral CFG++",
        }
    }

    fn order(&self) -> usize {
        order_unless_stochastic(self.is_stochastic(), 2)
    }

    fn nfe(&self, step: &Step) -> usize {
        // down is clean only into sigma = 0 or when the whole step is noise (eta > 1)
        if ancestral(&step.from, &step.to, self.eta).down.is_clean() {
            1
        } else {
            2
        }
    }

    fn is_stochastic(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }

    fn needs_unconditional(&self) -> bool {
        self.guidance.needs_unconditional()
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        validate_noise("DPM-Solver++(2S) ancestral", self.eta, self.s_noise)?;
        refuse_zero_alpha_start(
            steps,
            "DPM-Solver++(2S) ancestral cannot start at alpha = 0 (its midpoint would be there too): start the \
             grid below t_max or use euler_ancestral",
        )
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let g0 = ctx.model.guided_data(self.guidance, x, from)?;
        let d0 = &g0.data;
        let split = ancestral(from, to, self.eta);
        let down = split.down;
        let c_z = self.s_noise * split.noise;
        let z = ctx.noise_if(c_z, x, from, to)?;
        let extra: Vec<(f64, &Tensor)> =
            g0.guidance_terms(to.alpha).into_iter().chain(z.as_ref().map(|z| (c_z, z))).collect();
        if down.is_clean() {
            let terms: Vec<(f64, &Tensor)> = euler_terms(x, from, d0, &down).into_iter().chain(extra).collect();
            return lincomb(&terms);
        }
        let mid = ctx.model.schedule().point_of_lambda(0.5 * (from.lambda + down.lambda));
        let u = euler(x, from, d0, &mid)?;
        let d1 = ctx.model.guided_data(self.guidance, &u, &mid)?.data;
        let w = weights(Form::Data, from, &down);
        let terms: Vec<(f64, &Tensor)> =
            [(w.c_x, x), (w.c[0] * d1.c_x, &u), (w.c[0] * d1.c_out, &d1.out)].into_iter().chain(extra).collect();
        lincomb(&terms)
    }
}
