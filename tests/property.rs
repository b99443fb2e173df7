//! The end-to-end property test of issue 9, over the public API: random schedules (valid ones
//! and struct literals with garbage fields) x spacings x solvers (every name of the registry,
//! so a newly registered solver is covered without editing this file, plus solvers with random
//! public fields) x step counts (0 to `usize::MAX`) x ends x state and network dtypes x prediction
//! types x networks x data transforms x noise sources x run kinds (sampling, inversion,
//! image-to-image, step lists with a repeated point or an evaluate-only step).
//!
//! Every case must end in `Ok` or a typed `Error`, never a panic, an abort or a hang, and:
//! - `Ok` is finite (no NaN out);
//! - the network is only ever called at a finite model time inside the schedule's range;
//! - with a finite network on a well-conditioned schedule in F32/F64 (finite in), no error blames
//!   NaN or infinity (the library never makes a NaN of its own where a finite answer exists).
//!
//! 20 000 cases by default from a fixed seed: 1.2 s in release on a shared 2-core machine (the
//! file's three tests 3.8 s). `PROPTEST_CASES=n` runs another count (1 000 000: 60 s, the file
//! 177 s with `steps_for_nfe` over 50 000 budgets) and `PROPERTY_RANDOM=1` a fresh seed.
//! The diffusers configs (fields set after parsing) are in `tests/robustness_diffusers.rs`.

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::names::solver_names;
use diffusion_samplers::testing::GaussianMixture;
use diffusion_samplers::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

// -------------------------------------------------------------------------------------------------
// strategies
// -------------------------------------------------------------------------------------------------

/// A parameter: mostly from `lo..hi`, sometimes an edge or garbage value (flagged `false`).
fn param(lo: f64, hi: f64) -> impl Strategy<Value = (f64, bool)> {
    prop_oneof![
        12 => (lo..hi).prop_map(|v| (v, true)),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -1.0, 1e300, 1e-300, -0.0])
            .prop_map(|v| (v, false)),
        1 => prop::sample::select(vec![lo, hi, hi * 10.0, lo / 10.0]).prop_map(|v| (v, false)),
    ]
}

#[derive(Clone, Debug)]
enum Sched {
    Linear(f64, f64, usize),
    ScaledLinear(f64, f64, usize),
    Cosine(f64, usize),
    ZeroSnr(f64, f64, usize),
    Table(Vec<f64>),
    ContinuousVp(ContinuousVp),
    CosineVp(CosineVp),
    Edm(Edm),
    Flow(RectifiedFlow),
}

impl Sched {
    fn build(&self) -> Result<Box<dyn Scheduler>> {
        Ok(match self {
            Sched::Linear(a, b, n) => Box::new(DiscreteVp::linear(*a, *b, *n)?),
            Sched::ScaledLinear(a, b, n) => Box::new(DiscreteVp::scaled_linear(*a, *b, *n)?),
            Sched::Cosine(m, n) => Box::new(DiscreteVp::new(BetaSchedule::SquaredCosCapV2 { max_beta: *m }, *n)?),
            Sched::ZeroSnr(a, b, n) => Box::new(DiscreteVp::linear(*a, *b, *n)?.rescale_zero_terminal_snr()?),
            Sched::Table(betas) => Box::new(DiscreteVp::new(BetaSchedule::Betas(betas.clone()), betas.len())?),
            Sched::ContinuousVp(s) => Box::new(s.clone()),
            Sched::CosineVp(s) => Box::new(s.clone()),
            Sched::Edm(s) => Box::new(s.clone()),
            Sched::Flow(s) => Box::new(s.clone()),
        })
    }
}

fn train_timesteps() -> impl Strategy<Value = (usize, bool)> {
    prop_oneof![
        8 => Just((1000, true)),
        3 => (2usize..60).prop_map(|n| (n, true)),
        1 => prop::sample::select(vec![0, 1, limits::MAX_TRAIN_TIMESTEPS + 1, 1_000_000_000, usize::MAX]).prop_map(|n| (n, false)),
    ]
}

