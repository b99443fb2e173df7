#!/usr/bin/env python3
"""A full-size check of the Rust UNet2DModel on the architecture of google/ddpm-cifar10-32.

The real checkpoint (35.7 M parameters, 143 MB) cannot live in the repository and the tests
must not download it, so this script builds diffusers' UNet2DModel from that checkpoint's own
`config.json` (tests/fixtures/unet_ddpm_cifar10/config.json, as published on the Hugging Face
hub, `_diffusers_version` 0.0.4) and fills every parameter with a closed-form pattern that
tests/unet.rs regenerates in Rust (`pattern_weights`):

    c      = 0.1 * (sum of the UTF-8 bytes of the tensor's diffusers name mod 97)
    norm weights (1-D `*.weight` with "norm" in the name): 1 + 0.2 sin(0.37 i + c)
    biases:                                                 0.2 sin(0.53 i + c)
    other weights (fan_in = prod(shape[1:])):              sqrt(3 / fan_in) sin(0.71 i + c)

with `i` the flat (row-major) element index, computed in float64 and rounded to float32. It
writes tests/fixtures/unet_ddpm_cifar10/manifest.json (the tensor names and shapes diffusers
builds from that config) and io.safetensors (one input `x` [1, 3, 32, 32], timesteps `t`, and
diffusers' outputs `out{i}`). The Rust test renames the attention tensors to the legacy names
(query/key/value/proj_attn) the published checkpoint uses, loads them with
`UNet2DModel::from_tensors` and compares the outputs.

Usage (from the repository root; CPU, ~10 s):
    .venv/bin/python tools/unet_ddpm_cifar10_fixture.py
"""
import json
import math
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from diffusers import UNet2DModel

sys.path.insert(0, os.path.dirname(__file__))
from unet_fixtures import save_safetensors  # noqa: E402  (the byte-deterministic writer)

torch.set_num_threads(1)
FOLDER = "tests/fixtures/unet_ddpm_cifar10"
TIMESTEPS = [999.0, 250.0, 3.0]


def pattern(name, shape):
    c = 0.1 * (sum(name.encode()) % 97)
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    if len(shape) == 1 and name.endswith(".weight") and "norm" in name:
        v = 1.0 + 0.2 * np.sin(0.37 * i + c)
    elif name.endswith(".bias"):
        v = 0.2 * np.sin(0.53 * i + c)
    else:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        v = math.sqrt(3.0 / fan_in) * np.sin(0.71 * i + c)
    return v.astype(np.float32).reshape(shape)


def main():
    with open(os.path.join(FOLDER, "config.json")) as f:
        config = json.load(f)
    model = UNet2DModel.from_config(config).eval()
    sd = model.state_dict()
    manifest = [[name, list(sd[name].shape)] for name in sorted(sd)]
    model.load_state_dict({name: torch.from_numpy(pattern(name, tuple(shape))) for name, shape in manifest})
    n = sum(p.numel() for p in model.parameters())
    # a smooth, image-like input in [-1, 1]
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    x = np.stack([np.sin(0.3 * xx + 0.2 * yy + k) * np.cos(0.17 * yy - 0.4 * k) for k in range(3)])[None]
    x = x.astype(np.float32)
    io = {"x": x, "t": np.array(TIMESTEPS, dtype=np.float64)}
    with torch.no_grad():
        for k, t in enumerate(TIMESTEPS):
            out = model(torch.from_numpy(x), torch.tensor([t], dtype=torch.float32)).sample.numpy()
            io[f"out{k}"] = out.astype(np.float32)
            print(f"t = {t}: output std {out.std():.4f}, max |out| {np.abs(out).max():.4f}")
    save_safetensors(os.path.join(FOLDER, "io.safetensors"), io,
                     {"generator": "tools/unet_ddpm_cifar10_fixture.py", "parameters": n})
    with open(os.path.join(FOLDER, "manifest.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(entry) for entry in manifest) + "\n]\n")
    print(f"{n} parameters, {len(manifest)} tensors; wrote {FOLDER}/manifest.json and io.safetensors")


if __name__ == "__main__":
    main()
