"""ONNX export and the ONNX Runtime classifier.

``export_onnx(model.safetensors, out.onnx)`` writes a self-describing ONNX file: input ``input``
(N x 3 x size x size, batch axis dynamic), output ``probabilities`` (softmax included), and the model file's
JSON metadata (labels, input size, normalisation, face-crop settings, ...) in the ONNX ``metadata_props``
under ``emotionlab``, so ``OnnxClassifier.from_file(out.onnx)`` (and any other tool) needs nothing else.
``int8=True`` quantises the weights: statically (activations too, calibrated on images) when calibration
inputs are given, else dynamically.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from emotionlab.errors import EmotionlabError
from emotionlab.fileio import write_atomic
from emotionlab.inference.classifier import BaseClassifier, Classifier
from emotionlab.inference.recognizer import Recognizer
from emotionlab.inference.workers import physical_cores
from emotionlab.models.io import load_model_file, read_metadata

METADATA_KEY = "emotionlab"
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
OPSET = 17
# Bump when the exported graph changes, so cached exports are redone.
EXPORT_VERSION = 1
CACHE_ENV = "EMOTIONLAB_CACHE"


class _WithSoftmax(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def _set_metadata(model, metadata: dict) -> None:
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    model.doc_string = (
        f"emotionlab emotion classifier ({metadata.get('architecture')}); labels: {metadata['labels']}"
    )


def export_onnx(
    model_path: str | Path,
    out: str | Path,
    *,
    int8: bool = False,
    calibration: np.ndarray | None = None,
    opset: int = OPSET,
) -> Path:
    """Export a ``.safetensors`` model file to ONNX at ``out`` (metadata embedded); returns ``out``.

    ``int8``: quantise. With ``calibration`` (preprocessed model inputs, N x 3 x size x size) the
    quantisation is static (QDQ, weights and activations int8); without it, dynamic (weights only).
    """
    import onnx

    model_path, out = Path(model_path), Path(out)
    if out.suffix.lower() != ".onnx":
        raise EmotionlabError(f"{out}: the ONNX output file must end in .onnx")
    model, metadata = load_model_file(model_path)
    size = int(metadata["input_size"])
    example = torch.zeros(2, 3, size, size)
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            # dynamo=False: the TorchScript exporter needs no onnxscript and handles these plain CNNs exactly.
            torch.onnx.export(
                _WithSoftmax(model).eval(),
                (example,),
                str(plain),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
            )
        source = plain
        quantization = None
        if int8:
            quantization = "static" if calibration is not None else "dynamic"
            source = Path(folder) / "model.int8.onnx"
            _quantize(plain, source, calibration)
        graph = onnx.load(str(source))
        info = {
            **metadata,
            "onnx": {
                "export_version": EXPORT_VERSION,
                "opset": opset,
                "int8": bool(int8),
                "quantization": quantization,
                "source": model_path.name,
                "torch_version": torch.__version__,
            },
        }
        _set_metadata(graph, info)
        write_atomic(out, lambda name: onnx.save(graph, name))
    return out


class _Calibration:
    """onnxruntime's CalibrationDataReader over preprocessed inputs, 16 at a time."""

    def __init__(self, inputs: np.ndarray):
        self._batches = iter([inputs[i : i + 16] for i in range(0, len(inputs), 16)])

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


def _quantize(source: Path, target: Path, calibration: np.ndarray | None) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.with_name("model.pre.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing only helps; quantise the plain graph if it fails
            prepared = source
        if calibration is None:
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
            return
        if len(calibration) == 0:
            raise EmotionlabError("int8 calibration needs at least one image")
        quantize_static(
            str(prepared),
            str(target),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # Softmax and pooling stay float: quantising the last steps costs accuracy and saves nothing.
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        )


def calibration_inputs(
    model_path: str | Path, images: Iterable, *, limit: int = 256, show_progress: bool = False
) -> np.ndarray:
    """Model inputs for static int8 calibration from image files, cropped as the model was trained."""
    from emotionlab.progress import progress

    recognizer = Recognizer(Classifier.from_file(model_path))
    preparer = recognizer.preparer()
    rows = []
    for source in progress(list(images), description="calibration images", enabled=show_progress):
        item = preparer(source)
        if item.num_inputs:
            rows.append(item.inputs[:1])
        if len(rows) >= limit:
            break
    if not rows:
        raise EmotionlabError("no readable calibration image")
    return np.concatenate(rows)


def read_onnx_metadata(path: str | Path) -> dict:
    """The emotionlab metadata embedded in an exported ONNX file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise EmotionlabError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others for non-ONNX bytes
        raise EmotionlabError(f"{path}: not an ONNX model ({type(error).__name__})") from error
    props = {entry.key: entry.value for entry in model.metadata_props}
    if METADATA_KEY not in props:
        raise EmotionlabError(
            f"{path}: an ONNX model without emotionlab metadata (export it with `emotionlab export`)"
        )
    try:
        return json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise EmotionlabError(f"{path}: emotionlab metadata is not valid JSON: {error}") from error


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


class OnnxClassifier(BaseClassifier):
    """An exported model run by ONNX Runtime on the CPU; same interface as ``Classifier``."""

    backend = "onnx"

    def __init__(self, path: str | Path, metadata: dict | None = None, *, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        super().__init__(metadata or read_onnx_metadata(path))
        try:
            self.session = ort.InferenceSession(
                str(path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ORT raises its own exception types for bad graphs
            raise EmotionlabError(
                f"{path}: ONNX Runtime cannot load this model: {str(error)[:200]}"
            ) from error
        self.onnx_path = path
        self.path = path
        self.int8 = bool(self.metadata.get("onnx", {}).get("int8"))

    @classmethod
    def from_file(cls, path: str | Path, *, threads: int | None = None) -> OnnxClassifier:
        return cls(path, threads=threads)

    def probabilities(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        array = batch.numpy() if isinstance(batch, torch.Tensor) else batch
        array = np.ascontiguousarray(array, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]


def default_onnx_cache() -> Path:
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "emotionlab") / "onnx"


def cached_onnx(model_path: str | Path, *, int8: bool = False, cache_dir: str | Path | None = None) -> Path:
    """The ONNX export of a model file, made once and kept in the cache (keyed by the weights' SHA-256)."""
    model_path = Path(model_path)
    metadata = read_metadata(model_path)
    digest = metadata.get("weights_sha256") or ""
    key = f"{digest[:24]}-v{EXPORT_VERSION}-{'int8' if int8 else 'fp32'}"
    target = Path(cache_dir) if cache_dir is not None else default_onnx_cache()
    target = target / f"{key}.onnx"
    if not digest or not target.is_file():
        export_onnx(model_path, target, int8=int8)
    return target
