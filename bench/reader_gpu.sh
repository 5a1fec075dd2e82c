#!/usr/bin/env bash
# Drive the reader's GPU work inside `run` calls (repo root; $OUT comes back):
#   bench/reader_gpu.sh smoke            versions + per-phase step time/memory for both archs
#   bench/reader_gpu.sh launch MINUTES [STEPS] [CONFIG]   start GDN-2 and SDPA training in the background
#   bench/reader_gpu.sh train-fetch MIN [STEPS] [CONFIG] [ARCH]   train in the foreground and fetch (robust)
#   bench/reader_gpu.sh poll             tail logs, copy curves
#   bench/reader_gpu.sh eval [ARGS...]   background NIAH/QA eval + speed of both exported checkpoints
#   bench/reader_gpu.sh fetch            copy the GDN-2 checkpoint (shards + small files tarred) and results
set -o pipefail
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
W=/tmp/train
mkdir -p $W "$OUT"
case "$1" in
smoke)
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
  python3 -c "import torch, triton, tokenizers, transformers; print(torch.__version__, triton.__version__, tokenizers.__version__, transformers.__version__)"
  python3 bench/reader_smoke.py --data data "${@:2}" 2>&1 | tee "$OUT/smoke.txt"
  ;;
launch)
  MIN=$2; STEPS=${3:-auto}; CONFIG=${4:-default}
  if [ "$STEPS" = auto ]; then
    # time a few GDN-2 steps per phase, then size the run to fill MIN minutes (x0.8 for evals, data, the baseline)
    python3 bench/reader_smoke.py --data data --config $CONFIG --archs gdn2 --steps 2 --json $W/smoke.json 2>&1 | tail -n 6
    STEPS=$(python3 -c "
import json; from model.train import named_config
c = named_config('$CONFIG'); t = json.load(open('$W/smoke.json'))['gdn2']
ph = sorted(c.curriculum, key=lambda p: p.start); fr = [b.start for b in ph[1:]] + [1.0]
per = sum((f - p.start) * t[str(p.seq_len)] for p, f in zip(ph, fr)) / 1000
print(int($MIN * 60 * 0.8 / per))")
    echo "auto steps: $STEPS"
  fi
  rm -rf $W/gdn2 $W/transformer $W/ck_gdn2 $W/ck_transformer
  rm -rf $W/data; cp -r data $W/data
  for arch in gdn2 transformer; do
    setsid nohup python3 -m model.train train --config $CONFIG --arch $arch --data $W/data --out $W/$arch \
      --export $W/ck_$arch --max-minutes "$MIN" --num-workers 6 ${STEPS:+--steps $STEPS} > $W/$arch.log 2>&1 < /dev/null &
  done
  sleep 60; tail -n 4 $W/*.log
  ;;
train-fetch)
  # the robust way inside 10-minute calls: train in the foreground (cap MIN minutes), export, and bring
  # the checkpoint back in the same call, so a hold that ends later cannot lose it
  MIN=${2:-7}; STEPS=${3:-2400}; CONFIG=${4:-default}; ARCH=${5:-gdn2}
  rm -rf $W/$ARCH $W/ck_$ARCH $W/data; cp -r data $W/data
  python3 -m model.train train --config $CONFIG --arch $ARCH --data $W/data --out $W/$ARCH --export $W/ck_$ARCH \
    --steps $STEPS --max-minutes "$MIN" --num-workers 8 2>&1 | grep -v "Writing model" | tee $W/$ARCH.log | tail -n 12
  cp $W/ck_$ARCH/model*.safetensors "$OUT/"
  tar -C $W/ck_$ARCH -cf "$OUT/ck_small_$ARCH.tar" --exclude='model*.safetensors' .
  ls -la "$OUT"
  ;;
poll)
  tail -n 3 $W/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for arch in gdn2 transformer; do [ -f $W/$arch/history.jsonl ] && cp $W/$arch/history.jsonl "$OUT/history_$arch.jsonl"; done
  ls $W/ck_* 2>/dev/null | head -20
  ;;
eval)
  setsid nohup bash -c "python3 bench/reader_eval.py --ckpt $W/ck_gdn2 --ckpt $W/ck_transformer --data $W/data --out $W/eval.json ${*:2} > $W/eval.log 2>&1; python3 bench/reader_speed.py --ckpt $W/ck_gdn2 --ckpt $W/ck_transformer --out $W/speed.json > $W/speed.log 2>&1" < /dev/null > /dev/null 2>&1 &
  sleep 20; tail -n 5 $W/eval.log
  ;;
fetch)
  tail -n 30 $W/eval.log; tail -n 15 $W/speed.log
  cp $W/ck_gdn2/model-*.safetensors "$OUT/" 2>/dev/null || cp $W/ck_gdn2/model.safetensors "$OUT/"
  tar -C $W/ck_gdn2 -cf "$OUT/ck_small.tar" --exclude='model*.safetensors' .
  tar -C $W -cf "$OUT/results.tar" eval.json eval.log speed.json speed.log gdn2.log transformer.log \
      transformer/history.jsonl ck_transformer/curves.png ck_transformer/train_config.json 2>/dev/null
  ls -la "$OUT"
  ;;
*) echo "usage: $0 smoke|launch MIN [STEPS]|train-fetch MIN [STEPS] [CONFIG] [ARCH]|poll|eval|fetch" >&2; exit 2 ;;
esac
