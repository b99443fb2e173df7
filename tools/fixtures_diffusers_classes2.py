#!/usr/bin/env python3
"""Class-level diffusers parity fixtures, part 2: the classes added after the first 930 runs of
tools/fixtures_diffusers_classes.py (KDPM2, KDPM2-ancestral, DPMSolverSDE, EDMEuler,
EDMDPMSolverMultistep, LCM, TCD, SASolver, IPNDM, FlowMatchHeun, CosineDPMSolverMultistep) and
`set_timesteps(timesteps=[...])` / `set_timesteps(sigmas=[...])` of every class that takes them.

Same problem, loop and file layout as fixtures_diffusers_classes.py (whose helpers it imports),
written to ``tests/fixtures/diffusers_classes2.{json,safetensors}`` and
``tests/fixtures/configs/classes/{variant}.json``; a case may also carry ``custom``
(``{"timesteps": [...]}``, ``{"sigmas": [...]}`` or both: the lists passed to set_timesteps) and
``eta`` (TCD's gamma, passed to ``step``). Models, besides the discrete-time and flow ones:

* EDM-style classes: the network gets ``c_in x`` and ``c_noise`` (``ln(sigma) / 4``; Cosine:
  ``atan(sigma) 2 / pi``) and returns EDM's ``F`` with ``D = c_skip x + c_out F`` (``c_out`` negated
  for v_prediction), ``D`` the mixture's exact posterior mean at noise level sigma;
* IPNDM: its timestep ``t`` is the v-diffusion time, ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t /
  2)``, and the network returns v.

Stochastic classes take float32-valued numpy noise, recorded: ``randn_tensor`` replaced in the
scheduler's module, and for DPMSolverSDE / CosineDPMSolverMultistep the Brownian-tree noise sampler
(torchsde) replaced by one returning the recorded draws, one per call. Every run draws from the same
seeded stream, so the file stores it once (``step_noise`` [64, N, D], float32 values) and each
stochastic case the number of draws it used (``draws``).

    python tools/fixtures_diffusers_classes2.py --out tests/fixtures
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
import fixtures_diffusers_classes as fc  # noqa: E402
import make_fixtures as mf  # noqa: E402

import diffusers  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
diffusers.utils.logging.set_verbosity_error()

STEPS = (5, 10, 25)
SCHEDS = ("linear", "scaled_linear")
PREDS = ("epsilon", "v_prediction")
BETAS = fc.BETAS
NO_TABLE = {"scheds": ("none",)}

V = {}


def variant(name, cls, restrict=None, **options):
    V[name] = (cls, options, restrict or {})


# KDPM2 / KDPM2-ancestral / DPMSolverSDE (k-diffusion's samplers on the discrete table)
variant("kdpm2", "KDPM2DiscreteScheduler")
variant("kdpm2_karras", "KDPM2DiscreteScheduler", use_karras_sigmas=True)
variant("kdpm2_exponential", "KDPM2DiscreteScheduler", use_exponential_sigmas=True)
variant("kdpm2_beta", "KDPM2DiscreteScheduler", use_beta_sigmas=True)
variant("kdpm2_leading", "KDPM2DiscreteScheduler", timestep_spacing="leading", steps_offset=1)
variant("kdpm2_trailing", "KDPM2DiscreteScheduler", timestep_spacing="trailing")
variant("kdpm2a", "KDPM2AncestralDiscreteScheduler", {"stochastic": True})
variant("kdpm2a_karras", "KDPM2AncestralDiscreteScheduler", {"stochastic": True}, use_karras_sigmas=True)
variant("kdpm2a_leading", "KDPM2AncestralDiscreteScheduler", {"stochastic": True}, timestep_spacing="leading",
        steps_offset=1)
variant("dpmsde", "DPMSolverSDEScheduler", {"stochastic": True})
variant("dpmsde_karras", "DPMSolverSDEScheduler", {"stochastic": True}, use_karras_sigmas=True)
variant("dpmsde_exponential", "DPMSolverSDEScheduler", {"stochastic": True}, use_exponential_sigmas=True)
variant("dpmsde_trailing", "DPMSolverSDEScheduler", {"stochastic": True}, timestep_spacing="trailing")
# EDM-style classes (no beta table)
variant("edm_euler", "EDMEulerScheduler", NO_TABLE)
variant("edm_euler_exponential", "EDMEulerScheduler", NO_TABLE, sigma_schedule="exponential")
variant("edm_euler_sigma_min", "EDMEulerScheduler", NO_TABLE, final_sigmas_type="sigma_min")
variant("edm_euler_sd1", "EDMEulerScheduler", NO_TABLE, sigma_data=1.0, sigma_max=120.0, rho=5.0)
variant("edm_dpm", "EDMDPMSolverMultistepScheduler", NO_TABLE)
variant("edm_dpm3", "EDMDPMSolverMultistepScheduler", NO_TABLE, solver_order=3)
variant("edm_dpm_heun", "EDMDPMSolverMultistepScheduler", NO_TABLE, solver_type="heun")
variant("edm_dpm_exponential", "EDMDPMSolverMultistepScheduler", NO_TABLE, sigma_schedule="exponential")
variant("edm_dpm_sigma_min", "EDMDPMSolverMultistepScheduler", NO_TABLE, final_sigmas_type="sigma_min",
        lower_order_final=False)
variant("edm_dpm_sde", "EDMDPMSolverMultistepScheduler", {**NO_TABLE, "stochastic": True},
        algorithm_type="sde-dpmsolver++")
variant("cosine", "CosineDPMSolverMultistepScheduler", {**NO_TABLE, "stochastic": True})
variant("cosine_karras", "CosineDPMSolverMultistepScheduler", {**NO_TABLE, "stochastic": True},
        sigma_schedule="karras")
variant("cosine_heun", "CosineDPMSolverMultistepScheduler", {**NO_TABLE, "stochastic": True}, solver_type="heun")
variant("cosine_first_order", "CosineDPMSolverMultistepScheduler", {**NO_TABLE, "stochastic": True},
        solver_order=1, final_sigmas_type="sigma_min")
# LCM / TCD (their steps must not exceed original_inference_steps)
variant("lcm", "LCMScheduler", {"preds": ("epsilon", "v_prediction", "sample"), "stochastic": True})
# a small timestep_scaling: the boundary condition's c_skip x is large enough to see at every step
variant("lcm_scaling", "LCMScheduler", {"stochastic": True}, timestep_scaling=0.01)
variant("lcm_orig25", "LCMScheduler", {"stochastic": True}, original_inference_steps=25, timestep_scaling=5.0)
variant("tcd", "TCDScheduler", {"preds": ("epsilon", "v_prediction", "sample"), "stochastic": True, "eta": 0.3})
variant("tcd_eta0", "TCDScheduler", {"eta": 0.0})
variant("tcd_eta07", "TCDScheduler", {"stochastic": True, "eta": 0.7})
variant("tcd_eta1", "TCDScheduler", {"stochastic": True, "eta": 1.0}, original_inference_steps=100)
# SASolver (data prediction; noise drawn every step, tau = 1 on timesteps 200..800)
variant("sasolver", "SASolverScheduler", {"stochastic": True})
variant("sasolver_p3c4", "SASolverScheduler", {"stochastic": True}, predictor_order=3, corrector_order=4)
variant("sasolver_p1c1", "SASolverScheduler", {"stochastic": True}, predictor_order=1, corrector_order=1)
variant("sasolver_karras", "SASolverScheduler", {"stochastic": True}, use_karras_sigmas=True)
variant("sasolver_exponential", "SASolverScheduler", {"stochastic": True}, use_exponential_sigmas=True,
        predictor_order=3, corrector_order=3)
variant("sasolver_beta", "SASolverScheduler", {"stochastic": True}, use_beta_sigmas=True)
variant("sasolver_trailing", "SASolverScheduler", {"stochastic": True}, timestep_spacing="trailing",
        lower_order_final=False)
variant("sasolver_leading", "SASolverScheduler", {"stochastic": True, "preds": ("epsilon", "v_prediction", "sample")},
        timestep_spacing="leading", steps_offset=1)
variant("sasolver_flow", "SASolverScheduler", {"stochastic": True, "preds": ("flow_prediction",), "scheds": ("linear",)},
        use_flow_sigmas=True, flow_shift=3.0)
# IPNDM (its own grid, v-prediction) and FlowMatchHeun
variant("ipndm", "IPNDMScheduler", {"scheds": ("none",), "preds": ("ipndm",)})
FLOW = {"preds": ("flow",), "scheds": ("none",)}
variant("fmheun", "FlowMatchHeunDiscreteScheduler", FLOW)
variant("fmheun_shift3", "FlowMatchHeunDiscreteScheduler", FLOW, shift=3.0)

# custom lists: (name, class, options, custom, restrictions); steps = the list's length
CUSTOM = [
    ("ddpm_ts", "DDPMScheduler", {}, {"timesteps": [999, 800, 600, 450, 300, 150, 60, 20, 0]}, {"stochastic": True}),
    ("dpmpp2m_ts", "DPMSolverMultistepScheduler", {}, {"timesteps": [999, 850, 700, 500, 300, 150, 50, 10]}, {}),
    ("dpmpp2m_ts_sigma_min", "DPMSolverMultistepScheduler", {"final_sigmas_type": "sigma_min"},
     {"timesteps": [999, 700, 400, 200, 100, 20]}, {}),
    ("dpm_single_ts", "DPMSolverSinglestepScheduler", {}, {"timesteps": [999, 850, 700, 500, 300, 150, 50, 10]}, {}),
    ("euler_ts", "EulerDiscreteScheduler", {}, {"timesteps": [999.0, 750.5, 500.25, 250.0, 100.0, 10.0]}, {}),
    ("euler_sigmas", "EulerDiscreteScheduler", {},
     {"sigmas": [14.0, 9.5, 6.0, 3.5, 2.0, 1.0, 0.5, 0.2, 0.05, 0.0]}, {}),
    ("euler_sigmas_nonzero_end", "EulerDiscreteScheduler", {}, {"sigmas": [10.0, 4.0, 1.5, 0.6, 0.1]}, {}),
    ("euler_sigmas_leading", "EulerDiscreteScheduler", {"timestep_spacing": "leading", "steps_offset": 1},
     {"sigmas": [12.0, 5.0, 2.0, 0.8, 0.3, 0.0]}, {}),
    ("heun_ts", "HeunDiscreteScheduler", {}, {"timesteps": [999.0, 800.0, 600.0, 400.0, 200.0, 50.0]}, {}),
    ("flow_sigmas", "FlowMatchEulerDiscreteScheduler", {"shift": 3.0}, {"sigmas": [1.0, 0.8, 0.6, 0.4, 0.2, 0.05]},
     {"preds": ("flow",), "scheds": ("none",)}),
    ("flow_ts", "FlowMatchEulerDiscreteScheduler", {"shift": 3.0}, {"timesteps": [1000.0, 750.0, 500.0, 250.0, 50.0]},
     {"preds": ("flow",), "scheds": ("none",)}),
    ("flow_both", "FlowMatchEulerDiscreteScheduler", {},
     {"timesteps": [990.0, 700.0, 420.0, 150.0], "sigmas": [1.0, 0.7, 0.4, 0.15]},
     {"preds": ("flow",), "scheds": ("none",)}),
    ("unipc_flow_sigmas", "UniPCMultistepScheduler", {"use_flow_sigmas": True, "flow_shift": 3.0},
     {"sigmas": [1.0, 0.85, 0.7, 0.5, 0.3, 0.1]}, {"preds": ("flow_prediction",), "scheds": ("linear",)}),
    ("edm_euler_ramp", "EDMEulerScheduler", {}, {"sigmas": [0.0, 0.15, 0.35, 0.6, 0.8, 1.0]}, NO_TABLE),
    ("lcm_ts", "LCMScheduler", {}, {"timesteps": [999, 759, 499, 259]}, {"stochastic": True}),
    ("tcd_ts", "TCDScheduler", {}, {"timesteps": [999, 759, 499, 259, 99]}, {"stochastic": True, "eta": 0.3}),
]


class SampleGMModel(mf.DiscreteTimeGMModel):
    """DiscreteTimeGMModel with the `sample` (x0) prediction too."""

    def __call__(self, x, t):
        if self.prediction_type != "sample":
            return super().__call__(x, t)
        t = float(t.item()) if isinstance(t, torch.Tensor) else float(t)
        alpha, sigma = self.alpha_sigma(t)
        xn = x.detach().cpu().to(torch.float64).numpy()
        x0 = mf.gm_posterior_mean(xn, alpha, sigma, self.p["means"], self.p["stds"], self.p["weights"])
        return torch.from_numpy(np.ascontiguousarray(x0, dtype=np.float64))


class EdmGMModel:
    """EDM's preconditioned network: input c_in x, time c_noise, output F (D = c_skip x + c_out F)."""

    def __init__(self, problem, sigma_data, prediction_type, noise):
        self.p, self.sd, self.pred, self.noise = problem, sigma_data, prediction_type, noise

    def __call__(self, x_in, t):
        t = float(t.item()) if isinstance(t, torch.Tensor) else float(t)
        sigma = math.exp(4.0 * t) if self.noise == "log" else math.tan(t * math.pi / 2.0)
        sd = self.sd
        x = x_in.detach().cpu().to(torch.float64).numpy() * math.sqrt(sigma * sigma + sd * sd)
        d = mf.gm_posterior_mean(x, 1.0, sigma, self.p["means"], self.p["stds"], self.p["weights"])
        c_skip = sd * sd / (sigma * sigma + sd * sd)
        c_out = sigma * sd / math.sqrt(sigma * sigma + sd * sd)
        if self.pred == "v_prediction":
            c_out = -c_out
        return torch.from_numpy(np.ascontiguousarray((d - c_skip * x) / c_out, dtype=np.float64))


