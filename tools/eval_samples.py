#!/usr/bin/env python3
"""Score generated MNIST digits with the classifier from tools/train_classifier.py.

Input: a safetensors file with `samples` [N, 1, 32, 32] in [-1, 1] (written by
`cargo run --release --features unet --example mnist -- --n 1000 --save-tensor FILE`).
Prints the mean top-class probability, the share of confident samples and the share of each
predicted class, and checks them against the model card's acceptance thresholds
(mean top-class probability >= 0.90, every class between 4% and 18%).

    .venv/bin/python tools/eval_samples.py --classifier target/mnist-classifier.pt --samples samples.safetensors
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_classifier import load_classifier  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classifier", default="target/mnist-classifier.pt")
    ap.add_argument("--samples", required=True)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = load_file(args.samples)["samples"].astype(np.float32)
    if x.ndim != 4 or x.shape[1:] != (1, 32, 32):
        raise SystemExit(f"expected samples [N, 1, 32, 32], got {x.shape}")
    net = load_classifier(args.classifier)
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(np.clip(x, -1, 1))), dim=1).numpy()
    top = p.max(1)
    cls = p.argmax(1)
    share = np.bincount(cls, minlength=10) / len(cls)
    res = {
        "n": int(len(x)),
        "mean_top_prob": float(top.mean()),
        "share_top_prob_above_0.9": float((top > 0.9).mean()),
        "class_share": [round(float(s), 4) for s in share],
        "pass_confidence": bool(top.mean() >= 0.90),
        "pass_balance": bool(share.min() >= 0.04 and share.max() <= 0.18),
    }
    print(f"{res['n']} samples: mean top-class probability {res['mean_top_prob']:.4f} "
          f"({res['share_top_prob_above_0.9'] * 100:.1f}% above 0.9)")
    print("class shares: " + " ".join(f"{d}:{s * 100:.1f}%" for d, s in enumerate(share)))
    print(f"acceptance: mean top prob >= 0.90: {res['pass_confidence']}; every class in [4%, 18%]: {res['pass_balance']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