/// A schedule and whether it is well conditioned (valid, moderate parameters).
fn schedule() -> impl Strategy<Value = (Sched, bool)> {
    prop_oneof![
        3 => (param(1e-5, 2e-3), param(5e-3, 0.03), train_timesteps())
            .prop_map(|((a, ga), (b, gb), (n, gn))| (Sched::Linear(a, b, n), ga && gb && gn)),
        3 => (param(1e-4, 2e-3), param(5e-3, 0.02), train_timesteps())
            .prop_map(|((a, ga), (b, gb), (n, gn))| (Sched::ScaledLinear(a, b, n), ga && gb && gn)),
        1 => (param(0.5, 0.999), train_timesteps()).prop_map(|((m, g), (n, gn))| (Sched::Cosine(m, n), g && gn)),
        1 => (param(1e-4, 1e-3), param(0.01, 0.02), train_timesteps())
            .prop_map(|((a, ga), (b, gb), (n, gn))| (Sched::ZeroSnr(a, b, n), ga && gb && gn)),
        1 => prop::collection::vec(0.0f64..0.05, 0..40).prop_map(|b| (Sched::Table(b), false)),
        1 => (param(0.05, 0.5), param(5.0, 25.0), param(1e-4, 1e-2)).prop_map(|((b0, g0), (b1, g1), (e, ge))| {
            (Sched::ContinuousVp(ContinuousVp { beta_0: b0, beta_1: b1, t_eps: e }), g0 && g1 && ge)
        }),
        1 => param(1e-4, 1e-2).prop_map(|(e, g)| (Sched::CosineVp(CosineVp { t_eps: e }), g)),
        2 => (param(1e-3, 0.05), param(10.0, 200.0), any::<bool>()).prop_map(|((lo, g0), (hi, g1), q)| {
            let model_time = if q { EdmModelTime::QuarterLogSigma } else { EdmModelTime::Sigma };
            (Sched::Edm(Edm { sigma_min: lo, sigma_max: hi, model_time }), g0 && g1)
        }),
        2 => (param(0.5, 6.0), param(1e-4, 1e-2), param(1.0, 1000.0)).prop_map(|((s, g0), (t, g1), (k, g2))| {
            (Sched::Flow(RectifiedFlow { shift: s, t_min: t, time_scale: k }), g0 && g1 && g2)
        }),
    ]
}

fn spacing() -> impl Strategy<Value = (Spacing, bool)> {
    prop_oneof![
        Just((Spacing::UniformTime, true)),
        Just((Spacing::UniformLambda, true)),
        Just((Spacing::TimeQuadratic, true)),
        Just((Spacing::Exponential, true)),
        param(1.0, 10.0).prop_map(|(rho, g)| (Spacing::Karras { rho }, g)),
        (prop_oneof![4 => 0usize..3, 1 => Just(usize::MAX), 1 => 0usize..2000], any::<bool>())
            .prop_map(|(steps_offset, skip_zero)| (Spacing::Leading { steps_offset, skip_zero }, steps_offset < 3)),
        (any::<bool>(), any::<bool>()).prop_map(|(round, skip_zero)| (Spacing::Linspace { round, skip_zero }, true)),
        Just((Spacing::Trailing, true)),
    ]
}

fn steps() -> impl Strategy<Value = usize> {
    prop_oneof![
        20 => 1usize..16,
        6 => 16usize..60,
        1 => 60usize..400,
        1 => prop::sample::select(vec![0, limits::MAX_STEPS + 1, 1_000_000_000, usize::MAX]),
    ]
}

#[derive(Clone, Debug)]
enum EndSpec {
    Clean,
    Min,
    /// At a fraction of the schedule's range, or a raw (possibly invalid) time.
    Fraction(f64),
    Raw(f64),
}

fn end() -> impl Strategy<Value = EndSpec> {
    prop_oneof![
        4 => Just(EndSpec::Clean),
        4 => Just(EndSpec::Min),
        2 => (0.0f64..1.0).prop_map(EndSpec::Fraction),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -5.0, 1e9, 0.0]).prop_map(EndSpec::Raw),
    ]
}

/// Solvers: a registry name (by index, so new names are covered) or a random configuration of a
/// solver with public fields (the configs a run must validate).
#[derive(Clone, Debug)]
enum SolverSpec {
    Registry(Index),
    Ddim(f64),
    EulerAncestral(f64, f64),
    Heun(Option<(f64, f64, f64, f64)>),
    Lms(usize),
    Ipndm(usize, bool),
    Pndm(u8, f64, bool, bool),
    Multistep(usize, u8, bool, bool, bool),
    Singlestep(usize, u8, bool, bool),
    Sde(usize, u8),
    UniPc(usize, u8, bool, bool, Vec<usize>),
    Deis(usize, u8),
    Ddpm(u8, bool),
}

