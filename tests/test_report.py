"""The HTML report: one self-contained page per evaluation, comparison or experiment; escaped file names,
near-duplicates shown once, paired differences on the same images, calibration error."""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.calibration import calibration_summary, expected_calibration_error
from emotionlab.evaluation.metrics import compute_metrics
from emotionlab.evaluation.report import paired_accuracy_difference, write_report
from emotionlab.labels import EMOTIONS
from emotionlab.synthetic import make_face

runner = CliRunner()
ABLATION = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "ablation.json"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, **wanted) -> list[dict]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and all(wanted[key] in (attrs.get(key) or "").split() for key in wanted)
        ]


def write_evaluation(
    folder: Path, paths, truth, predicted, *, confidence=0.9, model="gone.safetensors"
) -> Path:
    """An evaluation folder as ``emotionlab evaluate`` writes it (metrics.json, predictions.csv)."""
    labels = list(EMOTIONS)
    probabilities = np.full((len(paths), len(labels)), (1 - confidence) / (len(labels) - 1))
    probabilities[np.arange(len(paths)), predicted] = confidence
    metrics = compute_metrics(np.asarray(truth), probabilities, labels, ci=False)  # intervals: not under test
    metrics.update(split="test", model=str(model), architecture="seed_cnn", overlap_with_training=None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with (folder / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "pred", "confidence", *labels])
        for path, true, row in zip(paths, truth, probabilities, strict=True):
            writer.writerow(
                [path, labels[true], labels[row.argmax()], f"{row.max():.4f}", *(f"{p:.4f}" for p in row)]
            )
    return folder


def test_evaluate_report_is_one_self_contained_page_with_a_gradcam_tile_per_mistake(
    trained_model, tiny_dataset, tmp_path
):
    out = tmp_path / "evaluation"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(trained_model),
            "--data",
            str(tiny_dataset),
            "--split",
            "test",
            "--out",
            str(out),
            "--report",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'}" in result.output
    html = (out / "report.html").read_text()
    page = Tags(html)
    # Self-contained: every image inline, no stylesheet or script file, links only within the page.
    assert page.all("img") and all(img["src"].startswith("data:image/") for img in page.all("img"))
    assert not page.all("link") and not [s for s in page.all("script") if "src" in s]
    assert all(a["href"].startswith("#") for a in page.all("a"))
    assert "default-src 'none'" in page.all("meta", **{"http-equiv": "Content-Security-Policy"})[0]["content"]
    text = " ".join(page.text)
    for heading in (
        "Summary",
        "Per class",
        "Confusion matrix",
        "Training curves",
        "Calibration",
        "Misclassified",
    ):
        assert heading in text
    assert all(label in text for label in EMOTIONS)
    with (out / "predictions.csv").open() as handle:
        wrong = [row for row in csv.DictReader(handle) if row["true"] != row["pred"]]
    tiles = page.all("figure", **{"class": "tile"})
    folded = sum(int(count) for count in re.findall(r"\+ (\d+) near-duplicate", html))
    assert len(tiles) + folded == len(wrong) >= 1
    shown = {tile["data-name"] for tile in tiles}
    assert shown <= {row["path"] for row in wrong}
    # Each mistake: the face and its Grad-CAM overlay.
    assert len(page.all("img")) == 2 + 2 * len(tiles)  # + training curves and reliability diagram
    assert len([img for img in page.all("img") if img["alt"].startswith("Grad-CAM for")]) == len(tiles)


def test_file_names_are_escaped_and_near_duplicates_are_shown_once(tmp_path):
    data = tmp_path / "data"
    (data / "sad").mkdir(parents=True)
    rng = np.random.default_rng(0)
    face = make_face("sad", rng, 64)
    hostile = '"><img src=x onerror=alert(1)>.png'
    for name in ("a.png", "a_copy.png"):
        face.save(data / "sad" / name)
    make_face("angry", rng, 64).save(data / "sad" / hostile)
    paths = ["sad/a.png", "sad/a_copy.png", f"sad/{hostile}", "sad/right.png"]
    folder = write_evaluation(tmp_path / "evaluation", paths, truth=[3, 3, 3, 3], predicted=[2, 2, 0, 3])
    path = write_report([folder], data_root=data)
    assert path == folder / "report.html"
    html = path.read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.png" in html
    tiles = Tags(html).all("figure", **{"class": "tile"})
    assert [tile["data-name"] for tile in tiles] == ["sad/a.png", f"sad/{hostile}"]
    assert "+ 1 near-duplicate(s), same mistake" in html and "<li>sad/a_copy.png</li>" in html
    assert "model file gone.safetensors not found" in html  # the faces still show, without Grad-CAM
    assert len(Tags(html).all("img")) == 1 + 2  # reliability diagram, two faces


