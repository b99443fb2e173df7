//! [`calibrate`]: teacher, GITS initialisation, plan and placement search, in one call.

use std::time::Instant;

use candle_core::{DType, Tensor};

use super::error::CalibrationError;
use super::file::{CalibrationInfo, ScheduleFile};
use super::gits;
use super::placement::Placement;
use super::reference::{FinalStep, Reference, Teacher};
use super::search::{search, PlanSpace, SearchOptions};
use crate::error::{Error, Result};
use crate::grid::{End, Grid, Spacing};
use crate::model::Model;
use crate::sample::sample;
use crate::solvers::{PlanForm, PlanStep, Planned, SecondOrder, SolverPlan};

/// The plans of the solvers a schedule can be calibrated for, by registry name: `ddim`,
/// `dpmpp_2m`, `dpmpp_3m` (Taylor third order), `dpm_2m` (noise form), `unipc_bh2_2`,
/// `unipc_bh2_3`, `unipc_bh1_2`, `unipc_bh1_3` (UniPC with the corrector after every step, data
/// form), `unipc_noise_bh2_2`, `unipc_noise_bh2_3`, `unipc_noise_bh1_2`, `unipc_noise_bh1_3` (the
/// same in the noise form, diffusers' `predict_x0=False`), each at full order with a first-order
/// step into `sigma = 0`.
///
/// ```
/// use diffusion_samplers::calibrate::solver_plan;
/// assert_eq!(solver_plan("dpmpp_3m", 5).unwrap().orders(), vec![3, 3, 3, 3, 1]);
/// assert!(solver_plan("no_such_solver", 5).is_none());
/// ```
pub fn solver_plan(name: &str, steps: usize) -> Option<SolverPlan> {
    let (order, form, second, corrector) = match name {
        "ddim" => (1, PlanForm::Data, SecondOrder::Bh2, false),
        "dpmpp_2m" => (2, PlanForm::Data, SecondOrder::Bh2, false),
        "dpmpp_3m" => (3, PlanForm::Data, SecondOrder::Bh2, false),
        "dpm_2m" => (2, PlanForm::Noise, SecondOrder::Bh2, false),
        "unipc_bh2_2" => (2, PlanForm::Data, SecondOrder::Bh2, true),
        "unipc_bh2_3" => (3, PlanForm::Data, SecondOrder::Bh2, true),
        "unipc_bh1_2" => (2, PlanForm::Data, SecondOrder::Bh1, true),
        "unipc_bh1_3" => (3, PlanForm::Data, SecondOrder::Bh1, true),
        "unipc_noise_bh2_2" => (2, PlanForm::Noise, SecondOrder::Bh2, true),
        "unipc_noise_bh2_3" => (3, PlanForm::Noise, SecondOrder::Bh2, true),
        "unipc_noise_bh1_2" => (2, PlanForm::Noise, SecondOrder::Bh1, true),
        "unipc_noise_bh1_3" => (3, PlanForm::Noise, SecondOrder::Bh1, true),
        _ => return None,
    };
    Some(SolverPlan::from_fn(steps, |i| PlanStep {
        order: if i + 1 == steps { 1 } else { order },
        form,
        second,
        corrector,
    }))
}

/// The names [`solver_plan`] knows.
pub const SOLVER_PLANS: &[&str] = &[
    "ddim",
    "dpmpp_2m",
    "dpmpp_3m",
    "dpm_2m",
    "unipc_bh2_2",
    "unipc_bh2_3",
    "unipc_bh1_2",
    "unipc_bh1_3",
    "unipc_noise_bh2_2",
    "unipc_noise_bh2_3",
    "unipc_noise_bh1_2",
    "unipc_noise_bh1_3",
];

/// What to calibrate and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Network evaluations of the calibrated solve (= steps; the last step goes to `sigma = 0`).
    pub nfe: usize,
    /// The solver (a [`solver_plan`] name); with `space` the search starts from its plan and the
    /// result is a `planned` solver.
    pub solver: String,
    /// The spacing the placement starts from.
    pub start: Spacing,
    /// Search the solver plan in this space (`None`: the schedule only, for `solver`).
    pub space: Option<PlanSpace>,
    /// The teacher.
    pub teacher: Teacher,
    /// Initialise the placement with the GITS dynamic programming over the teacher's points
    /// (no network evaluations) when it does better than `start`.
    pub gits: bool,
    /// Plan sweeps and Nelder-Mead options.
    pub search: SearchOptions,
    /// Students are solved on the first this many calibration noises (`None`: all).
    pub student_batch: Option<usize>,
    /// LD3-style soft teacher forcing (Tong et al. 2024, arXiv:2405.15506, Sec. 3.2): a
    /// student's residual counts only beyond this RMS radius, `mean_i max(0, |r_i| - radius)^2`.
    /// LD3 lets the student start anywhere in a ball around the noise; with the student's
    /// Jacobian taken as a multiple of the identity this is the hinge here. 0 (default): plain
    /// mean squared error.
    pub soft_radius: f64,
    /// Start from this grid (e.g. an earlier calibration's, to search a plan on a calibrated
    /// placement) instead of `start`; it must have `nfe` steps and end at `sigma = 0`.
    pub start_grid: Option<Grid>,
}

