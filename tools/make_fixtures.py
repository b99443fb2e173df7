#!/usr/bin/env python3
"""Generate the diffusers reference fixtures used by the Rust tests of `diffusion-samplers`.

Purpose
-------
Runs the *real* Hugging Face diffusers schedulers (pinned version, see
tools/requirements.txt) on a small analytic problem and dumps the results, so
that the Rust implementations can be checked for parity without Python at test
time. Writes, into the output directory:

* ``diffusers_parity.safetensors`` / ``diffusers_parity.json``
  A Gaussian-mixture problem (K=3 components, D=6 dims, N=8 samples, f64) with
  an exact posterior-mean denoiser acting as a "discrete-time model". Each case
  runs a diffusers scheduler exactly like a pipeline does
  (set_timesteps -> init_noise_sigma -> scale_model_input -> model -> step) in
  float64 torch tensors and stores the timesteps fed to the model and the final
  sample.
* ``diffusers_grids.safetensors``
  Timestep / sigma grids of DDIMScheduler, DPMSolverMultistepScheduler and
  EulerDiscreteScheduler for several spacings and step counts, plus diffusers'
  float32 ``alphas_cumprod`` tables (stored as f64) and an f64 recomputation of
  the squaredcos_cap_v2 table.

Everything is deterministic (numpy ``default_rng(SEED)``; no torch RNG is used).

Install (in a fresh virtual environment)
----------------------------------------
    python3.11 -m venv /path/to/venv
    /path/to/venv/bin/pip install -r tools/requirements.txt
    # (a CPU-only torch wheel of the same version gives the same results:
    #  --extra-index-url https://download.pytorch.org/whl/cpu)

Run (from the repository root)
------------------------------
    /path/to/venv/bin/python tools/make_fixtures.py --out tests/fixtures

The script runs single-threaded on the CPU and takes a few seconds.
"""

from __future__ import annotations

import os

# Keep torch / BLAS single-threaded (the machine is shared with a Rust build).
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import math
import sys
import warnings

import numpy as np
import torch

import diffusers
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from safetensors.numpy import load_file

torch.set_num_threads(1)
warnings.filterwarnings("ignore")  # deprecation chatter (algorithm_type="dpmsolver")

SEED = 20240601

