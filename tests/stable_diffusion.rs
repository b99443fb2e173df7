//! Stable Diffusion through candle-transformers, without downloads: tiny UNets (SD 1.5-, 2.1- and
//! XL-style configs) and a tiny VAE with deterministic pseudo-random weights.
//!
//! Checked: the adapter's calls (shapes, classifier-free guidance batch layout with the
//! unconditional half first, the timesteps the UNet receives); [`XlUNet`] equals
//! candle-transformers' own UNet where both apply; every solver family gives finite latents;
//! our DDIM (eta = 0) agrees elementwise with candle-transformers' `DDIMScheduler` where that is
//! correct; two of its defects, pinned; bad input gives typed errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::{
    BetaSchedule as CtBeta, SchedulerConfig, TimestepSpacing,
};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};
use candle_transformers::models::stable_diffusion::vae::{AutoEncoderKL, AutoEncoderKLConfig};
use diffusion_samplers::names::solver_names;
use diffusion_samplers::sd::{
    self, AddedConditioning, AddedEmbedConfig, Conditioning, SdFolder, SdVersion, TextUNet, UNetSpec, VaeSpec, XlUNet,
};
use diffusion_samplers::{
    add_noise, invert, nfe_of, sample, sample_with, AnySolver, BetaSchedule, Ddim, DiscreteVp, End, Error, Euler, Grid,
    Model, NoiseSource, Prediction, Scheduler, SeededNoise, Solver, Spacing,
};

#[allow(dead_code)]
#[path = "../examples/sd_common/mod.rs"]
mod sd_common;

// ---------------------------------------------------------------- tiny models

/// Weights generated from a fixed seed per tensor name (FNV-1a of the name): normal values
/// scaled by 1/sqrt(fan_in) for matrices and kernels, 1 + 0.1 N for norm scales, 0.1 N for
/// biases. Every tensor handed out is recorded (to write safetensors files).
#[derive(Default)]
struct Seeded {
    made: Mutex<BTreeMap<String, Tensor>>,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl Seeded {
    fn make(&self, s: &Shape, name: &str, dev: &Device) -> candle_core::Result<Tensor> {
        let dims = s.dims();
        let z = SeededNoise::new(fnv1a(name)).normal_vec(s.elem_count());
        let v: Vec<f32> = if dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            z.iter().map(|z| (z / (fan_in as f64).sqrt()) as f32).collect()
        } else if name.ends_with("weight") {
            z.iter().map(|z| (1.0 + 0.1 * z) as f32).collect()
        } else {
            z.iter().map(|z| (0.1 * z) as f32).collect()
        };
        let t = Tensor::from_vec(v, s.clone(), dev)?;
        self.made.lock().unwrap().insert(name.to_string(), t.clone());
        Ok(t)
    }
}

struct SeededRef(Arc<Seeded>);

impl SimpleBackend for SeededRef {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.make(&s, name, dev)?.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("no shape for {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn seeded_vb(store: &Arc<Seeded>) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SeededRef(store.clone())), DType::F32, Device::Cpu)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Style {
    Sd15,
    Sd21,
    Xl,
}

const CROSS: usize = 16;
const POOLED: usize = 12;

/// Tiny configs with the structure of each family: SD 1.5 (cross-attention everywhere but the
/// last block, conv projections), SD 2.1 (linear projections), XL (no attention in the first
/// block, two transformer layers, added conditioning).
fn tiny(style: Style) -> (UNet2DConditionModelConfig, Option<AddedEmbedConfig>) {
    let bc = |out_channels, use_cross_attn, attention_head_dim| BlockConfig {
        out_channels,
        use_cross_attn,
        attention_head_dim,
    };
    let (blocks, linear, added) = match style {
        Style::Sd15 => (vec![bc(32, Some(1), 2), bc(64, None, 2)], false, None),
        Style::Sd21 => (vec![bc(32, Some(1), 2), bc(64, Some(1), 4)], true, None),
        Style::Xl => (
            vec![bc(32, None, 2), bc(64, Some(2), 4)],
            true,
            Some(AddedEmbedConfig { time_embed_dim: 8, input_dim: POOLED + 6 * 8 }),
        ),
    };
    let config = UNet2DConditionModelConfig {
        center_input_sample: false,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
        blocks,
        layers_per_block: 1,
        downsample_padding: 1,
        mid_block_scale_factor: 1.0,
        // candle-transformers' UpBlock2D ignores its `resnet_groups` and always uses 32
        norm_num_groups: 32,
        norm_eps: 1e-5,
        cross_attention_dim: CROSS,
        sliced_attention_size: None,
        use_linear_projection: linear,
    };
    (config, added)
}

fn tiny_unet(style: Style) -> (XlUNet, Arc<Seeded>) {
    let store = Arc::new(Seeded::default());
    let (config, added) = tiny(style);
    let unet = XlUNet::new(seeded_vb(&store), 4, 4, false, config, added).unwrap();
    (unet, store)
}

fn normal(shape: &[usize], seed: u64) -> Tensor {
    let like = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
    SeededNoise::new(seed).noise_like(&like).unwrap()
}

/// A conditioning of `rows` rows with 5 tokens (and added conditioning for XL).
fn cond(style: Style, rows: usize, seed: u64) -> Conditioning {
    let text = normal(&[rows, 5, CROSS], seed);
    let added = (style == Style::Xl).then(|| AddedConditioning {
        text_embeds: normal(&[rows, POOLED], seed + 1),
        time_ids: Tensor::new(&[[64f32, 64., 0., 0., 64., 64.]], &Device::Cpu).unwrap().repeat((rows, 1)).unwrap(),
    });
    Conditioning { text, added }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn is_finite(t: &Tensor) -> bool {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap().iter().all(|v| v.is_finite())
}

/// A UNet that records what it is called with.
struct Recording<'a, U> {
    unet: &'a U,
    calls: Mutex<Vec<(Vec<usize>, f64, Conditioning)>>,
}

impl<'a, U: TextUNet> Recording<'a, U> {
    fn new(unet: &'a U) -> Self {
        Recording { unet, calls: Mutex::new(Vec::new()) }
    }
    fn timesteps(&self) -> Vec<f64> {
        self.calls.lock().unwrap().iter().map(|c| c.1).collect()
    }
}

impl<U: TextUNet> TextUNet for Recording<'_, U> {
    fn predict(&self, x: &Tensor, timestep: f64, cond: &Conditioning) -> candle_core::Result<Tensor> {
        self.calls.lock().unwrap().push((x.dims().to_vec(), timestep, cond.clone()));
        self.unet.predict(x, timestep, cond)
    }
}