class CosineVGMModel:
    """IPNDM's network: t is the v-diffusion time (alpha = cos(pi t / 2)); returns v."""

    def __init__(self, problem):
        self.p = problem

    def __call__(self, x, t):
        t = float(t.item()) if isinstance(t, torch.Tensor) else float(t)
        alpha, sigma = math.cos(math.pi * t / 2.0), math.sin(math.pi * t / 2.0)
        xn = x.detach().cpu().to(torch.float64).numpy()
        x0 = mf.gm_posterior_mean(xn, alpha, sigma, self.p["means"], self.p["stds"], self.p["weights"])
        v = alpha * (xn - alpha * x0) / sigma - sigma * x0 if sigma > 0 else -x0
        return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))


class BrownianRecorder:
    """Stands in for BrownianTreeNoiseSampler: every call returns the next recorded draw."""

    def __init__(self, recorder):
        self.recorder = recorder

    def __call__(self, x, *args, **kwargs):
        rec = self.recorder

        def sample(sigma, sigma_next):
            return rec(x.shape, dtype=x.dtype)

        return sample


def model_for(cls_name, config, problem):
    if cls_name in ("FlowMatchHeunDiscreteScheduler", "FlowMatchEulerDiscreteScheduler") or config.get(
        "use_flow_sigmas"
    ):
        return fc.FlowGMModel(problem)
    if cls_name in ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler", "CosineDPMSolverMultistepScheduler"):
        cosine = cls_name.startswith("Cosine")
        sd = config.get("sigma_data", 1.0 if cosine else 0.5)
        pred = config.get("prediction_type", "v_prediction" if cosine else "epsilon")
        return EdmGMModel(problem, sd, pred, "atan" if cosine else "log")
    if cls_name == "IPNDMScheduler":
        return CosineVGMModel(problem)
    return SampleGMModel(problem, config["beta_schedule"], config["beta_start"], config["beta_end"],
                         config.get("prediction_type", "epsilon"), config.get("num_train_timesteps", 1000))


