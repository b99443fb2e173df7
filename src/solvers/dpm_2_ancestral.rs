//! DPM-2 ancestral: k-diffusion's `sample_dpm_2_ancestral` (ComfyUI `dpm_2_ancestral`),
//! "ancestral sampling with DPM-Solver second-order steps" (Lu et al. 2022, arXiv:2206.00927;
//! the ancestral split of Karras et al. 2022, arXiv:2206.00364).
//!
//! Each step splits `s -> s_to` into `s_down`, `s_up` ([`crate::math::ancestral`]), takes the
//! [`crate::Dpm2`] midpoint step from `s` to `s_down` (midpoint `sqrt(s s_down)`; an Euler step
//! when `s_down = 0`) and adds fresh noise:
//!
//! `y_to = y_down + s_noise s_up z`  (in `x`: `x_to = alpha_to y_down + s_noise sigma_to u z`).
//!
//! 2 NFE per step (1 when `s_down = 0`, i.e. into `sigma = 0`), one noise draw per step with
//! noise (interval `from -> to`). Weak order 1; `eta = 0` is [`crate::Dpm2`] (order 2).
//! k-diffusion adds no noise when `s_down = 0` before `sigma = 0` (only with `eta > 1`, where the
//! whole step is noise); this solver adds it (the sample must reach noise level `s_to`).

use candle_core::Tensor;

use super::dpm_2::dpm2_step;
use super::{order_unless_stochastic, refuse_zero_alpha_start, validate_noise, Solver, StepContext};
use crate::error::Result;
use crate::grid::Step;
use crate::math::ancestral::ancestral;

/// The DPM-2 ancestral solver (ComfyUI's `dpm_2_ancestral` is `Dpm2Ancestral::default()`:
/// `eta = 1`, `s_noise = 1`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample_with, DiscreteVp, Dpm2Ancestral, End, Grid, Model, Prediction, Spacing, TensorNoise};
/// let s = DiscreteVp::scaled_linear(0.00085, 0.012, 1000)?;
/// let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, 4, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.zeros_like(), &s, Prediction::Sample);
/// let x = Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?;
/// // one draw per step before the last
/// let mut noise = TensorNoise::new((0..3).map(|_| x.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?);
/// let out = sample_with(&Dpm2Ancestral::default(), &mut model, &grid, &x, &mut noise, |_| {})?;
/// assert_eq!((noise.remaining(), model.nfe()), (0, 7));
/// assert_eq!(out.to_vec1::<f64>()?, vec![0.0; 3]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dpm2Ancestral {
    /// Fraction of the ancestral noise (1 = ancestral sampling, 0 = deterministic DPM-2).
    pub eta: f64,
    /// Scale of the added noise (k-diffusion's `s_noise`).
    pub s_noise: f64,
}

impl Default for Dpm2Ancestral {
    fn default() -> Self {
        Dpm2Ancestral { eta: 1.0, s_noise: 1.0 }
    }
}

impl Solver for Dpm2Ancestral {
    type State = ();

    fn name(&self) -> &'static str {
        "DPM-2 ancestral"
    }

    fn order(&self) -> usize {
        order_unless_stochastic(self.is_stochastic(), 2)
    }

    fn nfe(&self, step: &Step) -> usize {
        // s_down = 0 only into sigma = 0 or when the whole step is noise (eta^2 (1 - e^{-2h}) >= 1)
        if ancestral(&step.from, &step.to, self.eta).down.is_clean() {
            1
        } else {
            2
        }
    }

    fn is_stochastic(&self) -> bool {
        self.eta > 0.0 && self.s_noise > 0.0
    }

    fn validate(&self, steps: &[Step]) -> Result<()> {
        validate_noise("DPM-2 ancestral", self.eta, self.s_noise)?;
        refuse_zero_alpha_start(
            steps,
            "DPM-2 ancestral cannot start at alpha = 0 (infinite noise level): start the grid below t_max or use \
             euler_ancestral",
        )
    }

    fn init_state(&self) {}

    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, _state: &mut ()) -> Result<Tensor> {
        let (from, to) = (&step.from, &step.to);
        let d0 = ctx.model.data_linear(x, from)?;
        let split = ancestral(from, to, self.eta);
        let c_z = self.s_noise * split.noise;
        let z = ctx.noise_if(c_z, x, from, to)?;
        let noise: Vec<(f64, &Tensor)> = z.as_ref().map(|z| (c_z, z)).into_iter().collect();
        dpm2_step(ctx, x, from, &d0, &split.down, &noise)
    }
}
