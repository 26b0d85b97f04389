"""ONNX export of a model file, int8 quantisation, and the export cache (needs the ``[train]`` extra).

``export_onnx(model.safetensors, out.onnx)`` writes a self-describing ONNX file (see
``emotionlab.inference.classifier``: the input, the softmax output and the model file's metadata inside).
``int8=True`` quantises the weights: statically (activations too, calibrated on images cropped as the model
was trained) when calibration inputs are given, else dynamically. ``cached_onnx`` exports a model file once, keyed by its weights' SHA-256.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from emotionlab import paths
from emotionlab.errors import EmotionlabError
from emotionlab.faces import FaceCropConfig
from emotionlab.faces.preparation import CROP_OVERSAMPLE, DETECT_DECODE_SIDE, FacePreparer
from emotionlab.fileio import write_atomic
from emotionlab.inference.classifier import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, EvalTransform
from emotionlab.models.io import load_model_file, read_metadata

OPSET = 17
# Bump when the exported graph changes, so cached exports are redone.
EXPORT_VERSION = 1


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


def calibration_preparer(metadata: dict) -> FacePreparer:
    """The preparer prediction uses for this model (its crop settings, reduced decoding): calibration images
    become exactly the inputs the quantised model will see."""
    faces = metadata.get("faces")
    transform = EvalTransform(
        image_size=int(metadata["input_size"]),
        normalization=metadata["normalization"],
        grayscale=bool(metadata.get("grayscale", False)),
    )
    return FacePreparer(
        transform,
        FaceCropConfig.from_dict(faces) if faces else None,
        decode_side=DETECT_DECODE_SIDE,
        min_crop_side=CROP_OVERSAMPLE * int(metadata["input_size"]),
    )


def calibration_inputs(
    model_path: str | Path, images: Iterable, *, limit: int = 256, show_progress: bool = False
) -> np.ndarray:
    """Model inputs for static int8 calibration from image files, cropped as the model was trained."""
    from emotionlab.progress import progress

    preparer = calibration_preparer(read_metadata(model_path))
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


def cached_onnx(model_path: str | Path, *, int8: bool = False, cache_dir: str | Path | None = None) -> Path:
    """The ONNX export of a model file, made once and kept in the cache (keyed by the weights' SHA-256)."""
    model_path = Path(model_path)
    metadata = read_metadata(model_path)
    digest = metadata.get("weights_sha256") or ""
    key = f"{digest[:24]}-v{EXPORT_VERSION}-{'int8' if int8 else 'fp32'}"
    target = Path(cache_dir) if cache_dir is not None else paths.cache_dir("onnx")
    target = target / f"{key}.onnx"
    if not digest or not target.is_file():
        export_onnx(model_path, target, int8=int8)
    return target