impl Calibration {
    /// A schedule for `solver` at `nfe` evaluations, started from the time-quadratic spacing,
    /// the default teacher, GITS initialisation, no plan search.
    pub fn schedule(solver: &str, nfe: usize) -> Calibration {
        Calibration {
            nfe,
            solver: solver.into(),
            start: Spacing::TimeQuadratic,
            space: None,
            teacher: Teacher::default(),
            gits: true,
            search: SearchOptions::default(),
            student_batch: None,
            soft_radius: 0.0,
            start_grid: None,
        }
    }
}

/// What a calibration cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// Network calls of the teacher (each on the whole calibration batch).
    pub teacher_nfe: usize,
    /// Network calls of all student solves (each on the student batch).
    pub student_nfe: usize,
    /// Student solves.
    pub student_solves: usize,
    /// Calibration noises (teacher batch).
    pub noises: usize,
    /// Student batch.
    pub student_batch: usize,
    /// Wall time.
    pub seconds: f64,
}

/// A calibrated schedule (and plan).
#[derive(Clone, Debug)]
pub struct Calibrated {
    /// The grid (ending at `sigma = 0`).
    pub grid: Grid,
    /// The plan the grid was calibrated with (the solver's own plan for a schedule-only
    /// calibration).
    pub plan: SolverPlan,
    /// The solver name to save (`planned` after a plan search).
    pub solver: String,
    /// The starting point's RMSE against the teacher on the calibration noises.
    pub rmse_start: f64,
    /// The calibrated RMSE against the teacher on the calibration noises.
    pub rmse: f64,
    /// The cost.
    pub cost: Cost,
    /// Method description (`gits`, `search`, ...).
    pub method: String,
    /// Teacher description.
    pub teacher: String,
}

impl Calibrated {
    /// The schedule file for `model` (an identifier of the network) and `schedule`.
    pub fn file(&self, model: &str, schedule: &dyn crate::Scheduler, made_from: &str) -> Result<ScheduleFile> {
        let plan = if self.solver == "planned" { Some(self.plan.clone()) } else { None };
        let mut f = ScheduleFile::new(model, schedule, &self.solver, &self.grid, plan, made_from)?;
        f.calibration = CalibrationInfo {
            method: self.method.clone(),
            teacher: self.teacher.clone(),
            noises: self.cost.noises,
            teacher_nfe: self.cost.teacher_nfe,
            student_nfe: self.cost.student_nfe,
            seconds: self.cost.seconds,
            rmse_calibration: self.rmse,
        };
        Ok(f)
    }
}

