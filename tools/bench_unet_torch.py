"""Forward time of the bundled MNIST UNet in diffusers/PyTorch on the CPU, and the one-sitting
comparison with the Rust harness (BENCHMARKS.md section 5, "UNet forward on the CPU: ours vs PyTorch").

    python -m venv .venv && .venv/bin/pip install -r tools/requirements.txt
    .venv/bin/python tools/bench_unet_torch.py --threads 2 --batches 1,16,64 --reps 7

Same model folder, same input as examples/bench_unet.rs (x[i] = sin(0.37 i) over the flattened
[batch, 1, 32, 32] tensor, timestep 500), f32. Each batch size is warmed up, then timed `--reps`
times; prints one CSV line per batch size:
impl,threads,batch,median_ms,min_ms,max_ms,cpu_ms,out_mean_abs, where cpu_ms is the process CPU
time (all threads) per timed forward and the last column lets the harnesses' outputs be compared
at a glance.

One sitting (`--sitting`): alternate, round by round, every Rust harness given with
`--rust "NAME=PATH [ARGS]"` (a built examples/bench_unet binary, e.g. this commit's, the same with
`--composed`, an older one's) and this script's own measurement (each in a fresh process), write every line to `--csv`, and
print a Markdown table: per implementation and batch size the median over rounds of the
per-round median (and the range of the per-round medians), the CPU time, and the ratio to
PyTorch (median and range over rounds, each round's ratio taken within that round).

    cargo build --release --features unet --example bench_unet
    .venv/bin/python tools/bench_unet_torch.py --sitting --rounds 5 \\
        --rust fused=target/release/examples/bench_unet \\
        --rust "composed=target/release/examples/bench_unet --composed" --csv bench_results/unet_forward.csv
"""

import argparse
import csv
import io
import math
import os
import shlex
import statistics
import subprocess
import sys
import time

FIELDS = ["impl", "threads", "batch", "median_ms", "min_ms", "max_ms", "cpu_ms", "out_mean_abs"]


def measure(args):
    import torch
    from diffusers import UNet2DModel

    torch.set_num_threads(args.threads)
    unet = UNet2DModel.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    if args.header:
        print(",".join(FIELDS))
    for b in [int(s) for s in args.batches.split(",")]:
        n = b * 32 * 32
        x = torch.sin(0.37 * torch.arange(n, dtype=torch.float64)).to(torch.float32).reshape(b, 1, 32, 32)
        t = torch.tensor([500.0])
        times = []
        with torch.inference_mode():
            for _ in range(args.warmup):
                out = unet(x, t).sample
            cpu0 = time.process_time()
            for _ in range(args.reps):
                t0 = time.perf_counter()
                out = unet(x, t).sample
                times.append((time.perf_counter() - t0) * 1e3)
            cpu_ms = (time.process_time() - cpu0) * 1e3 / args.reps
        mean_abs = out.abs().mean().item()
        print(
            f"torch,{args.threads},{b},{statistics.median(times):.2f},{min(times):.2f},{max(times):.2f},{cpu_ms:.1f},"
            f"{mean_abs:.6f}",
            flush=True,
        )
        assert math.isfinite(mean_abs)


def run_lines(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [r for r in csv.DictReader(io.StringIO(",".join(FIELDS) + "\n" + out)) if r["impl"] != "impl"]


def sitting(args):
    rust = []
    for spec in args.rust:
        name, _, cmd = spec.partition("=")
        if not cmd:
            sys.exit(f"--rust {spec}: expected NAME=PATH [ARGS]")
        rust.append((name, shlex.split(cmd)))
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    common = ["--batches", args.batches, "--reps", str(args.reps), "--warmup", str(args.warmup)]
    rows = []
    for r in range(args.rounds):
        cmds = [(name, cmd + ["--model", args.model] + common) for name, cmd in rust]
        cmds.append(("torch", [sys.executable, __file__, "--threads", str(args.threads), "--model", args.model] + common))
        if r % 2 == 1:
            cmds.reverse()  # alternate the order as well
        for name, cmd in cmds:
            load = os.getloadavg()[0]
            for line in run_lines(cmd, env):
                line.update(impl=name, round=r, load=f"{load:.2f}")
                rows.append(line)
                print(",".join(str(line[k]) for k in FIELDS + ["round", "load"]), flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS + ["round", "load"])
            w.writeheader()
            w.writerows(rows)
    names = [n for n, _ in rust] + ["torch"]
    batches = [int(s) for s in args.batches.split(",")]
    loads = [float(r["load"]) for r in rows]
    print(
        f"\n{args.rounds} rounds, {args.reps} timed forwards per batch size per round, {args.threads} threads, "
        f"load average {min(loads):.1f}-{max(loads):.1f}\n"
    )
    print("| impl | batch | wall ms: median (range of round medians) | CPU ms per forward | ratio to torch: median (range) |")
    print("|---|---|---|---|---|")
    for b in batches:
        per = {n: {int(r["round"]): r for r in rows if r["impl"] == n and int(r["batch"]) == b} for n in names}
        for n in names:
            meds = [float(r["median_ms"]) for r in per[n].values()]
            cpu = statistics.median(float(r["cpu_ms"]) for r in per[n].values())
            ratios = [
                float(per[n][k]["median_ms"]) / float(per["torch"][k]["median_ms"]) for k in per[n] if k in per["torch"]
            ]
            ratio = "" if n == "torch" else f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            print(f"| {n} | {b} | {statistics.median(meds):.1f} ({min(meds):.1f}-{max(meds):.1f}) | {cpu:.0f} | {ratio} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "mnist-unet"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--header", action="store_true")
    ap.add_argument("--sitting", action="store_true", help="alternate the --rust harnesses and torch, then summarise")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rust", action="append", default=[], metavar="NAME=PATH [ARGS]")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    if args.sitting:
        sitting(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