fn policy(order: usize, lof: u8) -> OrderPolicy {
    let lower_order_final = match lof % 3 {
        0 => LowerOrderFinal::Never,
        1 => LowerOrderFinal::Always,
        _ => LowerOrderFinal::BelowSteps(15),
    };
    OrderPolicy { order, lower_order_final, euler_at_final: lof >= 3 }
}

impl SolverSpec {
    fn build(&self) -> AnySolver {
        let names = solver_names();
        match self {
            SolverSpec::Registry(i) => names[i.index(names.len())].parse().unwrap(),
            SolverSpec::Ddim(eta) => AnySolver::new(Ddim { eta: *eta }),
            SolverSpec::EulerAncestral(eta, s_noise) => {
                AnySolver::new(EulerAncestral { eta: *eta, s_noise: *s_noise, ..EulerAncestral::default() })
            }
            SolverSpec::Heun(churn) => AnySolver::new(Heun {
                churn: churn.map(|(s_churn, s_tmin, s_tmax, s_noise)| Churn { s_churn, s_tmin, s_tmax, s_noise }),
            }),
            SolverSpec::Lms(order) => AnySolver::new(Lms { order: *order, ..Lms::default() }),
            SolverSpec::Ipndm(order, clamp) => AnySolver::new(Ipndm {
                order: *order,
                zero_alpha_start: if *clamp { ZeroAlphaStart::DiffusersClamp } else { ZeroAlphaStart::DataPrediction },
                ..Ipndm::default()
            }),
            SolverSpec::Pndm(warmup, half, lagrange, raw) => AnySolver::new(Pndm {
                warmup: match warmup % 3 {
                    0 => Warmup::ImprovedEuler,
                    1 => Warmup::RungeKutta { midpoint: PrkMidpoint::Ksigma },
                    _ => Warmup::RungeKutta { midpoint: PrkMidpoint::HalfStride { half: *half } },
                },
                weights: if *lagrange { MultistepWeights::Lagrange } else { MultistepWeights::Uniform },
                combine: if *raw { PndmCombine::RawOutput } else { PndmCombine::Noise },
            }),
            SolverSpec::Multistep(order, lof, noise, heun, reference) => {
                let mut s = if *noise { DpmSolverMultistep::noise(*order) } else { DpmSolverMultistep::pp(*order) };
                s.policy = policy(*order, *lof);
                s.solver_type = if *heun { SolverType::Heun } else { SolverType::Midpoint };
                s.third_order = if *reference { ThirdOrder::Reference } else { ThirdOrder::Taylor };
                AnySolver::new(s)
            }
            SolverSpec::Singlestep(order, lof, noise, heun) => {
                let mut s = if *noise { DpmSolverSinglestep::noise(*order) } else { DpmSolverSinglestep::pp(*order) };
                s.policy = policy(*order, *lof);
                s.solver_type = if *heun { SolverType::Heun } else { SolverType::Midpoint };
                AnySolver::new(s)
            }
            SolverSpec::Sde(order, lof) => {
                let mut s = SdeDpmSolverPP::order(*order);
                s.policy = policy(*order, *lof);
                AnySolver::new(s)
            }
            SolverSpec::UniPc(order, lof, bh1, noise, except) => {
                let mut s = UniPc::order(*order);
                s.policy = policy(*order, *lof);
                if *bh1 {
                    s.variant = BVariant::Bh1;
                }
                if *noise {
                    s.form = diffusion_samplers::math::expint::Form::Noise;
                }
                if !except.is_empty() {
                    s.corrector = Corrector::Except(except.clone());
                }
                AnySolver::new(s)
            }
            SolverSpec::Deis(order, lof) => AnySolver::new(Deis { policy: policy(*order, *lof) }),
            SolverSpec::Ddpm(variance, diffusers_final) => AnySolver::new(Ddpm {
                variance: match variance % 6 {
                    0 => DdpmVariance::FixedSmall,
                    1 => DdpmVariance::FixedSmallLog,
                    2 => DdpmVariance::FixedLarge,
                    3 => DdpmVariance::FixedLargeLog,
                    4 => DdpmVariance::Learned,
                    _ => DdpmVariance::LearnedRange,
                },
                final_noise: if *diffusers_final { FinalNoise::Diffusers } else { FinalNoise::Skip },
            }),
        }
    }