fn sd_schedule() -> DiscreteVp {
    DiscreteVp::scaled_linear(0.00085, 0.012, 1000).unwrap()
}

// ---------------------------------------------------------------- XlUNet vs candle-transformers

/// Without added conditioning, [`XlUNet`] is candle-transformers' `UNet2DConditionModel` wired
/// again from the same public blocks: the outputs agree to the last bit.
#[test]
fn xl_unet_equals_candle_unet_without_added_conditioning() {
    for style in [Style::Sd15, Style::Sd21, Style::Xl] {
        let store = Arc::new(Seeded::default());
        let (config, _) = tiny(style);
        let ours = XlUNet::new(seeded_vb(&store), 4, 4, false, config.clone(), None).unwrap();
        let theirs = UNet2DConditionModel::new(seeded_vb(&store), 4, 4, false, config).unwrap();
        for (hw, t) in [(8, 951.0), (12, 1.0), (6, 500.5)] {
            let x = normal(&[2, 4, hw, hw], 3);
            let c = cond(Style::Sd15, 2, 4);
            let a = ours.forward(&x, t, &c).unwrap();
            let b = theirs.forward(&x, t, &c.text).unwrap();
            assert_eq!(a.dims(), &[2, 4, hw, hw]);
            assert_eq!(max_abs(&a, &b), 0.0, "{style:?} {hw}x{hw} t = {t}");
        }
    }
}

/// The tiny UNets against diffusers' `UNet2DConditionModel` with the same configs and the same
/// seeded weights (`tools/sd_tiny_unet_fixture.py`, float64), at an integer and a fractional
/// timestep: candle-transformers' blocks, our wiring and SDXL's added conditioning (`text_embeds`,
/// `time_ids`, two different rows) give diffusers' outputs to float32 precision when diffusers'
/// GEGLU feed-forward uses the tanh GELU, as candle-transformers' does (`Tensor::gelu` is the tanh
/// approximation; diffusers' `GEGLU` uses the exact erf GELU). Against diffusers as it is, that
/// approximation shows: a relative difference around 1e-4, pinned here.
#[test]
fn tiny_unets_match_diffusers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd_tiny_unet.safetensors");
    let f = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let c = Conditioning {
        text: f["text"].clone(),
        added: Some(AddedConditioning { text_embeds: f["text_embeds"].clone(), time_ids: f["time_ids"].clone() }),
    };
    for (style, key) in [(Style::Sd15, "sd15"), (Style::Sd21, "sd21"), (Style::Xl, "xl")] {
        let (unet, _) = tiny_unet(style);
        let c = if style == Style::Xl { c.clone() } else { Conditioning::text(c.text.clone()) };
        for t in [500.0, 37.5] {
            let got = unet.forward(&f["x"], t, &c).unwrap();
            let rel = |want: &Tensor| max_abs(&got, want) / max_abs(want, &want.zeros_like().unwrap());
            let (tanh, exact) = (rel(&f[&format!("{key}.t{t:?}.tanh_gelu")]), rel(&f[&format!("{key}.t{t:?}")]));
            assert!(tanh < 2e-6, "{key} t = {t}: relative difference {tanh} to diffusers with tanh GELU");
            assert!(exact > 1e-5 && exact < 1e-3, "{key} t = {t}: relative difference {exact} to diffusers");
        }
    }
}

