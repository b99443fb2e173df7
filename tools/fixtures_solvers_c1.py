#!/usr/bin/env python3
"""diffusers reference runs for UniPC, DEIS, singlestep DPM-Solver(++) and SDE-DPM-Solver++.

Runs the real diffusers schedulers (pinned, see tools/requirements.txt) with the pipeline loop of
tools/make_fixtures.py (same Gaussian-mixture problem, same discrete-time exact model, float64
torch tensors) and writes

* ``solvers_c1.safetensors``: the problem (``means`` [K,D], ``stds`` [K], ``weights`` [K],
  ``noise`` [N,D]), ``sde_noise`` [25,N,D] (the ``variance_noise`` given to SDE-DPM-Solver++ at
  step i is ``sde_noise[i]``; values are float32-representable because diffusers casts them to
  float32), and per case ``{case}.sample`` [N,D] (final x), ``{case}.timesteps`` [steps]
  (timesteps passed to the model) and ``{case}.sigmas`` [steps+1] (``scheduler.sigmas``:
  float32 k-sigmas stored as f64, final sigma included);
  and ``{case}.sample_f64`` [N,D] (the same diffusers run with ``scheduler.sigmas`` replaced by
  the f64 table's k-sigmas, so that its coefficients are computed in float64: diffusers' DEIS
  third order and noise-form singlestep third order lose up to 4e-5 to float32 cancellation);
* ``solvers_c1.json``: versions, description and the case list
  ``{name, class, config (exact constructor kwargs), steps, prediction_type, patched}``.

``patched`` cases are not plain diffusers: UniPC with ``solver_type="bh1"`` and
``final_sigmas_type="zero"`` returns NaN in diffusers 0.42.1 (its last predictor step computes
``B(h) * pred_res = -inf * 0``); the script asserts that NaN and then stores diffusers' run with
that one product fixed (the last step returns the data prediction, its exact limit), which is
what the Rust UniPC computes.

Run from the repository root (single-threaded CPU, a few seconds):

    /path/to/venv/bin/python tools/fixtures_solvers_c1.py --out tests/fixtures
"""

from __future__ import annotations

import os
import sys

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (same problem, model and writer)

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    UniPCMultistepScheduler,
)

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
diffusers.utils.logging.set_verbosity_error()  # singlestep's lower_order_final notices

STEPS = (5, 10, 25)
SCHEDS = ("linear", "scaled_linear")
PREDS = ("epsilon", "v_prediction")
SDE_MAX_STEPS = 25


def sde_noise_table() -> np.ndarray:
    rng = np.random.default_rng(mf.SEED + 2)
    z = rng.standard_normal(size=(SDE_MAX_STEPS, mf.N, mf.D))
    return z.astype(np.float32).astype(np.float64)


def case(name, cls, steps, patched=False, **config):
    cfg = dict(**mf.PARITY_BETA, **config)
    return dict(name=name, cls=cls, config=cfg, steps=steps, patched=patched)


