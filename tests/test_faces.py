"""Face detection, crops, alignment, the crop cache, `emotionlab data faces` and the YuNet download."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from typer.testing import CliRunner

from emotionlab import faces
from emotionlab.cli import app
from emotionlab.data.face_boxes import prepare_face_manifest
from emotionlab.data.samples import parse_box
from emotionlab.errors import EmotionlabError
from emotionlab.faces import (
    CascadeDetector,
    FaceBox,
    FaceCropConfig,
    FaceCropper,
    alignment_matrix,
    create_detector,
    crop_face,
    eye_angle,
    transform_points,
)

SEED = Path(
    os.environ.get("EMOTIONLAB_DATA") or Path(__file__).resolve().parents[2] / "shared/datasets/seed-emotions"
)
BACKGROUND = (90, 110, 130)


@functools.lru_cache(maxsize=8)
def draw_face(size: int = 200) -> Image.Image:
    """A flat-shaded frontal face (hair, skin, eye whites and pupils, brows, nose shadow, lips).

    Unlike a cartoon, it has the dark-eyes-over-bright-cheeks pattern Haar features look for and a face
    outline HOG sees: haar, hog and mmod all find it (checked below).
    """
    s = 4 * size
    image = Image.new("RGB", (s, s), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cx, cy, fw, fh = s / 2, s / 2, s * 0.30, s * 0.40
    draw.ellipse([cx - fw * 1.08, cy - fh * 1.12, cx + fw * 1.08, cy + fh * 0.2], fill=(50, 35, 25))  # hair
    draw.rectangle([cx - fw * 0.45, cy + fh * 0.6, cx + fw * 0.45, s], fill=(200, 150, 120))  # neck
    draw.ellipse([cx - fw, cy - fh * 0.85, cx + fw, cy + fh], fill=(225, 180, 150))  # skin
    for side in (-1, 1):
        ex, ey = cx + side * fw * 0.40, cy - fh * 0.15
        draw.line(
            [(ex - fw * 0.22, ey - fh * 0.17), (ex + fw * 0.22, ey - fh * 0.19)],
            fill=(60, 40, 30),
            width=int(s * 0.018),
        )
        draw.ellipse([ex - fw * 0.28, ey - fh * 0.10, ex + fw * 0.28, ey + fh * 0.09], fill=(190, 145, 120))
        draw.ellipse([ex - fw * 0.20, ey - fh * 0.05, ex + fw * 0.20, ey + fh * 0.05], fill=(245, 245, 240))
        draw.ellipse([ex - fw * 0.08, ey - fh * 0.05, ex + fw * 0.08, ey + fh * 0.05], fill=(40, 30, 25))
    nose = [(cx, cy - fh * 0.05), (cx - fw * 0.16, cy + fh * 0.30), (cx + fw * 0.16, cy + fh * 0.30)]
    draw.polygon(nose, fill=(205, 160, 130))
    draw.ellipse([cx - fw * 0.18, cy + fh * 0.24, cx + fw * 0.18, cy + fh * 0.34], fill=(170, 120, 100))
    draw.chord([cx - fw * 0.38, cy + fh * 0.42, cx + fw * 0.38, cy + fh * 0.66], 0, 180, fill=(150, 60, 60))
    return image.filter(ImageFilter.GaussianBlur(s * 0.006)).resize((size, size), Image.LANCZOS)


def face_scene(canvas=(400, 300), size=200, offset=(150, 50)) -> Image.Image:
    image = Image.new("RGB", canvas, BACKGROUND)
    image.paste(draw_face(size), offset)
    return image


def coordinate_image(width=120, height=100) -> Image.Image:
    """Pixel (x, y) has colour (x, y, 7): a crop's pixels say where they came from."""
    ys, xs = np.mgrid[0:height, 0:width]
    array = np.stack([xs, ys, np.full_like(xs, 7)], axis=2).astype(np.uint8)
    return Image.fromarray(array)


class FakeDetector:
    """Returns fixed boxes and counts its calls."""

    name = "fake"

    def __init__(self, boxes):
        self.boxes = boxes
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return list(self.boxes)


@pytest.fixture
def fake_detector(monkeypatch):
    detector = FakeDetector([FaceBox(30, 20, 40, 40, score=1.0, detector="fake")])
    monkeypatch.setattr(faces.detectors, "create_detector", lambda name, model_file=None: detector)
    return detector


