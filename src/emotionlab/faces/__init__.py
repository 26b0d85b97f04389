"""Face detectors behind one interface, square face crops, optional eye alignment, and a crop cache.

Detectors (``create_detector(name)``), all offline and CPU-only:

- ``haar``: OpenCV's frontal-face Haar cascade. Fastest, weakest; no extra files.
- ``hog``: dlib's HOG + linear SVM frontal-face detector. Fast, misses profiles and covered faces.
- ``mmod``: dlib's CNN (max-margin object detection) face detector, model file from ``face-recognition-models``.
  The strongest single detector on the seed photos (97.5%), but ~50x slower than ``hog`` (85.5%).
- ``yunet``: OpenCV's ``FaceDetectorYN`` with the OpenCV-zoo ONNX file (``emotionlab data download-yunet``).
- ``blaze``: MediaPipe's BlazeFace short-range model (ONNX Runtime, shipped in ``assets/``): boxes plus six
  keypoints (eyes, nose, mouth, ears). Finds the most faces of all and is the fastest (``blaze.py``).
- ``blaze-full``: BlazeFace's full-range model, for small faces in large scenes (misses faces that fill the
  frame); ``blaze+blaze-full`` asks it only where the short-range model finds nothing.
- ``cascade``: ``hog`` first, ``mmod`` only on images where ``hog`` finds nothing: all of ``mmod``'s extra
  faces plus the few ``hog`` finds and ``mmod`` misses (98.1%), 6x faster than ``mmod`` alone.
  Any chain can be spelled ``a+b`` (``"haar+mmod"``).

Every detector is safe to call from several threads (the native dlib and OpenCV ones take a lock per
instance) and refuses, by finding no face, an image it could crash on: see ``MIN_DETECT_SIDE``.

The dlib and OpenCV detectors scale the image so its shorter side is a fixed size (small images up, big ones
down; the longer side is capped), BlazeFace letterboxes it into its square input; all map the boxes back to
original-image pixels. The measured rates and speeds
behind ``PREPARE_DETECTOR`` and ``PREDICT_DETECTOR`` are in ``benchmarks/results/faces.json``
(``benchmarks/faces.py``).

Modules: ``boxes`` (``FaceBox``, the detector protocol, size guards), one per detector family (``blaze``,
``dlib``, ``opencv``), ``detectors`` (by name, chains, defaults, ``find_faces``), ``crop`` (crops, alignment,
``FaceCropConfig``), ``preparation`` (``FacePreparer``: the one preparation of a photo, decode -> faces -> crops)
and ``cropper`` (training's crops, made by it and cached). `emotionlab data faces`, a dataset job, is
``emotionlab.data.face_boxes``.
"""

from emotionlab.faces.blaze import (
    KEYPOINTS,
    BlazeDetector,
    BlazeFace,
)
from emotionlab.faces.boxes import (
    MAX_DETECT_PIXELS,
    MIN_DETECT_SIDE,
    MIN_IMAGE_SIDE,
    FaceBox,
    FaceDetector,
    Point,
    as_rgb_array,
)
from emotionlab.faces.crop import (
    FaceCropConfig,
    alignment_matrix,
    can_crop,
    crop_box,
    crop_face,
    crop_faces,
    eye_angle,
    transform_points,
)
from emotionlab.faces.cropper import PREPARATION_VERSION, FaceCropper, default_cache_dir
from emotionlab.faces.detectors import (
    BASE_DETECTORS,
    CASCADE,
    DETECTORS,
    PREDICT_DETECTOR,
    PREPARE_DETECTOR,
    CascadeDetector,
    check_detector_name,
    create_detector,
    find_faces,
)
from emotionlab.faces.dlib import (
    HogDetector,
    MmodDetector,
    dlib_model_file,
    dlib_models_dir,
    face_landmarks,
)
from emotionlab.faces.opencv import (
    DOWNLOAD_YUNET_HINT,
    YUNET_FILE_NAME,
    YUNET_OUTPUTS,
    YUNET_URL,
    HaarDetector,
    YunetDetector,
    check_yunet_file,
    download_yunet,
)

__all__ = [
    "BASE_DETECTORS",
    "CASCADE",
    "DETECTORS",
    "DOWNLOAD_YUNET_HINT",
    "KEYPOINTS",
    "MAX_DETECT_PIXELS",
    "MIN_DETECT_SIDE",
    "MIN_IMAGE_SIDE",
    "PREDICT_DETECTOR",
    "PREPARATION_VERSION",
    "PREPARE_DETECTOR",
    "YUNET_FILE_NAME",
    "YUNET_OUTPUTS",
    "YUNET_URL",
    "BlazeDetector",
    "BlazeFace",
    "CascadeDetector",
    "FaceBox",
    "FaceCropConfig",
    "FaceCropper",
    "FaceDetector",
    "HaarDetector",
    "HogDetector",
    "MmodDetector",
    "Point",
    "YunetDetector",
    "alignment_matrix",
    "as_rgb_array",
    "can_crop",
    "check_detector_name",
    "check_yunet_file",
    "create_detector",
    "crop_box",
    "crop_face",
    "crop_faces",
    "default_cache_dir",
    "dlib_model_file",
    "dlib_models_dir",
    "download_yunet",
    "eye_angle",
    "face_landmarks",
    "find_faces",
    "transform_points",
]
