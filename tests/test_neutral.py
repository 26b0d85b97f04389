"""The sixth class: a model that also knows a calm face (`neutral`) says so, and `--five` answers among the study's
five as its models did: predict, the Python API, evaluate (metrics, confusion, report), serve, compound readings
and the labeller's suggestions."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import model_metadata, run_cli, synthetic_faces
from typer.testing import CliRunner

import emotionlab
from emotionlab.cli import app
from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.metrics import compute_metrics
from emotionlab.inference.compound import compound_reading
from emotionlab.labels import EMOTIONS, NEUTRAL
from emotionlab.models.factory import create_model
from emotionlab.models.io import save_model_file
from emotionlab.synthetic import write_dataset

SIX = [*EMOTIONS, NEUTRAL]
# What the tiny models below answer whatever the face: neutral first, happy second, sad third.
CALM_BIAS = {"happy": 2.0, "sad": 1.0, NEUTRAL: 3.0}
runner = CliRunner()


def save_fixed_model(path: Path, labels=SIX, bias: dict[str, float] | None = None) -> Path:
    """A fer_cnn (whole images, 64 px) whose answer is its output bias alone: the same probabilities for
    every face, so what a test expects follows from ``bias``."""
    torch.manual_seed(0)
    net = create_model("fer_cnn", len(labels), image_size=64)
    with torch.no_grad():
        net.classifier.weight.zero_()
        net.classifier.bias.copy_(torch.tensor([(bias or CALM_BIAS).get(label, 0.0) for label in labels]))
    metadata = {**model_metadata("fer_cnn", faces=None, grayscale=True), "labels": list(labels)}
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model_file(path, net, metadata)


@pytest.fixture(scope="module")
def six_model(tmp_path_factory) -> Path:
    return save_fixed_model(tmp_path_factory.mktemp("six") / "six.safetensors")


@pytest.fixture(scope="module")
def face_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("face") / "face.png"
    synthetic_faces(1)[0].save(path)
    return path


# ---- compound readings ------------------------------------------------------------------------------------


def test_a_calm_face_has_no_compound_reading_and_neutral_is_never_half_of_one():
    calm = dict(zip(SIX, [0.02, 0.02, 0.3, 0.2, 0.02, 0.44], strict=True))
    assert compound_reading(calm, ratio=0.5) is None  # happy is 0.68 of neutral: still no "neutral + happy"
    mild = dict(zip(SIX, [0.02, 0.02, 0.5, 0.03, 0.03, 0.4], strict=True))
    assert compound_reading(mild, ratio=0.5) is None  # not "happy + neutral": a mild happy is happy
    # happy wins, neutral is second, surprised is 0.55 of happy
    blend = dict(zip(SIX, [0.01, 0.01, 0.4, 0.02, 0.22, 0.34], strict=True))
    reading = compound_reading(blend, ratio=0.5)
    assert reading["text"] == "happy + surprised" and reading["ratio"] == pytest.approx(0.55)
    # the same reading as the model restricted to the five (dropping neutral keeps the ratio)
    five = {label: blend[label] for label in EMOTIONS}
    assert compound_reading(five, ratio=0.5) == reading


# ---- predict and the Python API ---------------------------------------------------------------------------


def test_a_six_class_model_says_neutral_and_five_answers_among_the_five(six_model, face_file):
    full = json.loads(
        run_cli("predict", face_file, "--model", six_model, "--format", "jsonl").splitlines()[0]
    )
    assert full["label"] == NEUTRAL and list(full["probabilities"]) == SIX
    assert full["compound"] is None
    five = json.loads(
        run_cli("predict", face_file, "--model", six_model, "--format", "jsonl", "--five").splitlines()[0]
    )
    assert five["label"] == "happy" and list(five["probabilities"]) == list(EMOTIONS)
    assert sum(five["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # the five keep their proportions: happy / sad as in the full answer
    assert five["probabilities"]["happy"] / five["probabilities"]["sad"] == pytest.approx(
        full["probabilities"]["happy"] / full["probabilities"]["sad"], rel=1e-3
    )
    chosen = json.loads(
        run_cli(
            "predict", face_file, "--model", six_model, "--format", "jsonl", "--classes", "sad,neutral"
        ).splitlines()[0]
    )
    assert chosen["label"] == NEUTRAL and list(chosen["probabilities"]) == ["sad", NEUTRAL]
    table = run_cli("predict", face_file, "--model", six_model, "--five")
    assert "happy" in table and NEUTRAL not in table


def test_five_on_a_five_class_model_changes_nothing_and_a_missing_class_is_one_line(tmp_path, face_file):
    five_class = save_fixed_model(tmp_path / "five.safetensors", labels=EMOTIONS)
    plain = run_cli("predict", face_file, "--model", five_class, "--format", "jsonl")
    assert run_cli("predict", face_file, "--model", five_class, "--format", "jsonl", "--five") == plain
    result = runner.invoke(
        app, ["predict", str(face_file), "--model", str(five_class), "--classes", "sad,neutral"]
    )
    assert isinstance(result.exception, EmotionlabError)  # the console entry point prints it as one line
    message = str(result.exception)
    assert "no class neutral" in message and "\n" not in message
    both = runner.invoke(
        app, ["predict", str(face_file), "--model", str(five_class), "--five", "--classes", "a,b"]
    )
    assert isinstance(both.exception, EmotionlabError) and "one of them" in str(both.exception)


def test_the_python_api_takes_the_classes(six_model, face_file):
    assert emotionlab.load_model(six_model).predict(face_file)["label"] == NEUTRAL
    five = emotionlab.load_model(six_model, classes=EMOTIONS)
    assert five.labels == list(EMOTIONS) and five.predict(face_file)["label"] == "happy"
    with pytest.raises(EmotionlabError, match="no class contempt"):
        emotionlab.load_model(six_model, classes=["happy", "contempt"])


# ---- evaluation -------------------------------------------------------------------------------------------


def test_an_answer_of_neutral_on_photos_of_the_five_is_a_miss_in_every_figure():
    # four photos of each emotion; the model gets three right and calls the fourth neutral
    truth = np.repeat(np.arange(5), 4)
    answers = np.where(np.arange(20) % 4 == 3, SIX.index(NEUTRAL), truth)
    probabilities = np.eye(6)[answers] * 0.9 + 0.1 / 6
    metrics = compute_metrics(truth, probabilities, SIX, data_labels=list(EMOTIONS))
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert list(metrics["per_class"]) == list(EMOTIONS)
    assert all(
        row["recall"] == pytest.approx(0.75) and row["precision"] == 1.0
        for row in metrics["per_class"].values()
    )
    # macro-F1 over the five (F1 = 2 * 1 * 0.75 / 1.75), not dragged down by a sixth class with no photos
    assert metrics["macro_f1"] == pytest.approx(1.5 / 1.75)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (5, 6) and (matrix[:, 5] == 1).all() and (np.diag(matrix[:, :5]) == 3).all()
    assert metrics["answers_outside_data"] == {NEUTRAL: 5}
    # without the data's classes every model class is a row, as before
    square = compute_metrics(truth, probabilities, SIX)
    assert np.array(square["confusion_matrix"]).shape == (6, 6) and square["macro_f1"] < metrics["macro_f1"]


@pytest.fixture(scope="module")
def five_emotion_photos(tmp_path_factory) -> Path:
    """Three photos of each of the five emotions, no neutral (as the study's photos), in a test split."""
    return write_dataset(
        tmp_path_factory.mktemp("photos") / "faces", per_class=3, splits={"test": 1.0}, seed=2
    )


def test_evaluate_scores_neutral_answers_as_misses_and_five_gives_the_restricted_figures(
    six_model, five_emotion_photos, tmp_path
):
    full_dir, five_dir = tmp_path / "full", tmp_path / "five"
    output = run_cli("evaluate", "--model", six_model, "--data", five_emotion_photos, "--out", full_dir)
    assert "neutral for 15 of the 15 images" in output
    full = json.loads((full_dir / "metrics.json").read_text())
    assert full["accuracy"] == 0.0 and full["answers_outside_data"] == {NEUTRAL: 15}
    assert (
        full["labels"] == SIX
        and full["data_labels"] == list(EMOTIONS)
        and list(full["per_class"]) == list(EMOTIONS)
    )
    assert np.array(full["confusion_matrix"]).shape == (5, 6)
    with (full_dir / "predictions.csv").open() as handle:
        assert {row["pred"] for row in csv.DictReader(handle)} == {NEUTRAL}

    run_cli("evaluate", "--model", six_model, "--data", five_emotion_photos, "--out", five_dir, "--five")
    five = json.loads((five_dir / "metrics.json").read_text())
    # every answer is now happy, the model's most likely emotion: right on the three happy photos
    assert five["labels"] == list(EMOTIONS) and five["restricted_from"] == SIX
    assert five["accuracy"] == pytest.approx(3 / 15) and five["per_class"]["happy"]["recall"] == 1.0
    assert np.array(five["confusion_matrix"]).shape == (5, 5) and five["answers_outside_data"] == {}

    # the report: the neutral column marked, the misses said, and the two runs paired on the same photos
    page = tmp_path / "full.html"
    run_cli("report", full_dir, "--no-gradcam", "--output", page)
    html = page.read_text()
    assert 'id="run-full-outside"' in html and "<b>neutral</b> for 15" in html
    assert html.count('<th class="outside"') == 2  # the counts and the percent matrix
    compared = tmp_path / "compared.html"
    run_cli("report", full_dir, five_dir, "--no-gradcam", "--output", compared)
    text = compared.read_text()
    assert "different labels" not in text and "+20.0" in text  # --five is right on 3 more of 15 photos


def test_evaluate_five_on_a_model_without_the_five_is_one_line(tmp_path, five_emotion_photos):
    three = save_fixed_model(tmp_path / "three.safetensors", labels=["happy", "sad", NEUTRAL])
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(three),
            "--data",
            str(five_emotion_photos),
            "--five",
            "--out",
            str(tmp_path / "e"),
        ],
    )
    assert isinstance(result.exception, EmotionlabError)
    assert "has no class angry, fearful, surprised" in str(result.exception) and "\n" not in str(
        result.exception
    )
    assert not (tmp_path / "e").exists()


