"""Evaluation: how good a model is, and where it looked.

- ``metrics``: accuracy, macro-F1, per-class scores, confusion matrix, and the one bootstrap behind every interval;
- ``evaluate``: the evaluate command's library side (a model scored on a split);
- ``calibration``: reliability diagram and expected calibration error;
- ``plots``: figures; ``report``: one self-contained HTML page of an evaluation, a comparison or an experiment
  (a package: inputs, figures, gallery, sections, render; the template is in ``templates/``);
- ``explain``: Grad-CAM heat maps (``emotionlab explain``, and the report's misclassified gallery).
"""