def test_a_comparison_gives_the_paired_difference_on_the_same_images(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, 200)
    first = np.where(np.arange(200) < 120, truth, (truth + 1) % 5)  # right on the first 120
    second = np.where(np.arange(200) < 150, truth, (truth + 1) % 5)  # those and 30 more
    paths = [f"img{i}.png" for i in range(200)]
    a = write_evaluation(tmp_path / "a", paths, truth, first)
    b = write_evaluation(tmp_path / "b", paths, truth, second)
    other = write_evaluation(tmp_path / "other", [f"x{i}.png" for i in range(20)], truth[:20], truth[:20])

    paired = paired_accuracy_difference(truth, first, second)
    assert (
        paired["difference"] == pytest.approx(0.15)
        and paired["only_second"] == 30
        and paired["only_first"] == 0
    )
    assert 0.09 < paired["ci95"][0] < 0.15 < paired["ci95"][1] < 0.21

    path = write_report([a, b, other], tmp_path / "compare.html", gradcam=False)
    html = path.read_text()
    rows = {row["data-run"] for row in Tags(html).all("tr") if "data-run" in row}
    assert rows == {"b", "other"}
    assert re.search(r'<tr data-run="b">.*?\+15\.0.*?</tr>', html, re.DOTALL)
    assert re.search(r'<tr data-run="other">.*?no image in common: not paired.*?</tr>', html, re.DOTALL)


def test_experiment_results_render_ablation_and_cross_validation(tmp_path):
    html = write_report([ABLATION], tmp_path / "ablation.html").read_text()
    results = json.loads(ABLATION.read_text())
    text = " ".join(Tags(html).text)
    assert all(row["title"] in text for row in results["rows"].values())
    assert "not a paired difference" in html

    labels = list(EMOTIONS)
    recipe = {
        "accuracy": 0.7,
        "accuracy_ci95": [0.65, 0.75],
        "macro_f1": 0.68,
        "macro_f1_ci95": [0.62, 0.73],
        "per_class_recall": dict.fromkeys(labels, 0.7),
        "confusion_matrix": np.eye(5, dtype=int).tolist(),
        "train_seconds": 12.0,
        "runs": [],
    }
    cv = {
        "settings": {"folds": 5},
        "num_images": 900,
        "labels": labels,
        "folds": [180] * 5,
        "recipes": {"base": recipe, "wide": {**recipe, "accuracy": 0.74}},
        "paired": [{"first": "wide", "second": "base", "accuracy_difference": 0.04, "ci95": [0.01, 0.07]}],
        "command": "emotionlab experiment cv ...",
    }
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "cv.json").write_text(json.dumps(cv))
    html = write_report([tmp_path / "cv"]).read_text()  # a folder holding cv.json; written beside it
    assert (tmp_path / "cv" / "cv.html").is_file()
    assert 'data-recipe="base"' in html and 'data-recipe="wide"' in html
    assert re.search(r"wide − base</td><td class=\"better\">\+4\.0", html)


def test_calibration_error_is_the_gap_between_confidence_and_accuracy():
    assert expected_calibration_error([0.8] * 10, [1] * 8 + [0] * 2) == pytest.approx(0.0)
    assert expected_calibration_error([0.95] * 10, [1] * 6 + [0] * 4) == pytest.approx(0.35)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == pytest.approx(0.0)  # 1.0 falls in the last bin
    summary = calibration_summary([0.95] * 50 + [0.35] * 50, [1] * 30 + [0] * 20 + [1] * 20 + [0] * 30)
    assert summary["ece"] == pytest.approx(0.5 * 0.35 + 0.5 * 0.05)
    assert summary["ece_ci95"][0] <= summary["ece"] <= summary["ece_ci95"][1]
    assert sum(row["count"] for row in summary["bins"]) == 100


def test_report_of_a_folder_that_is_not_an_evaluation_says_what_to_give(tmp_path):
    with pytest.raises(EmotionlabError, match="neither an evaluation folder"):
        write_report([tmp_path])
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(
        EmotionlabError, match="no predictions.csv; give a folder written by `emotionlab evaluate`"
    ):
        write_report([tmp_path])
    result = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code != 0


def test_gallery_images_are_found_under_the_data_root_of_a_whole_image_model(
    trained_model, tiny_dataset, tmp_path
):
    """`emotionlab report` on a folder (no crops in memory) reads the images again and adds Grad-CAM."""
    out = tmp_path / "evaluation"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(trained_model),
            "--data",
            str(tiny_dataset),
            "--split",
            "test",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["report", str(out), "--data", str(tiny_dataset), "--output", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 0, result.output
    page = Tags((tmp_path / "r.html").read_text())
    tiles = page.all("figure", **{"class": "tile"})
    assert tiles and len([img for img in page.all("img") if img["alt"].startswith("Grad-CAM")]) == len(tiles)
