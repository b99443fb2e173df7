#!/usr/bin/env python3
"""Reference fixtures for the LMS, PNDM/PLMS, iPNDM, Euler-ancestral and DDPM solvers of
`diffusion-samplers` (tests/solvers_c2.rs).

Runs the real diffusers schedulers (pinned, tools/requirements.txt) LMSDiscreteScheduler,
PNDMScheduler (skip_prk_steps True and False), IPNDMScheduler, EulerAncestralDiscreteScheduler and
DDPMScheduler on the Gaussian-mixture problem of tools/make_fixtures.py (same problem, same
discrete-time model: f64 table, log-ksigma interpolated over the training index), exactly like a
pipeline (set_timesteps -> x = noise * init_noise_sigma -> scale_model_input -> model -> step), in
float64 torch tensors. The stochastic schedulers get a seeded torch.Generator; every noise tensor
they draw is recorded (``randn_tensor`` in their module is wrapped) so the Rust tests replay the
same noise through a NoiseSource.

IPNDMScheduler has no beta table and no prediction_type: it runs its own grid of a cosine
(v-diffusion) schedule, alpha = cos(pi t / 2), sigma = sin(pi t / 2), and assumes a v-prediction
network, so its cases use the Gaussian-mixture v-prediction model on that schedule.

Writes tests/fixtures/solvers_c2.safetensors (f64 tensors) and tests/fixtures/solvers_c2.json
(case list with the exact constructor kwargs).

Run from the repository root (single-threaded CPU, a few seconds):
    /path/to/venv/bin/python tools/fixtures_solvers_c2.py --out tests/fixtures
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (sets the single-thread environment first)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    IPNDMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)
from diffusers.schedulers import scheduling_ddpm, scheduling_euler_ancestral_discrete  # noqa: E402

BETA = mf.PARITY_BETA  # beta_start 0.00085, beta_end 0.012, 1000 training steps
STEPS = (5, 10, 25)
SCHEDS = ("linear", "scaled_linear")
PREDS = ("epsilon", "v_prediction")

# --------------------------------------------------------------------------------------
# noise recording
# --------------------------------------------------------------------------------------
DRAWS: list[torch.Tensor] = []


def _recording(orig):
    def wrapped(*args, **kwargs):
        out = orig(*args, **kwargs)
        DRAWS.append(out.detach().clone())
        return out

    return wrapped


for _mod in (scheduling_ddpm, scheduling_euler_ancestral_discrete):
    _mod.randn_tensor = _recording(_mod.randn_tensor)


class CosineGMModel:
    """The Gaussian-mixture v-prediction model on the cosine schedule IPNDMScheduler assumes:
    t in [0, 1], alpha = cos(pi t / 2), sigma = sin(pi t / 2)."""

    def __init__(self, problem):
        self.p = problem

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        t = float(t.item()) if isinstance(t, torch.Tensor) else float(t)
        alpha, sigma = math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)
        xn = x.detach().cpu().to(torch.float64).numpy()
        x0 = mf.gm_posterior_mean(xn, alpha, sigma, self.p["means"], self.p["stds"], self.p["weights"])
        eps = (xn - alpha * x0) / sigma
        return torch.from_numpy(np.ascontiguousarray(alpha * eps - sigma * x0, dtype=np.float64))


# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------
def cases() -> list[dict]:
    out = []
    for sched in SCHEDS:
        for pred in PREDS:
            for n in STEPS:
                tag = f"{sched}_{pred}_{n}"
                base = dict(**BETA, beta_schedule=sched, prediction_type=pred)
                out.append(dict(name=f"lms_{tag}", cls=LMSDiscreteScheduler, config=dict(base), steps=n))
                # Stable Diffusion's PNDM config: skip_prk_steps, steps_offset 1, set_alpha_to_one False
                out.append(
                    dict(
                        name=f"plms_{tag}",
                        cls=PNDMScheduler,
                        config=dict(base, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False),
                        steps=n,
                    )
                )
                # diffusers' defaults: PRK warm-up, steps_offset 0, set_alpha_to_one False
                out.append(dict(name=f"pndm_{tag}", cls=PNDMScheduler, config=dict(base), steps=n))
                out.append(
                    dict(name=f"euler_a_{tag}", cls=EulerAncestralDiscreteScheduler, config=dict(base), steps=n)
                )
                # DDPM defaults (fixed_small, clip_sample True, leading, steps_offset 0)
                out.append(dict(name=f"ddpm_{tag}", cls=DDPMScheduler, config=dict(base), steps=n))
    # PRK with an odd stride (1000 // 30 = 33): diffusers' integer half stride
    out.append(
        dict(
            name="pndm_odd_stride_scaled_linear_epsilon_30",
            cls=PNDMScheduler,
            config=dict(**BETA, beta_schedule="scaled_linear", prediction_type="epsilon", steps_offset=1),
            steps=30,
        )
    )
    # PLMS ending at sigma = 0
    out.append(
        dict(
            name="plms_alpha_one_linear_epsilon_10",
            cls=PNDMScheduler,
            config=dict(**BETA, beta_schedule="linear", prediction_type="epsilon", skip_prk_steps=True, set_alpha_to_one=True),
            steps=10,
        )
    )
    # DDPM variance types, clipping off, and the last-step noise of fixed_large with steps_offset 1
    for var in ("fixed_small_log", "fixed_large"):
        for off in (0, 1):
            out.append(
                dict(
                    name=f"ddpm_{var}_offset{off}_linear_epsilon_10",
                    cls=DDPMScheduler,
                    config=dict(**BETA, beta_schedule="linear", prediction_type="epsilon", variance_type=var, steps_offset=off),
                    steps=10,
                )
            )
    out.append(
        dict(
            name="ddpm_noclip_scaled_linear_v_prediction_10",
            cls=DDPMScheduler,
            config=dict(**BETA, beta_schedule="scaled_linear", prediction_type="v_prediction", clip_sample=False),
            steps=10,
        )
    )
    for n in STEPS:
        out.append(dict(name=f"ipndm_{n}", cls=IPNDMScheduler, config=dict(num_train_timesteps=1000), steps=n))
    return out


def run(case: dict, problem: dict, seed: int) -> dict[str, np.ndarray]:
    cfg = case["config"]
    sched = case["cls"](**cfg)
    if case["cls"] is IPNDMScheduler:
        model = CosineGMModel(problem)
    else:
        model = mf.DiscreteTimeGMModel(
            problem, cfg["beta_schedule"], cfg["beta_start"], cfg["beta_end"], cfg["prediction_type"], cfg["num_train_timesteps"]
        )
    sched.set_timesteps(case["steps"])
    gen = torch.Generator().manual_seed(seed)
    stochastic = case["cls"] in (DDPMScheduler, EulerAncestralDiscreteScheduler)
    DRAWS.clear()
    x = torch.from_numpy(problem["noise"].copy()) * sched.init_noise_sigma
    ts = []
    for t in sched.timesteps:
        ts.append(float(t))
        out = model(sched.scale_model_input(x, t), t)
        if stochastic:
            x = sched.step(out, t, x, generator=gen).prev_sample
        else:
            x = sched.step(out, t, x).prev_sample
        assert x.dtype == torch.float64, x.dtype
    res = {
        "sample": x.numpy().astype(np.float64),
        "timesteps": np.asarray(ts, dtype=np.float64),
        "init_noise_sigma": np.asarray([float(sched.init_noise_sigma)], dtype=np.float64),
    }
    if stochastic:
        res["noise_draws"] = np.stack([d.numpy() for d in DRAWS]).astype(np.float64)
    if case["cls"] in (LMSDiscreteScheduler, EulerAncestralDiscreteScheduler):
        res["sigmas"] = mf.f64(sched.sigmas)
    if case["cls"] is IPNDMScheduler:
        res["sigmas"] = mf.f64(sched.betas)  # IPNDM calls its sigmas "betas"
        res["alphas"] = mf.f64(sched.alphas)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    problem = mf.make_problem()
    tensors = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in problem.items()}
    for sched in SCHEDS:
        s = DDPMScheduler(**BETA, beta_schedule=sched)
        tensors[f"alphas_cumprod.{sched}"] = mf.f64(s.alphas_cumprod)
    manifest = []
    for i, case in enumerate(cases()):
        for k, v in run(case, problem, mf.SEED + i).items():
            tensors[f"{case['name']}.{k}"] = np.ascontiguousarray(v)
        manifest.append(
            {"name": case["name"], "class": case["cls"].__name__, "config": case["config"], "steps": case["steps"], "seed": mf.SEED + i}
        )
    versions = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "generator": "tools/fixtures_solvers_c2.py",
    }
    mf.save_safetensors(
        os.path.join(args.out, "solvers_c2.safetensors"),
        tensors,
        {**versions, "description": "LMS/PNDM/IPNDM/EulerAncestral/DDPM parity runs; see solvers_c2.json"},
    )
    doc = {
        **versions,
        "problem": "tools/make_fixtures.py make_problem(): means [3,6], stds [3], weights [3], noise [8,6] (f64)",
        "model": (
            "DiscreteVp cases: make_fixtures.DiscreteTimeGMModel (f64 table, log-ksigma interpolation over the index, "
            "returns eps or v). IPNDM cases: the v-prediction GM model on alpha = cos(pi t/2), sigma = sin(pi t/2)."
        ),
        "loop": (
            "sched=Cls(**config); sched.set_timesteps(steps); x=noise*sched.init_noise_sigma; for t in sched.timesteps: "
            "out=model(sched.scale_model_input(x,t),t); x=sched.step(out,t,x[,generator=torch.Generator().manual_seed(seed)]).prev_sample"
        ),
        "tensors": {
            "means, stds, weights, noise": "the problem",
            "alphas_cumprod.{linear,scaled_linear}": "diffusers' float32 tables for beta 0.00085..0.012 (as f64)",
            "{case}.sample": "[8,6] final x",
            "{case}.timesteps": "[calls] timesteps passed to the model, in order",
            "{case}.init_noise_sigma": "[1]",
            "{case}.noise_draws": "[draws,8,6] DDPM / EulerAncestral only: every randn_tensor draw of step(), in order",
            "{case}.sigmas": "LMS / EulerAncestral: scheduler.sigmas (float32 ksigmas incl. the final 0); IPNDM: its 'betas' (sigmas)",
            "{case}.alphas": "IPNDM only: its alphas",
        },
        "cases": manifest,
    }
    with open(os.path.join(args.out, "solvers_c2.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{len(manifest)} cases, {len(tensors)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