/// SDXL's added conditioning enters the UNet per batch row: changing one row's pooled embedding
/// or time_ids changes that row's output only; candle-transformers' UNet refuses it.
#[test]
fn added_conditioning_is_per_row() {
    let (unet, store) = tiny_unet(Style::Xl);
    assert!(store.made.lock().unwrap().contains_key("add_embedding.linear_1.weight"));
    let x = normal(&[2, 4, 8, 8], 5);
    let c = cond(Style::Xl, 2, 6);
    let base = unet.forward(&x, 700.0, &c).unwrap();
    let mut c2 = c.clone();
    let added = c2.added.as_mut().unwrap();
    added.time_ids =
        Tensor::new(&[[64f32, 64., 0., 0., 64., 64.], [128., 96., 8., 0., 64., 64.]], &Device::Cpu).unwrap();
    let moved = unet.forward(&x, 700.0, &c2).unwrap();
    assert_eq!(max_abs(&base.narrow(0, 0, 1).unwrap(), &moved.narrow(0, 0, 1).unwrap()), 0.0);
    assert!(max_abs(&base.narrow(0, 1, 1).unwrap(), &moved.narrow(0, 1, 1).unwrap()) > 1e-4);
    // without it, or with it on a UNet built without it: an error, not a silent drop
    assert!(unet.forward(&x, 700.0, &Conditioning::text(c.text.clone())).is_err());
    let store = Arc::new(Seeded::default());
    let candle_unet = UNet2DConditionModel::new(seeded_vb(&store), 4, 4, false, tiny(Style::Xl).0).unwrap();
    let err = candle_unet.predict(&x, 700.0, &c).unwrap_err().to_string();
    assert!(err.contains("XlUNet"), "{err}");
}

// ---------------------------------------------------------------- the adapter's calls

/// Guided DDIM on SD 1.5-, 2.1- and XL-style UNets: one UNet call per step on the batch
/// `[uncond, cond]` (twice the latents' batch) with the conditioning rows in that order, at
/// diffusers' DDIM timesteps for SD (`leading`, `steps_offset = 1`: 801, 601, 401, 201, 1 for 5
/// steps), and the guided prediction `uncond + s (cond - uncond)`.
#[test]
fn adapter_calls_cfg_layout_and_timesteps() {
    let schedule = sd_schedule();
    let grid = Grid::new(&schedule, &Spacing::Leading { steps_offset: 1, skip_zero: false }, 5, End::Min).unwrap();
    for (style, prediction) in
        [(Style::Sd15, Prediction::Epsilon), (Style::Sd21, Prediction::VPrediction), (Style::Xl, Prediction::Epsilon)]
    {
        let (unet, _) = tiny_unet(style);
        let rec = Recording::new(&unet);
        let (c, u) = (cond(style, 1, 10), cond(style, 1, 20));
        let batch = 3;
        let den = sd::denoiser(&rec, &c, Some(&u), 7.5, batch).unwrap();
        let mut model = Model::new(den, &schedule, prediction);
        let noise = normal(&[batch, 4, 8, 8], 1);
        let out = sample(&Ddim::default(), &mut model, &grid, &noise).unwrap();
        assert_eq!(out.dims(), &[batch, 4, 8, 8]);
        assert_eq!(rec.timesteps(), vec![801.0, 601.0, 401.0, 201.0, 1.0], "{style:?}");
        for (dims, _, seen) in rec.calls.lock().unwrap().iter() {
            assert_eq!(dims, &vec![2 * batch, 4, 8, 8]);
            // rows 0..3 are the unconditional prompt, rows 3..6 the prompt
            for row in 0..2 * batch {
                let want = if row < batch { &u } else { &c };
                assert_eq!(max_abs(&seen.text.narrow(0, row, 1).unwrap(), &want.text), 0.0);
                if let (Some(a), Some(b)) = (&seen.added, &want.added) {
                    assert_eq!(max_abs(&a.text_embeds.narrow(0, row, 1).unwrap(), &b.text_embeds), 0.0);
                    assert_eq!(max_abs(&a.time_ids.narrow(0, row, 1).unwrap(), &b.time_ids), 0.0);
                }
            }
        }
        // the guided output of one call, against two separate unguided calls
        let x = normal(&[batch, 4, 8, 8], 2);
        let mut guided = sd::denoiser(&unet, &c, Some(&u), 7.5, batch).unwrap();
        let mut cond_only = sd::denoiser(&unet, &c, None, 1.0, batch).unwrap();
        let mut uncond_only = sd::denoiser(&unet, &u, None, 1.0, batch).unwrap();
        use diffusion_samplers::Denoiser;
        let g = guided.denoise(&x, 500.0).unwrap();
        let (ec, eu) = (cond_only.denoise(&x, 500.0).unwrap(), uncond_only.denoise(&x, 500.0).unwrap());
        let want = (&eu + ((&ec - &eu).unwrap() * 7.5).unwrap()).unwrap();
        assert!(max_abs(&g, &want) < 1e-4, "{style:?}: {}", max_abs(&g, &want));
    }
}

/// Without guidance (Turbo, scale <= 1) the UNet gets the latents' batch and the prompt rows only.
#[test]
fn no_guidance_calls_conditional_batch_only() {
    let (unet, _) = tiny_unet(Style::Sd21);
    let rec = Recording::new(&unet);
    let schedule = sd_schedule();
    let den = sd::denoiser(&rec, &cond(Style::Sd21, 2, 1), None, 0.0, 2).unwrap();
    let mut model = Model::new(den, &schedule, Prediction::VPrediction);
    let grid = Grid::new(&schedule, &Spacing::Trailing, 1, End::Clean).unwrap();
    sample(&Euler, &mut model, &grid, &normal(&[2, 4, 8, 8], 3)).unwrap();
    let calls = rec.calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].0[0], calls[0].1), (2, 999.0)); // SD-Turbo: one step at timestep 999
}

