#!/usr/bin/env python3
"""Reference fixtures for the adaptive DPM-Solver and DPM-Solver-fast of `diffusion-samplers`
(tests/dpm_adaptive.rs): k-diffusion 0.1.1.post1's `sample_dpm_adaptive` and `sample_dpm_fast`
(ComfyUI's `dpm_adaptive` / `dpm_fast`) on the Gaussian-mixture problem of tools/make_fixtures.py.

The model is the exact posterior mean D(x, sigma) = E[x0 | x0 + sigma eps = x] of that mixture
(k-diffusion's convention: a denoiser of the variance-exploding sample x = x0 + sigma eps), in
float64. Sampling starts from x = noise * sigma_max. torch's default dtype is set to float64 so
that k-diffusion's own scalars (`torch.tensor(sigma_max)`, the time grid) are float64 too, which
an f64 reimplementation can match to ~1e-12 (its step-size decisions included).

k-diffusion is installed without its heavy dependencies (`pip install --no-deps
k-diffusion==0.1.1.post1 torchsde`); its package `__init__` imports torchvision, which is absent,
so the `k_diffusion.sampling` module is imported on its own (see `import_kdiffusion_sampling`).

Writes tests/fixtures/kdiffusion_dpm.safetensors (f64) and tests/fixtures/kdiffusion_dpm.json
(the cases with their exact arguments and k-diffusion's `info`).

Run from the repository root (single-threaded CPU, about a second):
    /path/to/venv/bin/python tools/fixtures_kdiffusion_dpm.py --out tests/fixtures
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (sets the single-thread environment first)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def import_kdiffusion_sampling():
    """`k_diffusion.sampling` without the package `__init__` (which needs torchvision)."""
    for m in ["torchvision", "torchvision.transforms", "torchvision.transforms.functional"]:
        sys.modules.setdefault(m, types.ModuleType(m))
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
    spec = importlib.util.find_spec("k_diffusion")
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = pkg
    import k_diffusion.sampling as K  # noqa: E402

    return K


# (name, kwargs of sample_dpm_adaptive); sigma_min, sigma_max separately
ADAPTIVE = [
    ("adaptive_o3_default", dict(order=3), (0.0292, 14.6)),
    ("adaptive_o2_default", dict(order=2), (0.0292, 14.6)),
    ("adaptive_o3_tight", dict(order=3, rtol=1e-3, atol=1e-3), (0.002, 80.0)),
    ("adaptive_o2_tight", dict(order=2, rtol=1e-2, atol=1e-3), (0.002, 80.0)),
    ("adaptive_o3_pid", dict(order=3, rtol=0.02, atol=0.005, pcoeff=0.3, icoeff=0.5, dcoeff=0.1, h_init=0.2), (0.0292, 14.6)),
]
FAST_NFE = (1, 2, 3, 4, 5, 6, 9, 10)
FAST_SIGMAS = (0.0292, 14.6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    K = import_kdiffusion_sampling()
    problem = mf.make_problem()
    means, stds, weights = problem["means"], problem["stds"], problem["weights"]
    noise = problem["noise"]

    calls = {"n": 0}

    def model(x, sigma):
        calls["n"] += 1
        s = float(sigma[0])
        out = mf.gm_posterior_mean(x.numpy(), 1.0, s, means, stds, weights)
        return torch.from_numpy(out)

    tensors = {"means": means, "stds": stds, "weights": weights, "noise": noise}
    cases = []
    for name, kw, (smin, smax) in ADAPTIVE:
        x = torch.from_numpy(noise.copy()) * smax
        visited = []
        calls["n"] = 0
        out, info = K.sample_dpm_adaptive(
            model, x, smin, smax, disable=True, return_info=True,
            callback=lambda d: visited.append(float(d["sigma"])), **kw
        )
        assert calls["n"] == info["nfe"], (calls["n"], info)
        # sigma at the start of every attempt: the accepted step ends are the changes
        ends = [b for a, b in zip([smax] + visited, visited) if b != a]
        tensors[f"{name}.sample"] = out.numpy()
        tensors[f"{name}.accepted_sigmas"] = np.array(ends, dtype=np.float64)
        cases.append(dict(name=name, kind="adaptive", sigma_min=smin, sigma_max=smax, kwargs=kw,
                          info={k: int(v) for k, v in info.items()}))
    for nfe in FAST_NFE:
        smin, smax = FAST_SIGMAS
        x = torch.from_numpy(noise.copy()) * smax
        calls["n"] = 0
        out = K.sample_dpm_fast(model, x, smin, smax, nfe, disable=True)
        name = f"fast_{nfe}"
        tensors[f"{name}.sample"] = out.numpy()
        cases.append(dict(name=name, kind="fast", sigma_min=smin, sigma_max=smax, nfe=nfe, calls=calls["n"]))

    versions = {
        "k-diffusion": importlib.metadata.version("k-diffusion"),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    os.makedirs(args.out, exist_ok=True)
    meta = {"description": "k-diffusion sample_dpm_adaptive / sample_dpm_fast on the make_fixtures mixture "
            "(VE denoiser, x = noise * sigma_max), float64", "versions": json.dumps(versions)}
    mf.save_safetensors(os.path.join(args.out, "kdiffusion_dpm.safetensors"), tensors, meta)
    with open(os.path.join(args.out, "kdiffusion_dpm.json"), "w") as f:
        json.dump({"versions": versions, "problem": "tools/make_fixtures.py make_problem()", "cases": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
