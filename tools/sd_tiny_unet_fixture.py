"""diffusers' UNet2DConditionModel on tiny SD 1.5-, SD 2.1- and SDXL-style configs, for
tests/stable_diffusion.rs (`tiny_unets_match_diffusers`).

The weights are not stored: both sides generate them from the tensor's name with the crate's
`SeededNoise` (splitmix64-seeded xoshiro256**, Box-Muller; seed = FNV-1a 64 of the name),
scaled by 1/sqrt(fan_in) for matrices and kernels, 1 + 0.1 z for 1-D `*weight` (norm scales),
0.1 z for biases, rounded to float32. The fixture holds the inputs (latents, timestep, text
embeddings, SDXL's text_embeds and time_ids) and diffusers' outputs, computed in float64:
`{style}.t{t}` as diffusers computes them, and `{style}.t{t}.tanh_gelu` with the GELU of the
attention blocks' GEGLU feed-forward in its tanh approximation, as candle-transformers computes it
(candle's `Tensor::gelu` is the tanh form; diffusers' `GEGLU` uses the exact erf form).

    python tools/sd_tiny_unet_fixture.py --out tests/fixtures/sd_tiny_unet.safetensors

Pinned: diffusers==0.42.1, torch==2.15.0 (requirements.txt). Deterministic.
"""

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.activations import GEGLU
from safetensors.numpy import save_file

M64 = (1 << 64) - 1


def fnv1a(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


class SeededNoise:
    def __init__(self, seed):
        z = seed

        def nxt():
            nonlocal z
            z = (z + 0x9E3779B97F4A7C15) & M64
            x = z
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
            return x ^ (x >> 31)

        self.s = [nxt(), nxt(), nxt(), nxt()]
        self.spare = None

    def next_u64(self):
        s = self.s
        result = (((s[1] * 5) & M64) << 7 | ((s[1] * 5) & M64) >> 57) & M64
        result = (result * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = ((s[3] << 45) | (s[3] >> 19)) & M64
        return result

    def uniform(self):
        return ((self.next_u64() >> 11) + 1.0) / float(1 << 53)

    def normal(self):
        if self.spare is not None:
            z, self.spare = self.spare, None
            return z
        u1, u2 = self.uniform(), self.uniform()
        r = math.sqrt(-2.0 * math.log(u1))
        a = 2.0 * math.pi * u2
        self.spare = r * math.sin(a)
        return r * math.cos(a)

    def normal_vec(self, n):
        return np.array([self.normal() for _ in range(n)], dtype=np.float64)


def weight(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    z = SeededNoise(fnv1a(name)).normal_vec(n)
    if len(shape) >= 2:
        v = z / math.sqrt(int(np.prod(shape[1:])))
    elif name.endswith("weight"):
        v = 1.0 + 0.1 * z
    else:
        v = 0.1 * z
    return v.astype(np.float32).reshape(shape)


def normal(shape, seed):
    return SeededNoise(seed).normal_vec(int(np.prod(shape))).astype(np.float32).reshape(shape)


COMMON = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, norm_num_groups=32, cross_attention_dim=16,
    block_out_channels=(32, 64), flip_sin_to_cos=True, freq_shift=0,
)
STYLES = {
    "sd15": dict(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                 attention_head_dim=(2, 2), use_linear_projection=False),
    "sd21": dict(down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=(2, 4),
                 use_linear_projection=True),
    "xl": dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
               attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2), use_linear_projection=True,
               addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=60),
}


EXACT_GELU = GEGLU.gelu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    x = normal((2, 4, 8, 8), 101)
    text = normal((2, 5, 16), 102)
    text_embeds = normal((2, 12), 103)
    time_ids = np.array([[64, 64, 0, 0, 64, 64], [128, 96, 8, 0, 64, 64]], dtype=np.float32)
    out.update({"x": x, "text": text, "text_embeds": text_embeds, "time_ids": time_ids})
    for style, cfg in STYLES.items():
        unet = UNet2DConditionModel(**COMMON, **cfg).double().eval()
        sd = {k: torch.from_numpy(weight(k, tuple(v.shape)).astype(np.float64)) for k, v in unet.state_dict().items()}
        unet.load_state_dict(sd)
        for t, tanh in [(500.0, False), (37.5, False), (500.0, True), (37.5, True)]:
            GEGLU.gelu = (lambda self, g: F.gelu(g, approximate="tanh")) if tanh else EXACT_GELU
            kw = {}
            if style == "xl":
                kw["added_cond_kwargs"] = {"text_embeds": torch.from_numpy(text_embeds).double(),
                                           "time_ids": torch.from_numpy(time_ids).double()}
            with torch.no_grad():
                y = unet(torch.from_numpy(x).double(), torch.tensor(t, dtype=torch.float64),
                         encoder_hidden_states=torch.from_numpy(text).double(), **kw).sample
            out[f"{style}.t{t}" + (".tanh_gelu" if tanh else "")] = y.numpy().astype(np.float32)
    save_file(out, a.out, metadata={"script": "tools/sd_tiny_unet_fixture.py", "timesteps": "500.0, 37.5"})


if __name__ == "__main__":
    main()
