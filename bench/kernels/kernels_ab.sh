#!/usr/bin/env bash
# A/B of kernel versions in one device call, against this tree's kernels and FLA in the same run.
#   bash bench/kernels/kernels_ab.sh --export kernels-no-gamma kernels-save-scores   # CPU machine: each ref's gdn2_kernels/
#                                                                           # into .ab/<ref>/ (git-ignored)
#   bash bench/kernels/kernels_ab.sh .ab/kernels-no-gamma .ab/kernels-save-scores   # device, carry [".whl", ".ab"]
# This tree is timed first with FLA; each directory then shadows the `gdn2_kernels` package and is timed without
# FLA. Forward and forward+backward only (the branches do not touch decode): about 2-3 min per tree on an H200. Logs and JSON under $OUT; the tables print last.
set -eu
if [ "${1:-}" = "--export" ]; then
  shift
  for ref in "$@"; do
    rm -rf ".ab/$ref" && mkdir -p ".ab/$ref"
    git archive "$ref" gdn2_kernels | tar -x -C ".ab/$ref"
  done
  exit 0
fi
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1 || true
PYTHONPATH=/tmp/site:. python3 -u bench/kernels/kernels_bench.py --rep 100 --modes fwd,fwdbwd \
  --json "$OUT/bench_main.json" > "$OUT/bench_main.log" 2>&1
for dir in "$@"; do
  name=$(basename "$dir")
  PYTHONPATH="$dir:." python3 -u bench/kernels/kernels_bench.py --rep 100 --no-fla --modes fwd,fwdbwd \
    --json "$OUT/bench_$name.json" > "$OUT/bench_$name.log" 2>&1
done
for log in "$OUT"/bench_*.log; do
  echo "== $log"
  grep '^|' "$log"
done
