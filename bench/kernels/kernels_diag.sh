#!/usr/bin/env bash
# One device call: GPU kernel tests, kernel variants (bench/kernels/kernels_probe.py) and, with --ncu, Nsight Compute
# counters of ours and FLA's forward kernels at 1 x 102400. Logs under $OUT; the probe's tables print last.
#   bash bench/kernels/kernels_diag.sh [--ncu]            (carry .whl for FLA)
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1 || true
python3 -m pytest -q -m gpu tests/kernels -p no:cacheprovider > "$OUT/gpu_tests_kernels.log" 2>&1
tail -2 "$OUT/gpu_tests_kernels.log"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ "${1:-}" = "--ncu" ] && [ -n "$NCU" ]; then
  PYTHONPATH=/tmp/site:. timeout 240 "$NCU" --clock-control none --profile-from-start off \
    -k 'regex:gdn2_fwd|chunk_gdn2|recompute_w_u|chunk_gated_delta_rule_fwd_kernel_h|chunk_gla_fwd_kernel_o' \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section MemoryWorkloadAnalysis \
    python3 bench/kernels/kernels_ncu.py > "$OUT/ncu.log" 2>&1
  echo "ncu rc=$? ($(grep -c 'Section: GPU Speed Of Light' "$OUT/ncu.log") kernels)"
elif [ "${1:-}" = "--ncu" ]; then
  echo "ncu not found"
fi
PYTHONPATH=. python3 bench/kernels/kernels_probe.py > "$OUT/probe.log" 2>&1
tail -22 "$OUT/probe.log"
