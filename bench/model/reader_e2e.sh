#!/usr/bin/env bash
# End-to-end GPU check of the reader pipeline in a few minutes: train a few steps through every
# curriculum phase (GDN-2 and SDPA), export, reload, evaluate a handful of samples, time 4k/16k.
set -o pipefail
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
W=/tmp/e2e; rm -rf $W; mkdir -p $W "$OUT"
CONFIG=${1:-default}; STEPS=${2:-6}
for arch in gdn2 transformer; do
  python3 -m gdn2_model.train train --config $CONFIG --arch $arch --data data --out $W/$arch --export $W/ck_$arch \
    --steps $STEPS --num-workers 4 2>&1 | grep -v "Writing model" | tail -n 4
done
ls -la $W/ck_gdn2
python3 bench/model/reader_eval.py --ckpt $W/ck_gdn2 --ckpt $W/ck_transformer --data data --lengths 4096 16384 \
  --qa-lengths 4096 --n-short 2 --n-qa-short 3 --out $OUT/e2e_eval.json 2>&1 | grep -v Loading | tail -n 8
python3 bench/model/reader_speed.py --ckpt $W/ck_gdn2 --ckpt $W/ck_transformer --lengths 4096 16384 65536 --repeats 2 \
  --out $OUT/e2e_speed.json 2>&1 | grep -v Loading | tail -n 9
