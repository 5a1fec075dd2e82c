#!/usr/bin/env bash
# One device call: which earlier tests of tests/model/test_model_gpu.py put the process in the state where
# test_model_runs_after_a_cuda_graph_decoder_is_released faults (issue 22; gdn2_kernels/NOTES.md). The file
# alone reproduces it; the regression test alone passes. In parallel processes on one GPU:
#   leave-one-out: the whole file without test X (X needed <=> this run passes),
#   pairs:         test X then the regression test (X enough alone <=> this run fails).
# Then, for the smallest failing set found, memcheck with the caching allocator off. Logs under $OUT; summary last.
#   bash bench/kernels/bisect_model_gpu.sh          (repo root on the GPU machine; ~5-8 min: 16 processes share one GPU)
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
F=tests/model/test_model_gpu.py
REG=$F::test_model_runs_after_a_cuda_graph_decoder_is_released
mapfile -t EARLIER < <(python3 -m pytest -q --collect-only -m gpu $F 2>/dev/null | grep "::" | grep -v released)
run() {  # NAME ARGS...
  local name=$1; shift
  timeout "${RUN_S:-280}" python3 -m pytest -q -p no:cacheprovider -m gpu "$@" > "$OUT/$name.log" 2>&1
  echo "rc=$?" >> "$OUT/$name.log"
}
i=0
for t in "${EARLIER[@]}"; do
  i=$((i + 1))
  run "loo_$i" $F --deselect "$t" &
  run "pair_$i" "$t" "$REG" &
done
wait
{
  echo "earlier tests: ${#EARLIER[@]}"
  i=0
  for t in "${EARLIER[@]}"; do
    i=$((i + 1))
    echo "$t :: without it $(tail -n 1 "$OUT/loo_$i.log") | it then the regression test $(tail -n 1 "$OUT/pair_$i.log")"
  done
} | tee "$OUT/summary.txt"
# memcheck on the first pair that failed, if any
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
i=0
for t in "${EARLIER[@]}"; do
  i=$((i + 1))
  if ! grep -q "rc=0" "$OUT/pair_$i.log" && [ -n "$SAN" ]; then
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "${SAN_S:-300}" "$SAN" --tool memcheck --print-limit 20 \
      python3 -m pytest -q -p no:cacheprovider -m gpu "$t" "$REG" > "$OUT/memcheck_pair_$i.log" 2>&1
    tail -n 40 "$OUT/memcheck_pair_$i.log"
    break
  fi
done