// ---------------------------------------------------------------- every solver family

/// Every solver registered for run-time choice (every family of the crate) drives the tiny
/// guided UNet to finite latents (SD 1.5-style epsilon and SD 2.1-style v-prediction), on a
/// trailing grid into sigma = 0, with the evaluations its metadata announces (at least those, for
/// the adaptive DPM-Solver).
#[test]
fn every_solver_family_finite() {
    let schedule = sd_schedule();
    let grid = Grid::new(&schedule, &Spacing::Trailing, 4, End::Clean).unwrap();
    let names = solver_names();
    assert!(names.len() >= 15, "{names:?}");
    for (style, p) in [(Style::Sd15, Prediction::Epsilon), (Style::Sd21, Prediction::VPrediction)] {
        let (unet, _) = tiny_unet(style);
        for name in &names {
            let solver: AnySolver = name.parse().unwrap();
            let den = sd::denoiser(&unet, &cond(style, 1, 1), Some(&cond(style, 1, 2)), 5.0, 2).unwrap();
            let mut model = Model::new(den, &schedule, p);
            let out =
                sample_with(&solver, &mut model, &grid, &normal(&[2, 4, 8, 8], 7), &mut SeededNoise::new(3), |_| {})
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out.dims(), &[2, 4, 8, 8]);
            assert!(is_finite(&out), "{name} gave non-finite latents");
            if solver.is_adaptive() {
                // error control decides the evaluations: the metadata is a lower bound
                assert!(model.nfe() >= nfe_of(&solver, grid.as_ref()), "{name}");
            } else {
                assert_eq!(model.nfe(), nfe_of(&solver, grid.as_ref()), "{name}");
            }
        }
    }
}

// ---------------------------------------------------------------- candle-transformers' DDIM

/// Run candle-transformers' own scheduler loop (as its stable-diffusion example does) with the
/// tiny UNet, unguided.
fn candle_loop(
    cfg: DDIMSchedulerConfig,
    steps: usize,
    unet: &XlUNet,
    c: &Conditioning,
    noise: &Tensor,
) -> (Vec<usize>, Tensor) {
    let mut sched = cfg.build(steps).unwrap();
    let timesteps = sched.timesteps().to_vec();
    let mut x = (noise * sched.init_noise_sigma()).unwrap();
    for &t in &timesteps {
        let input = sched.scale_model_input(x.clone(), t).unwrap();
        let eps = unet.forward(&input, t as f64, c).unwrap();
        x = sched.step(&eps, t, &x).unwrap();
    }
    (timesteps, x)
}

/// Where candle-transformers' DDIM is right (scaled-linear betas, `leading` spacing,
/// `steps_offset = 1`, eta = 0, epsilon and v-prediction), our DDIM on the same tiny UNet gives
/// the same timesteps and latents that agree elementwise.
#[test]
fn ddim_matches_candle_transformers_ddim() {
    use candle_transformers::models::stable_diffusion::schedulers::PredictionType;
    let schedule = sd_schedule();
    for (style, p, ct) in [
        (Style::Sd15, Prediction::Epsilon, PredictionType::Epsilon),
        (Style::Sd21, Prediction::VPrediction, PredictionType::VPrediction),
    ] {
        let (unet, _) = tiny_unet(style);
        let c = cond(style, 2, 30);
        let noise = normal(&[2, 4, 8, 8], 31);
        for steps in [4, 7, 15] {
            let cfg = DDIMSchedulerConfig { prediction_type: ct, ..Default::default() };
            let (ts, theirs) = candle_loop(cfg, steps, &unet, &c, &noise);
            // their last step goes to alphas_cumprod[0] (set_alpha_to_one = false): End::Min
            let grid =
                Grid::new(&schedule, &Spacing::Leading { steps_offset: 1, skip_zero: false }, steps, End::Min).unwrap();
            let ours_t: Vec<usize> = grid.model_times(&schedule)[..steps].iter().map(|&t| t as usize).collect();
            assert_eq!(ours_t, ts, "{style:?} {steps} steps");
            let den = sd::denoiser(&unet, &c, None, 1.0, 2).unwrap();
            let mut model = Model::new(den, &schedule, p);
            let ours = sample(&Ddim::default(), &mut model, &grid, &noise).unwrap();
            let scale = theirs.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() as f64;
            let err = max_abs(&ours, &theirs);
            assert!(err < 2e-5 * scale.max(1.0), "{style:?} {steps} steps: max |diff| {err} (scale {scale})");
        }
    }
}

