#!/usr/bin/env bash
# The v4 default and ferplus8 (issue 15, session 6): fer_cnn_wide pre-trained on FER+ for 15 epochs (as long as
# EfficientNet-Lite0 was), then the shipped six-class recipe on the canonical seed split; 2 threads, one job at a time.
set -euo pipefail
export OMP_NUM_THREADS=2
emotionlab train --recipe pretrain --arch fer_cnn_wide --data ../shared/datasets/ferplus \
  --image-size 48 --augment light --epochs 15 --batch-size 64 --lr 2e-3 --optimizer adamw --weight-decay 1e-4 \
  --scheduler cosine --warmup-epochs 1 --ferplus-classes 8 --ferplus-targets soft --seed 0 --patience 3 \
  --no-progress --out runs/wide15_ferplus8          # 4,040 s; its model is models/wide_ferplus8.safetensors
emotionlab train --recipe finetune --init-from models/wide_ferplus8.safetensors \
  --data ../shared/datasets/seed-emotions --manifest benchmarks/splits/seed-emotions.csv --image-size 48 \
  --augment light --epochs 15 --batch-size 32 --lr 1e-3 --optimizer adamw --weight-decay 0.01 --scheduler cosine \
  --warmup-epochs 2 --label-smoothing 0.1 --patience 6 --backbone-lr-scale 0.3 --detect --detector blaze \
  --margin 0.1 --mix-ferplus ../shared/datasets/ferplus --mix-ratio 1.0 --mix-balanced --add-class neutral \
  --seed 0 --no-progress --out runs/wide15_seed6_balanced   # 334 s
python scripts/ship_models.py --model runs/wide15_seed6_balanced/model.safetensors --tta flip \
  --eight models/wide_ferplus8.safetensors
python benchmarks/default_model.py --previous benchmarks/results/default_model_v3.json \
  --eight src/emotionlab/assets/ferplus8_model.safetensors --cv benchmarks/results/cv_backbones.json \
  --cv-recipe wide15+flip