def run(cls_name, config, steps, problem, stochastic=False, eta=None, custom=None, shape=(mf.N, mf.D)):
    cls = getattr(diffusers, cls_name)
    sched = cls.from_config(config)
    model = model_for(cls_name, config, problem)
    recorder = fc.NoiseRecorder(fc.SEED + 7)
    mod = fc.module_of(cls_name)
    saved = {k: getattr(mod, k, None) for k in ("randn_tensor", "BrownianTreeNoiseSampler")}
    if stochastic:
        if saved["randn_tensor"] is not None:
            mod.randn_tensor = recorder
        if saved["BrownianTreeNoiseSampler"] is not None:
            mod.BrownianTreeNoiseSampler = BrownianRecorder(recorder)
    try:
        if custom:
            # the types diffusers' set_timesteps can use: UniPC multiplies its sigmas (an array), EDMEuler
            # calls `.to` on its ramp (a tensor), the others take lists
            def as_arg(v):
                if cls_name == "UniPCMultistepScheduler":
                    return np.array(v, dtype=np.float64)
                if cls_name == "EDMEulerScheduler":
                    return torch.tensor(v, dtype=torch.float64)
                return list(v)

            sched.set_timesteps(**{k: as_arg(v) for k, v in custom.items()})
        else:
            sched.set_timesteps(steps)
        x = torch.from_numpy(problem["noise"].reshape(shape).copy()) * getattr(sched, "init_noise_sigma", 1.0)
        calls = []
        for t in sched.timesteps:
            calls.append(float(t))
            inp = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
            out = model(inp.reshape(mf.N, mf.D), t).reshape(shape)
            kwargs = {"eta": eta} if eta is not None else {}
            x = sched.step(out, t, x, **kwargs).prev_sample
    finally:
        for k, v in saved.items():
            if v is not None:
                setattr(mod, k, v)
    sample = x.detach().cpu().numpy().astype(np.float64)
    draws = np.stack(recorder.draws) if recorder.draws else None
    return np.asarray(calls, dtype=np.float64), sample, draws


