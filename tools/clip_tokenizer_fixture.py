"""Reference token ids for the stable_diffusion example's CLIP tokenizer.

Builds a small CLIP BPE vocabulary (the 256 byte symbols, their `</w>` forms, the first
MERGES merges of OpenAI CLIP's BPE file, the two special tokens; the same construction as
CLIP's `SimpleTokenizer` and the diffusers `tokenizer/vocab.json`), writes it as `vocab.json` /
`merges.txt`, and tokenizes test prompts with transformers' `CLIPTokenizer` (in transformers 5 the
tokenizers-backed class built from those two files) as the diffusers pipelines call it:
`tokenizer(prompt, padding="max_length", max_length=77, truncation=True)`.

CLIP's BPE file ships inside the open-clip-torch wheel (`open_clip/bpe_simple_vocab_16e6.txt.gz`):

    pip download --no-deps open-clip-torch==3.3.0 -d /tmp/oc
    python tools/clip_tokenizer_fixture.py --wheel /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl \
        --out tests/fixtures/clip_tokenizer

Pinned: transformers==5.24.0 (see requirements.txt). Output is deterministic.
"""

import argparse
import gzip
import json
import os
import zipfile

MERGES = 1200

PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "A lighthouse at dusk, oil painting",
    "  lots   of\twhitespace\n here  ",
    "UPPER and lower CASE",
    "numbers 1234 and 3.14159, dates 2024-06-01",
    "it's they're we've I'm you'll he'd",
    "punctuation!!! (brackets) [square] {curly} <angle> #hash @at",
    "café naïve résumé",
    "日本語のテキスト and emoji 🚀🌕",
    "",
    "a " + "very " * 90 + "long prompt",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with zipfile.ZipFile(a.wheel) as z:
        text = gzip.decompress(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
    merges = [tuple(m.split()) for m in text.split("\n")[1 : MERGES + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(a.out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")

    import transformers
    from transformers import CLIPTokenizer

    cases = []
    for pad in ["<|endoftext|>", "!"]:
        tok = CLIPTokenizer(os.path.join(a.out, "vocab.json"), os.path.join(a.out, "merges.txt"), pad_token=pad)
        for p in PROMPTS:
            ids = tok(p, padding="max_length", max_length=77, truncation=True).input_ids
            cases.append({"pad_token": pad, "prompt": p, "ids": ids})
    meta = {"transformers": transformers.__version__, "merges": MERGES, "cases": cases}
    with open(os.path.join(a.out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
