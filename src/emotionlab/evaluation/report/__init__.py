"""One self-contained HTML report of an evaluation, several side by side, or an experiment."""

from emotionlab.evaluation.report.sections import *  # noqa: F403
from emotionlab.evaluation.report.sections import paired_accuracy_difference, write_report  # noqa: F401