/// Defect (a) of candle-transformers 0.11: `betas_for_alpha_bar` divides integers
/// (`i / num_diffusion_timesteps`), so its `squaredcos_cap_v2` betas are 0 for every timestep but
/// the last (0.999): `alphas_cumprod` is 1 up to timestep 998. diffusers evaluates
/// `alpha_bar(i / N)` in floating point (Nichol & Dhariwal 2021, arXiv:2102.09672, Eq. 17):
/// `alphas_cumprod[499] = 0.49384`. Read through its `add_noise(1, 0, t) = sqrt(alphas_cumprod[t])`.
/// If candle-transformers fixes this, the first assertions fail and this test should be updated.
#[test]
fn candle_squaredcos_betas_defect() {
    let cfg = DDIMSchedulerConfig { beta_schedule: CtBeta::SquaredcosCapV2, ..Default::default() };
    let sched = cfg.build(10).unwrap();
    let one = Tensor::ones(1, DType::F64, &Device::Cpu).unwrap();
    let ac = |t: usize| {
        let v = sched.add_noise(&one, one.zeros_like().unwrap(), t).unwrap().to_vec1::<f64>().unwrap()[0];
        v * v
    };
    for t in [0, 1, 499, 998] {
        assert_eq!(ac(t), 1.0, "candle's alphas_cumprod[{t}]");
    }
    assert!((ac(999) - 0.001).abs() < 1e-12);
    // ours, with diffusers' values (DDIMScheduler(beta_schedule="squaredcos_cap_v2"), float32)
    let ours = DiscreteVp::new(BetaSchedule::SquaredCosCapV2 { max_beta: 0.999 }, 1000).unwrap();
    for (t, diffusers) in
        [(0, 0.9999586939811707), (1, 0.9999125599861145), (499, 0.4938434660434723), (998, 2.428766265438753e-06)]
    {
        let a = ours.point(t as f64).alpha;
        assert!((a * a - diffusers).abs() < 1e-6 * diffusers.max(1e-3), "t = {t}: {} vs diffusers {diffusers}", a * a);
    }
}

/// Defect (b) of candle-transformers 0.11: its `trailing` spacing counts down from 1000 by the
/// integer `1000 / n` while the value exceeds that stride, so whenever 1000 is not divisible by
/// `n` it returns `n + 1` timesteps (and ends near 0 instead of at `1000 - 1000 / n * n`-ish).
/// diffusers: `round(arange(1000, 0, -1000 / n)) - 1`, exactly `n` timesteps (Lin et al. 2023,
/// arXiv:2305.08891, Table 2); `Spacing::Trailing` gives diffusers' values.
#[test]
fn candle_trailing_spacing_defect() {
    let schedule = sd_schedule();
    let diffusers: [(usize, &[usize]); 3] =
        [(3, &[999, 666, 332]), (7, &[999, 856, 713, 570, 428, 285, 142]), (4, &[999, 749, 499, 249])];
    for (n, want) in diffusers {
        let cfg = DDIMSchedulerConfig { timestep_spacing: TimestepSpacing::Trailing, ..Default::default() };
        let theirs = cfg.build(n).unwrap().timesteps().to_vec();
        let grid = Grid::new(&schedule, &Spacing::Trailing, n, End::Clean).unwrap();
        let ours: Vec<usize> = grid.model_times(&schedule).iter().map(|&t| t as usize).collect();
        assert_eq!(ours, want, "ours, {n} steps");
        if 1000 % n == 0 {
            assert_eq!(theirs, want, "candle, {n} steps");
        } else {
            assert_eq!(theirs.len(), n + 1, "candle, {n} steps: {theirs:?}");
            assert_eq!(theirs[0], 999);
            assert_ne!(&theirs[..n], want);
        }
    }
    let cfg = DDIMSchedulerConfig { timestep_spacing: TimestepSpacing::Trailing, ..Default::default() };
    assert_eq!(cfg.build(3).unwrap().timesteps(), &[999, 666, 333, 0]);
    assert_eq!(cfg.build(30).unwrap().timesteps().len(), 31);
}

// ---------------------------------------------------------------- img2img, inversion, VAE

fn tiny_vae_config() -> AutoEncoderKLConfig {
    AutoEncoderKLConfig {
        block_out_channels: vec![8, 16],
        layers_per_block: 1,
        latent_channels: 4,
        norm_num_groups: 4,
        use_quant_conv: true,
        use_post_quant_conv: true,
    }
}