# ---- the service ------------------------------------------------------------------------------------------


def test_serve_five_answers_among_the_five_in_its_worker_processes_and_says_so(
    six_model, face_file, monkeypatch
):
    from fastapi.testclient import TestClient

    from emotionlab.serving import app as service
    from emotionlab.serving.limits import ServiceLimits
    from emotionlab.serving.workers import WorkerSpec, start_process_pool

    # the command hands --five to the service
    seen = {}
    monkeypatch.setattr(service, "serve", lambda model, **options: seen.update(options))
    run_cli("serve", "--model", six_model, "--five")
    assert seen["classes"] == list(EMOTIONS)

    pool = start_process_pool(WorkerSpec(str(six_model), classes=tuple(EMOTIONS)), ServiceLimits(), 1)
    try:
        with TestClient(service.create_app(pool=pool)) as client:
            model = client.get("/model").json()
            assert model["labels"] == list(EMOTIONS) and model["restricted_from"] == SIX
            answer = client.post(
                "/predict", files={"files": ("face.png", face_file.read_bytes(), "image/png")}
            )
            record = answer.json()["results"][0]
            assert record["label"] == "happy" and list(record["probabilities"]) == list(EMOTIONS)
    finally:
        pool.close()
    # without --five the service says neutral, in the page's colours
    with TestClient(service.create_app(emotionlab.load_model(six_model))) as client:
        record = client.post(
            "/predict", files={"files": ("face.png", face_file.read_bytes(), "image/png")}
        ).json()
        assert (
            record["results"][0]["label"] == NEUTRAL
            and client.get("/model").json()["restricted_from"] is None
        )
        assert 'neutral: "#' in client.get("/static/faces.js").text


