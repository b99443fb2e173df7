#!/usr/bin/env bash
# GPU check of the fused `lincomb` CUDA kernel (src/ops.rs, feature `cuda`), prepared for a session
# that is lent a GPU machine (see ../shared/gpu/README.md). Two halves:
#
#   1. here, on the build machine (no GPU needed, ~10+ min the first time on 2 cores):
#        tools/gpu_check.sh build
#      builds tests/lincomb.rs with `--features cuda` and copies the stripped test binary and
#      run-on-gpu.sh into .gpu/ (git-ignored);
#   2. on the GPU machine, with the device tool (carry [".gpu"], timeout ~300 s):
#        bash tools/gpu_check.sh run
#      runs every test of tests/lincomb.rs (CPU ones and the `cuda::` ones: kernel vs CPU path for
#      F64/F32/F16/BF16, 1-12 terms; strided views falling back) and then the ignored timing test
#      (fused vs unfused per call at [1,4,64,64], [4,4,128,128], [8,4,128,128] F32), and prints a
#      short summary last. Output also goes to $OUT/gpu_check.log when $OUT is set.
#
# Record the printed numbers, the card and the date in BENCHMARKS.md ("GPU" section).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
build)
    # shellcheck disable=SC1091
    . ../shared/gpu/cuda-env.sh
    log=$(nice -n 10 cargo test --release --features cuda --test lincomb --no-run 2>&1 | tee /dev/stderr)
    bin=$(printf '%s\n' "$log" | sed -n 's/.*Executable tests\/lincomb.rs (\(.*\))/\1/p' | tail -1)
    [ -n "$bin" ] && [ -x "$bin" ] || { echo "gpu_check: test binary not found in cargo output" >&2; exit 1; }
    mkdir -p .gpu
    cp "$bin" .gpu/lincomb_cuda
    strip .gpu/lincomb_cuda
    cp -f ../shared/gpu/run-on-gpu.sh .gpu/
    ls -la .gpu/
    echo "gpu_check: built. On the GPU machine (device tool, carry [\".gpu\"]): bash tools/gpu_check.sh run"
    ;;
run)
    [ -x .gpu/lincomb_cuda ] || { echo "gpu_check: .gpu/lincomb_cuda missing: run 'tools/gpu_check.sh build' first and carry .gpu" >&2; exit 1; }
    out="${OUT:-/tmp}/gpu_check.log"
    {
        echo "== correctness (all tests/lincomb.rs tests, CUDA ones included)"
        bash .gpu/run-on-gpu.sh .gpu/lincomb_cuda --test-threads 1 --nocapture || echo "CORRECTNESS FAILED rc=$?"
        echo "== timing"
        bash .gpu/run-on-gpu.sh .gpu/lincomb_cuda --test-threads 1 --ignored --nocapture cuda_timing || echo "TIMING FAILED rc=$?"
    } 2>&1 | tee "$out"
    echo "== summary"
    grep -E "^(CUDA|test result|CORRECTNESS|TIMING)|FAILED|panicked" "$out" || true
    ;;
*)
    echo "usage: tools/gpu_check.sh build | run" >&2
    exit 2
    ;;
esac
