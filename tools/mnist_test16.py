#!/usr/bin/env python3
"""Write models/mnist-unet/test16.safetensors: the first 16 MNIST *test* digits, preprocessed as
for training (28x28 padded to 32x32 with background, scaled to [-1, 1]), for examples/invert.rs.

Keys: `images` [16, 1, 32, 32] f32, `labels` [16] f32 (the digit, 0-9).

    .venv/bin/python tools/mnist_test16.py --data /path/to/mnist --out models/mnist-unet/test16.safetensors
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_mnist import load_mnist  # noqa: E402
from unet_fixtures import save_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="models/mnist-unet/test16.safetensors")
    args = ap.parse_args()
    x, y = load_mnist(args.data, "test")
    save_safetensors(args.out, {"images": x[:16].astype(np.float32), "labels": y[:16].astype(np.float32)},
                     {"source": "MNIST test set, images 0-15, padded to 32x32, scaled to [-1, 1]"})
    print(f"wrote {args.out}: labels {y[:16].tolist()}")


if __name__ == "__main__":
    main()