def save_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Byte-deterministic safetensors writer (safetensors.numpy.save_file orders the metadata
    randomly). Header keys sorted, tensors laid out in sorted-name order, header padded with
    spaces to a multiple of 8 bytes, as the format allows. Only float64 is needed here."""
    header: dict = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}}
    blobs, off = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        assert a.dtype == np.float64, (name, a.dtype)
        b = a.astype("<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), sort_keys=False).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.chmod(path, 0o644)
    back = load_file(path)  # round-trip check with the reference reader
    assert back.keys() == tensors.keys()
    assert all(np.array_equal(back[k], tensors[k]) for k in tensors)


# --------------------------------------------------------------------------------------
# A. Gaussian-mixture problem and exact denoiser
# --------------------------------------------------------------------------------------
K, D, N = 3, 6, 8
STDS = np.array([0.15, 0.25, 0.2], dtype=np.float64)
WEIGHTS = np.array([0.5, 0.3, 0.2], dtype=np.float64)


def make_problem(seed: int = SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.uniform(-0.6, 0.6, size=(K, D)).astype(np.float64)
    noise = rng.standard_normal(size=(N, D)).astype(np.float64)
    return {"means": means, "stds": STDS.copy(), "weights": WEIGHTS.copy(), "noise": noise}


def gm_posterior_mean(x: np.ndarray, alpha: float, sigma: float, means, stds, weights) -> np.ndarray:
    """E[x0 | x] for x = alpha*x0 + sigma*eps, x0 ~ sum_k w_k N(mu_k, s_k^2 I). All f64."""
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[-1]
    var = alpha**2 * stds**2 + sigma**2  # [K]
    diff = x[:, None, :] - alpha * means[None, :, :]  # [N,K,D]
    sq = np.sum(diff * diff, axis=-1)  # [N,K]
    logr = np.log(weights)[None, :] - 0.5 * d * np.log(var)[None, :] - sq / (2.0 * var[None, :])
    m = np.max(logr, axis=1, keepdims=True)
    logr = logr - (m + np.log(np.sum(np.exp(logr - m), axis=1, keepdims=True)))
    r = np.exp(logr)  # [N,K]
    comp = means[None, :, :] + (alpha * stds**2 / var)[None, :, None] * diff  # [N,K,D]
    return np.sum(r[:, :, None] * comp, axis=1)


def gm_predictions(x, alpha, sigma, means, stds, weights):
    x0 = gm_posterior_mean(x, alpha, sigma, means, stds, weights)
    eps = (x - alpha * x0) / sigma
    v = alpha * eps - sigma * x0
    return x0, eps, v


def betas_f64(schedule: str, beta_start: float, beta_end: float, n: int = 1000) -> np.ndarray:
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, n, dtype=np.float64)
    if schedule == "scaled_linear":
        return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), n, dtype=np.float64) ** 2
    raise ValueError(schedule)


class DiscreteTimeGMModel:
    """Maps a diffusers timestep t (float; fractional t interpolates log k-sigma linearly
    over the index) to (alpha, sigma) from an f64 table and returns eps_hat or v_hat."""

    def __init__(self, problem, beta_schedule, beta_start, beta_end, prediction_type, num_train_timesteps=1000):
        self.p = problem
        betas = betas_f64(beta_schedule, beta_start, beta_end, num_train_timesteps)
        ac = np.cumprod(1.0 - betas)
        self.log_ks = np.log(np.sqrt((1.0 - ac) / ac))
        self.idx = np.arange(num_train_timesteps, dtype=np.float64)
        self.prediction_type = prediction_type

    def alpha_sigma(self, t: float) -> tuple[float, float]:
        ks = float(np.exp(np.interp(float(t), self.idx, self.log_ks)))
        a = 1.0 / math.sqrt(1.0 + ks * ks)
        return a, ks * a

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        t = float(t.item()) if isinstance(t, torch.Tensor) else float(t)
        alpha, sigma = self.alpha_sigma(t)
        xn = x.detach().cpu().to(torch.float64).numpy()
        _, eps, v = gm_predictions(xn, alpha, sigma, self.p["means"], self.p["stds"], self.p["weights"])
        out = eps if self.prediction_type == "epsilon" else v
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float64))


# --------------------------------------------------------------------------------------
# B. Parity runs
# --------------------------------------------------------------------------------------
PARITY_BETA = dict(beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)


def parity_cases() -> list[dict]:
    cases = []
    for sched in ("linear", "scaled_linear"):
        for pred in ("epsilon", "v_prediction"):
            for n in (10, 25):
                cases.append(
                    dict(
                        name=f"ddim_{sched}_{pred}_{n}",
                        cls=DDIMScheduler,
                        config=dict(**PARITY_BETA, beta_schedule=sched, prediction_type=pred),
                        steps=n,
                    )
                )
    for order in (2, 3):
        for sched in ("linear", "scaled_linear"):
            for pred in ("epsilon", "v_prediction"):
                for n in (10, 25):
                    cases.append(
                        dict(
                            name=f"dpmpp{order}m_{sched}_{pred}_{n}",
                            cls=DPMSolverMultistepScheduler,
                            config=dict(
                                **PARITY_BETA,
                                beta_schedule=sched,
                                prediction_type=pred,
                                solver_order=order,
                                algorithm_type="dpmsolver++",
                                solver_type="midpoint",
                            ),
                            steps=n,
                        )
                    )
    for n in (10, 25):
        # diffusers 0.42.1 raises ValueError for algorithm_type="dpmsolver" with the default
        # final_sigmas_type="zero" (scheduling_dpmsolver_multistep.py:328), so this case must
        # use final_sigmas_type="sigma_min": the run ends at sigma(t=0), not at sigma=0.
        cases.append(
            dict(
                name=f"dpm2m_linear_epsilon_{n}",
                cls=DPMSolverMultistepScheduler,
                config=dict(
                    **PARITY_BETA,
                    beta_schedule="linear",
                    prediction_type="epsilon",
                    solver_order=2,
                    algorithm_type="dpmsolver",
                    solver_type="midpoint",
                    final_sigmas_type="sigma_min",
                ),
                steps=n,
            )
        )
    for n in (10, 25):
        cases.append(
            dict(
                name=f"dpmpp2m_heun_linear_epsilon_{n}",
                cls=DPMSolverMultistepScheduler,
                config=dict(
                    **PARITY_BETA,
                    beta_schedule="linear",
                    prediction_type="epsilon",
                    solver_order=2,
                    algorithm_type="dpmsolver++",
                    solver_type="heun",
                ),
                steps=n,
            )
        )
    return cases


def run_pipeline(case: dict, problem: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    cfg = case["config"]
    sched = case["cls"](**cfg)
    model = DiscreteTimeGMModel(
        problem, cfg["beta_schedule"], cfg["beta_start"], cfg["beta_end"], cfg["prediction_type"], cfg["num_train_timesteps"]
    )
    sched.set_timesteps(case["steps"])
    x = torch.from_numpy(problem["noise"].copy()) * sched.init_noise_sigma
    assert x.dtype == torch.float64
    ts = []
    for t in sched.timesteps:
        ts.append(float(t))
        out = model(sched.scale_model_input(x, t), t)
        if isinstance(sched, DDIMScheduler):
            x = sched.step(out, t, x, eta=0.0).prev_sample
        else:
            x = sched.step(out, t, x).prev_sample
        assert x.dtype == torch.float64, x.dtype
    sigmas = None if isinstance(sched, DDIMScheduler) else f64(sched.sigmas)
    return np.asarray(ts, dtype=np.float64), x.numpy().astype(np.float64), sigmas


def denoiser_check(problem: dict) -> dict[str, np.ndarray]:
    """A few direct model evaluations so a Rust reimplementation of the model can be checked
    independently of any sampler (linear betas 0.00085..0.012, f64 table)."""
    ts = np.array([999.0, 500.0, 10.5, 0.0], dtype=np.float64)
    rng = np.random.default_rng(SEED + 1)
    x = rng.standard_normal(size=(N, D)).astype(np.float64)
    out = {"gm_check.x": x, "gm_check.t": ts}
    m = DiscreteTimeGMModel(problem, "linear", 0.00085, 0.012, "epsilon")
    alphas, sigmas, x0s, epss, vs = [], [], [], [], []
    for t in ts:
        a, s = m.alpha_sigma(t)
        x0, eps, v = gm_predictions(x, a, s, problem["means"], problem["stds"], problem["weights"])
        alphas.append(a)
        sigmas.append(s)
        x0s.append(x0)
        epss.append(eps)
        vs.append(v)
    out["gm_check.alpha"] = np.array(alphas)
    out["gm_check.sigma"] = np.array(sigmas)
    out["gm_check.x0"] = np.stack(x0s)
    out["gm_check.eps"] = np.stack(epss)
    out["gm_check.v"] = np.stack(vs)
    return out


def write_parity(out_dir: str, versions: dict) -> list[dict]:
    problem = make_problem()
    tensors: dict[str, np.ndarray] = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in problem.items()}
    tensors.update(denoiser_check(problem))
    manifest = []
    for case in parity_cases():
        ts, sample, sigmas = run_pipeline(case, problem)
        tensors[f"{case['name']}.sample"] = np.ascontiguousarray(sample)
        tensors[f"{case['name']}.timesteps"] = np.ascontiguousarray(ts)
        if sigmas is not None:
            tensors[f"{case['name']}.sigmas"] = sigmas
        manifest.append(
            {
                "name": case["name"],
                "class": case["cls"].__name__,
                "config": case["config"],
                "steps": case["steps"],
                "prediction_type": case["config"]["prediction_type"],
            }
        )
    meta = {
        **versions,
        "seed": str(SEED),
        "description": "Gaussian-mixture parity runs of diffusers schedulers; see diffusers_parity.json",
    }
    save_safetensors(os.path.join(out_dir, "diffusers_parity.safetensors"), tensors, meta)
    doc = {
        **versions,
        "seed": SEED,
        "problem": {
            "K": K,
            "D": D,
            "N": N,
            "means": "uniform[-0.6,0.6], tensor 'means' [K,D] f64",
            "stds": STDS.tolist(),
            "weights": WEIGHTS.tolist(),
            "noise": "standard normal, tensor 'noise' [N,D] f64; initial x = noise * init_noise_sigma",
            "data_model": "x0 ~ sum_k w_k N(mu_k, s_k^2 I); x = alpha*x0 + sigma*eps",
        },
        "model": {
            "description": (
                "exact posterior mean x0_hat (log-sum-exp responsibilities); eps_hat=(x-alpha*x0_hat)/sigma; "
                "v_hat=alpha*eps_hat-sigma*x0_hat; returns eps_hat for 'epsilon', v_hat for 'v_prediction'"
            ),
            "time_map": (
                "f64 numpy table: betas linear=np.linspace(bs,be,1000) or scaled_linear=np.linspace(sqrt(bs),sqrt(be),1000)**2; "
                "ac=cumprod(1-betas); ks=sqrt((1-ac)/ac); ks(t)=exp(np.interp(t, arange(1000), log ks)); "
                "alpha=1/sqrt(1+ks^2), sigma=ks*alpha"
            ),
        },
        "loop": (
            "sched=Cls(**config); sched.set_timesteps(steps); x=noise*sched.init_noise_sigma; for t in sched.timesteps: "
            "out=model(sched.scale_model_input(x,t),t); x=sched.step(out,t,x[,eta=0.0 for DDIM]).prev_sample; float64 tensors"
        ),
        "tensors": {
            "means": "[K,D] f64",
            "stds": "[K] f64",
            "weights": "[K] f64",
            "noise": "[N,D] f64",
            "{case}.sample": "[N,D] f64 final x",
            "{case}.timesteps": "[steps] f64 timesteps passed to the model",
            "{case}.sigmas": "[steps+1] DPMSolverMultistep cases only: scheduler.sigmas (float32 k-sigmas as f64, incl. final)",
            "gm_check.*": "direct model evaluations (linear betas 0.00085..0.012): x [N,D], t [4], alpha [4], sigma [4], x0/eps/v [4,N,D]",
        },
        "cases": manifest,
    }
    with open(os.path.join(out_dir, "diffusers_parity.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return manifest


# --------------------------------------------------------------------------------------
# C. Grids
# --------------------------------------------------------------------------------------
GRID_BETA = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
GRID_NS = (1, 4, 7, 10, 30, 50, 999)


def f64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


def dpm_unrounded(sched: DPMSolverMultistepScheduler, variant: str, n: int) -> np.ndarray:
    """Replicates DPMSolverMultistepScheduler.set_timesteps (0.42.1, lines 441-460) without rounding."""
    sigmas = np.array(((1 - sched.alphas_cumprod) / sched.alphas_cumprod) ** 0.5)
    log_sigmas = np.log(sigmas)
    if variant == "karras":
        s = sched._convert_to_karras(in_sigmas=np.flip(sigmas).copy(), num_inference_steps=n)
    elif variant == "lu_lambdas":
        s = np.exp(sched._convert_to_lu(in_lambdas=np.flip(log_sigmas.copy()), num_inference_steps=n))
    elif variant == "exponential":
        s = sched._convert_to_exponential(in_sigmas=np.flip(sigmas).copy(), num_inference_steps=n)
    else:
        raise ValueError(variant)
    return np.array([sched._sigma_to_t(x, log_sigmas) for x in s], dtype=np.float64)


def write_grids(out_dir: str, versions: dict) -> tuple[dict, list[str]]:
    tensors: dict[str, np.ndarray] = {}
    skipped: list[str] = []

    ddim_variants = {
        "leading0": dict(timestep_spacing="leading", steps_offset=0),
        "leading1": dict(timestep_spacing="leading", steps_offset=1),
        "linspace": dict(timestep_spacing="linspace"),
        "trailing": dict(timestep_spacing="trailing"),
    }
    dpm_variants = {
        **ddim_variants,
        "karras": dict(use_karras_sigmas=True),
        "exponential": dict(use_exponential_sigmas=True),
        "lu_lambdas": dict(use_lu_lambdas=True),
    }
    euler_variants = {
        "linspace": dict(timestep_spacing="linspace"),
        "leading0": dict(timestep_spacing="leading", steps_offset=0),
        "leading1": dict(timestep_spacing="leading", steps_offset=1),
        "trailing": dict(timestep_spacing="trailing"),
        "karras": dict(use_karras_sigmas=True),
        "exponential": dict(use_exponential_sigmas=True),
    }

    for n in GRID_NS:
        for v, kw in ddim_variants.items():
            key = f"ddim.{v}.{n}"
            try:
                s = DDIMScheduler(**GRID_BETA, **kw)
                s.set_timesteps(n)
                tensors[f"{key}.timesteps"] = f64(s.timesteps)
            except Exception as e:  # noqa: BLE001
                skipped.append(f"{key}: {type(e).__name__}: {e}")
        for v, kw in dpm_variants.items():
            key = f"dpm.{v}.{n}"
            try:
                s = DPMSolverMultistepScheduler(**GRID_BETA, final_sigmas_type="zero", **kw)
                s.set_timesteps(n)
                tensors[f"{key}.timesteps"] = f64(s.timesteps)
                tensors[f"{key}.sigmas"] = f64(s.sigmas)
                if v in ("karras", "exponential", "lu_lambdas"):
                    tensors[f"{key}.timesteps_unrounded"] = dpm_unrounded(s, v, n)
            except Exception as e:  # noqa: BLE001
                skipped.append(f"{key}: {type(e).__name__}: {e}")
        for v, kw in euler_variants.items():
            key = f"euler.{v}.{n}"
            try:
                s = EulerDiscreteScheduler(**GRID_BETA, **kw)
                s.set_timesteps(n)
                tensors[f"{key}.timesteps"] = f64(s.timesteps)
                tensors[f"{key}.sigmas"] = f64(s.sigmas)
                tensors[f"{key}.init_noise_sigma"] = f64([float(s.init_noise_sigma)])
            except Exception as e:  # noqa: BLE001
                skipped.append(f"{key}: {type(e).__name__}: {e}")

    tables = {
        "linear": dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
        "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        "squaredcos_cap_v2": dict(beta_schedule="squaredcos_cap_v2"),
        # extra: the linear table used by the parity fixtures
        "linear_00085_012": dict(beta_schedule="linear", beta_start=0.00085, beta_end=0.012),
    }
    for name, kw in tables.items():
        s = DDIMScheduler(num_train_timesteps=1000, **kw)
        tensors[f"alphas_cumprod.{name}"] = f64(s.alphas_cumprod)

    # f64 recomputation of squaredcos_cap_v2 (betas_for_alpha_bar, max_beta 0.999, Python floats)
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array(
        [min(1 - alpha_bar((i + 1) / 1000) / alpha_bar(i / 1000), 0.999) for i in range(1000)], dtype=np.float64
    )
    tensors["alphas_cumprod_f64.squaredcos_cap_v2"] = np.ascontiguousarray(np.cumprod(1.0 - betas))

    meta = {
        **versions,
        "config": json.dumps(GRID_BETA),
        "ns": json.dumps(list(GRID_NS)),
        "skipped": json.dumps(skipped),
        "description": (
            "ddim.{leading0,leading1,linspace,trailing}.{n}.timesteps; "
            "dpm.{leading0,leading1,linspace,trailing,karras,exponential,lu_lambdas}.{n}.{timesteps,sigmas} "
            "(final_sigmas_type zero; sigmas include the appended final sigma) and "
            "dpm.{karras,exponential,lu_lambdas}.{n}.timesteps_unrounded; "
            "euler.{linspace,leading0,leading1,trailing,karras,exponential}.{n}.{timesteps,sigmas,init_noise_sigma}; "
            "alphas_cumprod.{linear,scaled_linear,squaredcos_cap_v2,linear_00085_012} (diffusers float32 as f64); "
            "alphas_cumprod_f64.squaredcos_cap_v2"
        ),
    }
    save_safetensors(os.path.join(out_dir, "diffusers_grids.safetensors"), tensors, meta)
    return tensors, skipped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures", help="output directory (default: tests/fixtures)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    versions = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "generator": "tools/make_fixtures.py",
    }
    manifest = write_parity(args.out, versions)
    grids, skipped = write_grids(args.out, versions)
    print(f"parity: {len(manifest)} cases; grids: {len(grids)} tensors; skipped: {len(skipped)}")
    for s in skipped:
        print("  skipped", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
