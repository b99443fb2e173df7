"""Where the UNet forward's CPU time goes: buckets the self time of a `perf record` profile of
examples/bench_unet (BENCHMARKS.md section 5, "UNet forward on the CPU: ours vs PyTorch").

    perf record -F 999 -g -o before.data <pre-branch bench_unet> --batches 64 --reps 3 --warmup 1
    perf report -i before.data --no-children --sort dso,symbol -g none --stdio > before.txt
    python tools/unet_profile_buckets.py before.txt after.txt

Reads `perf report` text (no Python packages needed) and prints, per file, the share of samples in
each bucket. The buckets are matched on symbol names, first match wins (see BUCKETS). Release
builds keep symbols but no debug info, so candle's per-tile convolution closure (im2col gather,
output scatter) shows up as rayon's `FnMut ... call_mut` on the worker threads: in the candle
path the GEMM it calls is its only child, which identifies it.
"""

import re
import sys

BUCKETS = [
    ("GEMM microkernels (gemm crate)", [r"gemm_f32::", r"gemm_common::", r"gemm::"]),
    ("fused kernels: convolution (im2col, NCHW write, bias/residual)", [r"unet::kernels::conv2d"]),
    ("fused kernels: GroupNorm (+SiLU)", [r"unet::kernels::group_norm"]),
    ("fused kernels: attention (softmax, copies)", [r"unet::kernels::attention"]),
    ("candle conv2d: im2col gather / output scatter / NHWC copy", [r"FnMut<A> for &F>::call_mut", r"Map2::map"]),
    ("candle thread pool waiting (BarrierGuard, rayon idle)", [r"BarrierGuard", r"BarrierPool", r"rayon_core::", r"call_trampoline", r"__rust_begin_short_backtrace"]),
    ("candle elementwise, reductions, layout copies", [r"copy_strided", r"binary_map", r"unary_map", r"__expf", r"vec_sum", r"cpu::avx", r"cpu_backend::utils", r"ReduceIndex", r"ReduceSum", r"softmax", r"affine"]),
    ("thread-count lookup (num_cpus reads /proc/cpuinfo per op)", [r"num_cpus", r"show_cpuinfo", r"vsnprintf", r"seq_printf", r"format_decode", r"append_to_string", r"Lines", r"memchr", r"number\b", r"seq_read"]),
    ("memset / memcpy", [r"__memset", r"__memmove", r"__memcpy"]),
    ("kernel: page faults, allocation, scheduling", [r"\[k\]"]),
]

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+(\[[.k]\])\s+(.*?)\s*(?:-\s+-\s*)?$")


def bucket(dso, kind, sym):
    text = f"{kind} {sym}"
    for name, pats in BUCKETS:
        if any(re.search(p, text) for p in pats):
            return name
    return "other"


def read(path):
    shares = {}
    total = 0.0
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
            b = bucket(dso, kind, sym)
            shares[b] = shares.get(b, 0.0) + pct
            total += pct
    return shares, total


def main():
    files = sys.argv[1:]
    if not files:
        sys.exit(__doc__)
    data = [read(p) for p in files]
    names = [n for n, _ in BUCKETS] + ["other"]
    print("| bucket | " + " | ".join(files) + " |")
    print("|---|" + "---|" * len(files))
    for n in names:
        vals = [d[0].get(n, 0.0) for d in data]
        if all(v < 0.05 for v in vals):
            continue
        print(f"| {n} | " + " | ".join(f"{v:.1f}%" for v in vals) + " |")
    print("| (total parsed) | " + " | ".join(f"{d[1]:.1f}%" for d in data) + " |")


if __name__ == "__main__":
    main()
