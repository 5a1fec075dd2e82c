#!/usr/bin/env bash
# One device call: the kernels' GPU tests, the canonical benchmark against FLA (all sizes, decode with FLA's
# in-place call too) and the decode autotune sweep. Logs and JSON under $OUT; summaries print last.
#   bash bench/kernels/gpu_verify.sh        (FLA wheel in .whl/: pip download --no-deps fla-core==0.6.0 -d .whl)
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo "no FLA wheel"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
PYTHONPATH=. timeout "${TEST_S:-200}" python3 -m pytest -q -m gpu tests/kernels -p no:cacheprovider \
  > "$OUT/gpu_tests_kernels.log" 2>&1
echo "gpu tests rc=$?: $(tail -1 "$OUT/gpu_tests_kernels.log")"
PYTHONPATH=/tmp/site:. timeout "${BENCH_S:-420}" python3 bench/kernels/kernels_bench.py --rep "${REP:-60}" \
  --json "$OUT/kernels_bench.json" > "$OUT/kernels_bench.log" 2>&1
echo "bench rc=$?"
PYTHONPATH=. timeout "${TUNE_S:-40}" python3 -m gdn2_kernels.autotune --decode --shape 1x1 --min-gain 0.03 \
  > "$OUT/autotune_decode.log" 2>&1
echo "autotune rc=$?"
grep -E "passed|failed|Error" "$OUT/gpu_tests_kernels.log" | tail -5
grep '^|' "$OUT/kernels_bench.log"
cat "$OUT/autotune_decode.log" | tail -16
