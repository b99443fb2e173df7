#!/usr/bin/env python3
"""Per-step overhead of diffusers' ``scheduler.step`` (torch, CPU), the counterpart of
``benches/step.rs``, and the combined table ours / memcpy floor / diffusers.

For each scheduler and latent shape ([1,4,64,64] and [4,4,128,128], float32) the scheduler is set
to 20 steps (scaled-linear betas, diffusers' defaults otherwise), stepped to its middle step with
random model outputs (so multistep history is full), and then that step is timed repeatedly with
a precomputed model output: ``scheduler._step_index`` is reset before each call, so every call does
the same work. Heun's step is its two ``step`` calls (predictor + corrector). Also timed:
``sample.clone()`` (the torch copy floor). torch runs on 2 threads, as on the 2-core reference
machine.

Writes ``bench_results/step_diffusers{tag}.csv`` and, when ``bench_results/step_rust.csv`` (written by
``cargo bench --bench step``) exists, ``bench_results/step_table{tag}.md`` with both and the ratios (``--tag _1thread --threads 1``
for the single-thread comparison).

Run (repository root), in one sitting with the Rust bench:
    cargo bench --bench step -- --warm-up-time 1 --measurement-time 3
    .venv/bin/python tools/bench_diffusers_step.py
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
import warnings

import torch

from diffusers import (
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

warnings.filterwarnings("ignore")

SHAPES = [(1, 4, 64, 64), (4, 4, 128, 128)]
STEPS = 20
TIMED = 10
BETAS = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
# id (as in benches/step.rs), label, class, extra config
SOLVERS = [
    ("ddim", "DDIM", DDIMScheduler, {}),
    ("euler", "Euler", EulerDiscreteScheduler, {}),
    ("heun", "Heun (2 NFE)", HeunDiscreteScheduler, {}),
    ("dpmpp2m", "DPM-Solver++(2M)", DPMSolverMultistepScheduler, {}),
    ("dpmpp3m", "DPM-Solver++(3M)", DPMSolverMultistepScheduler, dict(solver_order=3)),
    ("unipc", "UniPC-bh2", UniPCMultistepScheduler, {}),
    ("deis", "DEIS-2", DEISMultistepScheduler, {}),
]


def timeit(fn, min_time: float) -> float:
    """Median seconds per call over batches lasting >= min_time / 10 each, for >= min_time."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > min_time / 10:
            break
        n *= 2
    samples = []
    t_end = time.perf_counter() + min_time
    while time.perf_counter() < t_end or len(samples) < 5:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def bench_solver(cls, extra, shape, min_time):
    g = torch.Generator().manual_seed(0)
    sched = cls(**BETAS, **extra)
    sched.set_timesteps(STEPS)
    if hasattr(sched, "is_scale_input_called"):
        sched.is_scale_input_called = True
    x = torch.randn(shape, generator=g)
    out = torch.randn(shape, generator=g)
    kw = dict(eta=0.0) if cls is DDIMScheduler else {}
    ts = sched.timesteps
    calls = 2 if cls is HeunDiscreteScheduler else 1
    timed = TIMED * calls if cls is HeunDiscreteScheduler else TIMED
    for i in range(timed):
        sched.step(torch.randn(shape, generator=g), ts[i], x, **kw)
    if cls is HeunDiscreteScheduler and sched.dt is not None:
        raise RuntimeError("Heun: timed pair must start in first-order state")

    if cls is DDIMScheduler:
        t = ts[TIMED]

        def one():
            sched.step(out, t, x, **kw)

    elif cls is HeunDiscreteScheduler:
        t0_, t1_ = ts[timed], ts[timed + 1]

        def one():
            sched._step_index = timed
            y = sched.step(out, t0_, x).prev_sample
            sched.step(out, t1_, y)

    else:
        t = ts[TIMED]

        def one():
            sched._step_index = TIMED
            sched.step(out, t, x, **kw)

    return timeit(one, min_time)


