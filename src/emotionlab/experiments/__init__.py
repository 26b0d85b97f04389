"""Experiments (``emotionlab experiment``): many training runs scored side by side.

- ``ablation``: the study's steps (baseline -> +augmentation -> +transfer -> +fine-tuning -> face crops), several
  seeds each, on the canonical split (``emotionlab experiment ablation``);
- ``crossval``: candidate recipes compared out of fold on the train + validation images
  (``emotionlab experiment cv``);
- ``runs``: ``run_or_reuse``, train one run or reuse / resume it, shared by both.

The bootstrap intervals and macro-F1 they report come from ``emotionlab.evaluation.metrics``.
"""
