#!/usr/bin/env bash
# Device calls for the kernels: GPU tests, the canonical benchmark against FLA (all sizes, decode with FLA's
# in-place call too) and the decode autotune sweep. PARTS picks them (default: all three; tests take ~2.5
# min, the benchmark ~7 with FLA's autotuning, so one 10-minute call holds tests+tune or bench, not all).
#   PARTS=tests,tune bash bench/kernels/gpu_verify.sh
#   PARTS=bench bash bench/kernels/gpu_verify.sh   (FLA wheel in .whl/: pip download --no-deps fla-core==0.6.0 -d .whl)
# Logs and JSON under $OUT; summaries print last.
set -u
OUT=${OUT:-/tmp/out}
PARTS=${PARTS:-tests,bench,tune}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo "no FLA wheel"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if [[ $PARTS == *tests* ]]; then
  PYTHONPATH=. timeout "${TEST_S:-200}" python3 -m pytest -q -m gpu tests/kernels -p no:cacheprovider \
    > "$OUT/gpu_tests_kernels.log" 2>&1
  echo "gpu tests rc=$?: $(tail -1 "$OUT/gpu_tests_kernels.log")"
fi
if [[ $PARTS == *bench* ]]; then
  PYTHONPATH=/tmp/site:. timeout "${BENCH_S:-480}" python3 bench/kernels/kernels_bench.py --rep "${REP:-60}" \
    --json "$OUT/kernels_bench.json" > "$OUT/kernels_bench.log" 2>&1
  echo "bench rc=$?"
  grep '^|' "$OUT/kernels_bench.log"
fi
if [[ $PARTS == *tune* ]]; then
  PYTHONPATH=. timeout "${TUNE_S:-40}" python3 -m gdn2_kernels.autotune --decode --shape 1x1 --min-gain 0.03 \
    > "$OUT/autotune_decode.log" 2>&1
  echo "autotune rc=$?"
  tail -16 "$OUT/autotune_decode.log"
fi
