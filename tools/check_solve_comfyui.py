#!/usr/bin/env python3
"""Outside check of the `solve` example's ComfyUI mode against k-diffusion 0.1.1.post1.

For each ComfyUI sampler / scheduler pair, runs the sampler the way ComfyUI's KSampler runs it
for an epsilon model with Stable Diffusion's 1000-step table (the conventions are written out
below; ComfyUI itself is not installable here, its samplers for sigma-space models are
k-diffusion's, except `lms`, whose step into sigma = 0 returns the data prediction):

- sigmas: k-diffusion's get_sigmas_karras / _exponential and DiscreteSchedule.get_sigmas
  ("normal") on the float64 table, or the numpy second formulations of
  tools/fixtures_kdiffusion.py for the schedules only ComfyUI defines; N + 1 sigmas with the
  penultimate one dropped for dpm_2 and dpm_2_ancestral (KSampler.calculate_sigmas);
- start x = noise * sqrt(1 + sigma_0^2) (EPS.noise_scaling with max_denoise), or noise * sigma_0
  when sigma_0 is below the table's largest sigma;
- the model: the mixture's exact posterior mean D(x, sigma) in numpy, float64;
- the noise sampler: the `step_noise` slices in order.

then runs `cargo run --release --example solve -- --sampler ... --step-noise ...` on the same
problem and compares `sample` elementwise, `sigmas` and `nfe`. Prints one line per pair and
exits non-zero on a mismatch above 1e-5.

Run from the repository root (the venv of tools/requirements.txt plus
tools/requirements-kdiffusion.txt):
    .venv/bin/python tools/check_solve_comfyui.py [--steps 4 9]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures_kdiffusion as fk  # noqa: E402  (k-diffusion without its package __init__)
import make_fixtures as mf  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

K, KE = fk.K, fk.KE
SAMPLERS = {
    # ComfyUI name: (k-diffusion function, kwargs)
    "euler": ("sample_euler", {}),
    "euler_ancestral": ("sample_euler_ancestral", {}),
    "heun": ("sample_heun", {}),
    "dpm_2": ("sample_dpm_2", {}),
    "dpm_2_ancestral": ("sample_dpm_2_ancestral", {}),
    "lms": ("lms_comfy", {}),
    "dpmpp_2s_ancestral": ("sample_dpmpp_2s_ancestral", {}),
    "dpmpp_sde": ("sample_dpmpp_sde", {}),
    "dpmpp_2m": ("sample_dpmpp_2m", {}),
    "dpmpp_2m_sde": ("sample_dpmpp_2m_sde", {}),
    "dpmpp_2m_sde_heun": ("sample_dpmpp_2m_sde", {"solver_type": "heun"}),
    "dpmpp_3m_sde": ("sample_dpmpp_3m_sde", {}),
}
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta", "kl_optimal"]
DISCARD_PENULTIMATE = {"dpm_2", "dpm_2_ancestral"}


def comfy_sigmas(ks: np.ndarray, scheduler: str, n: int) -> np.ndarray:
    smin, smax = float(ks[0]), float(ks[-1])
    kd = lambda fn, *a, **kw: fk.f64(fk.with_default_dtype(torch.float64, fn, *a, **kw))  # noqa: E731
    if scheduler == "karras":
        return kd(K.get_sigmas_karras, n, smin, smax, rho=7.0)
    if scheduler == "exponential":
        return kd(K.get_sigmas_exponential, n, smin, smax)
    if scheduler == "normal":
        return kd(KE.DiscreteSchedule(torch.from_numpy(ks), quantize=False).get_sigmas, n)
    return fk.f64_references(ks, n)[scheduler]


def run_reference(sampler: str, sigmas: np.ndarray, x: np.ndarray, problem: dict, step_noise: np.ndarray):
    fn_name, kwargs = SAMPLERS[sampler]
    draws = iter(step_noise)
    calls = []

    def model(x, sigma):
        s = float(sigma.reshape(-1)[0])
        calls.append(s)
        return torch.from_numpy(mf.gm_posterior_mean(x.numpy(), 1.0, s, problem["means"], problem["stds"], problem["weights"]))

    noise_sampler = lambda sigma, sigma_next: torch.from_numpy(next(draws).copy())  # noqa: E731
    sig = torch.from_numpy(sigmas.copy())
    xt = torch.from_numpy(x.copy())
    saved = torch.randn_like
    torch.randn_like = torch.zeros_like  # k-diffusion's churn draws (unused: s_churn = 0)
    try:
        if fn_name == "lms_comfy":
            out = K.sample_lms(model, xt, sig[:-1], disable=True)
            out = model(out, sig[-2:-1])
        else:
            fn = getattr(K, fn_name)
            extra = {} if fn_name in ("sample_euler", "sample_heun", "sample_dpm_2", "sample_dpmpp_2m") else {"noise_sampler": noise_sampler}
            out = fn(model, xt, sig, disable=True, **kwargs, **extra)
    finally:
        torch.randn_like = saved
    return fk.f64(out), len(calls)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 9])
    args = ap.parse_args(argv)
    subprocess.run(["cargo", "build", "--release", "--example", "solve"], check=True)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    exe = os.path.join(target, "release", "examples", "solve")
    ks = fk.table_ksigmas("scaled_linear", 0.00085, 0.012)
    problem = mf.make_problem()
    rng = np.random.default_rng(7)
    step_noise = rng.standard_normal(size=(64,) + problem["noise"].shape)
    worst, failed = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        prob_path, noise_path, out_path = (os.path.join(tmp, f) for f in ("problem.safetensors", "noise.safetensors", "out.safetensors"))
        mf.save_safetensors(prob_path, {k: problem[k] for k in ("means", "stds", "weights", "noise")}, {})
        mf.save_safetensors(noise_path, {"step_noise": step_noise}, {})
        for sampler in SAMPLERS:
            for scheduler in SCHEDULERS:
                for n in args.steps:
                    sigmas = comfy_sigmas(ks, scheduler, n + 1 if sampler in DISCARD_PENULTIMATE else n)
                    if sampler in DISCARD_PENULTIMATE:
                        sigmas = np.concatenate([sigmas[:-2], sigmas[-1:]])
                    max_denoise = np.isclose(ks[-1], sigmas[0], rtol=1e-5, atol=0.0) or sigmas[0] > ks[-1]
                    x = problem["noise"] * (np.sqrt(1.0 + sigmas[0] ** 2) if max_denoise else sigmas[0])
                    want, nfe = run_reference(sampler, sigmas, x, problem, step_noise)
                    cmd = [exe, "--sampler", sampler, "--scheduler", scheduler, "--steps", str(n), "--problem", prob_path,
                           "--out", out_path, "--step-noise", noise_path]
                    subprocess.run(cmd, check=True, capture_output=True)
                    got = load_file(out_path)
                    err = float(np.max(np.abs(got["sample"] - want)))
                    serr = float(np.max(np.abs(got["sigmas"] - sigmas) / np.maximum(sigmas, 1e-300)))
                    ok = err <= 1e-5 and serr <= 1e-9 and int(got["nfe"][0]) == nfe
                    worst = max(worst, err)
                    failed += not ok
                    print(f"{'ok  ' if ok else 'FAIL'} {sampler:<20} {scheduler:<14} {n:>2} steps: max |diff| {err:.2e}, "
                          f"sigmas rel {serr:.1e}, nfe {int(got['nfe'][0])} vs {nfe}")
    print(f"worst max |diff| {worst:.2e}; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
