#!/usr/bin/env python3
"""Class-level diffusers parity fixtures for `src/diffusers/` (the scheduler_config.json layer).

For every scheduler class the layer supports and its main options, runs the real diffusers
(pinned, tools/requirements.txt) with the pipeline loop on the Gaussian-mixture problem of
tools/make_fixtures.py, at 5, 10 and 25 steps, with linear and scaled_linear betas
(0.00085..0.012) and epsilon and v-prediction, and writes

* ``tests/fixtures/configs/classes/{variant}.json``: the variant's scheduler_config.json
  (``_class_name`` + options; beta_schedule and prediction_type are per case);
* ``tests/fixtures/diffusers_classes.json``: the case list ``{name, variant, beta_schedule,
  prediction_type, steps, mu, stochastic, patched, shape}`` and the skipped combinations with
  diffusers' reason; plus cases running real models' configs (tests/fixtures/configs/models/) as
  shipped and switched to other classes (``{name, config_file, switch_to, image_seq_len, ...}``);
* ``tests/fixtures/diffusers_classes.safetensors``: the problem (``means``, ``stds``,
  ``weights``, ``noise`` as in make_fixtures.py) and per case ``{case}.sample`` [N, D] (final
  sample, f64, shaped like the case's ``shape``), ``{case}.timesteps`` [calls] (model times in call order, f64) and for the
  stochastic classes ``{case}.step_noise`` [draws, N, D] (float32 values: the noise diffusers drew,
  one slice per draw, in order).

The loop is the pipeline's: ``sched = Class.from_config(config)``, ``set_timesteps(steps[, mu])``,
``x = noise * init_noise_sigma``, then per timestep ``out = model(scale_model_input(x, t), t)``,
``x = step(out, t, x).prev_sample``, in float64 torch tensors. The model is the mixture's exact
denoiser as a discrete-time network trained on the float64 table (make_fixtures'
``DiscreteTimeGMModel``); for flow matching and ``use_flow_sigmas`` it maps ``t`` to
``sigma = t / 1000``, ``alpha = 1 - sigma`` and returns the flow ``eps - x0``. Noise of stochastic
classes comes from numpy (``default_rng(SEED + 7)``, float32 values), injected by replacing the
schedulers' ``randn_tensor``.

``patched`` cases are not plain diffusers: UniPC ``bh1`` with ``final_sigmas_type="zero"``
returns NaN in diffusers 0.42.1 (its last step computes ``-inf * 0``); the script asserts the NaN
and stores the run with that step's exact limit (the data prediction), which is what this crate
computes.

Run from the repository root (single-threaded CPU, about a minute):

    /path/to/venv/bin/python tools/fixtures_diffusers_classes.py --out tests/fixtures
"""

from __future__ import annotations

import os
import sys

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import math
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (same problem, model and writer)

import diffusers  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
diffusers.utils.logging.set_verbosity_error()

STEPS = (5, 10, 25)
SCHEDS = ("linear", "scaled_linear")
PREDS = ("epsilon", "v_prediction")
BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012)
SEED = mf.SEED

# variant name -> (class name, options, restrictions)
# restrictions: "preds" (prediction types to run), "scheds", "mu" (dynamic shifting), "patched"
V = {}


def variant(name, cls, restrict=None, **options):
    V[name] = (cls, options, restrict or {})