    /// Heun's churn raises the noise level above the step's start (beyond the range on an EDM
    /// schedule near sigma_max, as EDM's algorithm does).
    fn may_leave_the_range(&self) -> bool {
        matches!(self, SolverSpec::Heun(Some(_)))
    }
}

fn order() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 1usize..4, 1 => Just(0usize), 1 => 4usize..6, 1 => Just(usize::MAX)]
}

/// A solver and whether its settings are moderate (an out-of-range order is refused by
/// validation, a finite but absurd noise scale such as `s_noise = 1e300` is not).
fn solver() -> impl Strategy<Value = (SolverSpec, bool)> {
    let f = || param(0.0, 1.5);
    prop_oneof![
        12 => any::<Index>().prop_map(|i| (SolverSpec::Registry(i), true)),
        1 => f().prop_map(|(v, g)| (SolverSpec::Ddim(v), g)),
        1 => (f(), f()).prop_map(|((a, ga), (b, gb))| (SolverSpec::EulerAncestral(a, b), ga && gb)),
        1 => prop::option::of((param(0.0, 80.0), param(0.0, 1.0), param(1.0, 100.0), param(0.9, 1.1))).prop_map(|c| {
            let good = c.map_or(true, |(a, b, c, d)| a.1 && b.1 && c.1 && d.1);
            (SolverSpec::Heun(c.map(|(a, b, c, d)| (a.0, b.0, c.0, d.0))), good)
        }),
        1 => order().prop_map(|o| (SolverSpec::Lms(o), true)),
        1 => (order(), any::<bool>()).prop_map(|(o, c)| (SolverSpec::Ipndm(o, c), true)),
        1 => (any::<u8>(), param(0.0, 30.0), any::<bool>(), any::<bool>())
            .prop_map(|(w, (h, g), l, r)| (SolverSpec::Pndm(w, h, l, r), g)),
        1 => (order(), 0u8..6, any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(o, l, n, h, r)| (SolverSpec::Multistep(o, l, n, h, r), true)),
        1 => (order(), 0u8..6, any::<bool>(), any::<bool>())
            .prop_map(|(o, l, n, h)| (SolverSpec::Singlestep(o, l, n, h), true)),
        1 => (order(), 0u8..6).prop_map(|(o, l)| (SolverSpec::Sde(o, l), true)),
        1 => (order(), 0u8..6, any::<bool>(), any::<bool>(), prop::collection::vec(0usize..20, 0..3))
            .prop_map(|(o, l, b, n, e)| (SolverSpec::UniPc(o, l, b, n, e), true)),
        1 => (order(), 0u8..6).prop_map(|(o, l)| (SolverSpec::Deis(o, l), true)),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(v, d)| (SolverSpec::Ddpm(v, d), true)),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Net {
    /// The Gaussian mixture's exact prediction.
    Exact,
    Zero,
    Const(f64),
    /// NaN from the `k`-th call on (not finite in).
    NanFrom(usize),
}

fn net() -> impl Strategy<Value = Net> {
    prop_oneof![
        8 => Just(Net::Exact),
        1 => Just(Net::Zero),
        1 => prop_oneof![-3.0f64..3.0, Just(1e30), Just(-1e30)].prop_map(Net::Const),
        1 => (0usize..20).prop_map(Net::NanFrom),
    ]
}

#[derive(Clone, Debug)]
enum Mode {
    Sample,
    Invert,
    Img2img(f64),
    /// The step list with point `k` repeated (a zero-length step).
    Repeat(Index),
    /// The step list with step `k` evaluate-only.
    EvaluateOnly(Index),
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        10 => Just(Mode::Sample),
        2 => Just(Mode::Invert),
        1 => prop_oneof![0.0f64..1.2, Just(f64::NAN)].prop_map(Mode::Img2img),
        1 => any::<Index>().prop_map(Mode::Repeat),
        1 => any::<Index>().prop_map(Mode::EvaluateOnly),
    ]
}

fn dtype() -> impl Strategy<Value = DType> {
    prop_oneof![
        6 => Just(DType::F64),
        6 => Just(DType::F32),
        2 => Just(DType::F16),
        2 => Just(DType::BF16),
        1 => prop::sample::select(vec![DType::U8, DType::U32, DType::I64]),
    ]
}

