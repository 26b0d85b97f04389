"""Inference: a model file -> classifier (faces in, probabilities out) -> ``Recognizer`` (images in, records out).

One module per part, in the order data flows:

- ``loading``: a model name or path -> classifier -> ``Recognizer`` (``load_classifier``, ``load_recognizer``,
  the shipped models and their ONNX exports);
- ``classifier``: what every classifier shares (no PyTorch) and the PyTorch ``Classifier`` (``[train]`` extra);
- ``onnx``: the ONNX Runtime classifier (the shipped models, ``--backend onnx``, the light install);
- ``export``: ONNX export, int8 quantisation and the export cache (``[train]`` extra);
- ``preparation``: decode, find and crop faces (``FacePreparer``; no model, runs in worker processes);
- ``recognizer``: ``Recognizer``: images in, one record per image out;
- ``inputs``: files, folders and globs -> the list of files a run reads;
- ``workers``: how many cores there are to use;
- ``video``: video files and cameras -> per-frame records, timelines; ``annotate``: boxes drawn on pictures.
- ``compound``: a top-2 reading ("surprised + happy") when the second emotion is close to the first.

The `emotionlab predict` job (shards, --resume, output writers) lives beside the command, in
``emotionlab.cli.predict``.
"""

from emotionlab.faces.preparation import CROP_OVERSAMPLE, DETECT_DECODE_SIDE, FacePreparer, PreparedImage
from emotionlab.inference.classifier import BaseClassifier, Classifier
from emotionlab.inference.inputs import expand_inputs
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
from emotionlab.inference.workers import physical_cores

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
