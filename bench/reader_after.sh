#!/usr/bin/env bash
# After the GDN-2 run: wait for its checkpoint, then train the SDPA baseline for the same steps and schedule
# (background) while the GDN-2 checkpoint is evaluated (background). Args: EVAL_ARGS...
set -o pipefail
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
W=/tmp/train
# a fresh machine has no run folder: say so at once instead of waiting for a checkpoint that cannot come
[ -d $W/gdn2 ] || { echo "no $W/gdn2 on this machine: the training machine is gone" >&2; exit 3; }
for i in $(seq 1 100); do [ -f $W/ck_gdn2/config.json ] && break; pgrep -f "arch gdn2 --data" > /dev/null || break; sleep 5; done
tail -n 3 $W/gdn2.log
read TOTAL LAST < <(python3 -c "
import json; rows=[json.loads(l) for l in open('$W/gdn2/history.jsonl')]
import torch; st=torch.load('$W/gdn2/resume.pt', map_location='cpu', weights_only=False)
print(st['config']['steps'], st['step'])")
echo "gdn2 ran $LAST of $TOTAL steps"
# baseline: train, then NIAH at 4k/16k + a little QA, then speed/memory of both readers
setsid nohup bash -c "python3 -m model.train train --config default --arch transformer --data $W/data \
  --out $W/transformer --export $W/ck_transformer --steps $TOTAL --stop-at $LAST --num-workers 6 > $W/transformer.log 2>&1; \
  python3 bench/reader_eval.py --ckpt $W/ck_transformer --data $W/data --out $W/eval_transformer.json \
  --lengths 4096 16384 --qa-lengths 4096 --n-short 25 --n-qa-short 50 --question-last-max 4096 > $W/eval_transformer.log 2>&1; \
  python3 bench/reader_speed.py --ckpt $W/ck_gdn2 --ckpt $W/ck_transformer --repeats 2 --out $W/speed.json > $W/speed.log 2>&1" \
  < /dev/null > /dev/null 2>&1 &
setsid nohup python3 bench/reader_eval.py --ckpt $W/ck_gdn2 --data $W/data --out $W/eval_gdn2.json "$@" \
  > $W/eval_gdn2.log 2>&1 < /dev/null &
sleep 30; tail -n 3 $W/transformer.log $W/eval_gdn2.log
