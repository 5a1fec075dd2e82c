#!/usr/bin/env bash
# The reader's GPU work, each mode one foreground `run` call of <= 10 minutes (repo root; $OUT comes back):
#   bench/model/reader_gpu.sh smoke [ARGS]                 versions + per-phase step time/memory for both archs
#   bench/model/reader_gpu.sh train-fetch MIN [CONFIG] [ARCH] [STEPS]
#       train (capped at MIN minutes), export, and copy the checkpoint to $OUT in the same call: a hold can
#       end between calls, and a background run dies with its machine (this lost a run once)
#   bench/model/reader_gpu.sh baseline-eval MIN CKPT [CONFIG] [EVAL ARGS...]
#       train the same-size SDPA baseline for as many steps as CKPT's run took, then evaluate both
#       (bench/model/reader_eval.py) and time them (bench/model/reader_speed.py); results and the baseline's files to $OUT
set -o pipefail
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
W=/tmp/train
mkdir -p $W "$OUT"
train() {  # ARCH MIN CONFIG [TRAIN ARGS...]
  rm -rf $W/$1 $W/ck_$1
  python3 -m gdn2_model.train train --config $3 --arch $1 --data $W/data --out $W/$1 --export $W/ck_$1 \
    --max-minutes "$2" --num-workers 12 "${@:4}" 2>&1 | grep -v "Writing model" | tee $W/$1.log | tail -n 6
  cp $W/$1/history.jsonl "$OUT/history_$1.jsonl"
}
rm -rf $W/data && cp -r data $W/data
case "$1" in
smoke)
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
  python3 -c "import torch, triton, tokenizers, transformers; print(torch.__version__, triton.__version__, tokenizers.__version__, transformers.__version__)"
  python3 bench/model/reader_smoke.py --data data "${@:2}" 2>&1 | tee "$OUT/smoke.txt"
  ;;
train-fetch)
  ARCH=${4:-gdn2}
  train $ARCH "${2:-8}" "${3:-default}" ${5:+--steps $5}
  cp $W/ck_$ARCH/model*.safetensors "$OUT/"
  tar -C $W/ck_$ARCH -cf "$OUT/ck_small_$ARCH.tar" --exclude='model*.safetensors' .
  ls -la "$OUT"
  ;;
baseline-eval)
  CKPT=$3; CONFIG=${4:-default}
  # "the same steps": the schedule length and the step the GDN-2 run reached (it may have hit its time cap)
  read TOTAL LAST < <(python3 -c "
import json; c = json.load(open('$CKPT/train_config.json')); h = [json.loads(l) for l in open('$CKPT/history.jsonl')]
print(c['steps'], h[-1]['step'])")
  echo "GDN-2 run: $LAST of $TOTAL steps"
  train transformer "$2" $CONFIG --steps $TOTAL --stop-at $LAST
  python3 bench/model/reader_eval.py --ckpt $CKPT --ckpt $W/ck_transformer --data data --out "$OUT/eval.json" "${@:5}" \
    2>&1 | grep -v Loading | tee "$OUT/eval.log" | tail -n 40
  python3 bench/model/reader_speed.py --ckpt $CKPT --ckpt $W/ck_transformer --out "$OUT/speed.json" 2>&1 | tail -n 12
  cp $W/ck_transformer/curves.png "$OUT/curves_transformer.png"
  ;;
*) echo "usage: $0 smoke|train-fetch MIN [CONFIG] [ARCH] [STEPS]|baseline-eval MIN CKPT [CONFIG] [ARGS]" >&2; exit 2 ;;
esac
