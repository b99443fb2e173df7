#!/usr/bin/env python3
"""The best diffusers 0.42.1 option on the calibration benchmark problem (BENCHMARKS.md, section 6, "Calibrated schedules"):
every deterministic scheduler class and option combination we could think of, at a given NFE
budget, judged by the RMSE of the final sample against the exact probability-flow ODE endpoint on
held-out noises.

Problem: the file written by ``cargo run --release --example calibrate_mixture`` (key ``means``
[K, D], ``stds`` [K], ``weights`` [K], ``held_out`` [N, D] noises, ``exact_<schedule>`` [N, D]: the
exact endpoint at sigma = 0 of the ODE started from ``held_out`` at timestep 999, from the Rust
integrator). The model is the exact epsilon of the mixture, mapping a diffusers timestep to
(alpha, sigma) through an f64 table with log k-sigma interpolated for fractional timesteps
(``make_fixtures.DiscreteTimeGMModel``). Each run is the diffusers pipeline loop
(``set_timesteps``, ``x = noise * init_noise_sigma``, ``scale_model_input``, ``step``) in float64.

The judge is the exact ODE solution from ``noise`` at the run's first timestep to sigma = 0 (the
same problem for every option: Euler-type schedulers' ``init_noise_sigma = sigma_max`` start and
``final_sigmas_type = "sigma_min"`` ends count as part of their error, as in section 1); a run
starting below timestep 999 (``leading`` spacing) is judged against the exact solution from its
own start, integrated here with scipy's DOP853 (rtol = atol = 1e-10). The Rust endpoints are
checked against DOP853 on the first 32 rows before use.

Search: a screening pass over every combination on the first ``--screen`` held-out rows, then
the best ``--confirm`` combinations per class are rerun on all rows. Output: a CSV with one row
per (schedule, nfe, option) and the screening/confirm RMSEs.

Run from the repository root (single-threaded; ~15-30 minutes on 2 cores for NFE 5 and 10):
    python tools/calibration_diffusers.py --problem target/calibration/mixture_problem.safetensors \
        --nfe 5,10 --out bench_results/calibration_diffusers.csv
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import itertools
import math
import sys
import time
import warnings

import numpy as np
import torch
from safetensors.numpy import load_file
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

SCHEDULES = {
    "linear": dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
}
SIGMAS = {
    "default": {},
    "karras": dict(use_karras_sigmas=True),
    "exponential": dict(use_exponential_sigmas=True),
    "beta": dict(use_beta_sigmas=True),
}
SPACINGS = ("linspace", "leading", "trailing")


def options():
    """(class, label, config) for every combination searched."""
    out = []
    for sp in SPACINGS:
        for clip in (True, False):
            out.append((DDIMScheduler, f"clip_sample={clip},spacing={sp}", dict(clip_sample=clip, timestep_spacing=sp)))
        for prk in (True, False):
            out.append((PNDMScheduler, f"skip_prk_steps={prk},spacing={sp}", dict(skip_prk_steps=prk, timestep_spacing=sp)))
    sig_plus_lu = dict(SIGMAS, lu_lambdas=dict(use_lu_lambdas=True))
    for order, algo, stype, sig, sp, lof, final, eaf in itertools.product(
        (1, 2, 3), ("dpmsolver++", "dpmsolver"), ("midpoint", "heun"), sig_plus_lu, SPACINGS, (True, False),
        ("zero", "sigma_min"), (False, True),
    ):
        if (order == 1 and stype == "heun") or (algo == "dpmsolver" and final == "zero") or (eaf and not lof):
            continue  # same as midpoint / refused by diffusers / no-op
        cfg = dict(solver_order=order, algorithm_type=algo, solver_type=stype, timestep_spacing=sp,
                   lower_order_final=lof, final_sigmas_type=final, euler_at_final=eaf, **sig_plus_lu[sig])
        out.append((DPMSolverMultistepScheduler, f"order={order},{algo},{stype},{sig},{sp},lof={lof},final={final},eaf={eaf}", cfg))
    for order, algo, stype, sig, lof, final in itertools.product(
        (1, 2, 3), ("dpmsolver++", "dpmsolver"), ("midpoint", "heun"), SIGMAS, (True, False), ("zero", "sigma_min")
    ):
        if (order == 1 and stype == "heun") or (algo == "dpmsolver" and final == "zero"):
            continue
        cfg = dict(solver_order=order, algorithm_type=algo, solver_type=stype, lower_order_final=lof,
                   final_sigmas_type=final, **SIGMAS[sig])
        out.append((DPMSolverSinglestepScheduler, f"order={order},{algo},{stype},{sig},lof={lof},final={final}", cfg))
    for order, bh, x0, sig, sp, lof, final in itertools.product(
        (1, 2, 3), ("bh1", "bh2"), (True, False), SIGMAS, SPACINGS, (True, False), ("zero", "sigma_min")
    ):
        cfg = dict(solver_order=order, solver_type=bh, predict_x0=x0, timestep_spacing=sp, lower_order_final=lof,
                   final_sigmas_type=final, **SIGMAS[sig])
        out.append((UniPCMultistepScheduler, f"order={order},{bh},predict_x0={x0},{sig},{sp},lof={lof},final={final}", cfg))
    for order, sig, sp, lof in itertools.product((1, 2, 3), SIGMAS, SPACINGS, (True, False)):
        cfg = dict(solver_order=order, timestep_spacing=sp, lower_order_final=lof, **SIGMAS[sig])
        out.append((DEISMultistepScheduler, f"order={order},{sig},{sp},lof={lof}", cfg))
    for sig, sp in itertools.product(SIGMAS, SPACINGS):
        for final in ("zero", "sigma_min"):
            out.append((EulerDiscreteScheduler, f"{sig},{sp},final={final}", dict(timestep_spacing=sp, final_sigmas_type=final, **SIGMAS[sig])))
        for cls in (HeunDiscreteScheduler, LMSDiscreteScheduler, KDPM2DiscreteScheduler):
            out.append((cls, f"{sig},{sp}", dict(timestep_spacing=sp, **SIGMAS[sig])))
    return out


class Model(mf.DiscreteTimeGMModel):
    """The exact epsilon of the mixture; counts calls."""

    def __init__(self, problem, beta):
        super().__init__(problem, beta["beta_schedule"], beta["beta_start"], beta["beta_end"], "epsilon")
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return super().__call__(x, t)


def run(cls, config, steps, noise, model):
    sched = cls(**config)
    sched.set_timesteps(steps)
    x = torch.from_numpy(noise.copy()) * sched.init_noise_sigma
    if hasattr(sched, "is_scale_input_called"):
        sched.is_scale_input_called = True
    model.calls = 0
    ts = [float(t) for t in sched.timesteps]
    for t in sched.timesteps:
        out = model(sched.scale_model_input(x, t), t)
        x = sched.step(out, t, x, eta=0.0).prev_sample if cls is DDIMScheduler else sched.step(out, t, x).prev_sample
    return x.to(torch.float64).numpy(), ts[0], model.calls


def exact_dop853(problem, x, ab_from, rtol=1e-10):
    """Exact ODE solution from (alpha, sigma) = ab_from to sigma = 0, integrated in
    theta = atan2(sigma, alpha) on y = x / sqrt(alpha^2 + sigma^2), as GaussianMixture::exact_endpoint."""
    a0, s0 = ab_from
    rho0, th0 = math.hypot(a0, s0), math.atan2(s0, a0)
    shape = x.shape
    m, sd, w = problem["means"], problem["stds"], problem["weights"]

    def f(th, y):
        s, c = math.sin(th), math.cos(th)
        x0 = mf.gm_posterior_mean(y.reshape(shape), c, s, m, sd, w)
        eps = (y.reshape(shape) - c * x0) / s if s > 0 else None
        if eps is None:
            raise ValueError("sigma = 0 inside the integration")
        return (-s * x0 + c * eps).ravel()

    sol = solve_ivp(f, (th0, 1e-9), (x / rho0).ravel(), method="DOP853", rtol=rtol, atol=rtol)
    assert sol.success, sol.message
    y = sol.y[:, -1].reshape(shape)
    # the last 1e-9 of theta: one first-order step (error ~1e-18)
    return mf.gm_posterior_mean(y, math.cos(1e-9), math.sin(1e-9), m, sd, w)


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def steps_for(cls, config, nfe):
    """Largest step count whose run makes at most `nfe` model calls (1 or 2 per step)."""
    two = cls in (HeunDiscreteScheduler, KDPM2DiscreteScheduler)
    if cls is PNDMScheduler and not config.get("skip_prk_steps", False):
        return None  # its Runge-Kutta warm-up alone takes 12 calls
    return max(1, (nfe + 1) // 2) if two else nfe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problem", required=True)
    ap.add_argument("--nfe", default="5,10")
    ap.add_argument("--screen", type=int, default=2048)
    ap.add_argument("--confirm", type=int, default=3, help="best combinations per class rerun on all rows")
    ap.add_argument("--out", default="bench_results/calibration_diffusers.csv")
    args = ap.parse_args(argv)
    fx = load_file(args.problem)
    problem = {k: fx[k] for k in ("means", "stds", "weights")}
    noise = fx["held_out"]
    nfes = [int(v) for v in args.nfe.split(",")]
    rows = ["schedule,nfe,class,options,calls,first_t,rmse_screen,rmse_all"]
    for sname, beta in SCHEDULES.items():
        model = Model(problem, beta)
        exact = fx[f"exact_{sname}"]
        check = exact_dop853(problem, noise[:32], model.alpha_sigma(999.0))
        err = np.max(np.abs(check - exact[:32]))
        print(f"{sname}: Rust exact endpoint vs DOP853 on 32 rows: max abs {err:.2e}", flush=True)
        assert err < 1e-7, err
        exact_from = {999.0: exact}
        for nfe in nfes:
            t0 = time.time()
            screened = []
            for cls, label, extra in options():
                steps = steps_for(cls, extra, nfe)
                if steps is None:
                    continue
                config = dict(num_train_timesteps=1000, prediction_type="epsilon", **beta, **extra)
                sub = noise[: args.screen]
                try:
                    x, t_first, calls = run(cls, config, steps, sub, model)
                except Exception as e:  # noqa: BLE001  (combinations diffusers refuses)
                    print(f"  skip {cls.__name__} {label}: {type(e).__name__}: {e}", file=sys.stderr)
                    continue
                if calls > nfe or not np.all(np.isfinite(x)):
                    continue
                if t_first not in exact_from:
                    exact_from[t_first] = None  # computed on demand below
                key = (t_first, "screen")
                if key not in exact_from:
                    exact_from[key] = exact_dop853(problem, sub, model.alpha_sigma(t_first))
                ref = exact_from[999.0][: args.screen] if t_first == 999.0 else exact_from[key]
                screened.append((rmse(x, ref), cls, label, config, steps, calls, t_first))
            screened.sort(key=lambda r: r[0])
            print(f"{sname} NFE {nfe}: screened {len(screened)} runs in {time.time() - t0:.0f} s; best "
                  f"{screened[0][0]:.4e} {screened[0][1].__name__} {screened[0][2]}", flush=True)
            per_class: dict = {}
            for r in screened:
                per_class.setdefault(r[1], []).append(r)
            for cls, runs in per_class.items():
                for i, (e_s, _, label, config, steps, calls, t_first) in enumerate(runs):
                    e_all = ""
                    if i < args.confirm:
                        x, _, _ = run(cls, config, steps, noise, model)
                        if t_first not in exact_from or exact_from[t_first] is None:
                            exact_from[t_first] = exact_dop853(problem, noise, model.alpha_sigma(t_first))
                        e_all = f"{rmse(x, exact_from[t_first]):.6e}"
                        print(f"  {cls.__name__} {label}: screen {e_s:.4e} all {e_all}", flush=True)
                    rows.append(f'{sname},{nfe},{cls.__name__},"{label}",{calls},{t_first},{e_s:.6e},{e_all}')
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
