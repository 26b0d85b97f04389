"""The ONNX Runtime classifier: an exported model file run on the CPU, no PyTorch needed.

An export (``emotionlab.inference.export``) is self-describing: input ``input`` (N x 3 x size x size, batch axis
dynamic), output ``probabilities`` (softmax included), and the model file's JSON metadata (labels, input size,
normalisation, face-crop settings, ...) in the ONNX ``metadata_props`` under ``emotionlab``, so
``OnnxClassifier.from_file(model.onnx)`` (and any other tool) needs nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emotionlab.errors import EmotionlabError
from emotionlab.inference.classifier import BaseClassifier
from emotionlab.inference.workers import physical_cores

METADATA_KEY = "emotionlab"
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def session_options(threads: int | None = None):
    """ORT options: intra-op threads = physical cores (hyper-threads only slow convolutions down), no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers are noise to users
    # Idle threads sleep instead of spinning: spinning steals the CPU from DataLoader workers and from other
    # processes, and under load it was slower even alone (batch 64: 635 faces/s spinning, 697 not).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    if not path.is_file():
        raise EmotionlabError(f"{path}: ONNX file not found")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types for bad or non-ONNX files
        raise EmotionlabError(
            f"{path}: not an ONNX model ONNX Runtime can load ({str(error)[:200]})"
        ) from error


def _metadata_of(session, path: Path) -> dict:
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise EmotionlabError(
            f"{path}: an ONNX model without emotionlab metadata (export it with `emotionlab export`)"
        )
    try:
        return json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise EmotionlabError(f"{path}: emotionlab metadata is not valid JSON: {error}") from error


def read_onnx_metadata(path: str | Path) -> dict:
    """The emotionlab metadata embedded in an exported ONNX file."""
    path = Path(path)
    return _metadata_of(_session(path, threads=1), path)


class OnnxClassifier(BaseClassifier):
    """An exported model run by ONNX Runtime on the CPU; same interface as ``Classifier``."""

    backend = "onnx"

    def __init__(self, path: str | Path, metadata: dict | None = None, *, threads: int | None = None):
        path = Path(path)
        self.session = _session(path, threads)
        super().__init__(metadata or _metadata_of(self.session, path))
        self.onnx_path = path
        self.path = path
        self.int8 = bool(self.metadata.get("onnx", {}).get("int8"))

    @classmethod
    def from_file(cls, path: str | Path, *, threads: int | None = None) -> OnnxClassifier:
        return cls(path, threads=threads)

    def probabilities(self, batch) -> np.ndarray:
        array = batch.numpy() if hasattr(batch, "numpy") and not isinstance(batch, np.ndarray) else batch
        array = np.ascontiguousarray(array, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]