/// img2img (the last steps of the grid from `add_noise`d latents) and DDIM inversion round trip
/// on the tiny UNet: finite, and inverting then sampling on the same grid returns close to the
/// start (DDIM inversion is exact up to the solver's error).
#[test]
fn img2img_and_inversion() {
    let schedule = sd_schedule();
    let (unet, _) = tiny_unet(Style::Sd15);
    let c = cond(Style::Sd15, 1, 40);
    let x0 = normal(&[1, 4, 8, 8], 41);
    let grid = Grid::new(&schedule, &Spacing::Leading { steps_offset: 1, skip_zero: false }, 10, End::Min).unwrap();
    let part = grid.img2img(0.6).unwrap();
    assert_eq!(part.len(), 6);
    let start = add_noise(&x0, &normal(&[1, 4, 8, 8], 42), &part.points()[0]).unwrap();
    let mut model = Model::new(sd::denoiser(&unet, &c, None, 1.0, 1).unwrap(), &schedule, Prediction::Epsilon);
    let out = sample(&Ddim::default(), &mut model, &part, &start).unwrap();
    assert!(is_finite(&out));
    assert_eq!(model.nfe(), 6);

    // DDIM inversion of the low-noise half (img2img-style editing) and back: first-order
    // consistent, the round-trip error quarters when the steps quadruple
    let round_trip = |n: usize| {
        let grid = Grid::new(&schedule, &Spacing::Leading { steps_offset: 1, skip_zero: false }, n, End::Min).unwrap();
        let half = grid.img2img(0.5).unwrap();
        let mut model = Model::new(sd::denoiser(&unet, &c, None, 1.0, 1).unwrap(), &schedule, Prediction::Epsilon);
        let noise = invert(&Ddim::default(), &mut model, &half, &x0).unwrap();
        assert!(max_abs(&noise, &x0) > 0.1);
        let back = sample(&Ddim::default(), &mut model, &half, &noise).unwrap();
        assert_eq!(model.nfe(), n); // n / 2 steps each way
        max_abs(&back, &x0) / max_abs(&x0, &x0.zeros_like().unwrap())
    };
    let (coarse, fine) = (round_trip(20), round_trip(80));
    assert!(fine < 0.05 && (3.0..5.5).contains(&(coarse / fine)), "round trip errors {coarse} (20) and {fine} (80)");
}

/// The VAE loaded through [`VaeSpec::load`] encodes deterministically (candle-transformers'
/// `DiagonalGaussianDistribution` keeps its mean private and `sample()` adds noise: the loader
/// sets the posterior's log-variance to -1e4), to the mean times the scaling factor, and decodes
/// to images in [-1, 1].
#[test]
fn vae_encodes_the_posterior_mean() {
    let dir = TempDir::new("vae");
    let store = Arc::new(Seeded::default());
    let kl = AutoEncoderKL::new(seeded_vb(&store), 3, 3, tiny_vae_config()).unwrap();
    let weights = dir.path().join("vae.safetensors");
    save(&store, &weights);
    let spec = VaeSpec { config: tiny_vae_config(), scaling_factor: 0.5 };
    let vae = spec.load(&weights, &Device::Cpu, DType::F32).unwrap();
    let img = normal(&[1, 3, 16, 16], 50).tanh().unwrap();
    let a = vae.encode(&img).unwrap();
    let b = vae.encode(&img).unwrap();
    assert_eq!(a.dims(), &[1, 4, 8, 8]);
    assert_eq!(max_abs(&a, &b), 0.0);
    // candle's own sample() is mean + std * noise: two draws differ, their mean is ours
    let s1 = kl.encode(&img).unwrap().sample().unwrap();
    let s2 = kl.encode(&img).unwrap().sample().unwrap();
    assert!(max_abs(&s1, &s2) > 0.0);
    let mid = ((&s1 + &s2).unwrap() * 0.25).unwrap(); // (s1 + s2) / 2 * scaling 0.5
    assert!(max_abs(&mid, &a) < 3.0 * max_abs(&s1, &s2));
    let dec = vae.decode(&a).unwrap();
    assert_eq!(dec.dims(), &[1, 3, 16, 16]);
    let m = dec.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(m <= 1.0);
}

// ---------------------------------------------------------------- bad input

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ds-sd-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn save(store: &Seeded, path: &Path) {
    let made = store.made.lock().unwrap();
    let map: std::collections::HashMap<String, Tensor> = made.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// diffusers' SD 1.5 `unet/config.json` (the fields this crate reads).
const SD15_UNET: &str = r#"{"_class_name": "UNet2DConditionModel", "attention_head_dim": 8,
  "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "norm_eps": 1e-05,
  "flip_sin_to_cos": true, "freq_shift": 0, "downsample_padding": 1, "mid_block_scale_factor": 1,
  "center_input_sample": false, "sample_size": 64}"#;

