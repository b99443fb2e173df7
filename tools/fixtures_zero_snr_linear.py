#!/usr/bin/env python3
"""diffusers' numbers for issue 9 defect 7: zero terminal SNR with diffusers' default linear
betas (1e-4..0.02). The rescaled float32 table's entry 998 (4.2e-9) lies below the 2^-24 that
DPMSolverMultistep, UniPC, Euler and Euler-ancestral write into entry 999, so the table's last
two noise levels are out of order; diffusers runs it anyway.

Runs those four classes (v-prediction, 10 and 25 steps, linspace / leading / trailing spacing)
with the pipeline loop of tools/fixtures_diffusers_classes.py on the Gaussian-mixture problem of
tools/make_fixtures.py (the model trained on the float64 rescaled table of the same betas), and
writes ``tests/fixtures/zero_snr_linear.safetensors``: the problem (``means``, ``stds``,
``weights``, ``noise``) and per case ``{case}.sample``, ``{case}.timesteps`` and, for
Euler-ancestral, ``{case}.step_noise``; the cases are listed in its metadata (``cases``, JSON).

Run from the repository root (about 5 s):

    python -m venv .venv && .venv/bin/pip install -r tools/requirements.txt
    .venv/bin/python tools/fixtures_zero_snr_linear.py --out tests/fixtures
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures_diffusers_classes as fc  # noqa: E402  (the loop, the model, the writer)
import make_fixtures as mf  # noqa: E402

# diffusers' default betas: the model's table is built from the same ones
fc.BETAS = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)

CLASSES = {
    "dpmpp2m": ("DPMSolverMultistepScheduler", False),
    "unipc": ("UniPCMultistepScheduler", False),
    "euler": ("EulerDiscreteScheduler", False),
    "euler_a": ("EulerAncestralDiscreteScheduler", True),
}
SPACINGS = ("linspace", "leading", "trailing")
STEPS = (10, 25)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args(argv)
    # the case this file is about: diffusers' floored table is out of order at its end
    ac = fc.diffusers.DPMSolverMultistepScheduler(rescale_betas_zero_snr=True).alphas_cumprod.numpy()
    assert ac[998] < ac[999] == 2.0**-24, (ac[998], ac[999])
    problem = mf.make_problem()
    tensors = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in problem.items()}
    cases = []
    for short, (cls_name, stochastic) in CLASSES.items():
        for spacing in SPACINGS:
            for n in STEPS:
                config = {
                    "_class_name": cls_name,
                    **fc.BETAS,
                    "beta_schedule": "linear",
                    "prediction_type": "v_prediction",
                    "rescale_betas_zero_snr": True,
                    "timestep_spacing": spacing,
                }
                name = f"{short}.{spacing}.{n}"
                calls, sample, draws = fc.run(cls_name, config, n, problem, stochastic=stochastic)
                assert np.isfinite(sample).all(), name
                tensors[f"{name}.sample"] = np.ascontiguousarray(sample)
                tensors[f"{name}.timesteps"] = np.ascontiguousarray(calls)
                if stochastic:
                    tensors[f"{name}.step_noise"] = np.ascontiguousarray(draws.astype(np.float32))
                cases.append({"name": name, "config": config, "steps": n, "stochastic": stochastic})
    path = os.path.join(args.out, "zero_snr_linear.safetensors")
    meta = {
        "generator": "tools/fixtures_zero_snr_linear.py",
        "diffusers_version": fc.diffusers.__version__,
        "cases": json.dumps(cases),
    }
    fc.save_mixed(path, tensors, meta)
    print(f"{len(cases)} cases, {os.path.getsize(path) / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
