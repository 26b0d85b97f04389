"""One self-contained HTML report of an evaluation, of several evaluations side by side, or of an experiment.

    emotionlab evaluate --report                     # report.html beside metrics.json
    emotionlab report runs/evaluation                # the same, from an evaluation folder
    emotionlab report runs/eval-a runs/eval-b --out compare.html     # paired differences on the same images
    emotionlab report benchmarks/results/ablation.json --out ablation.html
    emotionlab report runs/cv/cv.json --out cv.html

An evaluation's report holds the headline figures with 95% intervals, per-class precision/recall/F1, the
confusion matrix (counts and row %), training curves, calibration (reliability diagram, expected calibration
error) and every misclassified image with its file name, labels, confidence and a Grad-CAM overlay, sortable.
The page is one file: figures are inlined as ``data:`` URIs, style and the few lines of sorting script are in
it, and its Content-Security-Policy forbids any fetch, so it opens from disk, offline, and sends nothing.
File names are user data: the template is rendered with autoescaping.

One module per job, in the order the report is made:

- ``inputs``: reading evaluation folders (metrics.json, predictions.csv) and experiment JSON (ablation, cv);
- ``figures``: figures and images as ``data:`` URIs, the interval plot, the confusion matrix as a table;
- ``gallery``: the misclassified images with their Grad-CAM overlays;
- ``sections``: what the template shows for one evaluation, a comparison, an ablation or a cross-validation;
- ``render``: the Jinja2 page (template in ``evaluation/templates``) and ``write_report``, which writes it.
"""

from emotionlab.evaluation.report.gallery import GalleryItem, build_gallery
from emotionlab.evaluation.report.inputs import EvaluationRun, experiment_kind, load_evaluation
from emotionlab.evaluation.report.render import write_report
from emotionlab.evaluation.report.sections import (
    ablation_context,
    comparison_context,
    cv_context,
    evaluation_context,
    paired_accuracy_difference,
)

__all__ = [
    "EvaluationRun",
    "GalleryItem",
    "ablation_context",
    "build_gallery",
    "comparison_context",
    "cv_context",
    "evaluation_context",
    "experiment_kind",
    "load_evaluation",
    "paired_accuracy_difference",
    "write_report",
]