fn model_dtype() -> impl Strategy<Value = Option<DType>> {
    prop_oneof![8 => Just(None), 1 => Just(Some(DType::F16)), 1 => Just(Some(DType::BF16)), 1 => Just(Some(DType::F32)), 1 => Just(Some(DType::U8))]
}

fn prediction() -> impl Strategy<Value = Prediction> {
    prop::sample::select(vec![Prediction::Epsilon, Prediction::Sample, Prediction::VPrediction, Prediction::Flow])
}

fn transform() -> impl Strategy<Value = DataTransform> {
    prop_oneof![
        8 => Just(DataTransform::None),
        1 => param(0.5, 3.0).prop_map(|(range, _)| DataTransform::Clip { range }),
        1 => (param(0.9, 1.0), param(0.5, 3.0)).prop_map(|((ratio, _), (max_value, _))| {
            DataTransform::DynamicThreshold(DynamicThresholding { ratio, max_value })
        }),
    ]
}

/// Where the grid comes from: a spacing, or times / sigmas given as fractions of the schedule's
/// time range (outside `[0, 1]`, or NaN: off the range).
#[derive(Clone, Debug)]
enum Source {
    Spacing,
    Times(Vec<f64>),
    Sigmas(Vec<f64>),
}

fn fractions() -> impl Strategy<Value = Vec<f64>> {
    let f =
        prop_oneof![12 => 0.0f64..=1.0, 1 => prop::sample::select(vec![f64::NAN, -0.5, 1.5, f64::INFINITY, 0.0, 1.0])];
    prop::collection::vec(f, 0..12).prop_map(|mut v| {
        // mostly decreasing (a sampling grid), as given
        if v.first().is_some_and(|x| x.is_finite() && *x > 0.3) {
            v.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
        }
        v
    })
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        10 => Just(Source::Spacing),
        1 => fractions().prop_map(Source::Times),
        1 => fractions().prop_map(Source::Sigmas),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    source: Source,
    sched: (Sched, bool),
    spacing: (Spacing, bool),
    steps: usize,
    end: EndSpec,
    solver: (SolverSpec, bool),
    dtype: DType,
    model_dtype: Option<DType>,
    prediction: Prediction,
    net: Net,
    transform: DataTransform,
    mode: Mode,
    /// `Some(n)`: caller-supplied noise of `n` draws; `None`: seeded.
    draws: Option<usize>,
    rows: usize,
    dim: usize,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (schedule(), spacing(), steps(), end(), solver()),
        (dtype(), model_dtype(), prediction(), net(), transform()),
        (mode(), prop::option::weighted(0.1, 0usize..30), 1usize..4, 1usize..4, any::<u64>(), source()),
    )
        .prop_map(
            |(
                (sched, spacing, steps, end, solver),
                (dtype, model_dtype, prediction, net, transform),
                (mode, draws, rows, dim, seed, source),
            )| Case {
                source,
                sched,
                spacing,
                steps,
                end,
                solver,
                dtype,
                model_dtype,
                prediction,
                net,
                transform,
                mode,
                draws,
                rows,
                dim,
                seed,
            },
        )
}

// -------------------------------------------------------------------------------------------------
// one case
// -------------------------------------------------------------------------------------------------

/// Outcome counters for the report.
#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    schedule_refused: usize,
    grid_refused: usize,
    ran_ok: usize,
    run_refused: usize,
}

fn all_finite(t: &Tensor) -> bool {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().all(|v| v.is_finite())
}

