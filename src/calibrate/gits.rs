//! Dynamic programming over the teacher's trajectory (GITS: Chen et al. 2024, "On the Trajectory
//! Regularity of ODE-based Diffusion Sampling", arXiv:2405.11326, Sec. 4): the student's points
//! are chosen among the teacher's accepted points so that the sum of the teacher-forced local
//! errors is smallest, with exactly the requested number of steps. The local error of a step
//! `i -> j` is the RMS distance between the teacher's sample at `j` and one student step from the
//! teacher's sample at `i`, computed from the data predictions the teacher already made at its
//! points: no network evaluations beyond the teacher's.
//!
//! GITS uses a first-order (DDIM) step; here the step is a [`PlanStep`] of order 1 or 2 (with an
//! older point `k`, its state is the pair `(k, i)`, as in the multistep extension of GITS' DP), with
//! the UniC corrector when the plan step asks for it (the corrector uses the teacher's prediction
//! at `j`). The last step into `sigma = 0` is the plan's final step (the data prediction, or its
//! extrapolation in `ksigma^2`), compared with the teacher's endpoint.

use candle_core::Tensor;

use super::reference::Reference;
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::math::unified::{output, update_weights, zero_extrapolation_weights};
use crate::ops::lincomb;
use crate::schedule::{Point, Scheduler};
use crate::solvers::PlanStep;

use super::error::CalibrationError;

/// The result of [`search`].
#[derive(Clone, Debug)]
pub struct GitsGrid {
    /// Indices into the reference's points of the student's non-clean points.
    pub indices: Vec<usize>,
    /// The student grid (ending at `sigma = 0`).
    pub grid: Grid,
    /// The minimal sum of local errors.
    pub cost: f64,
}

/// Choose `steps` steps (the last one into `sigma = 0`) among `reference`'s points for a
/// solver taking the plan step `step` at every interior step (orders above 2 are searched as
/// order 2) and `final_order` (1-3) into `sigma = 0`. `rows` limits the samples used for the
/// costs (the first `rows`; `None`: all).
pub fn search(
    reference: &Reference,
    schedule: &dyn Scheduler,
    steps: usize,
    step: PlanStep,
    final_order: usize,
    rows: Option<usize>,
) -> Result<GitsGrid> {
    let n_pts = reference.points.len();
    if steps == 0 {
        return Err(Error::ZeroSteps);
    }
    if steps > n_pts {
        return Err(CalibrationError::Budget {
            method: "GITS dynamic programming".into(),
            nfe: steps,
            reason: format!(
                "the teacher's trajectory has only {n_pts} points to choose from: tighten the teacher's tolerance \
                 or ask for at most {n_pts} steps"
            ),
        }
        .into());
    }
    let rows = rows.unwrap_or(usize::MAX).min(reference.batch()).max(1);
    let take = |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(0, 0, rows)?) };
    let x: Vec<Tensor> = reference.x.iter().map(take).collect::<Result<_>>()?;
    let d: Vec<Tensor> = reference.data.iter().map(take).collect::<Result<_>>()?;
    let end = take(&reference.end)?;
    let pts = &reference.points;
    let form = step.form.form();
    let m: Vec<Tensor> = (0..n_pts).map(|i| output(form, &pts[i], &x[i], &d[i])).collect::<Result<_>>()?;
    let rms = |a: &Tensor| -> Result<f64> {
        Ok(a.sqr()?.mean_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?.sqrt())
    };
    // local error of the step i -> j with the older point k (None: first order)
    let local = |k: Option<usize>, i: usize, j: usize| -> Result<f64> {
        let nodes: Vec<Point> = k.map(|k| pts[k]).into_iter().collect();
        let (c_x, c0, kw) = update_weights(form, step.second, &pts[i], &pts[j], &nodes)?;
        let mut terms: Vec<(f64, &Tensor)> = vec![(c_x, &x[i]), (c0, &m[i])];
        if let (Some(k), Some(w)) = (k, kw.first()) {
            terms.push((*w, &m[k]));
        }
        if step.corrector {
            // UniC with the teacher's output at j: the older point (order 2) and j as nodes
            let older = if step.order >= 2 { k } else { None };
            let mut idx: Vec<usize> = older.into_iter().collect();
            idx.push(j);
            let cnodes: Vec<Point> = idx.iter().map(|&q| pts[q]).collect();
            let (c_x, c0, kw) = update_weights(form, step.second, &pts[i], &pts[j], &cnodes)?;
            terms = vec![(c_x, &x[i]), (c0, &m[i])];
            for (w, &q) in kw.iter().zip(&idx) {
                terms.push((*w, &m[q]));
            }
        }
        terms.push((-1.0, &x[j]));
        rms(&lincomb(&terms)?)
    };
    // final step from i (older point k) into sigma = 0
    let final_cost = |k: Option<usize>, i: usize| -> Result<f64> {
        let mut idx = vec![i];
        if final_order >= 2 {
            idx.extend(k);
        }
        let u: Vec<f64> = idx.iter().map(|&q| pts[q].ksigma().powi(2)).collect();
        let w = zero_extrapolation_weights(&u)?;
        let mut terms: Vec<(f64, &Tensor)> = w.iter().zip(&idx).map(|(w, &q)| (*w, &d[q])).collect();
        terms.push((-1.0, &end));
        rms(&lincomb(&terms)?)
    };
    let second_order = step.order >= 2;
    let mut cache: std::collections::HashMap<(Option<usize>, usize, usize), f64> = std::collections::HashMap::new();
    let mut step_cost = |k: Option<usize>, i: usize, j: usize| -> Result<f64> {
        let k = if second_order { k } else { None };
        if let Some(v) = cache.get(&(k, i, j)) {
            return Ok(*v);
        }
        let v = local(k, i, j)?;
        cache.insert((k, i, j), v);
        Ok(v)
    };
    let best_path = shortest_path(n_pts, steps, &mut step_cost, &mut |k, i| final_cost(k, i))?;
    let (cost, indices) = best_path;
    let mut points: Vec<Point> = indices.iter().map(|&i| pts[i]).collect();
    points.push(schedule.clean_point());
    Ok(GitsGrid { indices, grid: Grid::from_points(points)?, cost })
}