def cases() -> list[dict]:
    out = []
    grid = [(s, p, n) for s in SCHEDS for p in PREDS for n in STEPS]
    tag = {"linear": "linear", "scaled_linear": "scaled", "epsilon": "eps", "v_prediction": "v"}
    for variant in ("bh1", "bh2"):
        # bh1 ends at sigma_min here (diffusers' bh1 into sigma = 0 is NaN, see the patched cases)
        final = "sigma_min" if variant == "bh1" else "zero"
        for order in (2, 3):
            for s, p, n in grid:
                out.append(case(f"unipc_{variant}_o{order}_{tag[s]}_{tag[p]}_{n}", UniPCMultistepScheduler, n,
                                beta_schedule=s, prediction_type=p, solver_order=order, solver_type=variant,
                                predict_x0=True, final_sigmas_type=final))
    for order in (2, 3):
        for n in (5, 10):
            out.append(case(f"unipc_bh1zero_o{order}_linear_eps_{n}", UniPCMultistepScheduler, n, patched=True,
                            beta_schedule="linear", prediction_type="epsilon", solver_order=order, solver_type="bh1",
                            final_sigmas_type="zero"))
    out.append(case("unipc_noise_o2_linear_eps_10", UniPCMultistepScheduler, 10, beta_schedule="linear",
                    prediction_type="epsilon", solver_order=2, predict_x0=False, final_sigmas_type="sigma_min"))
    out.append(case("unipc_noise_o3_scaled_v_10", UniPCMultistepScheduler, 10, beta_schedule="scaled_linear",
                    prediction_type="v_prediction", solver_order=3, predict_x0=False, final_sigmas_type="sigma_min"))
    out.append(case("unipc_disable_o3_linear_eps_10", UniPCMultistepScheduler, 10, beta_schedule="linear",
                    prediction_type="epsilon", solver_order=3, disable_corrector=[0, 3, 4]))
    out.append(case("unipc_nolof_o3_linear_eps_10", UniPCMultistepScheduler, 10, beta_schedule="linear",
                    prediction_type="epsilon", solver_order=3, lower_order_final=False,
                    final_sigmas_type="sigma_min"))
    for order in (2, 3):
        for s, p, n in grid:
            out.append(case(f"deis_o{order}_{tag[s]}_{tag[p]}_{n}", DEISMultistepScheduler, n,
                            beta_schedule=s, prediction_type=p, solver_order=order))
    out.append(case("deis_nolof_o3_linear_eps_10", DEISMultistepScheduler, 10, beta_schedule="linear",
                    prediction_type="epsilon", solver_order=3, lower_order_final=False))
    for algo, final in (("dpmsolver++", "zero"), ("dpmsolver", "sigma_min")):
        short = "pp" if algo == "dpmsolver++" else "dpm"
        for order in (2, 3):
            for s, p, n in grid:
                out.append(case(f"single_{short}_o{order}_{tag[s]}_{tag[p]}_{n}", DPMSolverSinglestepScheduler, n,
                                beta_schedule=s, prediction_type=p, solver_order=order, algorithm_type=algo,
                                final_sigmas_type=final))
    for algo, final in (("dpmsolver++", "zero"), ("dpmsolver", "sigma_min")):
        short = "pp" if algo == "dpmsolver++" else "dpm"
        for order in (2, 3):
            out.append(case(f"single_{short}_heun_o{order}_linear_eps_10", DPMSolverSinglestepScheduler, 10,
                            beta_schedule="linear", prediction_type="epsilon", solver_order=order,
                            algorithm_type=algo, solver_type="heun", final_sigmas_type=final))
    # sigma_min end, lower_order_final True / False on a step count that is a multiple of the order
    out.append(case("single_pp_lof_o3_linear_eps_9", DPMSolverSinglestepScheduler, 9, beta_schedule="linear",
                    prediction_type="epsilon", solver_order=3, lower_order_final=True, final_sigmas_type="sigma_min"))
    out.append(case("single_pp_nolof_o3_linear_eps_9", DPMSolverSinglestepScheduler, 9, beta_schedule="linear",
                    prediction_type="epsilon", solver_order=3, lower_order_final=False, final_sigmas_type="sigma_min"))
    out.append(case("single_pp_nolof_o2_linear_eps_10", DPMSolverSinglestepScheduler, 10, beta_schedule="linear",
                    prediction_type="epsilon", solver_order=2, lower_order_final=False, final_sigmas_type="sigma_min"))
    for order in (1, 2, 3):
        for s, p, n in grid:
            out.append(case(f"sde_o{order}_{tag[s]}_{tag[p]}_{n}", DPMSolverMultistepScheduler, n,
                            beta_schedule=s, prediction_type=p, solver_order=order,
                            algorithm_type="sde-dpmsolver++"))
    out.append(case("sde_heun_o2_linear_eps_10", DPMSolverMultistepScheduler, 10, beta_schedule="linear",
                    prediction_type="epsilon", solver_order=2, algorithm_type="sde-dpmsolver++", solver_type="heun"))
    return out


def patch_unipc_bh1_final(sched: UniPCMultistepScheduler) -> None:
    """Fix diffusers' `-inf * 0` on the first-order step into sigma = 0 (bh1): that step's exact
    value is the data prediction, model_outputs[-1]."""
    original = sched.multistep_uni_p_bh_update

    def patched(model_output, *args, sample=None, order=None, **kwargs):
        if float(sched.sigmas[sched.step_index + 1]) == 0.0 and order == 1 and sched.predict_x0:
            return sched.model_outputs[-1].to(sample.dtype)
        return original(model_output, *args, sample=sample, order=order, **kwargs)

    sched.multistep_uni_p_bh_update = patched


def use_f64_sigmas(sched, cfg: dict) -> None:
    """Replace the float32 `sched.sigmas` by the same k-sigmas from the f64 table (integer
    timesteps; final sigma 0 or sigma(t=0)), so every coefficient is computed in float64."""
    betas = mf.betas_f64(cfg["beta_schedule"], cfg["beta_start"], cfg["beta_end"], cfg["num_train_timesteps"])
    ac = np.cumprod(1.0 - betas)
    ks = np.sqrt((1.0 - ac) / ac)
    t = sched.timesteps.numpy().astype(np.int64)
    last = 0.0 if float(sched.sigmas[-1]) == 0.0 else ks[0]
    sched.sigmas = torch.from_numpy(np.concatenate([ks[t], [last]]))


