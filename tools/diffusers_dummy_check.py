#!/usr/bin/env python3
"""Check the diffusers scheduler test-suite values that tests/diffusers_dummy.rs reproduces.

Runs the real diffusers (pinned, tools/requirements.txt) on its own scheduler-test problem: the
deterministic sample `arange(768)` reshaped to (3, 8, 8, 4), divided by 768 and permuted to
(4, 3, 8, 8), the dummy model `out = sample * t / (t + 1)`, 10 inference steps, and the test
classes' default configs (tests/schedulers/test_scheduler_*.py of diffusers). Prints
mean |x| per case next to the value diffusers' test asserts, and writes the configs used to
tests/fixtures/configs/dummy/*.json so the Rust test loads exactly these configs.

Run from the repository root:
    /path/to/venv/bin/python tools/diffusers_dummy_check.py [--write-configs]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import torch  # noqa: E402

import diffusers  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

BASE = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}
DPM_MULTI = {
    **BASE,
    "solver_order": 2,
    "prediction_type": "epsilon",
    "thresholding": False,
    "sample_max_value": 1.0,
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",
    "lower_order_final": False,
    "euler_at_final": False,
    "lambda_min_clipped": -float("inf"),
    "variance_type": None,
    "final_sigmas_type": "sigma_min",
}
DPM_SINGLE = {
    **BASE,
    "solver_order": 2,
    "prediction_type": "epsilon",
    "thresholding": False,
    "sample_max_value": 1.0,
    "algorithm_type": "dpmsolver++",
    "solver_type": "midpoint",
    "lambda_min_clipped": -float("inf"),
    "variance_type": None,
    # diffusers' current test_scheduler_dpm_single.py sets it (older versions did not, and their
    # 0.2791 was measured before final_sigmas_type existed; with the default "zero" 0.42.1 gives 0.2278)
    "final_sigmas_type": "sigma_min",
}
UNIPC = {**BASE, "solver_order": 2, "solver_type": "bh2", "final_sigmas_type": "sigma_min"}
DEIS = {**BASE, "solver_order": 2}

# name, class, config, value asserted by diffusers' test (tolerance 1e-3)
CASES = [
    ("ddim", "DDIMScheduler", {**BASE, "clip_sample": True}, 0.223967),
    ("ddim_v", "DDIMScheduler", {**BASE, "clip_sample": True, "prediction_type": "v_prediction"}, 0.0684),
    ("dpm_multi", "DPMSolverMultistepScheduler", DPM_MULTI, 0.3301),
    ("dpm_multi_v", "DPMSolverMultistepScheduler", {**DPM_MULTI, "prediction_type": "v_prediction"}, 0.2251),
    (
        "dpm_multi_karras_v",
        "DPMSolverMultistepScheduler",
        {**DPM_MULTI, "prediction_type": "v_prediction", "use_karras_sigmas": True},
        0.2096,
    ),
    (
        "dpm_multi_lu_v",
        "DPMSolverMultistepScheduler",
        {**DPM_MULTI, "prediction_type": "v_prediction", "use_lu_lambdas": True},
        0.1554,
    ),
    (
        "dpm_multi_thres",
        "DPMSolverMultistepScheduler",
        {**DPM_MULTI, "thresholding": True, "dynamic_thresholding_ratio": 0.87, "sample_max_value": 0.5},
        1.1364,
    ),
    ("dpm_single", "DPMSolverSinglestepScheduler", DPM_SINGLE, 0.2791),
    ("deis", "DEISMultistepScheduler", DEIS, 0.23916),
    ("unipc", "UniPCMultistepScheduler", UNIPC, 0.2464),
    ("unipc_karras", "UniPCMultistepScheduler", {**UNIPC, "use_karras_sigmas": True}, 0.2925),
]


def dummy_sample() -> torch.Tensor:
    n = 4 * 3 * 8 * 8
    return (torch.arange(n).reshape(3, 8, 8, 4) / n).permute(3, 0, 1, 2)


def full_loop(cls_name: str, config: dict) -> torch.Tensor:
    sched = getattr(diffusers, cls_name)(**config)
    sched.set_timesteps(10)
    sample = dummy_sample()
    for t in sched.timesteps:
        residual = sample * t / (t + 1)
        if cls_name == "DDIMScheduler":
            sample = sched.step(residual, t, sample, 0.0).prev_sample
        else:
            sample = sched.step(residual, t, sample).prev_sample
    return sample


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write-configs", action="store_true", help="write tests/fixtures/configs/dummy/*.json")
    args = ap.parse_args(argv)
    failures = 0
    for name, cls_name, config, want in CASES:
        got = float(full_loop(cls_name, config).abs().mean())
        ok = abs(got - want) < 1e-3
        failures += not ok
        print(f"{name:22s} {cls_name:32s} mean|x| = {got:.6f}  diffusers test: {want}  {'ok' if ok else 'MISMATCH'}")
        if args.write_configs:
            out = os.path.join("tests", "fixtures", "configs", "dummy")
            os.makedirs(out, exist_ok=True)
            doc = {"_class_name": cls_name, "_diffusers_version": diffusers.__version__, **config}
            with open(os.path.join(out, f"{name}.json"), "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.write("\n")
    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}: {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