def combine(rust_csv: str, rows: list[dict], out_md: str) -> None:
    with open(rust_csv) as f:
        rust = list(csv.DictReader(f))
    ours = {(r["solver"], r["shape"]): r for r in rust}
    lines = [
        "| solver | shape | ours (us) | floor (us) | ours / floor | diffusers (us) | diffusers / ours |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o = ours.get((r["solver"], r["shape"]))
        d_us = float(r["us_per_step"])
        if o is None:
            lines.append(f"| {r['label']} | {r['shape']} | TODO (no Rust bench row) | | | {d_us:.1f} | |")
            continue
        ns, floor = float(o["ns_per_step"]), float(o["floor_ns"])
        lines.append(
            f"| {r['label']} | {r['shape']} | {ns / 1e3:.1f} | {floor / 1e3:.1f} | {ns / floor:.2f} | {d_us:.1f} | {d_us * 1e3 / ns:.1f}x |"
        )
    shapes = sorted({r["shape"] for r in rust})
    lines.append("")
    lines.append("| shape | Tensor::copy (us) | raw memcpy (us) | torch clone (us) |")
    lines.append("|---|---|---|---|")
    for s in shapes:
        o = next(r for r in rust if r["shape"] == s)
        clone = next((float(r["clone_us"]) for r in rows if r["shape"] == s), float("nan"))
        lines.append(f"| {s} | {float(o['tensor_copy_ns']) / 1e3:.1f} | {float(o['memcpy_ns']) / 1e3:.1f} | {clone:.1f} |")
    lines.append("")
    lines.append("| lincomb | shape | fused (us) | unfused reference (us) | fused / floor | unfused / fused |")
    lines.append("|---|---|---|---|---|---|")
    for s in shapes:
        for m in (2, 3, 4):
            f_ = ours.get((f"lincomb{m}", s))
            r_ = ours.get((f"lincomb_reference{m}", s))
            if f_ and r_:
                fn, rn = float(f_["ns_per_step"]), float(r_["ns_per_step"])
                lines.append(f"| {m} terms | {s} | {fn / 1e3:.1f} | {rn / 1e3:.1f} | {float(f_['ratio_to_floor']):.2f} | {rn / fn:.1f}x |")
    with open(out_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out_md}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default="bench_results")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of timing per case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix of the output files, e.g. _1thread")
    ap.add_argument("--rust-csv", default=None, help="Rust results to combine (default OUT_DIR/step_rust.csv)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    rows = []
    for shape in SHAPES:
        sid = "x".join(map(str, shape))
        x = torch.randn(shape)
        clone_us = timeit(lambda: x.clone(), args.min_time) * 1e6
        print(f"clone {sid}: {clone_us:.2f} us", flush=True)
        for sid_, label, cls, extra in SOLVERS:
            us = bench_solver(cls, extra, shape, args.min_time) * 1e6
            print(f"{label} {sid}: {us:.1f} us", flush=True)
            rows.append(dict(solver=sid_, label=label, shape=sid, us_per_step=f"{us:.2f}", clone_us=f"{clone_us:.3f}"))
    out_csv = os.path.join(args.out_dir, f"step_diffusers{args.tag}.csv")
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["solver", "label", "shape", "us_per_step", "clone_us"])
        w.writeheader()
        w.writerows(rows)
    meta = os.path.join(args.out_dir, f"step_diffusers{args.tag}.meta")
    with open(meta, "w") as f:
        import diffusers

        f.write(f"diffusers {diffusers.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print(f"wrote {out_csv}")
    rust_csv = args.rust_csv or os.path.join(args.out_dir, "step_rust.csv")
    if os.path.exists(rust_csv):
        combine(rust_csv, rows, os.path.join(args.out_dir, f"step_table{args.tag}.md"))
    else:
        print(f"no {rust_csv}: run `cargo bench --bench step` first for the combined table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
