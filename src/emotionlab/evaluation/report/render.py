"""The page: the sections for the given inputs rendered through the Jinja2 template (autoescaped: file names
are user data) and written atomically, readable by others, as one self-contained HTML file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.report.inputs import (
    classify_input,
    experiment_file,
    experiment_kind,
    load_evaluation,
    read_experiment,
    unique_names,
)
from emotionlab.evaluation.report.sections import (
    ablation_context,
    comparison_context,
    cv_context,
    evaluation_context,
)
from emotionlab.isolation import printable


def _percent(value, digits: int = 1) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and np.isnan(value))
        else f"{100 * value:.{digits}f}"
    )


def _signed_percent(value, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:+.{digits}f}"


def render(context: dict) -> str:
    """The report page for ``context`` (``kind``: evaluation, comparison, ablation or cv)."""
    import jinja2

    from emotionlab.version import __version__

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("emotionlab.evaluation", "templates"),
        autoescape=True,  # file names and labels are user data; the template's name ends in .j2, so say it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pct"] = _percent
    environment.filters["signed_pct"] = _signed_percent
    template = environment.get_template("report.html.j2")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return template.render(version=__version__, generated=generated, **context)


def write_report(
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    model: str | Path | None = None,
    gradcam: bool = True,
    gallery_limit: int | None = None,
    crops: dict | None = None,
    title: str | None = None,
) -> Path:
    """Write the report of one evaluation folder, several (compared), or one experiment JSON; returns its path.

    Default ``out``: ``report.html`` in the evaluation folder, else ``<experiment>.html`` beside the JSON file,
    else ``report.html`` here. ``crops``: the face crops evaluation classified, by predictions.csv path.
    """
    paths = [Path(item) for item in inputs]
    if not paths:
        raise EmotionlabError("report: give an evaluation folder, several, or an experiment JSON file")
    kinds = {classify_input(path) for path in paths}
    if kinds == {"experiment"} and len(paths) == 1:
        source = experiment_file(paths[0])
        results = read_experiment(source)
        kind = experiment_kind(results if isinstance(results, dict) else {})
        section = cv_context(results) if kind == "cv" else ablation_context(results)
        context = {
            "kind": kind,
            "title": title or f"{'Cross-validation' if kind == 'cv' else 'Ablation'}: {source.name}",
            "inputs": [str(source)],
            kind: section,
        }
        default_out = source.with_suffix(".html")
    elif kinds == {"evaluation"}:
        runs = [load_evaluation(path) for path in paths]
        unique_names(runs)
        if len(runs) == 1:
            run = runs[0]
            context = {
                "kind": "evaluation",
                "title": title or f"Evaluation: {run.name} ({run.metrics.get('split')} split)",
                "inputs": [str(run.folder)],
                "runs": [
                    evaluation_context(
                        run,
                        crops=crops,
                        data_root=data_root,
                        model=model,
                        gradcam=gradcam,
                        gallery_limit=gallery_limit,
                    )
                ],
            }
            default_out = run.folder / "report.html"
        else:
            context = {
                "kind": "comparison",
                "title": title or f"Comparison of {len(runs)} evaluations",
                "inputs": [str(run.folder) for run in runs],
                "comparison": comparison_context(runs),
                "runs": [
                    evaluation_context(
                        run, data_root=data_root, model=model, gradcam=gradcam, gallery_limit=gallery_limit
                    )
                    for run in runs
                ],
            }
            default_out = Path("report.html")
    else:
        raise EmotionlabError(
            "report: give evaluation folders (to compare) or one experiment JSON file, not a mix"
        )
    target = Path(out) if out is not None else default_out
    target.parent.mkdir(parents=True, exist_ok=True)
    from emotionlab.fileio import write_atomic

    html = printable(render(context))  # a surrogate left in a file name would make the page invalid UTF-8

    def write(temporary: str) -> None:
        Path(temporary).write_text(html, encoding="utf-8")
        os.chmod(temporary, 0o644)  # a page to share, not the private 0600 of a temporary file

    write_atomic(target, write)
    return target