fn check_case(c: &Case, tally: &mut Tally) -> std::result::Result<(), TestCaseError> {
    tally.cases += 1;
    let schedule = match c.sched.0.build() {
        Ok(s) => s,
        Err(_) => {
            tally.schedule_refused += 1;
            return Ok(());
        }
    };
    let s = schedule.as_ref();
    let (t_min, t_max) = s.t_range();
    let end = match c.end {
        EndSpec::Clean => End::Clean,
        EndSpec::Min => End::Min,
        EndSpec::Fraction(f) => End::At(t_min + f * (t_max - t_min)),
        EndSpec::Raw(t) => End::At(t),
    };
    let built = match &c.source {
        Source::Spacing => Grid::new(s, &c.spacing.0, c.steps, end),
        // times as fractions of the schedule's range (or raw garbage), sigmas of its points
        Source::Times(v) => Grid::from_times(s, &v.iter().map(|f| t_min + f * (t_max - t_min)).collect::<Vec<_>>()),
        Source::Sigmas(v) => {
            let sigmas: Vec<f64> = v.iter().map(|f| s.point(t_min + f * (t_max - t_min)).ksigma()).collect();
            Grid::from_sigmas(s, &sigmas)
        }
    };
    let grid = match built {
        Ok(g) => g,
        Err(_) => {
            tally.grid_refused += 1;
            return Ok(());
        }
    };
    if let Source::Spacing = c.source {
        prop_assert!(c.steps <= limits::MAX_STEPS && grid.len() == c.steps, "{} steps for {}", grid.len(), c.steps);
        if c.steps > 400 {
            return Ok(()); // built and sized; not run
        }
    }
    let steps: Vec<Step> = match &c.mode {
        Mode::Sample => grid.steps().collect(),
        Mode::Invert => match grid.reversed() {
            Ok(g) => g.steps().collect(),
            Err(_) => {
                tally.grid_refused += 1;
                return Ok(());
            }
        },
        Mode::Img2img(strength) => match grid.img2img(*strength) {
            Ok(g) => g.steps().collect(),
            Err(_) => {
                tally.grid_refused += 1;
                return Ok(());
            }
        },
        Mode::Repeat(k) => {
            let mut pts = grid.points().to_vec();
            let k = k.index(pts.len());
            pts.insert(k, pts[k]);
            Step::chain(&pts)
        }
        Mode::EvaluateOnly(k) => {
            let mut st: Vec<Step> = grid.steps().collect();
            let k = k.index(st.len());
            st[k].kind = StepKind::EvaluateOnly;
            st
        }
    };
    let Some(first) = steps.first() else { return Ok(()) };
    // the starting sample: noise at the first point's scale (data-like for an inversion)
    let scale = if matches!(c.mode, Mode::Invert) { 0.5 } else { first.from.alpha.hypot(first.from.sigma) };
    let n = c.rows * c.dim;
    let x = Tensor::from_vec(SeededNoise::new(c.seed).normal_vec(n), (c.rows, c.dim), &Device::Cpu).unwrap();
    let x = x.affine(scale, 0.0).unwrap();
    let x = if c.dtype.is_float() { x.to_dtype(c.dtype).unwrap() } else { x.abs().unwrap().to_dtype(c.dtype).unwrap() };
    let finite_start = !c.dtype.is_float() || all_finite(&x);

    let gm = GaussianMixture::example(c.dim, 2, c.seed).unwrap();
    let mut exact = gm.denoiser(s, c.prediction);
    let times = Rc::new(RefCell::new(Vec::new()));
    let log = times.clone();
    let net = c.net;
    let denoiser = move |x: &Tensor, t: f64| -> candle_core::Result<Tensor> {
        log.borrow_mut().push(t);
        let calls = log.borrow().len();
        match net {
            Net::Exact => exact(x, t),
            Net::Zero => x.zeros_like(),
            Net::Const(v) => x.ones_like()?.affine(v, 0.0),
            Net::NanFrom(k) if calls > k => x.ones_like()?.affine(f64::NAN, 0.0),
            Net::NanFrom(_) => x.zeros_like(),
        }
    };
    let mut model = Model::new(denoiser, s, c.prediction);
    if let Some(dt) = c.model_dtype {
        model = model.with_model_dtype(dt);
    }
    let mut model = match model.with_data_transform(c.transform) {
        Ok(m) => m,
        Err(_) => {
            tally.run_refused += 1;
            return Ok(());
        }
    };
    let solver = c.solver.0.build();
    let result = match c.draws {
        None => sample_with(&solver, &mut model, &steps, &x, &mut SeededNoise::new(c.seed), |_| {}),
        Some(k) => {
            let like = x.to_dtype(DType::F64).unwrap_or_else(|_| x.clone());
            let draws = (0..k).map(|i| like.ones_like().unwrap().affine(0.1 * i as f64, 0.0).unwrap());
            sample_with(&solver, &mut model, &steps, &x, &mut TensorNoise::new(draws), |_| {})
        }
    };

    // the network saw only finite model times inside the schedule's range (model times grow
    // with t for every schedule here)
    let (mt_lo, mt_hi) = (s.model_time(t_min.min(0.0)), s.model_time(t_max));
    let tol = 1e-6 * mt_lo.abs().min(f64::MAX).max(mt_hi.abs()).max(1.0);
    for &mt in times.borrow().iter() {
        prop_assert!(mt.is_finite(), "network called at model time {mt}");
        if !c.solver.0.may_leave_the_range() {
            prop_assert!(mt >= mt_lo - tol && mt <= mt_hi + tol, "network called at {mt} outside [{mt_lo}, {mt_hi}]");
        }
    }
    match result {
        Ok(out) => {
            tally.ran_ok += 1;
            prop_assert_eq!(out.dims(), x.dims());
            prop_assert_eq!(out.dtype(), x.dtype());
            prop_assert!(all_finite(&out), "Ok with a non-finite result: {out}");
        }
        Err(e) => {
            tally.run_refused += 1;
            // finite in, well conditioned: no NaN of the library's own
            let finite_in = finite_start && matches!(c.net, Net::Exact | Net::Zero) && c.draws.is_none();
            let well_conditioned = c.sched.1
                && c.spacing.1
                && c.solver.1
                && matches!(c.dtype, DType::F32 | DType::F64)
                && matches!(c.model_dtype, None | Some(DType::F32))
                && c.transform == DataTransform::None;
            if finite_in && well_conditioned {
                prop_assert!(
                    !matches!(e.root(), Error::NonFinite { .. } | Error::NonFiniteSample { .. } | Error::Candle(_)),
                    "finite in, error out: {e}"
                );
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

#[test]
fn no_panic_no_nan_over_the_public_api() {
    let config = Config { cases: cases(), failure_persistence: None, max_shrink_iters: 2_000, ..Config::default() };
    let mut runner = if std::env::var("PROPERTY_RANDOM").is_ok() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let tally = RefCell::new(Tally::default());
    let start = std::time::Instant::now();
    let result = runner.run(&case(), |c| check_case(&c, &mut tally.borrow_mut()));
    println!("{:?} in {:.1} s", tally.borrow(), start.elapsed().as_secs_f64());
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `steps_for_nfe` bisects on the cost of a run growing with its step count: true of every
/// registered solver (new ones included), at both ends.
#[test]
fn registry_run_costs_grow_with_the_step_count() {
    let s = DiscreteVp::linear(1e-4, 0.02, 1000).unwrap();
    for name in solver_names() {
        let solver: AnySolver = name.parse().unwrap();
        for end in [End::Clean, End::Min] {
            let mut last = 0;
            for n in 1..=80 {
                let grid = Grid::new(&s, &Spacing::UniformLambda, n, end).unwrap();
                let cost = nfe_of(&solver, grid.as_ref());
                assert!(cost >= last && cost >= n, "{name} {end:?}: {n} steps cost {cost}, {} cost {last}", n - 1);
                last = cost;
            }
        }
    }
}

/// `steps_for_nfe` for random budgets over the registry: bounded, and at the boundary of the
/// budget (`n` steps fit, `n + 1` do not, or `n` is the step limit).
#[test]
fn steps_for_nfe_fits_any_budget() {
    let config = Config { cases: cases() / 20, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let budget = prop_oneof![4 => 0usize..200, 1 => 200usize..300_000, 1 => Just(usize::MAX)];
    let strategy = (any::<Index>(), budget, any::<bool>());
    let result = runner.run(&strategy, |(i, budget, clean)| {
        let names = solver_names();
        let solver: AnySolver = names[i.index(names.len())].parse().unwrap();
        let end = if clean { End::Clean } else { End::Min };
        let cost =
            |n: usize| nfe_of(&solver, Grid::new(&Edm::default(), &Spacing::UniformTime, n, end).unwrap().as_ref());
        if solver.is_adaptive() {
            // an adaptive solver's evaluations follow its tolerance: no step count fits a budget
            prop_assert!(steps_for_nfe(&solver, budget, end).is_err(), "{} fitted a budget", solver.name());
            return Ok(());
        }
        match steps_for_nfe(&solver, budget, end) {
            Ok(n) => {
                prop_assert!((1..=limits::MAX_STEPS).contains(&n) && cost(n) <= budget);
                prop_assert!(n == limits::MAX_STEPS || cost(n + 1) > budget, "{n} steps for {budget}");
            }
            Err(e) => prop_assert!(budget < cost(1), "{e}"),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
