#!/usr/bin/env python3
"""Reference outputs of diffusers' UNet2DModel for tests/unet.rs.

Writes
  tests/fixtures/unet_tiny_{a,b,c}/config.json + diffusion_pytorch_model.safetensors
      three tiny randomly initialised UNet2DModels (f32) that together exercise every supported
      block type and option:
        a: DownBlock2D, AttnDownBlock2D x2, UNetMidBlock2D, AttnUpBlock2D x2, UpBlock2D,
           layers_per_block 2, multi-head attention, diffusers' defaults otherwise;
        b: the original-DDPM options (flip_sin_to_cos false, freq_shift 1, downsample_padding 0,
           attention_head_dim null, norm_eps 1e-6) plus scale_shift time conditioning,
           resnet down/up samplers, mid_block_scale_factor sqrt(2), center_input_sample,
           time_embedding_dim 40, a non-square input, and the *legacy* attention tensor names
           (query/key/value/proj_attn) that old checkpoints such as google/ddpm-cifar10-32 use;
        c: no middle block, plain blocks only, out_channels != in_channels.
  tests/fixtures/unet_io.safetensors
      for each tiny model and for the bundled models/mnist-unet: inputs `{m}.x` [B,C,H,W],
      timesteps `{m}.t` [k] (f64), and diffusers' outputs `{m}.out{i}` (f32), one per timestep.

Usage (from the repository root; CPU, a few seconds):
    .venv/bin/python tools/unet_fixtures.py --out tests/fixtures --mnist models/mnist-unet

Regenerate whenever models/mnist-unet changes. Deterministic: every number comes from numpy
default_rng(SEED); torch runs single-threaded.
"""
import argparse
import json
import math
import os
import struct

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from diffusers import UNet2DModel
from safetensors.numpy import load_file

torch.set_num_threads(1)
SEED = 20240917

TINY = {
    "a": dict(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16, 16), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4,
    ),
    "b": dict(
        sample_size=(12, 20), in_channels=1, out_channels=1, block_out_channels=(8, 12), layers_per_block=1,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0,
        norm_eps=1e-6, resnet_time_scale_shift="scale_shift", downsample_type="resnet", upsample_type="resnet",
        mid_block_scale_factor=math.sqrt(2.0), center_input_sample=True, time_embedding_dim=40,
    ),
    "c": dict(
        sample_size=8, in_channels=2, out_channels=3, block_out_channels=(4, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=2, mid_block_type=None,
    ),
}
INPUT_HW = {"a": (16, 16), "b": (12, 20), "c": (8, 8), "mnist": (32, 32)}
TIMESTEPS = [0.0, 37.25, 999.0]
MNIST_TIMESTEPS = [999.0, 500.5, 10.0]

LEGACY = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}

DT = {np.dtype("float32"): ("F32", "<f4"), np.dtype("float64"): ("F64", "<f8"), np.dtype("float16"): ("F16", "<f2")}


def save_safetensors(path, tensors, metadata=None):
    """Byte-deterministic safetensors writer (sorted header, sorted layout, space padding)."""
    header = {"__metadata__": {k: str(v) for k, v in sorted((metadata or {}).items())}}
    blobs, off = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        tag, le = DT[a.dtype]
        b = a.astype(le).tobytes()
        header[name] = {"dtype": tag, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    back = load_file(path)
    assert back.keys() == tensors.keys() and all(np.array_equal(back[k], tensors[k]) for k in tensors)


def randomise(model, rng):
    """Replace every parameter by deterministic numpy draws (norm weights near 1, biases small)."""
    sd = model.state_dict()
    new = {}
    for name in sorted(sd):
        p = sd[name]
        shape = tuple(p.shape)
        if "norm" in name and name.endswith(".weight"):
            v = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            v = 0.2 * rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            v = rng.standard_normal(shape) / math.sqrt(fan_in)
        new[name] = torch.from_numpy(v.astype(np.float32))
    model.load_state_dict(new)


def config_json(model):
    cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    cfg = {"_class_name": "UNet2DModel", **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}}
    return json.dumps(cfg, indent=2, sort_keys=True) + "\n"


def run(model, x, timesteps):
    outs = []
    with torch.no_grad():
        for t in timesteps:
            tt = torch.tensor([t], dtype=torch.float32)
            outs.append(model(torch.from_numpy(x), tt).sample.numpy().astype(np.float32))
    return outs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--mnist", default="models/mnist-unet", help="the bundled model folder ('' to skip)")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    io = {}
    for key, cfg in TINY.items():
        model = UNet2DModel(**cfg).eval()
        randomise(model, rng)
        folder = os.path.join(args.out, f"unet_tiny_{key}")
        os.makedirs(folder, exist_ok=True)
        weights = {k: v.numpy() for k, v in model.state_dict().items()}
        if key == "b":  # legacy attention names, as in checkpoints saved before diffusers 0.14
            renamed = {}
            for k, v in weights.items():
                for new, old in LEGACY.items():
                    if f".attentions.0.{new}." in k:
                        k = k.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")
                renamed[k] = v
            assert any(".proj_attn." in k for k in renamed)
            weights = renamed
        save_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"), weights, {"format": "pt"})
        with open(os.path.join(folder, "config.json"), "w") as f:
            f.write(config_json(model))
        # the files load back into diffusers (legacy names included) and give the same outputs
        reloaded = UNet2DModel.from_pretrained(folder).eval()
        h, w = INPUT_HW[key]
        x = rng.standard_normal((2, cfg["in_channels"], h, w)).astype(np.float32)
        outs = run(model, x, TIMESTEPS)
        outs2 = run(reloaded, x, TIMESTEPS)
        assert all(np.array_equal(o, p) for o, p in zip(outs, outs2)), key
        io[f"{key}.x"] = x
        io[f"{key}.t"] = np.array(TIMESTEPS, dtype=np.float64)
        for i, o in enumerate(outs):
            io[f"{key}.out{i}"] = o
        n = sum(p.numel() for p in model.parameters())
        print(f"tiny model {key}: {n} parameters, output std {np.std(outs[1]):.3f}")
    if args.mnist:
        model = UNet2DModel.from_pretrained(args.mnist, torch_dtype=torch.float32).eval()
        x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
        io["mnist.x"] = x
        io["mnist.t"] = np.array(MNIST_TIMESTEPS, dtype=np.float64)
        for i, o in enumerate(run(model, x, MNIST_TIMESTEPS)):
            io[f"mnist.out{i}"] = o
        print(f"mnist model: output std {np.std(io['mnist.out0']):.3f}")
    save_safetensors(os.path.join(args.out, "unet_io.safetensors"), io,
                     {"generator": "tools/unet_fixtures.py", "seed": SEED})
    print("wrote", os.path.join(args.out, "unet_io.safetensors"))


if __name__ == "__main__":
    main()
