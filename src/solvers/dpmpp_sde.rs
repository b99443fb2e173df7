//! DPM-Solver++ SDE: k-diffusion's `sample_dpmpp_sde` (ComfyUI `dpmpp_sde`), "DPM-Solver++
//! (stochastic)": the singlestep second-order DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095,
//! Algorithm 1) with an ancestral split ([`crate::math::ancestral`]) on each of its two stages.
//!
//! With `h = lambda_to - lambda_from`, the stage point `s` at `lambda_from + r h` (a schedule
//! point) and `fac = 1 / (2r)`:
//!
//! 1. split `from -> s` into `down_1` and noise `n_1`; `u = (sigma_down1 / sigma) x +
//!    alpha_s (1 - e^{-h_1}) D(x, from) + s_noise n_1 z_1` (`h_1 = lambda_down1 - lambda_from`);
//! 2. split `from -> to` into `down_2` and `n_2`; with `D_d = (1 - fac) D(x, from) + fac D(u, s)`,
//!    `x_to = (sigma_down2 / sigma) x + alpha_to (1 - e^{-h_2}) D_d + s_noise n_2 z_2`.
//!
//! `z_1` is drawn for the interval `from -> s`, `z_2` for `from -> to` (the intervals k-diffusion
//! asks its noise sampler for; on a Brownian path they are correlated increments). Into
//! `sigma = 0` the step is Euler (`x_to = D(x, from)`, 1 NFE, no draw); otherwise 2 NFE and two
//! draws. Weak order 1; `eta = 0` is DPM-Solver++(2S) with stage ratio `r`, second order.

use candle_core::Tensor;

use super::{
    order_unless_stochastic, refuse_zero_alpha_start, stages_unless_clean, validate_noise, Solver, StepContext,
};
use crate::error::{config_err, Result};
use crate::grid::Step;
use crate::math::ancestral::ancestral;
use crate::math::expint::{weights, Form};
use crate::math::ksigma::{euler, euler_terms};
use crate::ops::lincomb;

/// The DPM-Solver++ SDE solver (ComfyUI's `dpmpp_sde` is `DpmPpSde::default()`: `eta = 1`,
/// `s_noise = 1`, `r = 1/2`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample_with, DiscreteVp, DpmPpSde, End, Grid, Model, Prediction, SeededNoise, Spacing};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?;
/// let out = sample_with(&DpmPpSde::default(), &mut model, &grid, &x, &mut SeededNoise::new(3), |_| {})?;
/// for v in out.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-12) }
/// assert_eq!(model.nfe(), 19);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmPpSde {
    /// Fraction of the ancestral noise (1 = the SDE, 0 = deterministic DPM-Solver++(2S)).
    pub eta: f64,
    /// Scale of the added noise (k-diffusion's `s_noise`).
    pub s_noise: f64,
    /// Where the intermediate stage sits, as a fraction of the step in `lambda` (in `(0, 1]`).
    pub r: f64,
}

impl Default for DpmPpSde {
    fn default() -> Self {
        DpmPpSde { eta: 1.0, s_noise: 1.0, r: 0.5 }
    }
}

impl Solver for DpmPpSde {
    type State = ();

    fn name(&self) -> &'static str {
        "DPM-Solver++ SDE"
    }

    fn order(&self) -> usize {
        order_unless_stochastic(self.is_stochastic(), 2)
    }

    fn nfe(&self, step: &Step) -> usize {
        stages_unless_clean(step, 2)
    }

    fn is_stochastic(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        validate_noise("DPM-Solver++ SDE", self.eta, self.s_noise)?;
        if !(self.r > 0.0 && self.r <= 1.0) {
            return config_err(format!("DPM-Solver++ SDE needs a stage ratio r in (0, 1], got {}", self.r));
        }
        refuse_zero_alpha_start(
            steps,
            "DPM-Solver++ SDE cannot start at alpha = 0 (its stage would be there too): start the grid below t_max \
             or use dpmpp_2m_sde",
        )
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let d0 = ctx.model.data_linear(x, from)?;
        if to.is_clean() {
            return euler(x, from, &d0, to);
        }
        let mid = ctx.model.schedule().point_of_lambda(from.lambda + self.r * step.h());
        // stage 1: an ancestral Euler step to the stage point
        let split1 = ancestral(from, &mid, self.eta);
        let c1 = self.s_noise * split1.noise;
        let z1 = ctx.noise_if(c1, x, from, &mid)?;
        let terms: Vec<(f64, &Tensor)> =
            euler_terms(x, from, &d0, &split1.down).into_iter().chain(z1.as_ref().map(|z| (c1, z))).collect();
        let u = lincomb(&terms)?;
        let d1 = ctx.model.data_linear(&u, &mid)?;
        // stage 2: the whole step with the combined data prediction
        let split2 = ancestral(from, to, self.eta);
        let c2 = self.s_noise * split2.noise;
        let z2 = ctx.noise_if(c2, x, from, to)?;
        let w = weights(Form::Data, from, &split2.down);
        let fac = 0.5 / self.r;
        let (k0, k1) = (w.c[0] * (1.0 - fac), w.c[0] * fac);
        let terms: Vec<(f64, &Tensor)> =
            [(w.c_x + k0 * d0.c_x, x), (k0 * d0.c_out, &d0.out), (k1 * d1.c_x, &u), (k1 * d1.c_out, &d1.out)]
                .into_iter()
                .chain(z2.as_ref().map(|z| (c2, z)))
                .collect();
        lincomb(&terms)
    }
}
