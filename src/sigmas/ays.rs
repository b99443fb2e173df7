//! Align Your Steps (Sabour, Fidler & Kreis 2024, arXiv:2404.14507): the optimised 10-step
//! schedules NVIDIA published for Stable Diffusion 1.5, SDXL and Stable Video Diffusion
//! (<https://research.nvidia.com/labs/toronto-ai/AlignYourSteps/howto.html>), and the paper's
//! log-linear interpolation to other step counts.

use std::fmt;

use super::{linspace, Level};
use crate::error::Result;

/// The model family an Align Your Steps list was optimised for. A list is valid only for its
/// family's noise schedule and data: on another model it is a hand-made spacing like any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AysModel {
    /// Stable Diffusion 1.5 (and 2.x base, same table): discrete 1000-step scaled-linear betas
    /// 0.00085..0.012 (`DiscreteVp::scaled_linear(0.00085, 0.012, 1000)`). The list is that
    /// table's sigmas at training timesteps `[999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0]`.
    Sd15,
    /// SDXL: the same table; training timesteps `[999, 845, 730, 587, 443, 310, 193, 116, 53, 13, 0]`.
    Sdxl,
    /// Stable Video Diffusion: an EDM-style model (`Edm` with `sigma_min = 0.002`,
    /// `sigma_max = 700`), sigmas from 700 to 0.002.
    Svd,
}

impl AysModel {
    /// The published 10-step noise levels (`sigma / alpha`), from `sigma_max` to `sigma_min`.
    pub fn ten_step_sigmas(self) -> [f64; 11] {
        match self {
            AysModel::Sd15 => [
                14.6146412293,
                6.4745760956,
                3.8636745985,
                2.6946151520,
                1.8841921177,
                1.3943805092,
                0.9642583904,
                0.6523686016,
                0.3977456272,
                0.1515232662,
                0.0291671582,
            ],
            AysModel::Sdxl => [
                14.6146412293,
                6.3184485287,
                3.7681790315,
                2.1811480769,
                1.3405244945,
                0.8620721141,
                0.5550693289,
                0.3798540708,
                0.2332364134,
                0.1114188177,
                0.0291671582,
            ],
            AysModel::Svd => [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
        }
    }

    /// The published list interpolated to `n` noise levels: `ln(sigma)` linear in the position
    /// `linspace(0, 1, n)` between the list's positions `linspace(0, 1, 11)` (the paper's and
    /// NVIDIA's `loglinear_interp`); `n = 11` is the list itself.
    ///
    /// ```
    /// use diffusion_samplers::sigmas::AysModel;
    /// let s = AysModel::Sd15.sigmas(21);
    /// // the published levels at every other position (up to exp(ln(x)) rounding) ...
    /// for (got, want) in [(s[0], 14.6146412293), (s[2], 6.4745760956), (s[20], 0.0291671582)] {
    ///     assert!((got / want - 1.0).abs() < 1e-14);
    /// }
    /// // ... and their geometric means between them
    /// assert!((s[1] / (14.6146412293f64 * 6.4745760956).sqrt() - 1.0).abs() < 1e-14);
    /// ```
    pub fn sigmas(self, n: usize) -> Vec<f64> {
        let list = self.ten_step_sigmas();
        if n == list.len() {
            return list.to_vec();
        }
        // ascending in sigma, as the reference interpolates
        let ys: Vec<f64> = list.iter().rev().map(|s| s.ln()).collect();
        let xs = linspace(0.0, 1.0, list.len());
        let mut out: Vec<f64> = linspace(0.0, 1.0, n).into_iter().map(|x| np_interp(x, &xs, &ys).exp()).collect();
        out.reverse();
        out
    }
}

impl fmt::Display for AysModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AysModel::Sd15 => "SD1",
            AysModel::Sdxl => "SDXL",
            AysModel::Svd => "SVD",
        })
    }
}

/// `steps + 1` levels of the interpolated list; a clean grid replaces the last by 0 (ComfyUI's
/// `AlignYourStepsScheduler`).
pub(super) fn levels(model: AysModel, steps: usize, clean: bool) -> Result<Vec<Level>> {
    let sigmas = model.sigmas(steps + 1);
    let keep = if clean { steps } else { steps + 1 };
    let mut levels: Vec<Level> = sigmas.into_iter().take(keep).map(Level::Sigma).collect();
    if clean {
        levels.push(Level::Clean);
    }
    Ok(levels)
}

/// `np.interp(x, xs, ys)` for increasing `xs`, `x` within `[xs[0], xs[last]]` (clamped outside):
/// exact at the nodes, `slope * (x - xs[j]) + ys[j]` between them.
fn np_interp(x: f64, xs: &[f64], ys: &[f64]) -> f64 {
    let last = xs.len() - 1;
    if x <= xs[0] {
        return ys[0];
    }
    if x >= xs[last] {
        return ys[last];
    }
    let j = xs.partition_point(|&v| v <= x) - 1;
    if x == xs[j] {
        return ys[j];
    }
    let slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]);
    slope * (x - xs[j]) + ys[j]
}
