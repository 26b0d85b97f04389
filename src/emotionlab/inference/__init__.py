"""Inference: a model file -> classifier (faces in, probabilities out) -> ``Recognizer`` (images in, records out).

One module per part, in the order data flows:

- ``loading``: a model name or path -> classifier -> ``Recognizer`` (``load_classifier``, ``load_recognizer``,
  the shipped models and their ONNX exports);
- ``classifier``: what every classifier shares (the model's preprocessing, no PyTorch), the ONNX Runtime
  ``OnnxClassifier`` (the shipped models, ``--backend onnx``, the light install), the PyTorch ``Classifier``;
- ``export``: ONNX export, int8 quantisation and the export cache (``[train]`` extra);
- ``recognizer``: ``Recognizer``: images in, one record per image out;
- ``video``: video files and cameras -> per-frame records, timelines; ``annotate``: boxes drawn on pictures.
- ``compound``: a top-2 reading ("surprised + happy") when the second emotion is close to the first.

The `emotionlab predict` job (shards, --resume, output writers) lives beside the command, in
``emotionlab.cli.predict``.
"""

from emotionlab.data.images import expand_inputs
from emotionlab.faces.preparation import CROP_OVERSAMPLE, DETECT_DECODE_SIDE, FacePreparer, PreparedImage
from emotionlab.inference.classifier import BaseClassifier, Classifier, physical_cores
from emotionlab.inference.loading import (
    ASSETS,
    BACKENDS,
    DEFAULT_MODEL,
    MODEL_ENV,
    SHIPPED_MODELS,
    default_model_path,
    load_classifier,
    load_recognizer,
    resolve_model_path,
)
from emotionlab.inference.recognizer import (
    CHANNELS,
    DECIMALS,
    FaceRecord,
    ImageRecord,
    Recognizer,
    progress_bar,
    to_dataframe,
)

__all__ = [
    "ASSETS",
    "BACKENDS",
    "CHANNELS",
    "CROP_OVERSAMPLE",
    "DECIMALS",
    "DEFAULT_MODEL",
    "DETECT_DECODE_SIDE",
    "MODEL_ENV",
    "SHIPPED_MODELS",
    "BaseClassifier",
    "Classifier",
    "FacePreparer",
    "FaceRecord",
    "ImageRecord",
    "PreparedImage",
    "Recognizer",
    "default_model_path",
    "expand_inputs",
    "load_classifier",
    "load_recognizer",
    "physical_cores",
    "progress_bar",
    "resolve_model_path",
    "to_dataframe",
]