# ---- the labeller -----------------------------------------------------------------------------------------


def test_labelling_the_five_with_a_six_class_model_suggests_one_of_the_five(six_model, tmp_path):
    from fastapi.testclient import TestClient

    from emotionlab.labeling import LabelSession
    from emotionlab.labeling.app import create_label_app, suggesting_model

    photos = tmp_path / "photos"
    photos.mkdir()
    synthetic_faces(1)[0].save(photos / "a.png")

    def suggestion(classes):
        session = LabelSession(photos, classes, tmp_path / f"{len(classes)}.labels.jsonl")
        app = create_label_app(session, predictor=suggesting_model(six_model, classes))
        with TestClient(app, base_url="http://127.0.0.1") as client:
            answer = client.get("/api/suggestion/0").json()
        session.close()
        return answer

    five = suggestion(list(EMOTIONS))
    assert five["label"] == "happy" and five["in_classes"] is True
    assert NEUTRAL not in [label for label, _ in five["top"]]
    # renormalised over the five: the bias softmax without neutral's share (happy 2, sad 1, three others 0)
    assert five["confidence"] == pytest.approx(math.exp(2) / (math.exp(2) + math.exp(1) + 3), abs=1e-4)
    # labelling with neutral among the classes: the model's own answer
    six = suggestion(SIX)
    assert six["label"] == NEUTRAL and six["in_classes"] is True


