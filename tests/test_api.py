"""The Python API as users of other emotion packages expect it: ready face crops, lists, OpenCV frames, pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import emotionlab
from emotionlab.errors import EmotionlabError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def model():
    return emotionlab.load_model()


def test_a_bgr_frame_gives_the_same_answer_as_the_rgb_image(model):
    rgb = np.asarray(Image.open(EXAMPLES / "grace_hopper.jpg").convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # what cv2.imread returns
    expected = model.predict(rgb)
    assert model.predict(bgr, channels="bgr")["probabilities"] == expected["probabilities"]
    assert model.predict(bgr)["probabilities"] != expected["probabilities"]  # read as RGB it is another image
    with pytest.raises(EmotionlabError, match="channels='hsv'"):
        model.predict(rgb, channels="hsv")


def test_classify_face_takes_a_ready_crop(model):
    record = model.predict(EXAMPLES / "grace_hopper.jpg")
    x, y, w, h = record["faces"][0]["box"]
    margin = w // 10
    photo = Image.open(EXAMPLES / "grace_hopper.jpg").convert("RGB")
    crop = photo.crop((x - margin, y - margin, x + w + margin, y + h + margin))
    label, probabilities = model.classify_face(crop)
    assert set(probabilities) == set(model.labels) and abs(sum(probabilities.values()) - 1) < 1e-3
    assert label == max(probabilities, key=probabilities.get)
    # The hand-made crop is close to predict's, not equal (predict decodes the JPEG reduced for the network and
    # squares the box), so the probabilities agree closely; the label too unless two classes nearly tie.
    face = record["faces"][0]["probabilities"]
    assert max(abs(probabilities[name] - face[name]) for name in face) < 0.1
    bgr = np.ascontiguousarray(np.asarray(crop)[:, :, ::-1])
    assert model.classify_face(bgr, channels="bgr") == (label, probabilities)


def test_predict_takes_a_list_and_keeps_going_past_a_bad_file(model, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    records = model.predict([EXAMPLES / "grace_hopper.jpg", bad, EXAMPLES / "two_people.jpg"])
    assert len(records) == 3 and "error" in records[1] and "label" in records[2]


def test_records_to_a_dataframe_one_row_per_face(model, tmp_path):
    pytest.importorskip("pandas")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    records = model.predict([EXAMPLES / "two_people.jpg", bad])
    table = emotionlab.to_dataframe(records)
    faces = table[table["path"].str.endswith("two_people.jpg")]
    assert len(faces) == 2 and list(faces["face"]) == [0, 1]
    assert set(model.labels) <= set(table.columns)
    assert table[table["path"].str.endswith("broken.jpg")]["error"].notna().all()


def test_dataframe_columns_do_not_depend_on_what_the_first_record_holds(model, tmp_path):
    pytest.importorskip("pandas")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    records = model.predict([bad, EXAMPLES / "two_people.jpg"])
    assert list(emotionlab.to_dataframe(records).columns) == list(
        emotionlab.to_dataframe(records[::-1]).columns
    )
    assert list(emotionlab.to_dataframe(records).columns)[:4] == ["path", "face", "x", "y"]