/// A complete SD 1.5 folder layout with real configs and empty weight files (opening reads no
/// weights).
fn sd15_layout(root: &Path) {
    write(&root.join("unet/config.json"), SD15_UNET);
    write(&root.join("unet/diffusion_pytorch_model.safetensors"), "");
    write(
        &root.join("vae/config.json"),
        r#"{"block_out_channels": [128, 256, 512, 512], "latent_channels": 4, "scaling_factor": 0.18215}"#,
    );
    write(&root.join("vae/diffusion_pytorch_model.fp16.safetensors"), "");
    write(&root.join("text_encoder/config.json"), r#"{"hidden_size": 768, "num_hidden_layers": 12}"#);
    write(&root.join("text_encoder/model.safetensors"), "");
    write(&root.join("tokenizer/vocab.json"), "{}");
    write(&root.join("tokenizer/merges.txt"), "");
    write(&root.join("scheduler/scheduler_config.json"), r#"{"_class_name": "PNDMScheduler"}"#);
}

#[test]
fn folder_opens_and_parses_sd15_configs() {
    let dir = TempDir::new("ok");
    sd15_layout(dir.path());
    let f = SdFolder::open(dir.path(), SdVersion::V1_5).unwrap();
    let b = &f.unet.config.blocks;
    assert_eq!(b.len(), 4);
    assert_eq!((b[0].out_channels, b[0].use_cross_attn, b[0].attention_head_dim), (320, Some(1), 8));
    assert_eq!(b[3].use_cross_attn, None);
    assert_eq!(f.unet.config.cross_attention_dim, 768);
    assert!(f.unet.added.is_none());
    assert_eq!(f.vae.scaling_factor, 0.18215);
    assert!(f.vae_files.weights.ends_with("diffusion_pytorch_model.fp16.safetensors"));
}

/// A folder missing a component names the missing file.
#[test]
fn folder_missing_component_is_named() {
    for (missing, what) in [
        ("vae", "vae"),
        ("text_encoder/model.safetensors", "text_encoder"),
        ("tokenizer/merges.txt", "merges.txt"),
        ("scheduler", "scheduler_config.json"),
    ] {
        let dir = TempDir::new("missing");
        sd15_layout(dir.path());
        let p = dir.path().join(missing);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
        match SdFolder::open(dir.path(), SdVersion::V1_5) {
            Err(Error::ModelFile { path, reason }) => {
                assert!(path.contains(what), "{missing}: {path}");
                assert!(reason.contains("missing"), "{reason}");
            }
            other => panic!("{missing}: expected ModelFile, got {other:?}"),
        }
    }
    let err = SdFolder::open("/nonexistent/sd15", SdVersion::V1_5).unwrap_err();
    assert!(matches!(err, Error::ModelFile { .. }), "{err}");
}

/// An SD 1.5 folder opened as SDXL or SD 2.1: the error names the config field that shows it and
/// the model the folder holds.
#[test]
fn folder_of_another_model_is_named() {
    let dir = TempDir::new("other");
    sd15_layout(dir.path());
    for v in [SdVersion::Xl, SdVersion::V2_1, SdVersion::Turbo] {
        match SdFolder::open(dir.path(), v) {
            Err(e @ Error::ModelConfig { .. }) => {
                let s = e.to_string();
                assert!(s.contains("cross_attention_dim") && s.contains("768") && s.contains("SD 1.x"), "{s}");
                assert!(s.contains(v.name()), "{s}");
            }
            other => panic!("{v}: expected ModelConfig, got {other:?}"),
        }
    }
    // a text encoder of another size under a matching UNet
    write(&dir.path().join("text_encoder/config.json"), r#"{"hidden_size": 1024, "num_hidden_layers": 23}"#);
    let err = SdFolder::open(dir.path(), SdVersion::V1_5).unwrap_err().to_string();
    assert!(err.contains("text_encoder/config.json") && err.contains("1024"), "{err}");
    // an inpainting UNet (9 input channels)
    write(&dir.path().join("unet/config.json"), &SD15_UNET.replace("\"in_channels\": 4", "\"in_channels\": 9"));
    let err = SdFolder::open(dir.path(), SdVersion::V1_5).unwrap_err().to_string();
    assert!(err.contains("in_channels") && err.contains("inpainting"), "{err}");
}

/// Weights of another model under a config: loading names the first tensor that does not fit.
#[test]
fn weights_of_another_model_are_named() {
    let dir = TempDir::new("weights");
    // weights of the SD 2.1-style tiny UNet ...
    let (_, store) = tiny_unet(Style::Sd21);
    let file = dir.path().join("unet.safetensors");
    save(&store, &file);
    // ... loaded as itself: fine; as the SD 1.5-style one (conv projections, no attention in
    // the last block): a typed error naming the tensor
    let spec = |style| {
        let (config, added) = tiny(style);
        UNetSpec { config, in_channels: 4, out_channels: 4, added }
    };
    spec(Style::Sd21).load(&file, &Device::Cpu, DType::F32).unwrap();
    match spec(Style::Sd15).load(&file, &Device::Cpu, DType::F32) {
        Err(Error::WeightShape { name, expected, got }) => {
            assert!(name.contains("proj_in"), "{name}");
            assert_eq!((expected.rank(), got.rank()), (4, 2));
        }
        other => panic!("expected WeightShape, got {other:?}"),
    }
    match spec(Style::Xl).load(&file, &Device::Cpu, DType::F32) {
        Err(Error::MissingWeight { name, file }) => {
            assert!(name.starts_with("add_embedding"), "{name}");
            assert!(file.ends_with("unet.safetensors"));
        }
        Err(Error::WeightShape { .. }) => {}
        other => panic!("expected a typed weight error, got {other:?}"),
    }
    let err = spec(Style::Sd21).load(&dir.path().join("nope.safetensors"), &Device::Cpu, DType::F32).unwrap_err();
    assert!(matches!(err, Error::ModelFile { .. }));
}

/// `unet/config.json` parsing: the tiny config written as diffusers would gives the same UNet.
#[test]
fn unet_config_json_round_trip() {
    let json = r#"{"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
      "attention_head_dim": [2, 4], "transformer_layers_per_block": [1, 2], "layers_per_block": 1,
      "norm_num_groups": 32, "cross_attention_dim": 16, "use_linear_projection": true,
      "addition_embed_type": "text_time", "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 60}"#;
    let spec = UNetSpec::from_json(json, "unet/config.json").unwrap();
    let (want, added) = tiny(Style::Xl);
    assert_eq!(format!("{:?}", spec.config), format!("{want:?}"));
    assert_eq!(spec.added, added);
    for (bad, field) in [
        (json.replace("[2, 4]", "[2, 5]"), "attention_head_dim"),
        (json.replace("\"text_time\"", "\"image\""), "addition_embed_type"),
        (json.replace("\"norm_num_groups\": 32", "\"norm_num_groups\": 7"), "norm_num_groups"),
        (json.replace("\"layers_per_block\": 1", "\"layers_per_block\": -1"), "layers_per_block"),
    ] {
        match UNetSpec::from_json(&bad, "unet/config.json") {
            Err(Error::ModelConfig { field: f, .. }) => assert!(f.contains(field), "{f}"),
            other => panic!("{field}: expected ModelConfig, got {other:?}"),
        }
    }
}

/// A prompt batch that does not divide the noise batch: [`Error::BatchMismatch`] naming both.
#[test]
fn prompt_batch_must_match_noise_batch() {
    let (unet, _) = tiny_unet(Style::Sd15);
    let c2 = cond(Style::Sd15, 2, 1);
    for (batch, ok) in [(2, true), (4, true), (3, false), (1, false)] {
        let r = sd::denoiser(&unet, &c2, Some(&c2), 7.5, batch);
        match (r, ok) {
            (Ok(_), true) => {}
            (Err(e @ Error::BatchMismatch { .. }), false) => {
                let Error::BatchMismatch { what, got, against, expected } = &e else { unreachable!() };
                assert_eq!((*what, *got, *against, *expected), ("prompt embeddings", 2, "the noise", batch));
                assert!(e.to_string().contains(&format!("batch 2 but the noise has batch {batch}")), "{e}");
            }
            (r, _) => panic!("batch {batch}: {:?}", r.err()),
        }
    }
    let err = sd::denoiser(&unet, &cond(Style::Sd15, 1, 1), Some(&c2), 7.5, 4).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BatchMismatch {
                what: "negative prompt embeddings",
                got: 2,
                against: "prompt embeddings",
                expected: 1
            }
        ),
        "{err}"
    );
    let err = sd::denoiser(&unet, &c2, None, 7.5, 2).unwrap_err();
    assert!(err.to_string().contains("unconditional"), "{err}");
    // an XL conditioning beside an SD one
    let err = sd::denoiser(&unet, &cond(Style::Xl, 1, 1), Some(&cond(Style::Sd15, 1, 1)), 7.5, 1).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
}

/// img2img with an image of another size than the output: [`Error::ImageSize`] with both sizes.
#[test]
fn img2img_image_size_is_checked() {
    match sd::check_input_image(640, 480, 512, 512) {
        Err(e @ Error::ImageSize { got_width: 640, got_height: 480, .. }) => {
            let s = e.to_string();
            assert!(s.contains("640x480") && s.contains("512x512"), "{s}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(sd::check_input_image(500, 500, 500, 500), Err(Error::ImageSize { .. })));
    assert!(matches!(sd::latent_shape(1, 513, 512), Err(Error::ImageSize { got_width: 513, .. })));
    assert_eq!(sd::latent_shape(2, 768, 512).unwrap(), (2, 4, 64, 96));
    let img = sd::image_to_tensor(&[0u8, 128, 255].repeat(4), 2, 2, &Device::Cpu).unwrap();
    assert_eq!(img.dims(), &[1, 3, 2, 2]);
    let (bytes, w, h) = sd::tensor_to_image(&img.squeeze(0).unwrap()).unwrap();
    assert_eq!((w, h), (2, 2));
    assert_eq!(bytes, [0u8, 128, 255].repeat(4));
    assert!(sd::image_to_tensor(&[0u8; 11], 2, 2, &Device::Cpu).is_err());
}

#[test]
fn version_names_round_trip() {
    for v in SdVersion::ALL {
        assert_eq!(v.name().parse::<SdVersion>().unwrap(), v);
    }
    let err = "sd3".parse::<SdVersion>().unwrap_err().to_string();
    assert!(err.contains("sd15") && err.contains("sdxl-turbo"), "{err}");
}

/// The example's CLIP tokenizer (built from a folder's `vocab.json` and `merges.txt`) gives
/// transformers' `CLIPTokenizer` ids, padded and truncated as the diffusers pipelines ask
/// (`padding="max_length", max_length=77, truncation=True`), for both pad tokens in use
/// (`<|endoftext|>`: SD 1.x and SDXL's first tokenizer; `!`: SD 2.x and SDXL's second).
/// Fixture: `tools/clip_tokenizer_fixture.py` (a 1200-merge slice of CLIP's BPE).
#[test]
fn example_clip_tokenizer_matches_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_tokenizer");
    let text = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 22);
    for case in cases {
        let (prompt, pad) = (case["prompt"].as_str().unwrap(), case["pad_token"].as_str().unwrap());
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let tok = sd_common::clip_tokenizer(&dir, pad).unwrap();
        assert_eq!(sd_common::clip_ids(&tok, prompt, pad).unwrap(), want, "{prompt:?} (pad {pad})");
    }
    // without special_tokens_map.json the pad token is <|endoftext|>
    assert_eq!(sd_common::clip_tokens(&dir, "a horse").unwrap()[76], 1713);
}
