#!/usr/bin/env bash
# Chained after the FER+ pre-training: fine-tune on the seed photos + FER+ (balanced mix, then as-is), one job at a time.
cd /work/main
while pgrep -f "resume runs/lite0_ferplus8" >/dev/null; do sleep 10; done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
COMMON="--recipe finetune --init-from runs/lite0_ferplus8/model.safetensors --data ../shared/datasets/seed-emotions \
 --manifest benchmarks/splits/seed-emotions.csv --image-size 64 --augment light --epochs 15 --batch-size 32 --lr 1e-3 \
 --optimizer adamw --weight-decay 0.01 --scheduler cosine --warmup-epochs 2 --label-smoothing 0.1 --patience 6 \
 --backbone-lr-scale 0.3 --detect --detector blaze --margin 0.1 --mix-ferplus ../shared/datasets/ferplus --mix-ratio 1.0 \
 --add-class neutral --seed 0 --workers 0 --no-progress"
nice -n -10 .venv/bin/emotionlab train $COMMON --mix-balanced --out runs/lite0_seed6_balanced > runs/lite0_seed6_balanced.log 2>&1
touch runs/FINETUNE_B_DONE
nice -n -10 .venv/bin/emotionlab train $COMMON --out runs/lite0_seed6_asis > runs/lite0_seed6_asis.log 2>&1
touch runs/FINETUNE_A_DONE