# ---- detectors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["haar", "hog", "mmod", "cascade"])
def test_detectors_find_a_drawn_face_in_original_pixels(name):
    boxes = create_detector(name).detect(face_scene())
    assert boxes, f"{name} found no face"
    box = boxes[0]
    cx, cy = box.center
    assert abs(cx - 250) < 0.12 * 200 and abs(cy - 150) < 0.15 * 200
    assert 0.45 * 200 < box.w < 0.9 * 200
    assert box.detector in ("haar", "hog", "mmod")


def test_big_image_is_scaled_down_and_boxes_mapped_back():
    scene = face_scene(canvas=(1600, 1200), size=600, offset=(700, 400))
    box = create_detector("hog").detect(scene)[0]
    assert abs(box.center[0] - 1000) < 0.12 * 600 and abs(box.center[1] - 700) < 0.15 * 600
    assert 0.45 * 600 < box.w < 0.9 * 600


def test_detect_takes_pil_or_rgb_array_and_finds_nothing_on_a_plain_image():
    scene = face_scene()
    detector = create_detector("hog")
    assert detector.detect(scene) == detector.detect(np.asarray(scene))
    assert detector.detect(Image.new("RGB", (300, 200), BACKGROUND)) == []
    assert create_detector("haar").detect(Image.new("RGB", (300, 200), BACKGROUND)) == []


def test_boxes_are_sorted_largest_first():
    scene = Image.new("RGB", (500, 300), BACKGROUND)
    scene.paste(draw_face(180), (10, 60))
    scene.paste(draw_face(260), (225, 20))
    boxes = create_detector("hog").detect(scene)
    assert len(boxes) == 2 and boxes[0].area > boxes[1].area and boxes[0].x > 225


def test_cascade_asks_the_strong_detector_only_when_the_fast_one_finds_nothing():
    found = FakeDetector([FaceBox(1, 2, 3, 4, detector="strong")])
    empty, fast = FakeDetector([]), FakeDetector([FaceBox(5, 6, 7, 8, detector="fast")])
    image = Image.new("RGB", (50, 50))
    assert CascadeDetector("c", [empty, found]).detect(image)[0].detector == "strong"
    assert CascadeDetector("c", [fast, found]).detect(image)[0].detector == "fast"
    assert found.calls == 1


def test_detector_names_and_models_give_clear_errors(tmp_path):
    with pytest.raises(EmotionlabError, match="unknown face detector 'retina'"):
        create_detector("retina")
    with pytest.raises(EmotionlabError, match="download-yunet"):
        create_detector("yunet")
    with pytest.raises(EmotionlabError, match="not found.*download-yunet"):
        create_detector("yunet", model_file=tmp_path / "missing.onnx")
    assert create_detector("hog") is create_detector("hog")  # cached per process
    assert create_detector("haar+hog").name == "haar+hog"