/// The cheapest path `0 = i_0 < i_1 < ... < i_{steps-1} < n_pts` with cost
/// `sum_m step(i_{m-2}, i_{m-1}, i_m) + finish(i_{steps-2}, i_{steps-1})` (the older point is
/// `None` where there is none): the dynamic programming over pairs `(k, i)` of the last two
/// points, `O(steps n_pts^3)`. Returns the cost and the points.
pub fn shortest_path(
    n_pts: usize,
    steps: usize,
    step: &mut dyn FnMut(Option<usize>, usize, usize) -> Result<f64>,
    finish: &mut dyn FnMut(Option<usize>, usize) -> Result<f64>,
) -> Result<(f64, Vec<usize>)> {
    if steps == 0 || steps > n_pts {
        return Err(Error::InvalidConfig(format!("no path of {steps} points among {n_pts}")));
    }
    if steps == 1 {
        return Ok((finish(None, 0)?, vec![0]));
    }
    let inf = f64::INFINITY;
    let at = |k: usize, i: usize| k * n_pts + i;
    // f[(k, i)]: cheapest path so far ending ..., k, i
    let mut f = vec![inf; n_pts * n_pts];
    for j in 1..n_pts {
        f[at(0, j)] = step(None, 0, j)?;
    }
    let mut back: Vec<Vec<usize>> = vec![];
    for _ in 2..steps {
        let mut g = vec![inf; n_pts * n_pts];
        let mut arg = vec![usize::MAX; n_pts * n_pts];
        for k in 0..n_pts {
            for i in k + 1..n_pts {
                let base = f[at(k, i)];
                if !base.is_finite() {
                    continue;
                }
                for j in i + 1..n_pts {
                    let v = base + step(Some(k), i, j)?;
                    if v < g[at(i, j)] {
                        g[at(i, j)] = v;
                        arg[at(i, j)] = k;
                    }
                }
            }
        }
        back.push(arg);
        f = g;
    }
    let mut best = (inf, 0usize, 0usize);
    for k in 0..n_pts {
        for i in k + 1..n_pts {
            if f[at(k, i)].is_finite() {
                let v = f[at(k, i)] + finish(Some(k), i)?;
                if v < best.0 {
                    best = (v, k, i);
                }
            }
        }
    }
    if !best.0.is_finite() {
        return Err(Error::InvalidGrid(format!("no finite-cost path of {steps} points")));
    }
    let mut path = vec![best.1, best.2];
    for arg in back.iter().rev() {
        let prev = arg[at(path[0], path[1])];
        if prev == usize::MAX {
            return Err(Error::InvalidGrid("dynamic programming back-tracking failed".into()));
        }
        path.insert(0, prev);
    }
    Ok((best.0, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dynamic programming finds the same optimum as enumerating every path, on random
    /// costs that depend on the older point.
    #[test]
    fn shortest_path_matches_brute_force() {
        let mut rng = crate::noise::Rng::new(3);
        let n = 9;
        let table: Vec<f64> = (0..(n + 1) * n * n).map(|_| rng.uniform()).collect();
        let fin: Vec<f64> = (0..(n + 1) * n).map(|_| rng.uniform()).collect();
        let key = |k: Option<usize>| k.map_or(n, |k| k);
        let cost = |k: Option<usize>, i: usize, j: usize| table[(key(k) * n + i) * n + j];
        let finish = |k: Option<usize>, i: usize| fin[key(k) * n + i];
        for steps in 1..=5 {
            let (c, path) =
                shortest_path(n, steps, &mut |k, i, j| Ok(cost(k, i, j)), &mut |k, i| Ok(finish(k, i))).unwrap();
            // brute force over all increasing paths starting at 0
            let mut best = f64::INFINITY;
            let mut best_path = vec![];
            let mut stack = vec![vec![0usize]];
            while let Some(p) = stack.pop() {
                if p.len() == steps {
                    let mut v = 0.0;
                    for m in 1..p.len() {
                        v += cost(if m >= 2 { Some(p[m - 2]) } else { None }, p[m - 1], p[m]);
                    }
                    v += finish(if p.len() >= 2 { Some(p[p.len() - 2]) } else { None }, p[p.len() - 1]);
                    if v < best {
                        best = v;
                        best_path = p;
                    }
                    continue;
                }
                for j in p[p.len() - 1] + 1..n {
                    let mut q = p.clone();
                    q.push(j);
                    stack.push(q);
                }
            }
            assert!((c - best).abs() < 1e-12, "steps {steps}: {c} vs {best}");
            assert_eq!(path, best_path, "steps {steps}");
        }
        assert!(shortest_path(3, 4, &mut |_, _, _| Ok(0.0), &mut |_, _| Ok(0.0)).is_err());
    }
}
