//! [`AnySolver`]: a solver whose type is chosen at run time (by name, from a config, from a
//! search), usable wherever a [`Solver`] is.

use std::any::Any;
use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use super::{Solver, StepContext};
use crate::error::{Error, Result};
use crate::grid::Step;

/// The object-safe face of a [`Solver`]: its state is boxed as [`Any`].
trait ErasedSolver: Send + Sync {
    fn name(&self) -> &'static str;
    fn order(&self) -> usize;
    fn nfe(&self, step: &Step) -> usize;
    fn is_stochastic(&self) -> bool;
    fn is_adaptive(&self) -> bool;
    fn needs_unconditional(&self) -> bool;
    fn validate(&self, steps: &[Step]) -> Result<()>;
    fn init_state(&self) -> Box<dyn Any>;
    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut Box<dyn Any>) -> Result<Tensor>;
    fn as_any(&self) -> &dyn Any;
    fn eq_dyn(&self, other: &dyn ErasedSolver) -> bool;
    fn clone_box(&self) -> Box<dyn ErasedSolver>;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<S> ErasedSolver for S
where
    S: Solver + Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    S::State: 'static,
{
    fn name(&self) -> &'static str {
        Solver::name(self)
    }
    fn order(&self) -> usize {
        Solver::order(self)
    }
    fn nfe(&self, step: &Step) -> usize {
        Solver::nfe(self, step)
    }
    fn is_stochastic(&self) -> bool {
        Solver::is_stochastic(self)
    }
    fn is_adaptive(&self) -> bool {
        Solver::is_adaptive(self)
    }
    fn needs_unconditional(&self) -> bool {
        Solver::needs_unconditional(self)
    }
    fn validate(&self, steps: &[Step]) -> Result<()> {
        Solver::validate(self, steps)
    }
    fn init_state(&self) -> Box<dyn Any> {
        Box::new(Solver::init_state(self))
    }
    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut Box<dyn Any>) -> Result<Tensor> {
        let state = state.downcast_mut::<S::State>().ok_or_else(|| {
            Error::InvalidConfig(format!(
                "{}: the state passed to step belongs to another solver: make it with this solver's init_state",
                Solver::name(self)
            ))
        })?;
        Solver::step(self, ctx, step, x, state)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn eq_dyn(&self, other: &dyn ErasedSolver) -> bool {
        other.as_any().downcast_ref::<S>() == Some(self)
    }
    fn clone_box(&self) -> Box<dyn ErasedSolver> {
        Box::new(self.clone())
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A solver of any type, chosen at run time; it implements [`Solver`] itself (with its state
/// boxed), so [`crate::sample()`] runs it like any other.
///
/// It parses from and prints as the names of [`crate::names`] (`"dpmpp_2m"`, `"unipc_bh2_3"`,
/// ...); a solver built with [`AnySolver::new`] prints as its registry name when its configuration
/// equals a registered one, else as its label ([`Solver::name`]), which does not parse.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{sample, AnySolver, DiscreteVp, End, Grid, Model, Prediction, Solver, Spacing};
/// // the solver comes from a string: a command-line flag, a config file, a search
/// let name = "unipc_bh2_3";
/// let solver: AnySolver = name.parse()?;
/// assert_eq!((solver.to_string(), solver.order(), solver.is_stochastic()), (name.to_string(), 4, false));
///
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformLambda, 10, End::Clean)?;
/// let mut model = Model::new(|x: &Tensor, _t: f64| x.ones_like()?.affine(0.25, 0.0), &s, Prediction::Sample);
/// let x = sample(&solver, &mut model, &grid, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
/// for v in x.to_vec1::<f64>()? { assert!((v - 0.25).abs() < 1e-9) }
///
/// // an unknown name is a typed error that lists the known ones
/// let err = "dpm_3".parse::<AnySolver>().unwrap_err();
/// assert!(matches!(&err, diffusion_samplers::Error::UnknownSolver { known, .. } if known.contains("dpmpp_2m")));
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
pub struct AnySolver {
    inner: Box<dyn ErasedSolver>,
    name: Option<&'static str>,
}

impl AnySolver {
    /// Erase the type of `solver`.
    pub fn new<S>(solver: S) -> AnySolver
    where
        S: Solver + Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
        S::State: 'static,
    {
        let inner: Box<dyn ErasedSolver> = Box::new(solver);
        let name = crate::names::SOLVERS.iter().find(|(_, make)| make().inner.eq_dyn(inner.as_ref())).map(|(n, _)| *n);
        AnySolver { inner, name }
    }

    /// [`AnySolver::new`] without the registry look-up (the registry's own constructors).
    pub(crate) fn unnamed<S>(solver: S) -> AnySolver
    where
        S: Solver + Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
        S::State: 'static,
    {
        AnySolver { inner: Box::new(solver), name: None }
    }

    /// The registry name of this configuration, if it has one.
    pub fn registry_name(&self) -> Option<&'static str> {
        self.name
    }

    /// The concrete solver, if it is an `S`.
    pub fn downcast_ref<S: 'static>(&self) -> Option<&S> {
        self.inner.as_any().downcast_ref::<S>()
    }
}

impl Solver for AnySolver {
    type State = Box<dyn Any>;

    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn order(&self) -> usize {
        self.inner.order()
    }
    fn nfe(&self, step: &Step) -> usize {
        self.inner.nfe(step)
    }
    fn is_stochastic(&self) -> bool {
        self.inner.is_stochastic()
    }
    fn is_adaptive(&self) -> bool {
        self.inner.is_adaptive()
    }
    fn needs_unconditional(&self) -> bool {
        self.inner.needs_unconditional()
    }
    fn validate(&self, steps: &[Step]) -> Result<()> {
        self.inner.validate(steps)
    }
    fn init_state(&self) -> Box<dyn Any> {
        self.inner.init_state()
    }
    fn step(&self, ctx: &mut StepContext, step: &Step, x: &Tensor, state: &mut Box<dyn Any>) -> Result<Tensor> {
        self.inner.step(ctx, step, x, state)
    }
}

impl Clone for AnySolver {
    fn clone(&self) -> Self {
        AnySolver { inner: self.inner.clone_box(), name: self.name }
    }
}

impl PartialEq for AnySolver {
    fn eq(&self, other: &Self) -> bool {
        self.inner.eq_dyn(other.inner.as_ref())
    }
}

impl fmt::Debug for AnySolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug(f)
    }
}

impl fmt::Display for AnySolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.unwrap_or_else(|| self.inner.name()))
    }
}

impl FromStr for AnySolver {
    type Err = Error;

    fn from_str(name: &str) -> Result<AnySolver> {
        match crate::names::SOLVERS.iter().find(|(n, _)| *n == name) {
            Some((n, make)) => Ok(AnySolver { name: Some(n), ..make() }),
            None => {
                Err(Error::UnknownSolver { name: name.to_string(), known: crate::names::solver_names().join(", ") })
            }
        }
    }
}