# DDIM
variant("ddim", "DDIMScheduler")
variant("ddim_sd", "DDIMScheduler", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
variant("ddim_linspace", "DDIMScheduler", clip_sample=False, timestep_spacing="linspace")
variant("ddim_trailing", "DDIMScheduler", clip_sample=False, timestep_spacing="trailing")
# thresholding needs (batch, channels, ...) samples: these variants run on noise reshaped to [8, 2, 3]
SHAPED = {"shape": (mf.N, 2, 3)}
# sample_max_value < 1 makes the threshold bite on this problem (|x0| < 1): s = max_value for every sample
variant("ddim_thresholding", "DDIMScheduler", SHAPED, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=0.8)
variant("ddim_clip", "DDIMScheduler", clip_sample=True, clip_sample_range=0.5)
# the pipeline's eta (DDIMScheduler.step(..., eta)): stochastic DDIM with recorded noise
variant("ddim_eta", "DDIMScheduler", {"stochastic": True, "eta": 0.7}, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
variant("ddim_zero_snr", "DDIMScheduler", {"preds": ("v_prediction",)}, clip_sample=False,
        timestep_spacing="trailing", rescale_betas_zero_snr=True)
# DDIM inverse
variant("ddim_inverse", "DDIMInverseScheduler", clip_sample=False)
variant("ddim_inverse_trailing", "DDIMInverseScheduler", clip_sample=False, timestep_spacing="trailing",
        set_alpha_to_one=False)
# DPM-Solver multistep
variant("dpmpp2m", "DPMSolverMultistepScheduler")
variant("dpmpp3m", "DPMSolverMultistepScheduler", solver_order=3)
variant("dpmpp2m_heun", "DPMSolverMultistepScheduler", solver_type="heun")
variant("dpm2m", "DPMSolverMultistepScheduler", algorithm_type="dpmsolver", final_sigmas_type="sigma_min")
variant("dpm3m", "DPMSolverMultistepScheduler", algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_order=3)
variant("dpmpp2m_karras", "DPMSolverMultistepScheduler", use_karras_sigmas=True)
variant("dpmpp2m_karras_sigma_min", "DPMSolverMultistepScheduler", use_karras_sigmas=True,
        final_sigmas_type="sigma_min", lower_order_final=False)
variant("dpmpp2m_lu", "DPMSolverMultistepScheduler", use_lu_lambdas=True)
variant("dpmpp2m_exponential", "DPMSolverMultistepScheduler", use_exponential_sigmas=True)
variant("dpmpp2m_beta", "DPMSolverMultistepScheduler", use_beta_sigmas=True)
variant("dpmpp2m_no_lof", "DPMSolverMultistepScheduler", lower_order_final=False, final_sigmas_type="sigma_min")
variant("dpmpp2m_euler_at_final", "DPMSolverMultistepScheduler", euler_at_final=True, lower_order_final=False,
        final_sigmas_type="sigma_min")
variant("dpmpp2m_leading", "DPMSolverMultistepScheduler", timestep_spacing="leading", steps_offset=1)
variant("dpmpp2m_trailing", "DPMSolverMultistepScheduler", timestep_spacing="trailing")
variant("dpmpp2m_lambda_clip", "DPMSolverMultistepScheduler", lambda_min_clipped=-2.5)
variant("dpmpp2m_thresholding", "DPMSolverMultistepScheduler", SHAPED, thresholding=True, dynamic_thresholding_ratio=0.9,
        sample_max_value=0.8)
variant("dpmpp2m_zero_snr", "DPMSolverMultistepScheduler", {"preds": ("v_prediction",)}, timestep_spacing="trailing",
        rescale_betas_zero_snr=True)
variant("dpmpp2m_flow", "DPMSolverMultistepScheduler", {"preds": ("flow_prediction",), "scheds": ("linear",)},
        use_flow_sigmas=True, flow_shift=3.0)
variant("dpmpp2m_flow_dynamic", "DPMSolverMultistepScheduler",
        {"preds": ("flow_prediction",), "scheds": ("linear",), "mu": 0.8}, use_flow_sigmas=True, use_dynamic_shifting=True)
variant("sde_dpmpp2m", "DPMSolverMultistepScheduler", {"stochastic": True}, algorithm_type="sde-dpmsolver++")
variant("sde_dpmpp3m", "DPMSolverMultistepScheduler", {"stochastic": True}, algorithm_type="sde-dpmsolver++",
        solver_order=3)
# DPM-Solver multistep inverse
variant("dpm_inverse", "DPMSolverMultistepInverseScheduler")
variant("dpm_inverse_o3", "DPMSolverMultistepInverseScheduler", solver_order=3, lower_order_final=False)
# DPM-Solver singlestep
variant("dpm_single2", "DPMSolverSinglestepScheduler")
variant("dpm_single3", "DPMSolverSinglestepScheduler", solver_order=3)
variant("dpm_single2_sigma_min", "DPMSolverSinglestepScheduler", final_sigmas_type="sigma_min")
variant("dpm_single3_heun", "DPMSolverSinglestepScheduler", solver_order=3, solver_type="heun",
        final_sigmas_type="sigma_min")
variant("dpm_single2_noise", "DPMSolverSinglestepScheduler", algorithm_type="dpmsolver", final_sigmas_type="sigma_min")
variant("dpm_single2_karras", "DPMSolverSinglestepScheduler", use_karras_sigmas=True)
variant("dpm_single2_flow", "DPMSolverSinglestepScheduler", {"preds": ("flow_prediction",), "scheds": ("linear",)},
        use_flow_sigmas=True, flow_shift=3.0)
# DEIS
variant("deis2", "DEISMultistepScheduler")
variant("deis3", "DEISMultistepScheduler", solver_order=3)
variant("deis2_karras", "DEISMultistepScheduler", use_karras_sigmas=True)
variant("deis2_trailing", "DEISMultistepScheduler", timestep_spacing="trailing")
# UniPC
variant("unipc_bh2", "UniPCMultistepScheduler")
variant("unipc3_bh2", "UniPCMultistepScheduler", solver_order=3)
variant("unipc_bh1", "UniPCMultistepScheduler", solver_type="bh1", final_sigmas_type="sigma_min")
variant("unipc_bh1_zero", "UniPCMultistepScheduler", {"patched": True}, solver_type="bh1")
variant("unipc_noise", "UniPCMultistepScheduler", predict_x0=False, final_sigmas_type="sigma_min")
variant("unipc_karras", "UniPCMultistepScheduler", use_karras_sigmas=True)
variant("unipc_karras_sigma_min", "UniPCMultistepScheduler", use_karras_sigmas=True, final_sigmas_type="sigma_min")
variant("unipc_disable_corrector", "UniPCMultistepScheduler", disable_corrector=[0, 2])
variant("unipc_no_lof", "UniPCMultistepScheduler", lower_order_final=False, final_sigmas_type="sigma_min")
FLOW_SIGMAS = {"preds": ("flow_prediction",), "scheds": ("linear",)}
variant("unipc_flow", "UniPCMultistepScheduler", FLOW_SIGMAS, use_flow_sigmas=True, flow_shift=3.0)
variant("unipc_flow_dynamic", "UniPCMultistepScheduler", {**FLOW_SIGMAS, "mu": 0.8}, use_flow_sigmas=True,
        use_dynamic_shifting=True)
variant("unipc_flow_terminal", "UniPCMultistepScheduler", FLOW_SIGMAS, use_flow_sigmas=True, flow_shift=3.0,
        shift_terminal=0.05)
# Euler
variant("euler", "EulerDiscreteScheduler")
variant("euler_sdxl", "EulerDiscreteScheduler", timestep_spacing="leading", steps_offset=1)
variant("euler_trailing", "EulerDiscreteScheduler", timestep_spacing="trailing")
variant("euler_karras", "EulerDiscreteScheduler", use_karras_sigmas=True)
variant("euler_exponential", "EulerDiscreteScheduler", use_exponential_sigmas=True)
variant("euler_beta", "EulerDiscreteScheduler", use_beta_sigmas=True)
variant("euler_log_linear", "EulerDiscreteScheduler", interpolation_type="log_linear")
variant("euler_sigma_min", "EulerDiscreteScheduler", final_sigmas_type="sigma_min")
variant("euler_zero_snr", "EulerDiscreteScheduler", {"preds": ("v_prediction",)}, timestep_spacing="trailing",
        rescale_betas_zero_snr=True)
# Heun
variant("heun", "HeunDiscreteScheduler")
variant("heun_karras", "HeunDiscreteScheduler", use_karras_sigmas=True)
variant("heun_leading", "HeunDiscreteScheduler", timestep_spacing="leading", steps_offset=1)
variant("heun_clip", "HeunDiscreteScheduler", clip_sample=True, clip_sample_range=0.5)
# LMS
variant("lms", "LMSDiscreteScheduler")
variant("lms_karras", "LMSDiscreteScheduler", use_karras_sigmas=True)
variant("lms_leading", "LMSDiscreteScheduler", timestep_spacing="leading", steps_offset=1)
# PNDM
variant("pndm_sd", "PNDMScheduler", skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
variant("pndm_prk", "PNDMScheduler")
# Euler ancestral
variant("euler_a", "EulerAncestralDiscreteScheduler", {"stochastic": True})
variant("euler_a_leading", "EulerAncestralDiscreteScheduler", {"stochastic": True}, timestep_spacing="leading",
        steps_offset=1)
# DDPM
variant("ddpm", "DDPMScheduler", {"stochastic": True})
variant("ddpm_large", "DDPMScheduler", {"stochastic": True}, variance_type="fixed_large", clip_sample=False)
variant("ddpm_trailing", "DDPMScheduler", {"stochastic": True}, timestep_spacing="trailing", clip_sample=False)
# Flow matching
FLOW = {"preds": ("flow",), "scheds": ("none",)}
variant("flow", "FlowMatchEulerDiscreteScheduler", FLOW)
variant("flow_sd3", "FlowMatchEulerDiscreteScheduler", FLOW, shift=3.0)
variant("flow_dynamic", "FlowMatchEulerDiscreteScheduler", {**FLOW, "mu": 0.8}, use_dynamic_shifting=True)
variant("flow_terminal", "FlowMatchEulerDiscreteScheduler", FLOW, shift=3.0, shift_terminal=0.05)
variant("flow_karras", "FlowMatchEulerDiscreteScheduler", FLOW, shift=3.0, use_karras_sigmas=True)


# Real models' scheduler_config.json (tests/fixtures/configs/models/), run as shipped and switched to
# other classes in one line (`Other.from_config(config)`): (config file, class to switch to or None,
# image_seq_len for dynamic shifting or None, stochastic)
MODELS = [
    ("sd15_pndm.json", None, None, False),
    ("sd15_pndm.json", "DPMSolverMultistepScheduler", None, False),
    ("sd15_pndm.json", "DDIMScheduler", None, False),
    ("sd15_pndm.json", "EulerDiscreteScheduler", None, False),
    ("sd15_pndm.json", "UniPCMultistepScheduler", None, False),
    ("sd15_pndm.json", "EulerAncestralDiscreteScheduler", None, True),
    ("sd15_pndm_0.17.json", None, None, False),
    ("sdxl_base_euler.json", None, None, False),
    ("sdxl_base_euler.json", "DPMSolverMultistepScheduler", None, False),
    ("sdxl_base_euler.json", "HeunDiscreteScheduler", None, False),
    ("sdxl_base_euler.json", "EulerAncestralDiscreteScheduler", None, True),
    ("sd3_flowmatch.json", None, None, False),
    ("flux1_dev_flowmatch.json", None, 1024, False),
]


def flux_mu(config, image_seq_len):
    """diffusers' calculate_shift (Flux pipelines)."""
    b, m = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    bs, ms = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (ms - bs) / (m - b)
    return image_seq_len * slope + (bs - slope * b)


class FlowGMModel:
    """The exact flow `eps - x0` of the mixture for `x = (1 - s) x0 + s eps`, `s = t / N`."""

    def __init__(self, problem, n=1000):
        self.p, self.n = problem, n

    def __call__(self, x, t):
        t = float(t.item()) if isinstance(t, torch.Tensor) else float(t)
        s = min(max(t / self.n, 0.0), 1.0)
        a = 1.0 - s
        xn = x.detach().cpu().to(torch.float64).numpy()
        x0 = mf.gm_posterior_mean(xn, a, s, self.p["means"], self.p["stds"], self.p["weights"])
        # eps = (x - a x0) / s; flow = eps - x0
        out = (xn - a * x0) / s - x0
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float64))


class NoiseRecorder:
    """Replaces a scheduler module's randn_tensor: float32-valued normal noise from numpy, recorded."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.draws = []

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        z = self.rng.standard_normal(size=tuple(shape)).astype(np.float32)
        self.draws.append(z.astype(np.float64))
        return torch.from_numpy(z.astype(np.float64)).to(dtype or torch.float32)


def module_of(cls_name):
    return sys.modules[getattr(diffusers, cls_name).__module__]


def patch_unipc_bh1_final(sched):
    original = sched.multistep_uni_p_bh_update

    def patched(model_output, *args, sample=None, order=None, **kwargs):
        if float(sched.sigmas[sched.step_index + 1]) == 0.0 and order == 1 and sched.predict_x0:
            return sched.model_outputs[-1].to(sample.dtype)
        return original(model_output, *args, sample=sample, order=order, **kwargs)

    sched.multistep_uni_p_bh_update = patched


def run(cls_name, config, steps, problem, mu=None, stochastic=False, patched=False, shape=(mf.N, mf.D), eta=0.0):
    cls = getattr(diffusers, cls_name)
    sched = cls.from_config(config)
    if patched:
        patch_unipc_bh1_final(sched)
    flow = cls_name == "FlowMatchEulerDiscreteScheduler" or config.get("use_flow_sigmas", False)
    if flow:
        model = FlowGMModel(problem)
    else:
        b = dict(BETAS)
        model = mf.DiscreteTimeGMModel(problem, config["beta_schedule"], b["beta_start"], b["beta_end"],
                                       config.get("prediction_type", "epsilon"), b["num_train_timesteps"])
        if config.get("rescale_betas_zero_snr"):
            # the network was trained on the rescaled table: float64 rescale of the same betas
            betas = mf.betas_f64(config["beta_schedule"], b["beta_start"], b["beta_end"])
            ac = np.cumprod(1.0 - betas)
            s = np.sqrt(ac)
            s = (s - s[-1]) * s[0] / (s[0] - s[-1])
            ac = s * s
            with np.errstate(divide="ignore"):
                model.log_ks = np.log(np.sqrt((1.0 - ac) / ac))

            def alpha_sigma(t, m=model):
                # finite at the zero-SNR end (log ks = inf): alpha = 0, sigma = 1
                lk = float(np.interp(float(t), m.idx, m.log_ks))
                if lk > 0:
                    inv = math.exp(-lk)
                    norm = math.sqrt(1.0 + inv * inv)
                    return inv / norm, 1.0 / norm
                ks = math.exp(lk)
                return 1.0 / math.sqrt(1.0 + ks * ks), ks / math.sqrt(1.0 + ks * ks)

            model.alpha_sigma = alpha_sigma
    recorder = NoiseRecorder(SEED + 7)
    mod = module_of(cls_name)
    saved = getattr(mod, "randn_tensor", None)
    if stochastic:
        mod.randn_tensor = recorder
    try:
        if mu is not None:
            sched.set_timesteps(steps, mu=mu)
        else:
            sched.set_timesteps(steps)
        x = torch.from_numpy(problem["noise"].reshape(shape).copy()) * getattr(sched, "init_noise_sigma", 1.0)
        calls = []
        for t in sched.timesteps:
            calls.append(float(t))
            inp = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x  # flow: no scaling
            out = model(inp.reshape(mf.N, mf.D), t).reshape(shape)
            if cls_name == "DDIMScheduler":
                x = sched.step(out, t, x, eta=eta).prev_sample
            else:
                x = sched.step(out, t, x).prev_sample
    finally:
        if stochastic:
            mod.randn_tensor = saved
    sample = x.detach().cpu().numpy().astype(np.float64)
    draws = np.stack(recorder.draws) if recorder.draws else None
    return np.asarray(calls, dtype=np.float64), sample, draws


def save_mixed(path, tensors, metadata):
    """make_fixtures.save_safetensors with F32 support (step noise is float32-valued)."""
    header = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}}
    blobs, off = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        code = {np.dtype(np.float64): ("F64", "<f8"), np.dtype(np.float32): ("F32", "<f4")}[a.dtype]
        b = a.astype(code[1]).tobytes()
        header[name] = {"dtype": code[0], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    from safetensors.numpy import load_file

    back = load_file(path)
    assert back.keys() == tensors.keys()
    assert all(np.array_equal(back[k], tensors[k]) for k in tensors)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args(argv)
    cfg_dir = os.path.join(args.out, "configs", "classes")
    os.makedirs(cfg_dir, exist_ok=True)
    problem = mf.make_problem()
    tensors = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in problem.items()}
    cases, skipped = [], []
    for vname, (cls_name, options, restrict) in V.items():
        doc = {"_class_name": cls_name, "_diffusers_version": diffusers.__version__}
        if cls_name != "FlowMatchEulerDiscreteScheduler":
            doc.update(BETAS)
        doc.update(options)
        with open(os.path.join(cfg_dir, f"{vname}.json"), "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        for sched in restrict.get("scheds", SCHEDS):
            for pred in restrict.get("preds", PREDS):
                for n in STEPS:
                    config = dict(doc)
                    if sched != "none":
                        config["beta_schedule"] = sched
                    if pred != "flow":
                        config["prediction_type"] = pred
                    name = f"{vname}.{sched}.{pred}.{n}"
                    mu = restrict.get("mu")
                    stochastic = restrict.get("stochastic", False)
                    patched = restrict.get("patched", False)
                    shape = restrict.get("shape", (mf.N, mf.D))
                    try:
                        if patched:
                            _, raw, _ = run(cls_name, config, n, problem, mu)
                            assert np.isnan(raw).any(), f"{name}: diffusers no longer returns NaN"
                        calls, sample, draws = run(cls_name, config, n, problem, mu, stochastic, patched, shape, restrict.get("eta", 0.0))
                    except Exception as e:  # noqa: BLE001
                        skipped.append({"name": name, "reason": f"{type(e).__name__}: {e}"})
                        continue
                    if not np.isfinite(sample).all():
                        skipped.append({"name": name, "reason": "diffusers returns non-finite values"})
                        continue
                    tensors[f"{name}.sample"] = np.ascontiguousarray(sample)
                    tensors[f"{name}.timesteps"] = np.ascontiguousarray(calls)
                    if stochastic:
                        tensors[f"{name}.step_noise"] = np.ascontiguousarray(draws.astype(np.float32))
                    cases.append({
                        "name": name, "variant": vname, "class": cls_name,
                        "beta_schedule": None if sched == "none" else sched,
                        "prediction_type": None if pred == "flow" else pred,
                        "steps": n, "mu": mu, "stochastic": stochastic, "patched": patched, "shape": list(shape),
                        "eta": restrict.get("eta", 0.0),
                    })
    for fname, switch, seq_len, stochastic in MODELS:
        with open(os.path.join(args.out, "configs", "models", fname)) as f:
            doc = json.load(f)
        cls_name = switch or doc["_class_name"]
        mu = flux_mu(doc, seq_len) if seq_len else None
        for n in STEPS:
            name = f"model.{fname[:-5]}.{switch or 'as_shipped'}.{n}"
            try:
                calls, sample, draws = run(cls_name, doc, n, problem, mu, stochastic)
            except Exception as e:  # noqa: BLE001
                skipped.append({"name": name, "reason": f"{type(e).__name__}: {e}"})
                continue
            tensors[f"{name}.sample"] = np.ascontiguousarray(sample)
            tensors[f"{name}.timesteps"] = np.ascontiguousarray(calls)
            if stochastic:
                tensors[f"{name}.step_noise"] = np.ascontiguousarray(draws.astype(np.float32))
            cases.append({
                "name": name, "config_file": f"configs/models/{fname}", "switch_to": switch, "class": cls_name,
                "beta_schedule": None, "prediction_type": None, "steps": n, "mu": mu,
                "image_seq_len": seq_len, "stochastic": stochastic, "patched": False, "shape": [mf.N, mf.D],
            })
    versions = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "generator": "tools/fixtures_diffusers_classes.py",
    }
    save_mixed(os.path.join(args.out, "diffusers_classes.safetensors"), tensors,
               {**versions, "description": "see diffusers_classes.json"})
    manifest = {
        **versions,
        "seed": SEED,
        "problem": "tools/make_fixtures.py make_problem(): means [3,6], stds, weights, noise [8,6]",
        "model": "make_fixtures.DiscreteTimeGMModel (float64 table of the case's betas, 0.00085..0.012); "
                 "flow: sigma = t/1000, alpha = 1 - sigma, output eps - x0",
        "loop": "Class.from_config(configs/classes/{variant}.json + beta_schedule + prediction_type); "
                "set_timesteps(steps[, mu]); x = noise * init_noise_sigma; per t: "
                "x = step(model(scale_model_input(x, t), t), t, x).prev_sample (DDIM: the case's eta, default 0); float64",
        "cases": cases,
        "skipped": skipped,
    }
    with open(os.path.join(args.out, "diffusers_classes.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    size = os.path.getsize(os.path.join(args.out, "diffusers_classes.safetensors"))
    print(f"{len(cases)} cases, {len(skipped)} skipped, {size / 1e3:.0f} kB")
    for s in skipped:
        print("  skipped", s["name"], s["reason"][:150])
    return 0


if __name__ == "__main__":
    sys.exit(main())
