//! ComfyUI's schedules defined through the model's time or its table of training timesteps
//! (definitions from ComfyUI's `comfy/samplers.py`; the numbers are facts, the code is ours).

use super::{linspace, positive_finite, Level, Range};
use crate::diffusers::tables::beta_ppf;
use crate::error::{config_err, Error, Result};
use crate::schedule::Scheduler;

/// `normal` (`sgm = false`) and `sgm_uniform` (`sgm = true`): model times uniform from the
/// largest trained time to the end. ComfyUI's `normal_scheduler` uses `linspace(t_max, t_min,
/// steps)` then 0; with `sgm` it spaces `steps + 1` times and drops the last. Not ending clean,
/// both are `steps + 1` uniform times ending at the end time.
pub(super) fn normal(schedule: &dyn Scheduler, range: &Range, steps: usize, sgm: bool) -> Result<Vec<Level>> {
    let (m0, m1) = (schedule.model_time(range.t_max), schedule.model_time(range.t_end));
    if !(m0.is_finite() && m1.is_finite()) {
        return Err(Error::InvalidGrid(format!(
            "normal / sgm_uniform need finite model times at both ends, got {m0} and {m1}"
        )));
    }
    let times = |n: usize| linspace(m0, m1, n).into_iter().map(|m| Level::Time(schedule.t_of_model_time(m)));
    Ok(match (range.clean, sgm) {
        (true, false) => times(steps).chain([Level::Clean]).collect(),
        (true, true) => times(steps + 1).take(steps).chain([Level::Clean]).collect(),
        (false, _) => times(steps + 1).collect(),
    })
}

/// The number of training timesteps of a discrete schedule, or an error naming the schedule.
fn train_timesteps(schedule: &dyn Scheduler, name: &str) -> Result<usize> {
    match schedule.train_timesteps() {
        Some(n) if n >= 2 => Ok(n),
        _ => Err(Error::Unsupported(format!(
            "the `{name}` schedule picks entries of a table of training timesteps and needs a discrete \
             schedule (DiscreteVp); for a continuous one use normal, karras, exponential or kl_optimal"
        ))),
    }
}

/// `simple`: the table's sigmas at indices `N - 1 - floor(i * (N / steps))` (float division), then 0.
pub(super) fn simple(schedule: &dyn Scheduler, steps: usize) -> Result<Vec<Level>> {
    let n = train_timesteps(schedule, "simple")?;
    if steps > n {
        return Err(Error::TooManySteps { steps, max: n });
    }
    let ss = n as f64 / steps as f64;
    let idx = (0..steps).map(|x| n - 1 - ((x as f64 * ss) as usize).min(n - 1));
    Ok(idx.map(|i| Level::Time(i as f64)).chain([Level::Clean]).collect())
}

/// `ddim_uniform`: the table's sigmas at `1, 1 + ss, ... < N`, `ss = max(N / steps, 1)` (integer
/// division), descending, then 0.
pub(super) fn ddim_uniform(schedule: &dyn Scheduler, steps: usize) -> Result<Vec<Level>> {
    let n = train_timesteps(schedule, "ddim_uniform")?;
    if schedule.point(1.0).ksigma() < 1e-5 {
        // ComfyUI then takes one step more and ends at table index 1 instead of 0
        return Err(Error::Unsupported(
            "ddim_uniform on a table whose sigma at index 1 is below 1e-5 (ComfyUI then ends at that index \
             instead of 0): use normal or simple"
                .into(),
        ));
    }
    let ss = (n / steps).max(1);
    let mut idx: Vec<usize> = (1..n).step_by(ss).collect();
    idx.reverse();
    Ok(idx.into_iter().map(|i| Level::Time(i as f64)).chain([Level::Clean]).collect())
}

/// `beta`: table indices `rint(ppf(1 - i/steps) * (N - 1))` (`i/steps` as numpy's
/// `linspace(0, 1, steps, endpoint=False)`), consecutive repeats dropped, then 0.
pub(super) fn beta(schedule: &dyn Scheduler, steps: usize, alpha: f64, b: f64) -> Result<Vec<Level>> {
    positive_finite("beta", "alpha", alpha)?;
    positive_finite("beta", "beta", b)?;
    let n = train_timesteps(schedule, "beta")?;
    let total = (n - 1) as f64;
    let step = 1.0 / steps as f64;
    let mut levels: Vec<Level> = Vec::with_capacity(steps + 1);
    let mut last = -1.0;
    for i in 0..steps {
        let t = (beta_ppf(1.0 - i as f64 * step, alpha, b) * total).round_ties_even();
        if t != last {
            levels.push(Level::Time(t));
        }
        last = t;
    }
    levels.push(Level::Clean);
    Ok(levels)
}

/// `linear_quadratic` (ComfyUI, after Genmo's Mochi): `x_i = i * thr / L` for `i < L`, then
/// `q i^2 + l i + c` (the quadratic through `(L, thr)` and `(steps, 1)` whose slope continues the
/// linear part), and `x = 1` at the end; `sigma_i = sigma_max (1 - x_i)`.
pub(super) fn linear_quadratic(
    range: &Range,
    steps: usize,
    threshold_noise: f64,
    linear_steps: Option<usize>,
) -> Result<Vec<Level>> {
    if !(threshold_noise > 0.0 && threshold_noise < 1.0) {
        return config_err(format!("linear_quadratic's threshold_noise must lie in (0, 1), got {threshold_noise}"));
    }
    let sigma_max = range.ks_max;
    if !(sigma_max > 0.0 && sigma_max.is_finite()) {
        return Err(Error::InvalidGrid(format!(
            "linear_quadratic needs a finite sigma_max, got {sigma_max}: a zero-terminal-SNR or flow schedule \
             starts at alpha = 0"
        )));
    }
    if steps == 1 {
        return Ok(vec![Level::Sigma(sigma_max), Level::Clean]);
    }
    let ls = linear_steps.unwrap_or(steps / 2);
    if ls == 0 || ls >= steps {
        return config_err(format!(
            "linear_quadratic's linear_steps must lie in 1..{steps} for {steps} steps, got {ls}"
        ));
    }
    let (thr, lsf, stf) = (threshold_noise, ls as f64, steps as f64);
    // the reference's arithmetic, in its order
    let diff = lsf - thr * stf;
    let qs = (steps - ls) as f64;
    let quadratic_coef = diff / (lsf * qs * qs);
    let linear_coef = thr / lsf - 2.0 * diff / (qs * qs);
    let constant = quadratic_coef * (lsf * lsf);
    let x = (0..steps).map(|i| {
        let i = i as f64;
        if i < lsf {
            i * thr / lsf
        } else {
            quadratic_coef * (i * i) + linear_coef * i + constant
        }
    });
    Ok(x.map(|x| Level::Sigma((1.0 - x) * sigma_max)).chain([Level::Clean]).collect())
}
