#!/usr/bin/env python3
"""Sweep diffusers' `set_timesteps` against the crate: every class x sigma conversion x spacing x
beta table x step count, looking for timesteps that the float32 arithmetic of diffusers (its
float32 `log_sigmas` table, float32 sigmas, int64 casts) puts elsewhere than an f64 computation.

Writes ``{out}/sweep.json`` (the cases: config, steps) and ``{out}/sweep.safetensors`` (per case
``{i}.timesteps`` and, where the class has them, ``{i}.sigmas``, f64) for the harness
``cargo run --release --example diffusers_sweep -- {out}``, which plans every case with the crate
and reports each case whose model times or sigmas differ. Nothing here is committed output: the
failures it found are pinned in tests/fixtures/diffusers_f32_timesteps.json (written by
``--pin``).

    python tools/sweep_diffusers_timesteps.py --out target/sweep [--max-steps 60]
    python tools/sweep_diffusers_timesteps.py --pin CASES.json --fixture tests/fixtures/diffusers_f32_timesteps.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import diffusers  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
diffusers.utils.logging.set_verbosity_error()

TABLES = {
    "linear": dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "linear_sd": dict(beta_schedule="linear", beta_start=0.00085, beta_end=0.012),
    "squaredcos_cap_v2": dict(beta_schedule="squaredcos_cap_v2"),
}
CONVERSIONS = {
    "interp": {},
    "karras": dict(use_karras_sigmas=True),
    "exponential": dict(use_exponential_sigmas=True),
    "beta": dict(use_beta_sigmas=True),
    "lu": dict(use_lu_lambdas=True),
}
SPACINGS = {
    "linspace": dict(timestep_spacing="linspace"),
    "leading": dict(timestep_spacing="leading", steps_offset=1),
    "trailing": dict(timestep_spacing="trailing"),
}
# class -> (conversions it accepts, takes a spacing)
CLASSES = {
    "DPMSolverMultistepScheduler": ("interp", "karras", "exponential", "beta", "lu"),
    "DPMSolverSinglestepScheduler": ("interp", "karras", "exponential", "beta"),
    "DEISMultistepScheduler": ("interp", "karras", "exponential", "beta"),
    "UniPCMultistepScheduler": ("interp", "karras", "exponential", "beta"),
    "EulerDiscreteScheduler": ("interp", "karras", "exponential", "beta"),
    "HeunDiscreteScheduler": ("interp", "karras", "exponential", "beta"),
    "LMSDiscreteScheduler": ("interp", "karras", "exponential", "beta"),
    "KDPM2DiscreteScheduler": ("interp", "karras", "exponential", "beta"),
    "KDPM2AncestralDiscreteScheduler": ("interp", "karras", "exponential", "beta"),
    "DPMSolverSDEScheduler": ("interp", "karras", "exponential", "beta"),
    "SASolverScheduler": ("interp", "karras", "exponential", "beta"),
}
NO_SPACING = {"DPMSolverSinglestepScheduler"}  # spaces linspace whatever the option says
# classes without a beta-table sigma conversion: (class, option sets); table classes get every table
OTHERS = {
    "LCMScheduler": [{}, {"original_inference_steps": 30}],
    "TCDScheduler": [{}, {"original_inference_steps": 100}],
    "IPNDMScheduler": [{}],
    "FlowMatchHeunDiscreteScheduler": [{}, {"shift": 3.0}],
    "EDMEulerScheduler": [{}, {"sigma_schedule": "exponential"}, {"final_sigmas_type": "sigma_min"}],
    "EDMDPMSolverMultistepScheduler": [{}, {"sigma_schedule": "exponential"}, {"final_sigmas_type": "sigma_min"}],
    "CosineDPMSolverMultistepScheduler": [{}, {"sigma_schedule": "karras"}, {"final_sigmas_type": "sigma_min"}],
}
TABLE_OTHERS = {"LCMScheduler", "TCDScheduler"}


def steps_list(max_steps):
    return list(range(1, max_steps + 1)) + [s for s in (75, 100, 150, 200, 250, 333, 500, 999, 1000) if s > max_steps]


def cases(max_steps, classes):
    for cls in classes:
        if cls in OTHERS:
            tables = TABLES if cls in TABLE_OTHERS else {"none": {}}
            for opts in OTHERS[cls]:
                for table in tables:
                    for n in steps_list(max_steps):
                        yield {"_class_name": cls, **tables[table], **opts}, n
            continue
        if cls == "EulerSigmasOfEuler":
            # EulerDiscrete with custom sigmas that are its own default sigmas: every one a table value,
            # where the float32 _sigma_to_t hits the table exactly
            for table in TABLES:
                for n in steps_list(max_steps):
                    yield {"_class_name": "EulerDiscreteScheduler", **TABLES[table], "_sigmas_of": n}, n
            continue
        convs = CLASSES[cls]
        spacings = ["linspace"] if cls in NO_SPACING else list(SPACINGS)
        for conv in convs:
            for sp in spacings:
                # converted sigmas do not depend on the spacing: one spacing is enough there
                if conv != "interp" and sp != "linspace":
                    continue
                for table in TABLES:
                    for n in steps_list(max_steps):
                        cfg = {"_class_name": cls, **TABLES[table], **CONVERSIONS[conv], **SPACINGS[sp]}
                        yield cfg, n


def run_case(cfg, n):
    cls = getattr(diffusers, cfg["_class_name"])
    sched = cls.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
    if "_sigmas_of" in cfg:
        sched.set_timesteps(cfg["_sigmas_of"])
        sched.set_timesteps(sigmas=sched.sigmas.numpy().astype(np.float64).tolist())
    else:
        sched.set_timesteps(n)
    ts = np.asarray(sched.timesteps.detach().cpu().numpy(), dtype=np.float64)
    sig = getattr(sched, "sigmas", None)
    sig = None if sig is None else np.asarray(sig.detach().cpu().numpy(), dtype=np.float64)
    return ts, sig


def sweep(out, max_steps, classes):
    os.makedirs(out, exist_ok=True)
    index, tensors, refused = [], {}, []
    for cfg, n in cases(max_steps, classes):
        try:
            ts, sig = run_case(cfg, n)
        except Exception as e:  # noqa: BLE001
            refused.append({"config": cfg, "steps": n, "reason": f"{type(e).__name__}: {e}"[:200]})
            continue
        i = len(index)
        index.append({"config": cfg, "steps": n})
        tensors[f"{i}.timesteps"] = ts
        if sig is not None:
            tensors[f"{i}.sigmas"] = sig
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(out, "sweep.safetensors"))
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump({"diffusers_version": diffusers.__version__, "numpy_version": np.__version__,
                   "cases": index, "refused": refused}, f)
    print(f"{len(index)} cases ({len(refused)} refused by diffusers) -> {out}")


def pin(cases_file, fixture):
    """Store diffusers' timesteps and sigmas of the listed (config, steps) cases as a fixture."""
    with open(cases_file) as f:
        wanted = json.load(f)
    out = []
    for c in wanted:
        ts, sig = run_case(c["config"], c["steps"])
        out.append({"config": c["config"], "steps": c["steps"], "timesteps": ts.tolist(),
                    "sigmas": None if sig is None else sig.tolist()})
    with open(fixture, "w") as f:
        json.dump({"diffusers_version": diffusers.__version__, "numpy_version": np.__version__,
                   "generator": "tools/sweep_diffusers_timesteps.py --pin", "cases": out}, f, indent=1)
        f.write("\n")
    print(f"{len(out)} cases -> {fixture}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="target/sweep")
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--classes", default=",".join([*CLASSES, *OTHERS, "EulerSigmasOfEuler"]))
    ap.add_argument("--pin")
    ap.add_argument("--fixture")
    args = ap.parse_args(argv)
    if args.pin:
        pin(args.pin, args.fixture)
    else:
        sweep(args.out, args.max_steps, args.classes.split(","))
    return 0


if __name__ == "__main__":
    sys.exit(main())