def yunet_model_file() -> Path | None:
    candidates = [
        os.environ.get("EMOTIONLAB_YUNET_MODEL"),
        faces.default_cache_dir().parent / faces.YUNET_FILE_NAME,
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@pytest.mark.skipif(yunet_model_file() is None, reason="no YuNet model file (set EMOTIONLAB_YUNET_MODEL)")
def test_yunet_finds_a_drawn_face_with_eye_landmarks():
    box = create_detector("yunet", model_file=yunet_model_file()).detect(face_scene())[0]
    assert abs(box.center[0] - 250) < 0.15 * 200 and box.landmarks and len(box.landmarks) == 5


# ---- crops and alignment ---------------------------------------------------------------------------------


def test_crop_is_a_square_with_margin_centred_on_the_box():
    image = coordinate_image()
    crop = crop_face(image, FaceBox(50, 30, 40, 20), margin=0.1)
    assert crop.size == (48, 48)  # 1.2 x max(w, h)
    array = np.asarray(crop)
    # Centre of the box (70, 40) -> square from (46, 16); pixels are copied, not resampled.
    assert tuple(array[0, 0]) == (46, 16, 7) and tuple(array[47, 47]) == (93, 63, 7)
    assert crop_face(image, FaceBox(50, 30, 40, 20), margin=0.25).size == (60, 60)


def test_crop_leaving_the_image_repeats_the_edge_pixels():
    image = coordinate_image(60, 50)
    crop = np.asarray(crop_face(image, FaceBox(0, 0, 40, 40), margin=0.25))  # square (-10, -10)..(50, 50)
    assert crop.shape == (60, 60, 3)
    assert tuple(crop[0, 0]) == (0, 0, 7) and tuple(crop[10, 10]) == (0, 0, 7)
    assert (crop[:10, 10:] == crop[10, 10:]).all()  # rows above the image copy its top row
    assert tuple(crop[59, 59]) == (49, 49, 7)
    with pytest.raises(EmotionlabError, match="outside"):
        crop_face(image, FaceBox(100, 100, 10, 10))


def test_eye_angle_and_alignment_level_tilted_eyes():
    eyes = [(80.0, 100.0), (160.0, 140.0)]
    angle = eye_angle(eyes)
    assert angle == pytest.approx(26.565, abs=0.01)
    assert eye_angle(eyes[::-1]) == pytest.approx(angle)
    (x1, y1), (x2, y2) = transform_points(eyes, alignment_matrix((120.0, 120.0), angle, 200))
    assert y1 == pytest.approx(y2, abs=1e-6) and x2 - x1 == pytest.approx(np.hypot(80, 40))

    # Image check: two dots on a tilted line come out level in the aligned crop.
    image = Image.new("RGB", (240, 240), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    for x, y in eyes:
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(0, 0, 0))
    crop = np.asarray(crop_face(image, FaceBox(70, 70, 100, 100), margin=0.1, align=True, landmarks=eyes))
    ys, xs = np.nonzero(crop[:, :, 0] < 80)
    left, right = ys[xs < crop.shape[1] / 2].mean(), ys[xs >= crop.shape[1] / 2].mean()
    assert abs(left - right) < 1.0


def test_align_uses_dlib_five_point_landmarks_on_a_rotated_face():
    scene = Image.new("RGB", (400, 400), BACKGROUND)
    scene.paste(draw_face(200), (100, 100))
    tilted = scene.rotate(-20, resample=Image.BILINEAR, fillcolor=BACKGROUND)
    box = create_detector("hog").detect(tilted)[0]
    assert abs(eye_angle(faces.face_landmarks(tilted, box))) > 15
    crop = crop_face(tilted, box, align=True)
    inner = round(crop.width / 1.2)
    offset = (crop.width - inner) // 2
    assert abs(eye_angle(faces.face_landmarks(crop, FaceBox(offset, offset, inner, inner)))) < 4


# ---- config, cropper and cache ---------------------------------------------------------------------------


def test_face_crop_config_round_trips_and_rejects_bad_values():
    config = FaceCropConfig(detector="hog", margin=0.2, align=True, detector_model=None)
    assert FaceCropConfig.from_dict(config.to_dict()) == config
    assert FaceCropConfig().detector == faces.PREPARE_DETECTOR
    assert FaceCropConfig.from_dict({"detector": "HOG"}).detector == "hog"
    with pytest.raises(EmotionlabError, match="unknown key"):
        FaceCropConfig.from_dict({"detector": "hog", "size": 48})
    with pytest.raises(EmotionlabError, match="margin"):
        FaceCropConfig(margin=-1)
    with pytest.raises(EmotionlabError, match="unknown face detector"):
        FaceCropConfig(detector="nope")


def test_no_face_gives_the_whole_image_and_no_box(monkeypatch, tmp_path):
    monkeypatch.setattr(faces.detectors, "create_detector", lambda name, model_file=None: FakeDetector([]))
    image = face_scene(canvas=(90, 70), size=60, offset=(10, 5))
    crop, box = FaceCropper(FaceCropConfig(detector="hog"), tmp_path / "cache")(image)
    assert box is None and crop.size == (90, 70)
    path = tmp_path / "photo.png"
    image.save(path)
    crop, box = FaceCropper(FaceCropConfig(detector="hog"), tmp_path / "cache")(path)
    assert box is None and np.array_equal(np.asarray(crop), np.asarray(image))


def test_cache_hit_gives_the_same_crop_without_detecting_again(fake_detector, tmp_path):
    path = tmp_path / "photo.png"
    face_scene(canvas=(120, 100), size=80, offset=(20, 10)).save(path)
    cache = tmp_path / "cache"
    first_crop, first_box = FaceCropper(FaceCropConfig(detector="hog"), cache)(path)
    assert fake_detector.calls == 1 and first_box == FaceBox(30, 20, 40, 40, score=1.0, detector="fake")
    assert first_crop.size == (48, 48)
    second_crop, second_box = FaceCropper(FaceCropConfig(detector="hog"), cache)(path)
    assert fake_detector.calls == 1
    assert second_box == first_box and np.array_equal(np.asarray(first_crop), np.asarray(second_crop))
    # Same bytes under another name hit too.
    copy = tmp_path / "copy.png"
    copy.write_bytes(path.read_bytes())
    assert (
        FaceCropper(FaceCropConfig(detector="hog"), cache)(copy)[1] == first_box and fake_detector.calls == 1
    )
    # Another margin or detector is another cache entry (prepared again); a PNG crop and a JSON box per entry.
    wider, _ = FaceCropper(FaceCropConfig(detector="hog", margin=0.25), cache)(copy)
    assert fake_detector.calls == 2 and wider.size == (60, 60)
    FaceCropper(FaceCropConfig(detector="haar"), cache)(path)
    assert fake_detector.calls == 3
    assert sorted(p.suffix for p in cache.rglob("*.*")) == [".json"] * 3 + [".png"] * 3


def test_sample_face_box_is_used_without_detection(monkeypatch, tmp_path):
    def no_detection(name, model_file=None):
        raise AssertionError("the detector must not run when the manifest has a face box")

    monkeypatch.setattr(faces.detectors, "create_detector", no_detection)
    path = tmp_path / "image.png"
    coordinate_image().save(path)
    crop, box = FaceCropper(FaceCropConfig(detector="hog"), tmp_path / "cache")(
        path, parse_box("50 30 40 20")
    )
    assert (box.x, box.y, box.w, box.h) == (50, 30, 40, 20)
    assert crop.size == (48, 48) and tuple(np.asarray(crop)[0, 0]) == (46, 16, 7)


def test_cropper_detects_when_there_is_no_box_and_pickles_for_workers(fake_detector, tmp_path):
    path = tmp_path / "image.png"
    coordinate_image().save(path)
    cropper = FaceCropper(FaceCropConfig(detector="hog"), tmp_path / "cache")
    crop = cropper(path)[0]
    assert crop.size == (48, 48) and fake_detector.calls == 1
    clone = pickle.loads(pickle.dumps(cropper))
    assert np.array_equal(np.asarray(clone(path)[0]), np.asarray(crop))
    assert fake_detector.calls == 1


def test_real_detectors_pickle_through_the_cropper(tmp_path):
    cropper = FaceCropper(FaceCropConfig(detector="hog"), tmp_path / "cache")
    box = cropper(face_scene())[1]
    assert box is not None
    clone = pickle.loads(pickle.dumps(cropper))
    assert clone(face_scene())[1] == box


# ---- `emotionlab data faces` -----------------------------------------------------------------------------


def tree_state(root: Path) -> dict:
    """Every file and folder under ``root`` with its content hash and modification time."""
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder",
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    for split in ("train", "test"):
        for label, offset in (("happy", (40, 20)), ("sad", (120, 60))):
            folder = root / split / label
            folder.mkdir(parents=True)
            face_scene(canvas=(360, 300), size=180, offset=offset).save(folder / "face.png")
    Image.new("RGB", (200, 160), BACKGROUND).save(root / "train" / "sad" / "blank.png")
    return root


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def test_data_faces_writes_face_boxes_and_leaves_the_dataset_untouched(tiny_dataset, tmp_path):
    before = tree_state(tiny_dataset)
    out = tmp_path / "out" / "faces.csv"
    args = ["data", "faces", "--data", str(tiny_dataset), "--output", str(out), "--detector", "hog"]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "no face in 1" in result.output and "train/sad/blank.png" in result.output
    rows = {row["path"]: row for row in read_rows(out)}
    assert set(rows) == {"train/happy/face.png", "train/sad/face.png", "train/sad/blank.png", "test/happy/face.png",
                         "test/sad/face.png"}  # fmt: skip
    assert (
        rows["train/sad/blank.png"]["face_box"] == ""
        and rows["train/sad/blank.png"]["face_detector"] == "hog"
    )
    x, _, w, _ = parse_box(rows["train/sad/face.png"]["face_box"])
    assert abs(x + w / 2 - 210) < 25 and rows["train/sad/face.png"]["split"] == "train"
    assert tree_state(tiny_dataset) == before

    # The manifest reader takes the boxes; the cropper then crops without detecting.
    from emotionlab.data.manifest import read_manifest

    samples = read_manifest(out, root=tiny_dataset).samples
    assert sum(sample.face_box is not None for sample in samples) == 4


def test_data_faces_keeps_manifest_columns_and_refuses_to_write_inside_the_dataset(tiny_dataset, tmp_path):
    manifest = tmp_path / "in.csv"
    manifest.write_text(
        "path,label,split,sha256,phash,group\n"
        "train/happy/face.png,happy,validation,abc,def,g1\n"
        "train/sad/blank.png,sad,train,123,456,g2\n"
    )
    out = tmp_path / "out.csv"
    report = prepare_face_manifest(
        tiny_dataset, out, manifest=manifest, config=FaceCropConfig(detector="hog"),
        cache_dir=tmp_path / "cache", show_progress=False, workers=2,
    )  # fmt: skip
    assert report.with_face == 1 and report.no_face == ["train/sad/blank.png"]
    rows = read_rows(out)
    assert list(rows[0]) == [
        "path",
        "label",
        "split",
        "sha256",
        "phash",
        "group",
        "face_box",
        "face_detector",
    ]
    assert rows[0]["split"] == "validation" and rows[0]["group"] == "g1" and rows[0]["face_box"]
    with pytest.raises(EmotionlabError, match="inside the dataset"):
        prepare_face_manifest(tiny_dataset, tiny_dataset / "faces.csv", show_progress=False)
    with pytest.raises(EmotionlabError, match="cache must not be inside"):
        prepare_face_manifest(tiny_dataset, out, cache_dir=tiny_dataset / "cache", show_progress=False)
    assert not (tiny_dataset / "faces.csv").exists() and not (tiny_dataset / "cache").exists()


# ---- real photos (only where the seed data is present) ----------------------------------------------------


@pytest.mark.skipif(not SEED.is_dir(), reason=f"seed dataset not found at {SEED} (set EMOTIONLAB_DATA)")
def test_real_seed_faces_are_found_and_cropped():
    from emotionlab.data.images import read_image

    paths = sorted((SEED / "test" / "happy").iterdir())[:6]
    cropper = FaceCropper(FaceCropConfig(detector="hog"), cache_dir=None)
    boxes = [cropper(read_image(path))[1] for path in paths]
    assert sum(box is not None for box in boxes) >= 4
    for path, box in zip(paths, boxes, strict=True):
        if box is not None:
            eyes = faces.face_landmarks(read_image(path), box)
            assert box.y < eyes[0][1] < eyes[2][1] < box.y + box.h  # eyes above the nose, inside the box


# ---- YuNet download --------------------------------------------------------------------------------------


def fake_yunet_bytes() -> bytes:
    """A tiny ONNX graph with YuNet's input and output names (enough for the file check, not for detection)."""
    from onnx import TensorProto, helper

    source = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 8, 8]) for name in faces.YUNET_OUTPUTS
    ]
    nodes = [helper.make_node("Identity", ["input"], [name]) for name in faces.YUNET_OUTPUTS]
    return helper.make_model(helper.make_graph(nodes, "yunet", [source], outputs)).SerializeToString()


