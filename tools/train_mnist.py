#!/usr/bin/env python3
"""Train the small MNIST UNet bundled under models/mnist-unet/ (diffusers UNet2DModel, epsilon
objective, 1000-step linear-beta DDPM schedule 1e-4..0.02) on the CPU.

Data: the full 60k MNIST training set in IDX format (gzipped or not), padded 28x28 -> 32x32 with
zeros (background) and scaled to [-1, 1].

Usage (about 70 minutes on 2 shared CPU cores; checkpoints are written every --save-every steps
so a partial run is usable):

    nice -n 19 .venv/bin/python tools/train_mnist.py \
        --data /path/to/mnist --out target/mnist-train --steps 6000 --threads 2

Then convert the EMA weights to the committed f16 model folder:

    .venv/bin/python tools/train_mnist.py --export target/mnist-train/ema \
        --out models/mnist-unet

Deterministic given the seed (torch CPU kernels may still differ across machines/thread counts).
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

# The model configuration shipped in models/mnist-unet/config.json.
UNET_CONFIG = dict(
    sample_size=32,
    in_channels=1,
    out_channels=1,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
    attention_head_dim=32,
)

SCHEDULER_CONFIG = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "variance_type": "fixed_small",
}


def read_idx(path):
    """Read an IDX file (optionally .gz) into a numpy uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def find(data_dir, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{stem}(.gz) not found in {data_dir}")


def load_mnist(data_dir, split="train"):
    """Images as float32 [-1, 1], shape [N, 1, 32, 32] (2-pixel zero padding = -1), and labels."""
    prefix = "train" if split == "train" else "t10k"
    imgs = read_idx(find(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, f"{prefix}-labels-idx1-ubyte"))
    x = imgs.astype(np.float32) / 127.5 - 1.0
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)), constant_values=-1.0)
    return x[:, None], labels.astype(np.int64)


def make_unet():
    from diffusers import UNet2DModel
    return UNet2DModel(**UNET_CONFIG)


def export(src, out):
    """Load a diffusers checkpoint folder and write it as f16 safetensors + configs."""
    from diffusers import UNet2DModel
    model = UNet2DModel.from_pretrained(src)
    model = model.to(torch.float16)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    # drop the machine-specific source path diffusers records
    cfg_path = os.path.join(out, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.pop("_name_or_path", None)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out, "scheduler_config.json"), "w") as f:
        json.dump(SCHEDULER_CONFIG, f, indent=2)
        f.write("\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"exported {n} parameters (f16) to {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder with the MNIST IDX files (train-images-idx3-ubyte.gz, ...)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads; on a shared, oversubscribed machine 1 is fastest (2 threads spent ~4x the CPU time per step spinning)")
    ap.add_argument("--precision", choices=["bf16", "f32"], default="bf16",
                    help="bf16: autocast the forward pass to bfloat16 (f32 master weights; ~1.5x faster on "
                         "CPUs with AVX512-BF16); f32: plain float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--max-minutes", type=float, default=75.0,
                    help="stop (and save) after this wall time; the lr schedule follows whichever of steps/time runs out first")
    ap.add_argument("--benchmark", type=int, default=0, help="only time this many steps and exit")
    ap.add_argument("--resume", action="store_true",
                    help="continue from --out/resume.pt (weights, EMA, optimizer, data order, step, elapsed time); "
                         "--max-minutes and --steps count the whole run, so raise them to train longer")
    ap.add_argument("--export", help="convert this diffusers checkpoint folder to f16 in --out and exit")
    args = ap.parse_args()

    if args.export:
        export(args.export, args.out)
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    from diffusers import DDPMScheduler

    x_all, _ = load_mnist(args.data, "train")
    x_all = torch.from_numpy(x_all)
    n = x_all.shape[0]

    model = make_unet()
    ema = make_unet()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    nparams = sum(p.numel() for p in model.parameters())
    sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if not k.startswith("_")})
    ac = sched.alphas_cumprod.float()

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    budget_s = args.max_minutes * 60

    def progress(step, elapsed):
        """Fraction of the run done: by steps or by wall time, whichever is further along."""
        return max(step / args.steps, elapsed / budget_s)

    def lr_at(step, elapsed):
        # linear warm-up, then cosine decay to 10% over the run (steps or time budget)
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = min(1.0, progress(step, elapsed))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train.log"), "a")

    def say(msg):
        print(msg)
        log.write(msg + "\n")
        log.flush()

    say(f"params {nparams}, steps {args.steps}, batch {args.batch}, lr {args.lr}, threads {args.threads}, "
        f"precision {args.precision}, config {json.dumps(UNET_CONFIG)}")

    state_path = os.path.join(args.out, "resume.pt")

    def save(step):
        for name, m in (("ema", ema), ("model", model)):
            m.save_pretrained(os.path.join(args.out, name), safe_serialization=True)
        info = {"step": step, "elapsed_s": time.time() - t0, "cpu_s": cpu0 + time.process_time(), "loss_ema": loss_avg}
        with open(os.path.join(args.out, "ema", "train_state.json"), "w") as f:
            json.dump(info, f)
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "info": info,
                    "perm": perm, "pos": pos, "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
                   state_path + ".tmp")
        os.replace(state_path + ".tmp", state_path)
        say(f"saved checkpoint at step {step}")

    perm = rng.permutation(n)
    pos = 0
    loss_avg = None
    start, elapsed0, cpu0 = 0, 0.0, 0.0
    if args.resume:
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        perm, pos = st["perm"], st["pos"]
        rng.bit_generator.state = st["np_rng"]
        torch.set_rng_state(st["torch_rng"])
        start, elapsed0, cpu0, loss_avg = (st["info"]["step"], st["info"]["elapsed_s"], st["info"]["cpu_s"],
                                           st["info"]["loss_ema"])
        say(f"resumed at step {start} ({elapsed0:.0f}s, {cpu0:.0f} CPU-s so far)")
    t0 = time.time() - elapsed0
    total = args.benchmark if args.benchmark else args.steps
    model.train()
    for step in range(start, total):
        if pos + args.batch > n:
            perm = rng.permutation(n)
            pos = 0
        idx = torch.from_numpy(perm[pos:pos + args.batch])
        pos += args.batch
        x0 = x_all[idx]
        t = torch.randint(0, 1000, (x0.shape[0],))
        eps = torch.randn_like(x0)
        a = ac[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - ac[t]).sqrt().view(-1, 1, 1, 1)
        xt = a * x0 + s * eps
        for g in opt.param_groups:
            g["lr"] = lr_at(step, time.time() - t0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            pred = model(xt, t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # EMA with a warm-up of the decay so short runs still average sensibly.
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        lv = loss.item()
        loss_avg = lv if loss_avg is None else 0.98 * loss_avg + 0.02 * lv
        elapsed = time.time() - t0
        if step % 25 == 0 or step == total - 1:
            cpu = cpu0 + time.process_time()
            say(f"step {step} loss {lv:.4f} avg {loss_avg:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"elapsed {elapsed:.0f}s ({elapsed / (step + 1):.2f}s/step, {cpu:.0f} CPU-s)")
        if args.benchmark:
            continue
        if (step + 1) % args.save_every == 0:
            save(step + 1)
        if elapsed > budget_s:
            say(f"time limit reached at step {step + 1}")
            save(step + 1)
            return
    if not args.benchmark:
        save(total)
    say(f"done: {total} steps in {time.time() - t0:.0f}s ({cpu0 + time.process_time():.0f} CPU-s), "
        f"final avg loss {loss_avg:.4f}")


if __name__ == "__main__":
    sys.exit(main())
