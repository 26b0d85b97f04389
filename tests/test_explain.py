"""Grad-CAM: the heat of a synthetic face lies on the face, overlays are written for every face, every
architecture and ensembles (with test-time flips) can be explained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.transforms import build_eval_transform
from emotionlab.errors import EmotionlabError
from emotionlab.evaluation.explain import Explainer, explain, explain_files
from emotionlab.faces import FaceBox
from emotionlab.labels import EMOTIONS
from emotionlab.models.ensemble import build_ensemble
from emotionlab.models.factory import create_model
from emotionlab.models.io import save_model_file
from emotionlab.synthetic import make_face

runner = CliRunner()
CANVAS = 128  # the photo: a flat background, the face pasted somewhere on it
NARROW = [8, 16, 32, 32]  # fer_cnn widths small enough to train in seconds on one CPU thread


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))


def pasted_face(label: str, rng: np.random.Generator, canvas: tuple[int, int] = (CANVAS, CANVAS)):
    """A synthetic face (48-80 px) pasted at a random place on a flat background; returns (image, box)."""
    side = int(rng.integers(48, 81))
    image = Image.new("RGB", canvas, tuple(int(v) for v in rng.integers(40, 220, 3)))
    x, y = int(rng.integers(0, canvas[0] - side)), int(rng.integers(0, canvas[1] - side))
    image.paste(make_face(label, rng, side), (x, y))
    return image, (x, y, side, side)


def heat_in_box(heatmap: np.ndarray, size: tuple[int, int], box) -> float:
    """Fraction of the heat (stretched to the photo's ``size``) that falls inside ``box``."""
    heat = np.asarray(Image.fromarray(heatmap).resize(size, Image.BILINEAR), dtype=np.float64)
    x, y, w, h = box
    return float(heat[y : y + h, x : x + w].sum() / max(heat.sum(), 1e-9))


def metadata(**changes) -> dict:
    return {
        "architecture": "fer_cnn",
        "architecture_kwargs": {"widths": NARROW},
        "labels": list(EMOTIONS),
        "input_size": 64,
        "normalization": {"type": "per_image"},
        "grayscale": True,
        "faces": None,
        **changes,
    }


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    """A narrow fer_cnn trained (whole images, 64 px) to read pasted faces anywhere on a flat background."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    meta = metadata()
    transform = build_eval_transform(image_size=64, normalization=meta["normalization"], grayscale=True)
    images, targets = [], []
    for index in range(600):
        image, _ = pasted_face(EMOTIONS[index % 5], rng)
        images.append(transform(image))
        targets.append(index % 5)
    inputs, targets = torch.stack(images), torch.tensor(targets)
    net = create_model("fer_cnn", 5, widths=NARROW, dropout=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same model whatever OMP_NUM_THREADS the suite runs with
    try:
        for _epoch in range(10):  # ~20 CPU-seconds; reads 40/40 held-out pasted faces
            net.train()
            for batch in torch.randperm(len(inputs)).split(32):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(inputs[batch]), targets[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("explain") / "faces.safetensors"
    return save_model_file(path, net.eval(), meta)


@pytest.mark.slow  # face_model trains a small model
def test_heat_of_a_pasted_synthetic_face_lies_on_the_face(face_model):
    rng = np.random.default_rng(7)
    explainer = Explainer.from_file(face_model)
    inside, area, peak_on_face, correct = [], [], 0, 0
    for index in range(10):
        label = EMOTIONS[index % 5]
        image, box = pasted_face(label, rng)
        (face,) = explain(image, model=explainer).faces
        assert (
            face.heatmap.shape == (64, 64)
            and face.heatmap.min() >= 0
            and face.heatmap.max() == pytest.approx(1)
        )
        inside.append(heat_in_box(face.heatmap, image.size, box))
        area.append(box[2] * box[3] / CANVAS**2)
        row, column = np.unravel_index(face.heatmap.argmax(), face.heatmap.shape)
        x, y = (column + 0.5) * CANVAS / 64, (row + 0.5) * CANVAS / 64
        peak_on_face += box[0] <= x < box[0] + box[2] and box[1] <= y < box[1] + box[3]
        correct += face.label == label
    assert correct >= 8, f"the model reads only {correct}/10 faces: too weak to say where it looks"
    # The face covers 14-39% of the photo (25% on average); on 40 such photos 63% of the heat fell on it and
    # the hottest point on the face in 38. The 8x8 map, stretched, blurs a little heat past the face's edge.
    assert np.mean(inside) > 0.5 and np.mean(inside) > 2 * np.mean(area), (
        np.round(inside, 2),
        np.round(area, 2),
    )
    assert peak_on_face >= 8


class TwoBoxes:
    """A stand-in face detector that knows where the faces were pasted."""

    name = "stand-in"

    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, image):
        return [FaceBox(*box) for box in self.boxes]


@pytest.mark.slow  # face_model trains a small model
def test_overlays_are_written_for_every_face_and_the_photo(face_model, tmp_path):
    rng = np.random.default_rng(3)
    photo = Image.new("RGB", (260, 140), (128, 128, 128))
    boxes = []
    for label, x in (("happy", 10), ("surprised", 150)):
        photo.paste(make_face(label, rng, 80), (x, 30))
        boxes.append((x + 8, 38, 64, 64))
    photo.save(tmp_path / "group.png")
    records = explain_files(
        [tmp_path / "group.png"], tmp_path / "out", model=face_model, detect=True, detector=TwoBoxes(boxes)
    )
    (record,) = records
    assert [face["box"] for face in record["faces"]] == [list(box) for box in boxes]
    for number, face in enumerate(record["faces"], start=1):
        overlay = Image.open(face["overlay"])
        assert face["overlay"].endswith(f"group.face{number}.png")
        assert overlay.size[0] == overlay.size[1] >= 160  # the crop, enlarged so the heat shows
        assert face["explained"] == face["label"]
    full = np.asarray(Image.open(record["overlay"]), dtype=int)
    assert full.shape == (140, 260, 3)
    original = np.asarray(photo, dtype=int)
    changed = np.abs(full - original).sum(axis=2) > 0
    assert not changed[:, 100:140].any(), "no heat between the faces, outside every crop"
    assert changed[40:100, 20:80].any() and changed[40:100, 160:220].any(), "heat drawn at both faces"


@pytest.mark.slow  # face_model trains a small model
def test_explain_command_prints_a_line_per_face_and_refuses_an_unknown_class(face_model, tmp_path):
    image, _ = pasted_face("sad", np.random.default_rng(5))
    image.save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "overlays"
    result = runner.invoke(
        app,
        [
            "explain",
            str(tmp_path / "ok.png"),
            str(tmp_path / "broken.png"),
            "--model",
            str(face_model),
            "--out",
            str(out),
            "--class",
            "happy",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ok.png face 1 (box 0 0 128 128)" in result.output and "heat for happy" in result.output
    assert "broken.png: error:" in result.output
    assert (out / "ok.face1.png").is_file() and (out / "ok.overlay.png").is_file()
    result = runner.invoke(
        app,
        [
            "explain",
            str(tmp_path / "ok.png"),
            "--model",
            str(face_model),
            "--out",
            str(out),
            "--format",
            "jsonl",
        ],
    )
    assert json.loads(result.output.splitlines()[0])["faces"][0]["explained"] in EMOTIONS
    with pytest.raises(EmotionlabError, match="unknown class 'joy'"):
        explain_files([tmp_path / "ok.png"], out, model=face_model, target="joy")


@pytest.mark.slow  # face_model trains a small model
def test_an_ensemble_with_flips_is_explained_and_its_heat_mirrors_with_the_face(face_model, tmp_path):
    ensemble = build_ensemble([face_model, face_model], tmp_path / "ensemble.safetensors", tta="flip")
    image, box = pasted_face("angry", np.random.default_rng(11))
    explainer = Explainer.from_file(ensemble)
    heat = explain(image, model=explainer).faces[0].heatmap
    mirrored = explain(ImageOps.mirror(image), model=explainer).faces[0].heatmap
    assert np.abs(heat - mirrored[:, ::-1]).max() < 1e-4  # flip TTA: a face and its mirror, same evidence
    assert heat_in_box(heat, image.size, box) > 2 * box[2] * box[3] / CANVAS**2  # twice the face's share


@pytest.mark.parametrize(
    "architecture",
    [
        "seed_cnn",
        "fer_cnn",
        pytest.param("fer_cnn_wide", marks=pytest.mark.slow),
        pytest.param("resnet18", marks=pytest.mark.slow),
    ],  # the larger networks take 10-30 s on a shared CPU
)
def test_every_architecture_can_be_explained(architecture, tmp_path):
    torch.manual_seed(0)
    net = create_model(architecture, 5, image_size=64)
    for module in net.modules():  # trained-looking BatchNorm (timm zero-initialises some BN weights)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.running_var.uniform_(0.5, 2.0)
    grey = architecture.startswith("fer_cnn")
    normalization = (
        {"type": "per_image"} if grey else {"type": "mean_std", "mean": [0.5] * 3, "std": [0.25] * 3}
    )
    path = save_model_file(
        tmp_path / "m.safetensors",
        net.eval(),
        metadata(
            architecture=architecture, architecture_kwargs={}, grayscale=grey, normalization=normalization
        ),
    )
    explainer, image = Explainer.from_file(path), make_face("happy", np.random.default_rng(0), 72)
    maps = [explain(image, model=explainer, target=label).faces[0].heatmap for label in EMOTIONS]
    assert all(heat.shape == (64, 64) and heat.min() >= 0 and heat.max() <= 1 for heat in maps)
    # An untrained network may hold no positive evidence for a class (an all-zero map); some class has some.
    assert max(heat.max() for heat in maps) == pytest.approx(1)
