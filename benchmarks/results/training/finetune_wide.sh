#!/usr/bin/env bash
# Candidate C: the shipped fer_cnn_wide eight-class FER+ model (ferplus8) + neutral, balanced FER+ mix, 48 px.
cd /work/main
while [ ! -f runs/FINETUNE_A_DONE ]; do sleep 5; done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
nice -n -10 .venv/bin/emotionlab train --recipe finetune --init-from src/emotionlab/assets/ferplus8_model.safetensors \
 --data ../shared/datasets/seed-emotions --manifest benchmarks/splits/seed-emotions.csv --image-size 48 --augment light \
 --epochs 15 --batch-size 32 --lr 1e-3 --optimizer adamw --weight-decay 0.01 --scheduler cosine --warmup-epochs 2 \
 --label-smoothing 0.1 --patience 6 --backbone-lr-scale 0.3 --detect --detector blaze --margin 0.1 \
 --mix-ferplus ../shared/datasets/ferplus --mix-ratio 1.0 --mix-balanced --add-class neutral --seed 0 --workers 0 \
 --no-progress --out runs/wide_seed6_balanced > runs/wide_seed6_balanced.log 2>&1
touch runs/FINETUNE_C_DONE
