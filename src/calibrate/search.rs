//! Joint search of a solver plan and its time points (the solver-schedule search of USF / S^3,
//! Liu et al. 2023, arXiv:2312.07243, with a derivative-free optimiser in place of their
//! predictor-guided evolutionary search): the plan is improved one step at a time (coordinate
//! descent over each step's order, form, second-order weight and corrector, the step into
//! `sigma = 0` over its extrapolation order) and the log-SNR points are re-optimised with
//! Nelder-Mead after every sweep, both against the same objective (the students' error against
//! the teacher on the calibration noises).

use super::nelder_mead::{minimize, NelderMead};
use crate::error::Result;
use crate::solvers::{PlanForm, PlanStep, SecondOrder, SolverPlan};

/// The choices searched at every step.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSpace {
    /// Orders tried (1-3).
    pub orders: Vec<usize>,
    /// Forms tried.
    pub forms: Vec<PlanForm>,
    /// Single-node weights tried.
    pub seconds: Vec<SecondOrder>,
    /// Corrector on/off tried.
    pub correctors: Vec<bool>,
    /// Orders tried for the step into `sigma = 0` (1: the data prediction; 2-3: extrapolation).
    pub final_orders: Vec<usize>,
}

impl Default for PlanSpace {
    /// Everything: orders 1-3, both forms, the three weights, corrector on and off; final
    /// orders 1-3.
    fn default() -> Self {
        PlanSpace {
            orders: vec![1, 2, 3],
            forms: vec![PlanForm::Data, PlanForm::Noise],
            seconds: vec![SecondOrder::Bh2, SecondOrder::Bh1, SecondOrder::Taylor],
            correctors: vec![false, true],
            final_orders: vec![1, 2, 3],
        }
    }
}

impl PlanSpace {
    /// The choices for step `index` of `steps` (the last step goes into `sigma = 0`).
    pub fn choices(&self, index: usize, steps: usize) -> Vec<PlanStep> {
        let mut out = vec![];
        if index + 1 == steps {
            for &order in &self.final_orders {
                out.push(PlanStep { order, ..PlanStep::data(1) });
            }
            return out;
        }
        // a step's order is limited to the outputs available
        for &order in self.orders.iter().filter(|&&o| o <= index + 1) {
            for &form in &self.forms {
                let seconds: &[SecondOrder] =
                    if order == 3 && !self.correctors.contains(&true) { &[SecondOrder::Bh2] } else { &self.seconds };
                for &second in seconds {
                    for &corrector in &self.correctors {
                        out.push(PlanStep { order, form, second, corrector });
                    }
                }
            }
        }
        out
    }
}

/// Options of [`search`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchOptions {
    /// Sweeps over the plan (each followed by a placement optimisation).
    pub rounds: usize,
    /// Nelder-Mead options of each placement optimisation.
    pub placement: NelderMead,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions { rounds: 2, placement: NelderMead { max_evals: 300, step: 0.3, ftol: 1e-7 } }
    }
}

/// The result of [`search`].
#[derive(Clone, Debug, PartialEq)]
pub struct Searched {
    /// The plan.
    pub plan: SolverPlan,
    /// The placement parameters.
    pub theta: Vec<f64>,
    /// The objective there.
    pub value: f64,
    /// Objective evaluations (student solves) made.
    pub evals: usize,
}

/// Improve `plan` and `theta` (the [`super::Placement`] parameters) against `objective`
/// (smaller is better; each call is one student solve). With an empty `space` (no choices)
/// only the placement is optimised.
pub fn search(
    mut objective: impl FnMut(&SolverPlan, &[f64]) -> Result<f64>,
    plan: SolverPlan,
    theta: Vec<f64>,
    space: &PlanSpace,
    opts: SearchOptions,
) -> Result<Searched> {
    let mut evals = 0usize;
    let mut plan = plan;
    let mut theta = theta;
    let mut value = objective(&plan, &theta)?;
    evals += 1;
    let steps = plan.steps.len();
    for _ in 0..opts.rounds.max(1) {
        let start = value;
        for i in 0..steps {
            for choice in space.choices(i, steps) {
                if plan.steps[i] == choice {
                    continue;
                }
                let mut trial = plan.clone();
                trial.steps[i] = choice;
                let v = objective(&trial, &theta)?;
                evals += 1;
                if v < value {
                    value = v;
                    plan = trial;
                }
            }
        }
        let m = minimize(|th| objective(&plan, th), &theta, opts.placement)?;
        evals += m.evals;
        if m.value < value {
            value = m.value;
            theta = m.x;
        }
        if value >= start * (1.0 - 1e-6) {
            break;
        }
    }
    Ok(Searched { plan, theta, value, evals })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy objective with a known optimum: order 2 and the noise form at every interior step,
    /// corrector on at step 1 only, final order 2, theta = (1, -1).
    #[test]
    fn finds_the_known_optimum_of_a_separable_objective() {
        let f = |p: &SolverPlan, th: &[f64]| -> Result<f64> {
            let mut v = (th[0] - 1.0).powi(2) + (th[1] + 1.0).powi(2);
            for (i, s) in p.steps.iter().enumerate() {
                if i + 1 == p.steps.len() {
                    v += (s.order as f64 - 2.0).abs();
                    continue;
                }
                let want_order = if i == 0 { 1.0 } else { 2.0 };
                v += (s.order as f64 - want_order).abs() + f64::from(u8::from(s.form != PlanForm::Noise));
                v += f64::from(u8::from(s.corrector != (i == 1)));
                v += 0.1 * f64::from(u8::from(s.second != SecondOrder::Bh2));
            }
            Ok(v)
        };
        let plan = SolverPlan::from_fn(4, |_| PlanStep::data(1));
        let out = search(f, plan, vec![0.0, 0.0], &PlanSpace::default(), SearchOptions::default()).unwrap();
        assert_eq!(out.plan.orders(), vec![1, 2, 2, 2]);
        assert!(out.plan.steps[..3].iter().all(|s| s.form == PlanForm::Noise && s.second == SecondOrder::Bh2));
        let corr: Vec<bool> = out.plan.steps.iter().map(|s| s.corrector).collect();
        assert_eq!(&corr[..3], &[false, true, false]);
        assert!((out.theta[0] - 1.0).abs() < 1e-2 && (out.theta[1] + 1.0).abs() < 1e-2, "{out:?}");
        assert!(out.value < 1e-3);
    }
}
