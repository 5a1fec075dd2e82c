#!/usr/bin/env bash
# One training round of reader v3 on the GPU machine, in one foreground `run` call (repo root; $OUT comes back):
#   bench/model/reader_v3_round.sh NAME MINUTES STEPS [TRAIN ARGS...]
# trains (resuming from /tmp/v3/NAME/state.pt if a warm machine still has it), exports the checkpoint,
# scores it on the generated held-out samples, reads the natural dev contexts carried in .natural/
# (ctx_dev_*.jsonl.xz; bench/rag/natural/reader_replay.py export makes them on the CPU), and copies the
# checkpoint, the spans and the log to $OUT. Needs runs/v3/minilm (export-minilm) and runs/v3/data.jsonl.xz
# carried (how, in two calls: bench/model/reader_v3_train.py).
set -o pipefail
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
NAME=$1 MIN=$2 STEPS=$3
W=/tmp/v3/$NAME
mkdir -p "$W" "$OUT"
T=bench/model/reader_v3_train.py
python3 $T train --data runs/v3/data.jsonl.xz --base runs/v3/minilm --state $W/state.pt --log $W/log.jsonl \
  --device cuda --steps "$STEPS" --max-minutes "$MIN" --workers 12 --log-every 100 --save-every 400 \
  --eval-every 0 "${@:4}" 2>&1 | tail -n 4
cp $W/log.jsonl "$OUT/train_log.jsonl"
python3 -c "import json,sys; r=[json.loads(l) for l in open('$W/log.jsonl')]; sys.exit(0 if r[-1].get('reason')=='steps' else 3)" \
  || { echo "stopped on time: call again to resume"; exit 0; }
python3 $T export --state $W/state.pt --out $W/ckpt --base runs/v3/minilm --dtype bfloat16 | tail -n 1
cp $W/ckpt/* "$OUT/"
for ctx in .natural/ctx_dev_*.jsonl.xz; do
  b=$(basename "$ctx" .jsonl.xz)
  python3 bench/rag/natural/reader_replay.py read --contexts "$ctx" --checkpoint $W/ckpt --base runs/v3/minilm \
    --out "$OUT/spans_${b#ctx_}.jsonl" 2>&1 | tail -n 1
done
ls -la "$OUT"