@pytest.fixture
def file_server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_yunet_from_a_local_server_and_from_a_file(file_server, tmp_path):
    folder, base = file_server
    (folder / faces.YUNET_FILE_NAME).write_bytes(fake_yunet_bytes())
    (folder / "page.html").write_text("<html>not a model</html>")
    dest = tmp_path / "models"
    dest.mkdir()
    result = CliRunner().invoke(
        app, ["data", "download-yunet", str(dest), "--url", f"{base}/{faces.YUNET_FILE_NAME}"]
    )
    assert result.exit_code == 0, result.output
    assert (dest / faces.YUNET_FILE_NAME).read_bytes() == fake_yunet_bytes()

    with pytest.raises(EmotionlabError, match="not an ONNX model"):
        faces.download_yunet(tmp_path / "bad.onnx", url=f"{base}/page.html")
    with pytest.raises(EmotionlabError, match="HTTP 404"):
        faces.download_yunet(tmp_path / "bad.onnx", url=f"{base}/missing.onnx")
    assert not (tmp_path / "bad.onnx").exists() and not list(tmp_path.glob(".bad.onnx*"))

    copied = faces.download_yunet(tmp_path / "copy.onnx", source_file=dest / faces.YUNET_FILE_NAME)
    assert copied.read_bytes() == fake_yunet_bytes()


def test_download_yunet_offline_gives_a_clear_error(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EmotionlabError, match="cannot download.*--from"):
        faces.download_yunet(tmp_path / "yunet.onnx", url=f"http://127.0.0.1:{port}/yunet.onnx", timeout=5)