def test_the_web_page_reads_compounds_as_python_does():
    """The in-browser page's compoundReading (web/static/local.js), run by Node, against compound_reading."""
    import re
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (make web-vendor installs it with npm)")
    source = (Path(emotionlab.__file__).parent / "web" / "static" / "local.js").read_text(encoding="utf-8")
    function = re.search(r"^function compoundReading\(.*?^}\n", source, re.DOTALL | re.MULTILINE).group(0)
    rows = [
        [0.01, 0.01, 0.4, 0.02, 0.22, 0.34],  # happy + surprised, neutral second
        [0.02, 0.02, 0.3, 0.2, 0.02, 0.44],  # neutral wins: none
        [0.02, 0.02, 0.5, 0.03, 0.03, 0.4],  # a mild happy: none
        [0.3, 0.28, 0.1, 0.1, 0.1, 0.12],  # angry + fearful
    ]
    script = f"{function}\nconsole.log(JSON.stringify({json.dumps(rows)}.map(row => compoundReading(row, {json.dumps(SIX)}, 0.5))));"
    answers = json.loads(
        subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout
    )
    assert answers == [compound_reading(row, SIX, ratio=0.5) for row in rows]
    assert answers[0]["text"] == "happy + surprised" and answers[1] is None and answers[2] is None


def test_cross_validation_scores_a_six_class_recipe_both_ways():
    from emotionlab.evaluation.report.sections import cv_context
    from emotionlab.experiments.crossval import recipe_scores

    # out-of-fold answers on 10 photos: 8 right, 2 called neutral with the right emotion second
    truth = np.array(list(EMOTIONS) * 2)
    probabilities = np.full((10, 6), 0.02)
    probabilities[np.arange(10), [EMOTIONS.index(label) for label in truth]] = 0.6
    probabilities[[3, 7], 5] = 0.8
    scores = recipe_scores(truth, probabilities, SIX, list(EMOTIONS))
    assert set(scores) == {"", "+five"}
    six, answers = scores[""]
    assert six["accuracy"] == pytest.approx(0.8) and list(answers[[3, 7]]) == [NEUTRAL, NEUTRAL]
    five, answers = scores["+five"]
    assert five["accuracy"] == 1.0 and NEUTRAL not in set(answers)
    # a five-class model: one row, as before
    assert set(recipe_scores(truth, probabilities[:, :5], list(EMOTIONS), list(EMOTIONS))) == {""}
    # the report's cross-validation section draws the 5 x 6 matrix
    row = {"accuracy": 0.8, "accuracy_ci95": [0.5, 1.0], "macro_f1": 0.8, "macro_f1_ci95": [0.5, 1.0]}
    results = {
        "labels": list(EMOTIONS),
        "settings": {"folds": 5},
        "recipes": {
            "six": {
                **row,
                "labels": SIX,
                "confusion_matrix": six["confusion_matrix"],
                "per_class_recall": {k: v["recall"] for k, v in six["per_class"].items()},
            },
        },
    }
    table = cv_context(results)["recipes"][0]["confusion"]
    assert table["labels"] == SIX and [r["label"] for r in table["rows"]] == list(EMOTIONS)