def run(c: dict, problem: dict, sde_noise: np.ndarray, patched: bool, f64_sigmas: bool = False):
    cfg = c["config"]
    sched = c["cls"](**cfg)
    if patched:
        patch_unipc_bh1_final(sched)
    model = mf.DiscreteTimeGMModel(problem, cfg["beta_schedule"], cfg["beta_start"], cfg["beta_end"],
                                   cfg["prediction_type"], cfg["num_train_timesteps"])
    sched.set_timesteps(c["steps"])
    if f64_sigmas:
        use_f64_sigmas(sched, cfg)
    x = torch.from_numpy(problem["noise"].copy()) * sched.init_noise_sigma
    sde = cfg.get("algorithm_type") == "sde-dpmsolver++"
    ts = []
    for i, t in enumerate(sched.timesteps):
        ts.append(float(t))
        out = model(sched.scale_model_input(x, t), t)
        if sde:
            x = sched.step(out, t, x, variance_noise=torch.from_numpy(sde_noise[i].copy())).prev_sample
        else:
            x = sched.step(out, t, x).prev_sample
        assert x.dtype == torch.float64, x.dtype
    return np.asarray(ts, dtype=np.float64), x.numpy().astype(np.float64), mf.f64(sched.sigmas)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    versions = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "generator": "tools/fixtures_solvers_c1.py",
    }
    problem = mf.make_problem()
    sde_noise = sde_noise_table()
    tensors = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in problem.items()}
    tensors["sde_noise"] = sde_noise
    manifest = []
    for c in cases():
        if c["patched"]:
            _, raw, _ = run(c, problem, sde_noise, patched=False)
            assert np.isnan(raw).any(), f"{c['name']}: expected diffusers' NaN"
        ts, sample, sigmas = run(c, problem, sde_noise, patched=c["patched"])
        assert np.isfinite(sample).all(), c["name"]
        tensors[f"{c['name']}.sample"] = np.ascontiguousarray(sample)
        tensors[f"{c['name']}.timesteps"] = np.ascontiguousarray(ts)
        tensors[f"{c['name']}.sigmas"] = sigmas
        _, sample64, _ = run(c, problem, sde_noise, patched=c["patched"], f64_sigmas=True)
        tensors[f"{c['name']}.sample_f64"] = np.ascontiguousarray(sample64)
        manifest.append({
            "name": c["name"],
            "class": c["cls"].__name__,
            "config": c["config"],
            "steps": c["steps"],
            "prediction_type": c["config"]["prediction_type"],
            "patched": c["patched"],
        })
    meta = {**versions, "seed": str(mf.SEED), "description": "see solvers_c1.json"}
    mf.save_safetensors(os.path.join(args.out, "solvers_c1.safetensors"), tensors, meta)
    doc = {
        **versions,
        "seed": mf.SEED,
        "problem": "as diffusers_parity.json (tools/make_fixtures.py make_problem, DiscreteTimeGMModel)",
        "loop": (
            "sched=Cls(**config); sched.set_timesteps(steps); x=noise*init_noise_sigma; for i,t in enumerate(timesteps): "
            "out=model(scale_model_input(x,t),t); x=step(out,t,x[, variance_noise=sde_noise[i] for sde-dpmsolver++]).prev_sample"
        ),
        "patched": (
            "UniPC bh1 with final_sigmas_type='zero' is NaN in diffusers (last step -inf*0); patched cases store diffusers' "
            "run with the last first-order step returning the data prediction (its exact value)"
        ),
        "tensors": {
            "means/stds/weights/noise": "the problem, f64",
            "sde_noise": f"[{SDE_MAX_STEPS},N,D] variance_noise of step i (float32 values as f64)",
            "{case}.sample": "[N,D] final x",
            "{case}.timesteps": "[steps] timesteps passed to the model",
            "{case}.sigmas": "[steps+1] scheduler.sigmas (float32 as f64), final included",
            "{case}.sample_f64": (
                "[N,D] the same diffusers run with scheduler.sigmas replaced after set_timesteps by the k-sigmas of the "
                "f64 table (so its coefficients are computed in float64): separates diffusers' float32 rounding from "
                "algorithmic differences"
            ),
        },
        "cases": manifest,
    }
    with open(os.path.join(args.out, "solvers_c1.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{len(manifest)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
