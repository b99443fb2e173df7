#!/usr/bin/env python3
"""Reference fixtures from k-diffusion 0.1.1.post1 (PyPI) for `diffusion-samplers`.

One section per fixture family, one output file each (`tests/fixtures/kdiffusion_<family>.safetensors`):

  schedules  sigma schedules (tests/sigma_schedules.rs): k-diffusion's own functions where it has
             them (get_sigmas_karras / _exponential / _polyexponential / _vp and
             external.DiscreteSchedule.get_sigmas, which is ComfyUI's "normal"), diffusers'
             _convert_to_beta (use_beta_sigmas), and for the schedules only ComfyUI defines
             (simple, ddim_uniform, sgm_uniform, beta, linear_quadratic, kl_optimal, laplace) and
             Align Your Steps, independent numpy/scipy formulations written from their
             definitions (ComfyUI itself is not installable here; no ComfyUI code is used).

  samplers   k-diffusion's samplers (tests/samplers_kd.rs): sample_euler (and churn), _euler_ancestral,
             _heun, _dpm_2, _dpm_2_ancestral, _lms (and ComfyUI's lms), _dpmpp_2s_ancestral,
             _dpmpp_sde, _dpmpp_2m, _dpmpp_2m_sde (midpoint / heun), _dpmpp_3m_sde on the Gaussian
             mixture, with supplied noise (about 20 s).

To add a family: write `section_<family>(versions) -> (tensors,
metadata)` and add it to SECTIONS; `--only <family>` regenerates one file.

k-diffusion is installed without its heavy dependencies (see tools/requirements-kdiffusion.txt):
its package __init__ imports torchvision/skimage, so `k_diffusion.sampling` is imported without
running the package __init__ (load_k_diffusion below).

Run from the repository root (CPU, single thread, about 2 s; byte-deterministic output):
    python -m venv .venv && .venv/bin/pip install -r tools/requirements.txt
    .venv/bin/pip install --no-deps -r tools/requirements-kdiffusion.txt
    .venv/bin/python tools/fixtures_kdiffusion.py --out tests/fixtures
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (single-thread environment, byte-deterministic writer)

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.stats  # noqa: E402
import torch  # noqa: E402

import diffusers  # noqa: E402
from diffusers import DPMSolverMultistepScheduler  # noqa: E402


def load_k_diffusion():
    """`k_diffusion.sampling` and `k_diffusion.external` without the package __init__ (which
    imports torchvision, skimage, wandb, ... that the sampling code does not use)."""
    for m in ["torchvision", "torchvision.transforms", "torchvision.transforms.functional"]:
        sys.modules.setdefault(m, types.ModuleType(m))
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
    spec = importlib.util.find_spec("k_diffusion")
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = pkg
    import k_diffusion.external as external
    import k_diffusion.sampling as sampling

    return sampling, external


K, KE = load_k_diffusion()

STEPS = [1, 2, 3, 7, 10, 30]
AYS_STEPS = STEPS + [20, 40]
N_TRAIN = 1000
# (name, diffusers beta_schedule, beta_start, beta_end): "sd" is Stable Diffusion's table
# (ComfyUI's "linear"), "ddpm" Ho et al.'s (ComfyUI's "sqrt_linear")
TABLES = [("sd", "scaled_linear", 0.00085, 0.012), ("ddpm", "linear", 1e-4, 0.02)]
AYS = {
    "sd1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "sdxl": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "svd": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}


def f64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to(torch.float64).numpy()
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


def with_default_dtype(dtype, fn, *args, **kwargs):
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_default_dtype(prev)


def append_zero(a) -> np.ndarray:
    return np.concatenate([f64(a), [0.0]])


# --------------------------------------------------------------------------------------
# Section: schedules
# --------------------------------------------------------------------------------------
def table_ksigmas(beta_schedule: str, start: float, end: float) -> np.ndarray:
    """k-sigmas sqrt((1 - abar) / abar) of the f64 table, ascending in the training index."""
    ac = np.cumprod(1.0 - mf.betas_f64(beta_schedule, start, end, N_TRAIN))
    return np.sqrt((1.0 - ac) / ac)


def interp_log(ks: np.ndarray, t: np.ndarray) -> np.ndarray:
    """sigma at fractional training index t: ln(sigma) linear in t (np.interp)."""
    return np.exp(np.interp(t, np.arange(len(ks), dtype=np.float64), np.log(ks)))


def f64_references(ks: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Second formulations (numpy / scipy, float64) of the schedules only ComfyUI defines."""
    N = len(ks)
    smin, smax = ks[0], ks[-1]
    out = {}
    out["normal_np"] = append_zero(interp_log(ks, np.linspace(N - 1, 0, n)))
    out["sgm_uniform"] = append_zero(interp_log(ks, np.linspace(N - 1, 0, n + 1)[:n]))
    out["simple"] = append_zero(ks[(N - 1) - np.floor(np.arange(n) * (N / n)).astype(int)])
    out["ddim_uniform"] = append_zero(ks[np.arange(1, N, max(N // n, 1))[::-1]])
    q = 1.0 - np.linspace(0.0, 1.0, n, endpoint=False)
    t = np.rint(scipy.stats.beta.ppf(q, 0.6, 0.6) * (N - 1))
    keep = np.concatenate([[True], t[1:] != t[:-1]])
    out["beta"] = append_zero(ks[t[keep].astype(int)])
    # kl_optimal: tan of a linear ramp in arctan(sigma) from sigma_max to sigma_min
    out["kl_optimal"] = append_zero(np.tan(np.arctan(smax) + np.linspace(0.0, 1.0, n) * (np.arctan(smin) - np.arctan(smax))))
    out["linear_quadratic"] = linear_quadratic_np(n) * smax
    x = np.linspace(0.0, 1.0, n)
    lmb = 0.0 - 0.5 * np.sign(0.5 - x) * np.log(1.0 - 2.0 * np.abs(0.5 - x) + 1e-5)
    out["laplace"] = append_zero(np.clip(np.exp(lmb), smin, smax))
    return out


def linear_quadratic_np(n: int, thr: float = 0.025) -> np.ndarray:
    """1 - x where x rises linearly from 0 to `thr` over n // 2 steps, then follows the quadratic
    that continues its value and slope and reaches 1 at step n (solved as a 3x3 system)."""
    if n == 1:
        return np.array([1.0, 0.0])
    L = n // 2
    A = np.array([[L * L, L, 1.0], [2.0 * L, 1.0, 0.0], [n * n, n, 1.0]])
    a, b, c = np.linalg.solve(A, np.array([thr, thr / L, 1.0]))
    i = np.arange(n + 1, dtype=np.float64)
    x = np.where(i < L, i * thr / L, a * i * i + b * i + c)
    x[-1] = 1.0
    return 1.0 - x


def comfy_f32(ks: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The same schedules at ComfyUI's precision: its sigma table and log-sigma table rounded to
    float32 (computed in float64 first), float32 torch arithmetic where ComfyUI uses tensors."""
    N = len(ks)
    sig32 = torch.from_numpy(ks).float()
    log32 = torch.from_numpy(np.log(ks)).float()

    def sigma_at(t: torch.Tensor) -> torch.Tensor:  # float32 interpolation of float32 log-sigmas
        t = t.float().clamp(0, N - 1)
        lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * log32[lo] + w * log32[hi]).exp()

    smin, smax = float(sig32[0]), float(sig32[-1])
    out = {}
    out["normal"] = append_zero(sigma_at(torch.linspace(N - 1, 0, n, dtype=torch.float32)))
    out["sgm_uniform"] = append_zero(sigma_at(torch.linspace(N - 1, 0, n + 1, dtype=torch.float32)[:n]))
    out["simple"] = append_zero(sig32[(N - 1) - np.floor(np.arange(n) * (N / n)).astype(int)])
    out["ddim_uniform"] = append_zero(sig32[np.arange(1, N, max(N // n, 1))[::-1].copy()])
    q = 1.0 - np.linspace(0.0, 1.0, n, endpoint=False)
    t = np.rint(scipy.stats.beta.ppf(q, 0.6, 0.6) * (N - 1))
    keep = np.concatenate([[True], t[1:] != t[:-1]])
    out["beta"] = append_zero(sig32[t[keep].astype(int)])
    if n > 1:  # ComfyUI divides by n - 1 (NaN at one step)
        a = torch.arange(n, dtype=torch.float32) / (n - 1)
        out["kl_optimal"] = append_zero((a * np.arctan(smin) + (1 - a) * np.arctan(smax)).tan())
    out["linear_quadratic"] = f64(torch.tensor(linear_quadratic_np(n), dtype=torch.float32) * sig32[-1])
    out["karras"] = f64(with_default_dtype(torch.float32, K.get_sigmas_karras, n, smin, smax, rho=7.0))
    out["exponential"] = f64(with_default_dtype(torch.float32, K.get_sigmas_exponential, n, smin, smax))
    return out


def pack(T: dict, key: str, lists: list) -> None:
    """Store lists of varying length as one tensor `key` (concatenated) and `key.lens`."""
    T[key] = f64(np.concatenate([f64(a) for a in lists]))
    T[f"{key}.lens"] = f64([len(a) for a in lists])


def section_schedules(versions: dict) -> tuple[dict, dict]:
    T: dict[str, np.ndarray] = {}
    for name, bs, start, end in TABLES:
        ks = table_ksigmas(bs, start, end)
        smin, smax = float(ks[0]), float(ks[-1])
        disc = KE.DiscreteSchedule(torch.from_numpy(ks), quantize=False)
        dpm = DPMSolverMultistepScheduler(beta_schedule=bs, beta_start=start, beta_end=end, use_beta_sigmas=True)
        R: dict[str, list] = {}
        for n in STEPS:
            row: dict[str, np.ndarray] = {}
            # k-diffusion itself, in float64 (torch default dtype float64)
            kd = lambda fn, *a, **kw: f64(with_default_dtype(torch.float64, fn, *a, **kw))  # noqa: E731
            row["karras"] = kd(K.get_sigmas_karras, n, smin, smax, rho=7.0)
            row["karras_rho5"] = kd(K.get_sigmas_karras, n, smin, smax, rho=5.0)
            row["exponential"] = kd(K.get_sigmas_exponential, n, smin, smax)
            row["polyexponential"] = kd(K.get_sigmas_polyexponential, n, smin, smax, rho=1.0)
            row["polyexponential_rho2"] = kd(K.get_sigmas_polyexponential, n, smin, smax, rho=2.0)
            # ComfyUI "normal" = DiscreteSchedule.get_sigmas (k-diffusion casts t to float32 there)
            row["normal"] = kd(disc.get_sigmas, n)
            row["normal_t32"] = f64(torch.linspace(N_TRAIN - 1, 0, n, dtype=torch.float32))
            # diffusers' use_beta_sigmas conversion on the f64 table
            row["beta_sigmas"] = append_zero(dpm._convert_to_beta(torch.from_numpy(ks[::-1].copy()), n))
            row.update(f64_references(ks, n))
            if name == "sd":
                for k, v in comfy_f32(ks, n).items():
                    row[f"f32.{k}"] = v
                row.setdefault("f32.kl_optimal", np.zeros(0))
            for k, v in row.items():
                R.setdefault(k, []).append(v)
        for k, lists in R.items():
            pack(T, f"{name}.{k}", lists)
    # ComfyUI beta: table indices at every step count 1..60 (rint boundaries against scipy's ppf)
    idx = []
    for n in range(1, 61):
        q = 1.0 - np.linspace(0.0, 1.0, n, endpoint=False)
        idx.append(np.rint(scipy.stats.beta.ppf(q, 0.6, 0.6) * (N_TRAIN - 1)))
    pack(T, "beta_index", idx)
    pack(T, "vp", [with_default_dtype(torch.float64, K.get_sigmas_vp, n) for n in STEPS])
    pack(T, "vp_custom", [with_default_dtype(torch.float64, K.get_sigmas_vp, n, beta_d=10.0, beta_min=0.5, eps_s=1e-2) for n in STEPS])
    # Align Your Steps: the paper's log-linear interpolation (np.interp of ln(sigma) over
    # linspace positions) of the published lists, n + 1 levels for n steps
    for model, levels in AYS.items():
        xs = np.linspace(0.0, 1.0, len(levels))
        ys = np.log(np.array(levels[::-1]))
        pack(T, f"ays.{model}", [np.exp(np.interp(np.linspace(0.0, 1.0, n + 1), xs, ys))[::-1] for n in AYS_STEPS])
    meta = dict(versions)
    meta["description"] = (
        "sigma schedules, one tensor per list family: values for every n of STEPS concatenated, "
        "`{key}.lens` their lengths. {table}.{schedule}: k-diffusion (float64 default dtype) karras, "
        "karras_rho5, exponential, polyexponential, polyexponential_rho2, normal (DiscreteSchedule."
        "get_sigmas; normal_t32 = its float32 t); diffusers beta_sigmas; numpy/scipy second "
        "formulations normal_np, sgm_uniform, simple, ddim_uniform, beta, kl_optimal, "
        "linear_quadratic, laplace; sd.f32.{schedule}: the same at ComfyUI's float32 precision "
        "(kl_optimal empty at n=1). beta_index: ComfyUI beta's table indices for n = 1..60. "
        "vp / vp_custom (beta_d=10, beta_min=0.5, eps_s=1e-2); ays.{model}: n+1 interpolated "
        "levels for n in AYS_STEPS. Tables: sd = scaled_linear 0.00085..0.012, ddpm = linear "
        "1e-4..0.02, 1000 steps."
    )
    meta["steps"] = str(STEPS)
    meta["ays_steps"] = str(AYS_STEPS)
    return T, meta


SECTIONS = {"schedules": section_schedules}


# --------------------------------------------------------------------------------------
# Section: samplers (tests/samplers_kd.rs)
# --------------------------------------------------------------------------------------
# The k-diffusion samplers on the Gaussian mixture of make_fixtures (K=3, D=6; N=2 samples), in
# k-diffusion's own coordinates (the VE sample x / alpha against ksigma), float64 throughout.
# The model is the exact posterior mean E[x0 | x] at (alpha, sigma) = (1, ksigma), written in
# numpy (make_fixtures.gm_posterior_mean), not the crate's. Noise is supplied: the noise_sampler
# argument (and torch.randn_like, for the churn of sample_euler / _heun / _dpm_2) hands out
# standard normal tensors from numpy in order and records the interval it was asked for.
KD_SAMPLERS = [
    # (case label, k-diffusion function, kwargs, grids)
    ("euler", "sample_euler", {}, "all"),
    ("euler_churn", "sample_euler", {"s_churn": 1.0, "s_noise": 1.0}, "churn"),
    ("euler_ancestral", "sample_euler_ancestral", {"eta": 1.0}, "all"),
    ("euler_ancestral_eta", "sample_euler_ancestral", {"eta": 0.5, "s_noise": 0.9}, "some"),
    ("heun", "sample_heun", {}, "all"),
    ("heun_churn", "sample_heun", {"s_churn": 1.0, "s_noise": 1.003}, "churn"),
    ("dpm_2", "sample_dpm_2", {}, "all"),
    ("dpm_2_churn", "sample_dpm_2", {"s_churn": 0.5, "s_noise": 1.0}, "churn"),
    ("dpm_2_ancestral", "sample_dpm_2_ancestral", {"eta": 1.0}, "all"),
    ("dpm_2_ancestral_eta", "sample_dpm_2_ancestral", {"eta": 0.6, "s_noise": 1.1}, "some"),
    ("lms", "sample_lms", {"order": 4}, "all"),
    ("lms_comfy", "lms_comfy", {"order": 4}, "all"),
    ("dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral", {"eta": 1.0}, "all"),
    ("dpmpp_2s_ancestral_eta", "sample_dpmpp_2s_ancestral", {"eta": 0.7, "s_noise": 0.8}, "some"),
    ("dpmpp_sde", "sample_dpmpp_sde", {"eta": 1.0}, "all"),
    ("dpmpp_sde_eta", "sample_dpmpp_sde", {"eta": 0.5, "s_noise": 0.9, "r": 1.0 / 3.0}, "some"),
    ("dpmpp_2m", "sample_dpmpp_2m", {}, "all"),
    ("dpmpp_2m_sde", "sample_dpmpp_2m_sde", {"eta": 1.0, "solver_type": "midpoint"}, "all"),
    ("dpmpp_2m_sde_heun", "sample_dpmpp_2m_sde", {"eta": 1.0, "solver_type": "heun"}, "all"),
    ("dpmpp_2m_sde_eta", "sample_dpmpp_2m_sde", {"eta": 0.5, "s_noise": 0.9}, "some"),
    ("dpmpp_3m_sde", "sample_dpmpp_3m_sde", {"eta": 1.0}, "all"),
    ("dpmpp_3m_sde_eta", "sample_dpmpp_3m_sde", {"eta": 0.5, "s_noise": 0.9}, "some"),
]
SD_SMIN, SD_SMAX = 0.029167532920837402, 14.614641189575195  # Stable Diffusion's table ends (float32)


def kd_grids(which: str) -> list[tuple[str, np.ndarray]]:
    """(label, sigmas) for a sampler: Karras over Stable Diffusion's range ending at 0 (2 and 8
    steps), an exponential grid ending at sigma_min > 0 (6 steps); "churn": Karras from 10 (so that
    sigma_hat = 1.1 sigma_max stays inside the table's range for the VP runs); "some": two grids.
    (2 and 8 Karras steps; the problem's first 2 noise rows: the fixture stays small.)"""
    kd = lambda fn, *a, **kw: f64(with_default_dtype(torch.float64, fn, *a, **kw))  # noqa: E731
    karras = [(f"karras{n}", kd(K.get_sigmas_karras, n, SD_SMIN, SD_SMAX, rho=7.0)) for n in (2, 8)]
    expo = [("exp6min", kd(K.get_sigmas_exponential, 7, SD_SMIN, SD_SMAX)[:-1])]
    if which == "churn":
        return [(f"karras{n}from10", kd(K.get_sigmas_karras, n, 0.05, 10.0, rho=7.0)) for n in (3, 8)]
    if which == "some":
        return [karras[1], expo[0]]
    return karras + expo


class SuppliedNoise:
    """Standard normal [N, D] tensors from numpy, handed out in order; records each request's
    interval ((-1, -1) for torch.randn_like, which has none)."""

    def __init__(self, seed: int, shape):
        self.rng = np.random.default_rng(seed)
        self.shape = shape
        self.draws: list[np.ndarray] = []
        self.intervals: list[tuple[float, float]] = []

    def _next(self, interval) -> torch.Tensor:
        z = self.rng.standard_normal(size=self.shape)
        self.draws.append(z)
        self.intervals.append(interval)
        return torch.from_numpy(z.copy())

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        return self._next((float(sigma), float(sigma_next)))

    def randn_like(self, x) -> torch.Tensor:
        return self._next((-1.0, -1.0))


def run_kd_sampler(fn_name: str, kwargs: dict, sigmas: np.ndarray, x_start: np.ndarray, problem: dict, noise: SuppliedNoise):
    means, stds, weights = problem["means"], problem["stds"], problem["weights"]
    calls = []

    def model(x, sigma):
        s = float(sigma.reshape(-1)[0])
        calls.append(s)
        return torch.from_numpy(mf.gm_posterior_mean(x.numpy(), 1.0, s, means, stds, weights))

    sig = torch.from_numpy(sigmas.copy())
    x = torch.from_numpy(x_start.copy())
    saved = torch.randn_like
    # the churn draws of sample_euler / _heun / _dpm_2 (k-diffusion draws on every step and uses
    # the draw only where gamma > 0; without churn nothing is used, so nothing is recorded)
    torch.randn_like = noise.randn_like if kwargs.get("s_churn", 0.0) > 0.0 else torch.zeros_like
    try:
        if fn_name == "lms_comfy" and sigmas[-1] == 0.0:
            # ComfyUI's sample_lms: k-diffusion's order-4 steps, then x = denoised into sigma = 0
            x = K.sample_lms(model, x, sig[:-1], disable=True, **kwargs)
            x = model(x, sig[-2:-1])
        elif fn_name == "lms_comfy":
            x = K.sample_lms(model, x, sig, disable=True, **kwargs)
        else:
            fn = getattr(K, fn_name)
            extra = {} if fn_name in ("sample_euler", "sample_heun", "sample_dpm_2", "sample_lms", "sample_dpmpp_2m") else {"noise_sampler": noise}
            x = fn(model, x, sig, disable=True, **kwargs, **extra)
    finally:
        torch.randn_like = saved
    return f64(x), calls


def section_samplers(versions: dict) -> tuple[dict, dict]:
    problem = mf.make_problem()
    problem["noise"] = problem["noise"][:2]
    T: dict[str, np.ndarray] = {k: problem[k] for k in ("means", "stds", "weights", "noise")}
    cases = []
    for ci, (label, fn_name, kwargs, which) in enumerate(KD_SAMPLERS):
        for grid, sigmas in kd_grids(which):
            name = f"{label}.{grid}"
            # k-diffusion's start: noise * sigma_0 (a VE sample at sigma_0)
            x_start = problem["noise"] * sigmas[0]
            noise = SuppliedNoise(1000 + ci, problem["noise"].shape)
            out, calls = run_kd_sampler(fn_name, kwargs, sigmas, x_start, problem, noise)
            T[f"{name}.sigmas"] = f64(sigmas)
            T[f"{name}.out"] = out
            T[f"{name}.calls"] = f64(calls)
            if noise.draws:
                T[f"{name}.noise"] = f64(np.stack(noise.draws))
                T[f"{name}.intervals"] = f64(noise.intervals)
            cases.append(name)
    meta = dict(versions)
    meta["description"] = (
        "k-diffusion samplers on the Gaussian mixture `means` [3,6], `stds` [3], `weights` [3] "
        "(exact posterior mean in numpy at alpha = 1, sigma = ksigma, float64). Per case "
        "`{sampler}.{grid}`: `sigmas` (the k-diffusion grid; the start is `noise` [2,6] * sigmas[0]), "
        "`out` (k-diffusion's result), `calls` (the sigmas the model was called at, in order), "
        "for stochastic runs `noise` [S, 2, 6] (the supplied draws in order) and `intervals` [S, 2] (the (sigma, "
        "sigma_next) each draw was asked for; (-1, -1) for torch.randn_like, the churn). lms_comfy is "
        "ComfyUI's lms: k-diffusion's steps, then the data prediction on the step into sigma = 0."
    )
    meta["cases"] = " ".join(cases)
    meta["samplers"] = repr([(l, f, k) for l, f, k, _ in KD_SAMPLERS])
    return T, meta


SECTIONS["samplers"] = section_samplers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--only", choices=sorted(SECTIONS), action="append")
    args = ap.parse_args(argv)
    versions = {
        "k_diffusion": importlib.metadata.version("k-diffusion"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "diffusers": diffusers.__version__,
    }
    for name in args.only or sorted(SECTIONS):
        tensors, meta = SECTIONS[name](versions)
        path = os.path.join(args.out, f"kdiffusion_{name}.safetensors")
        mf.save_safetensors(path, tensors, meta)
        print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
