"""Forward time of the bundled MNIST UNet in diffusers/PyTorch on the CPU (the reference for
examples/bench_unet.rs; BENCHMARKS.md section "UNet forward").

    python -m venv .venv && .venv/bin/pip install -r tools/requirements.txt
    .venv/bin/python tools/bench_unet_torch.py --threads 2 --batches 1,16,64 --reps 7

Same model folder, same input as the Rust harness (x[i] = sin(0.37 i) over the flattened
[batch, 1, 32, 32] tensor, timestep 500), f32. Each batch size is warmed up, then timed `--reps`
times; prints one CSV line per batch size: impl,threads,batch,median_ms,min_ms,max_ms,out_mean_abs
(the last column lets the two harnesses' outputs be compared at a glance).
"""

import argparse
import math
import os
import statistics
import time

import torch
from diffusers import UNet2DModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "..", "models", "mnist-unet"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--header", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    unet = UNet2DModel.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    if args.header:
        print("impl,threads,batch,median_ms,min_ms,max_ms,cpu_ms,out_mean_abs")
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


if __name__ == "__main__":
    main()