def add_case(cases, skipped, tensors, name, record, cls_name, config, steps, problem, restrict, custom=None):
    stochastic = restrict.get("stochastic", False)
    eta = restrict.get("eta")
    try:
        calls, sample, draws = run(cls_name, config, steps, problem, stochastic, eta, custom)
    except Exception as e:  # noqa: BLE001
        skipped.append({"name": name, "reason": f"{type(e).__name__}: {e}"[:300]})
        return
    if not np.isfinite(sample).all():
        skipped.append({"name": name, "reason": "diffusers returns non-finite values"})
        return
    tensors[f"{name}.sample"] = np.ascontiguousarray(sample)
    tensors[f"{name}.timesteps"] = np.ascontiguousarray(calls)
    n_draws = 0
    if draws is not None:
        # every run draws from the same seeded stream: its draws are a prefix of the one stored sequence
        n_draws = len(draws)
        master = shared_noise(n_draws)
        assert np.array_equal(master[:n_draws], draws.astype(np.float32)), name
    cases.append({**record, "name": name, "class": cls_name, "steps": steps, "mu": None,
                  "stochastic": draws is not None, "draws": n_draws, "patched": False, "shape": [mf.N, mf.D],
                  "eta": eta, "custom": custom})


MAX_DRAWS = 64