/// Calibrate a schedule (and, with `opts.space`, a solver plan) for `model` on the calibration
/// `noise` (a batch at the schedule's `t_max`, batch first).
pub fn calibrate(model: &mut Model, noise: &Tensor, opts: &Calibration) -> Result<Calibrated> {
    let start = Instant::now();
    let n = opts.nfe;
    let schedule = model.schedule();
    let noises = noise.dims().first().copied().unwrap_or(0);
    if noises == 0 || noise.elem_count() == 0 {
        return Err(CalibrationError::NoNoise.into());
    }
    let Some(plan0) = solver_plan(&opts.solver, n) else {
        return Err(Error::InvalidConfig(format!(
            "no calibration plan for solver {:?}: use one of {}",
            opts.solver,
            SOLVER_PLANS.join(", ")
        )));
    };
    if n == 0 {
        return Err(CalibrationError::Budget {
            method: "calibration".into(),
            nfe: 0,
            reason: "a grid needs at least one step: ask for 1 or more evaluations".into(),
        }
        .into());
    }
    if let Some(tt) = schedule.train_timesteps() {
        if n > tt {
            return Err(CalibrationError::Budget {
                method: "calibration".into(),
                nfe: n,
                reason: format!("the schedule has {tt} training timesteps: ask for at most {tt} evaluations"),
            }
            .into());
        }
    }
    let place = Placement::new(schedule, n)?;
    let radius = opts.soft_radius;
    if !(radius >= 0.0 && radius.is_finite()) {
        return Err(Error::InvalidConfig(format!("soft_radius must be finite and non-negative, got {radius}")));
    }
    let start_grid = match &opts.start_grid {
        Some(g) if g.len() == n && g.points().last().is_some_and(|p| p.is_clean()) => g.clone(),
        Some(g) => {
            return Err(Error::InvalidConfig(format!(
                "start_grid has {} steps ending at sigma = {}: give one of nfe = {n} steps ending at sigma = 0",
                g.len(),
                g.points().last().map_or(f64::NAN, |p| p.sigma)
            )))
        }
        None => Grid::new(schedule, &opts.start, n, End::Clean)?,
    };
    let nfe0 = model.nfe();
    let reference = Reference::new(model, noise, &opts.teacher)?;
    let teacher_nfe = model.nfe() - nfe0;
    let rows = opts.student_batch.unwrap_or(noises).clamp(1, noises);
    let x_t = noise.narrow(0, 0, rows)?;
    let target = reference.end.narrow(0, 0, rows)?;
    let nfe_students = model.nfe();
    let mut solves = 0usize;
    let mut objective = |plan: &SolverPlan, theta: &[f64]| -> Result<f64> {
        solves += 1;
        let grid = place.grid(theta)?;
        let y = sample(&Planned { plan: plan.clone() }, model, &grid, &x_t)?;
        loss(&y, &target, radius)
    };
    let mut theta = place.theta_of(&start_grid)?;
    let mut value = objective(&plan0, &theta)?;
    let rmse_start = value.sqrt();
    let mut method = vec![];
    if opts.gits && n >= 2 {
        let interior = plan0.steps.first().copied().unwrap_or(PlanStep::data(2));
        let final_order = plan0.steps.last().map(|s| s.order).unwrap_or(1);
        match gits::search(&reference, schedule, n, interior, final_order, Some(rows.min(256))) {
            Ok(g) => {
                let th = place.theta_of(&g.grid)?;
                let v = objective(&plan0, &th)?;
                if v < value {
                    value = v;
                    theta = th;
                    method.push("gits");
                }
            }
            Err(Error::Calibration(CalibrationError::Budget { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    let empty = PlanSpace { orders: vec![], forms: vec![], seconds: vec![], correctors: vec![], final_orders: vec![] };
    let space = opts.space.as_ref().unwrap_or(&empty);
    let found = search(&mut objective, plan0.clone(), theta.clone(), space, opts.search)?;
    method.push(if opts.space.is_some() { "plan+placement search" } else { "placement search" });
    let (plan, theta) = if found.value <= value { (found.plan, found.theta) } else { (plan0.clone(), theta) };
    let value = found.value.min(value);
    let grid = place.grid(&theta)?;
    let solver = if opts.space.is_some() { "planned".to_string() } else { opts.solver.clone() };
    let teacher = format!(
        "dpm_adaptive order {} rtol {:e} atol {:e}, final step {}",
        opts.teacher.solver.order,
        opts.teacher.solver.rtol,
        opts.teacher.solver.atol,
        match opts.teacher.final_step {
            FinalStep::Denoise => "denoise".to_string(),
            FinalStep::Extrapolate { points } => format!("extrapolate ({points} points)"),
        }
    );
    Ok(Calibrated {
        grid,
        plan,
        solver,
        rmse_start,
        rmse: value.sqrt(),
        cost: Cost {
            teacher_nfe,
            student_nfe: model.nfe() - nfe_students,
            student_solves: solves,
            noises,
            student_batch: rows,
            seconds: start.elapsed().as_secs_f64(),
        },
        method: method.join("+"),
        teacher,
    })
}

/// `mean_i max(0, rms_i(y - target) - radius)^2` over the samples `i` (the mean squared error
/// for `radius = 0`).
fn loss(y: &Tensor, target: &Tensor, radius: f64) -> Result<f64> {
    let diff = (y - target)?.to_dtype(DType::F64)?;
    if radius == 0.0 {
        return Ok(diff.sqr()?.mean_all()?.to_scalar::<f64>()?);
    }
    let b = diff.dim(0)?;
    let per = diff.reshape((b, ()))?.sqr()?.mean(1)?.sqrt()?.to_vec1::<f64>()?;
    Ok(per.iter().map(|r| (r - radius).max(0.0).powi(2)).sum::<f64>() / b.max(1) as f64)
}
