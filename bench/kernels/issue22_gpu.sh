#!/usr/bin/env bash
# One device call for issue 22: the decode step timed alone (A/B against a baseline tree's kernel, FLA's
# in-place call, the canonical kernels_bench decode rows), then, in parallel, the whole GPU suite on this
# tree and the order-dependent failure (CUDA-graph decode test, then the reader test) on the baseline tree:
# plain, under compute-sanitizer, and with each diagnostic mode of graph_order_diag.py.
#   run from the baseline checkout's root, this tree in FIX (default .gpu-kernels), FLA wheel in .whl/
# Logs under $OUT; a summary prints last.
set -u
OUT=${OUT:-/tmp/out}
ROOT=$PWD
FIX=${FIX:-$ROOT/.gpu-kernels}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >/dev/null 2>&1 \
  || echo "no FLA wheel"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
  echo "compute-sanitizer: ${SAN:-none}"
} 2>&1 | tee "$OUT/env.txt"

# 1. timing, nothing else on the card
cd "$FIX" || exit 1
PYTHONPATH=/tmp/site:$FIX timeout "${AB_S:-120}" python3 bench/kernels/decode_ab.py \
  --baseline "$ROOT/gdn2_kernels/gdn2/fused_recurrent.py" --json "$OUT/decode_ab.json" > "$OUT/decode.log" 2>&1
echo "decode_ab rc=$?" >> "$OUT/decode.log"
PYTHONPATH=/tmp/site:$FIX timeout "${BENCH_S:-90}" python3 bench/kernels/kernels_bench.py --modes decode \
  --sizes '' --json "$OUT/kernels_bench_decode.json" >> "$OUT/decode.log" 2>&1
echo "kernels_bench rc=$?" >> "$OUT/decode.log"

# 2. correctness, in parallel
PAIR="tests/model/test_model_gpu.py::test_cuda_graph_decode_equals_eager_decode
      tests/rag/test_rag_reader_mode.py::test_reader_on_cuda_cites_truthfully"
T=${PAIR_S:-170}
D=/tmp/diag
mkdir -p $D
(cd "$FIX" && PYTHONPATH=$FIX timeout "${SUITE_S:-240}" python3 -m pytest -q -m gpu tests -p no:cacheprovider \
  > "$OUT/suite.log" 2>&1; echo "suite rc=$?" >> "$OUT/suite.log") &
(cd "$FIX" && PYTHONPATH=$FIX timeout $T python3 -m pytest -q $PAIR -p no:cacheprovider > $D/fixed_pair 2>&1
  echo "rc=$?" >> $D/fixed_pair) &
(cd "$ROOT" && PYTHONPATH=$ROOT timeout $T python3 -m pytest -q $PAIR -p no:cacheprovider > $D/base_pair 2>&1
  echo "rc=$?" >> $D/base_pair) &
(cd "$ROOT" && PYTHONPATH=$ROOT timeout $T python3 -m pytest -q -p no:cacheprovider \
  "$FIX/tests/model/test_model_gpu.py::test_model_runs_after_a_cuda_graph_decoder_is_released" \
  > $D/base_regression_test 2>&1; echo "rc=$?" >> $D/base_regression_test) &
for mode in synccheck keepalive,synccheck clearblas,synccheck gcsync,synccheck; do
  (cd "$ROOT" && CUDA_LAUNCH_BLOCKING=1 PYTHONPATH=$FIX/bench/kernels:$ROOT timeout $T python3 -m pytest -q -s \
    -p no:cacheprovider -p graph_order_diag --graph-diag $mode $PAIR > $D/base_$mode 2>&1
    echo "rc=$?" >> $D/base_$mode) &
done
if [ -n "$SAN" ]; then
  (cd "$ROOT" && PYTHONPATH=$ROOT timeout $T "$SAN" --tool memcheck --print-limit 4 --show-backtrace device \
    python3 -m pytest -q -x $PAIR -p no:cacheprovider > "$OUT/sanitizer.log" 2>&1
    echo "sanitizer rc=$?" >> "$OUT/sanitizer.log") &
fi
wait
for f in $D/*; do echo "=== $(basename $f)"; grep -E "graph-diag|passed|failed|rc=|Error|error" $f | tail -12; done \
  > "$OUT/diag.log" 2>&1
grep -E "Invalid|Address|is out of bounds|freed|ERROR SUMMARY|in void|at 0x" "$OUT/sanitizer.log" 2>/dev/null \
  | head -30 >> "$OUT/diag.log"

echo "----- summary"
grep '^|' "$OUT/decode.log"
tail -3 "$OUT/suite.log"
cat "$OUT/diag.log"