def shared_noise(n=MAX_DRAWS):
    """The stream every stochastic run draws from (NoiseRecorder(SEED + 7), one [N, D] draw per call)."""
    assert n <= MAX_DRAWS, f"{n} draws: raise MAX_DRAWS"
    rec = fc.NoiseRecorder(fc.SEED + 7)
    return np.stack([rec((mf.N, mf.D)).numpy() for _ in range(MAX_DRAWS)]).astype(np.float32)


def config_doc(cls_name, options, sched):
    doc = {"_class_name": cls_name, "_diffusers_version": diffusers.__version__}
    table = cls_name not in ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler",
                             "CosineDPMSolverMultistepScheduler", "IPNDMScheduler",
                             "FlowMatchHeunDiscreteScheduler", "FlowMatchEulerDiscreteScheduler")
    if table:
        doc.update(BETAS)
    doc.update(options)
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args(argv)
    cfg_dir = os.path.join(args.out, "configs", "classes")
    os.makedirs(cfg_dir, exist_ok=True)
    problem = mf.make_problem()
    tensors = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in problem.items()}
    cases, skipped = [], []
    runs = [(vname, cls, opts, restrict, None) for vname, (cls, opts, restrict) in V.items()]
    runs += [(name, cls, opts, restrict, custom) for name, cls, opts, custom, restrict in CUSTOM]
    for vname, cls_name, options, restrict, custom in runs:
        doc = config_doc(cls_name, options, None)
        with open(os.path.join(cfg_dir, f"{vname}.json"), "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        steps_list = (len(custom.get("sigmas", custom.get("timesteps"))),) if custom else STEPS
        if custom and cls_name == "EulerDiscreteScheduler" and "sigmas" in custom:
            steps_list = (len(custom["sigmas"]) - 1,)
        for sched in restrict.get("scheds", SCHEDS):
            for pred in restrict.get("preds", PREDS):
                for n in steps_list:
                    config = dict(doc)
                    if sched != "none":
                        config["beta_schedule"] = sched
                    if pred not in ("flow", "ipndm"):
                        config["prediction_type"] = pred
                    name = f"{vname}.{sched}.{pred}.{n}"
                    record = {"variant": vname, "beta_schedule": None if sched == "none" else sched,
                              "prediction_type": None if pred in ("flow", "ipndm") else pred}
                    add_case(cases, skipped, tensors, name, record, cls_name, config, n, problem, restrict, custom)
    versions = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "generator": "tools/fixtures_diffusers_classes2.py",
    }
    tensors["step_noise"] = shared_noise()
    fc.save_mixed(os.path.join(args.out, "diffusers_classes2.safetensors"), tensors,
                  {**versions, "description": "see diffusers_classes2.json"})
    manifest = {
        **versions,
        "seed": fc.SEED,
        "problem": "tools/make_fixtures.py make_problem(): means [3,6], stds, weights, noise [8,6]",
        "model": "discrete-time / flow models of fixtures_diffusers_classes.py; EDM-style: F of the exact "
                 "posterior mean; IPNDM: v on the v-diffusion cosine schedule",
        "loop": "Class.from_config(configs/classes/{variant}.json + beta_schedule + prediction_type); "
                "set_timesteps(steps) or set_timesteps(**custom); x = noise * init_noise_sigma; per t: "
                "x = step(model(scale_model_input(x, t), t), t, x[, eta]).prev_sample; float64",
        "cases": cases,
        "skipped": skipped,
    }
    with open(os.path.join(args.out, "diffusers_classes2.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    size = os.path.getsize(os.path.join(args.out, "diffusers_classes2.safetensors"))
    print(f"{len(cases)} cases, {len(skipped)} skipped, {size / 1e3:.0f} kB")
    for s in skipped:
        print("  skipped", s["name"], s["reason"][:200])
    return 0


if __name__ == "__main__":
    sys.exit(main())
