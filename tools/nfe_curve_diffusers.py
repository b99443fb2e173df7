#!/usr/bin/env python3
"""NFE-vs-error curves of the real diffusers schedulers, in the CSV format of
`examples/nfe_curve.rs`, so that one plot overlays ours and diffusers'.

Problem (shared with the Rust side): the Gaussian mixture and noise of
``tools/make_fixtures.py`` (``make_problem()``: K=3, D=6, 8 noise rows; the Rust example reads
the same arrays from ``tests/fixtures/diffusers_parity.safetensors``), epsilon prediction through
``make_fixtures.DiscreteTimeGMModel`` (f64 table, log k-sigma interpolation for fractional
timesteps), on DDPM's linear betas (1e-4..0.02) and Stable Diffusion's scaled-linear betas
(0.00085..0.012). Each run is the pipeline loop of ``make_fixtures.run_pipeline`` (float64
tensors). The reference is the exact probability-flow ODE solution from the run's first timestep
(scipy DOP853, rtol = atol = 1e-12, integrated in theta = atan2(sigma, alpha) exactly as
``GaussianMixture::exact_endpoint`` does).

Columns: problem, schedule, source (= diffusers), solver, settings (= diffusers), nfe, steps,
rmse (final sample vs the exact solution where the run ends: sigma = 0, or for DEIS, which has no
``final_sigmas_type``, the last k-sigma ``sigma(t=0)``), rmse_last_call (sample fed to the last scheduler.step, i.e.
at the last network call, vs the exact solution at that timestep), wall_s.

Run (repository root):
    .venv/bin/python tools/nfe_curve_diffusers.py            # -> bench_results/nfe_diffusers.csv
then ``cargo run --release --example nfe_curve`` plots both.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import math
import sys
import time
import warnings

import numpy as np
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

NFES = (4, 5, 6, 8, 10, 15, 20, 25, 50)
SCHEDULES = {
    "linear": dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
}
# (solver label, class, extra config, network calls per step is 2 (Heun))
SOLVERS = [
    ("DDIM", DDIMScheduler, {}, False),
    ("Euler", EulerDiscreteScheduler, {}, False),
    ("Heun", HeunDiscreteScheduler, {}, True),
    ("DPM++2M", DPMSolverMultistepScheduler, {}, False),
    ("DPM++3M", DPMSolverMultistepScheduler, dict(solver_order=3), False),
    ("UniPC-bh2", UniPCMultistepScheduler, {}, False),
    ("DEIS-2", DEISMultistepScheduler, {}, False),
    ("DEIS-3", DEISMultistepScheduler, dict(solver_order=3), False),
]
HEADER = "problem,schedule,source,solver,settings,nfe,steps,rmse,rmse_last_call,wall_s"


def posterior(x: np.ndarray, a: float, s: float, means, stds, weights):
    """(E[x0|x], E[eps|x]) for x = a x0 + s eps, both finite at s = 0 and at a = 0."""
    d = x.shape[-1]
    var = a**2 * stds**2 + s**2
    diff = x[:, None, :] - a * means[None, :, :]
    sq = np.sum(diff * diff, axis=-1)
    logr = np.log(weights)[None, :] - 0.5 * d * np.log(var)[None, :] - sq / (2.0 * var[None, :])
    logr -= logr.max(axis=1, keepdims=True)
    r = np.exp(logr)
    r /= r.sum(axis=1, keepdims=True)
    x0 = np.sum(r[:, :, None] * (means[None] + (a * stds**2 / var)[None, :, None] * diff), axis=1)
    eps = np.sum(r[:, :, None] * ((s / var)[None, :, None] * diff), axis=1)
    return x0, eps


def exact(problem, x: np.ndarray, ab_from, ab_to) -> np.ndarray:
    """Exact ODE solution from (alpha, sigma) = ab_from to ab_to, started at x (VP coordinates)."""
    (a0, s0), (a1, s1) = ab_from, ab_to
    rho0, rho1 = math.hypot(a0, s0), math.hypot(a1, s1)
    th0, th1 = math.atan2(s0, a0), math.atan2(s1, a1)
    shape = x.shape
    m, sd, w = problem["means"], problem["stds"], problem["weights"]

    def f(th, y):
        s, c = math.sin(th), math.cos(th)
        x0, eps = posterior(y.reshape(shape), c, s, m, sd, w)
        return (-s * x0 + c * eps).ravel()

    if th0 == th1:
        return x.copy()
    sol = solve_ivp(f, (th0, th1), (x / rho0).ravel(), method="DOP853", rtol=1e-12, atol=1e-12)
    assert sol.success, sol.message
    return sol.y[:, -1].reshape(shape) * rho1


def run(cls, config: dict, steps: int, problem, model):
    """Pipeline loop; returns (final x, x at the last call in VP coordinates, first t, last t, nfe)."""
    sched = cls(**config)
    sched.set_timesteps(steps)
    x = torch.from_numpy(problem["noise"].copy()) * sched.init_noise_sigma
    if hasattr(sched, "is_scale_input_called"):
        sched.is_scale_input_called = True
    ts = [float(t) for t in sched.timesteps]
    x_last = None
    for i, t in enumerate(sched.timesteps):
        if i == len(ts) - 1:
            x_last = x.clone()
            sig = getattr(sched, "sigmas", None)
            if cls in (EulerDiscreteScheduler, HeunDiscreteScheduler):
                # k-diffusion (VE) coordinates: x_VP = x / sqrt(sigma^2 + 1)
                s = float(sig[sched.step_index if sched.step_index is not None else i])
                x_last = x_last / math.sqrt(s * s + 1.0)
        out = model(sched.scale_model_input(x, t), t)
        if cls is DDIMScheduler:
            x = sched.step(out, t, x, eta=0.0).prev_sample
        else:
            x = sched.step(out, t, x).prev_sample
    # where the run ends: sigma = 0, or (DEIS, final_sigmas_type="sigma_min") the last k-sigma
    ks_end = float(sched.sigmas[-1]) if hasattr(sched, "sigmas") else 0.0
    end = (1.0, 0.0) if ks_end == 0.0 else (1.0 / math.sqrt(1.0 + ks_end**2), ks_end / math.sqrt(1.0 + ks_end**2))
    return x.to(torch.float64).numpy(), x_last.to(torch.float64).numpy(), ts[0], ts[-1], len(ts), end


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_results/nfe_diffusers.csv")
    ap.add_argument("--nfe", default=",".join(map(str, NFES)))
    args = ap.parse_args(argv)
    nfes = [int(v) for v in args.nfe.split(",")]
    problem = mf.make_problem()
    fx = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "diffusers_parity.safetensors")
    if os.path.exists(fx):  # the Rust side reads the noise from the fixture: it must be the same
        from safetensors.numpy import load_file

        stored = load_file(fx)
        assert np.array_equal(stored["noise"], problem["noise"]) and np.array_equal(stored["means"], problem["means"])
    rows = [HEADER]
    cache: dict = {}
    for sname, beta in SCHEDULES.items():
        model = mf.DiscreteTimeGMModel(problem, beta["beta_schedule"], beta["beta_start"], beta["beta_end"], "epsilon")
        for label, cls, extra, two in SOLVERS:
            done = set()
            for nfe in nfes:
                steps = max(1, math.ceil(nfe / 2)) if two else nfe
                if steps in done:
                    continue
                done.add(steps)
                config = dict(num_train_timesteps=1000, prediction_type="epsilon", **beta, **extra)
                t0 = time.perf_counter()
                try:
                    x_end, x_last, t_first, t_last, calls, end = run(cls, config, steps, problem, model)
                except Exception as e:  # noqa: BLE001
                    print(f"{sname} {label} {steps} steps: {type(e).__name__}: {e}", file=sys.stderr)
                    continue
                wall = time.perf_counter() - t0
                start = model.alpha_sigma(t_first)
                key_end = (sname, t_first, end)
                if key_end not in cache:
                    cache[key_end] = exact(problem, problem["noise"], start, end)
                key_last = (sname, t_first, t_last)
                if key_last not in cache:
                    cache[key_last] = exact(problem, problem["noise"], start, model.alpha_sigma(t_last))
                row = (
                    f"gm,{sname},diffusers,{label},diffusers,{calls},{steps},"
                    f"{rmse(x_end, cache[key_end]):.6e},{rmse(x_last, cache[key_last]):.6e},{wall:.4e}"
                )
                print(row, flush=True)
                rows.append(row)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
