"""The web page's files: what `emotionlab export --web DIR` writes and `emotionlab serve` offers at /local.

One list (``site_files``) says which files make the site: the page (``static/``), the service page's stylesheet
and its drawing of boxes and table (``faces.js``), BlazeFace and the classifier(s) as ONNX files, ONNX Runtime Web
(vendored from npm by ``scripts/vendor_onnxruntime_web.py``), and ``config.json``: every setting the page's
JavaScript needs, read from the models' own metadata (labels, input size, colour, normalisation, crop margin) and
from the Python detector's constants, so the page crops and classifies exactly as ``emotionlab predict`` does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import onnxruntime

from emotionlab.errors import EmotionlabError
from emotionlab.faces import blaze
from emotionlab.faces.boxes import MAX_DETECT_PIXELS, MIN_IMAGE_SIDE
from emotionlab.inference.compound import compound_ratio
from emotionlab.version import __version__

PACKAGE = Path(__file__).resolve().parent
STATIC = PACKAGE / "static"
ASSETS = PACKAGE.parent / "assets"
SERVICE_STATIC = PACKAGE.parent / "serving" / "static"  # the service page's predict.css and faces.js

# ONNX Runtime Web, pinned: the npm package's version and the sha512 integrity npm publishes for its tarball.
ORT_WEB_VERSION = "1.23.2"
ORT_WEB_INTEGRITY = (
    "sha512-T09JUtMn+CZLk3mFwqiH0lgQf+4S7+oYHHtk6uhaYAAJI95bTcKi5bOOZYwORXfS/RLZCjDDEXGWIuOCAFlEjg=="
)
# The wasm-only build (no WebGPU/WebGL code): 12 MB. The "threaded" runtime also runs with one thread, which
# needs no cross-origin isolation, so any static host can serve it.
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
VENDOR = PACKAGE / "vendor" / "onnxruntime-web"

PAGE_FILES = ("index.html", "local.js", "vision.js", "classify.js", "local.css")
SHIPPED = {"default": "default_model.onnx", "ferplus8": "ferplus8_model.onnx"}
MARKER = "config.json"  # every export has one; a folder holding it may be overwritten by a new export

# The page's Content-Security-Policy (also in index.html): nothing but this folder's own files, no request to
# another host; 'wasm-unsafe-eval' lets ONNX Runtime compile its WebAssembly.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
}


def ort_web_folder() -> Path:
    """The vendored ONNX Runtime Web files, or a one-line error saying how to fetch them."""
    missing = [name for name in (*ORT_WEB_FILES, "VERSION") if not (VENDOR / name).is_file()]
    if missing:
        raise EmotionlabError(
            f"{VENDOR}: ONNX Runtime Web {ORT_WEB_VERSION} is not vendored ({missing[0]} missing): run "
            "`python scripts/vendor_onnxruntime_web.py` (or `make web-vendor`) in the emotionlab source tree"
        )
    return VENDOR


def model_entry(name: str, path: Path) -> dict:
    """What the page needs to know about one classifier (ONNX file with emotionlab metadata)."""
    if not path.is_file():
        raise EmotionlabError(f"{path}: ONNX model file not found")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        metadata = json.loads(session.get_modelmeta().custom_metadata_map["emotionlab"])
    except KeyError as error:
        raise EmotionlabError(
            f"{path}: an ONNX model without emotionlab metadata (export it with `emotionlab export --onnx`)"
        ) from error
    except Exception as error:  # ORT's own exception types for a file that is no ONNX model
        raise EmotionlabError(f"{path}: not a usable ONNX model ({str(error)[:200]})") from error
    faces = metadata.get("faces")
    if faces:
        if faces.get("detector") not in ("blaze", "blaze-full"):
            raise EmotionlabError(
                f"{path}: the model crops faces found by {faces.get('detector')!r}; the web page runs BlazeFace "
                "only (detector blaze or blaze-full)"
            )
        if faces.get("align"):
            raise EmotionlabError(
                f"{path}: the model wants eye-aligned crops, which the web page does not make"
            )
    normalization = metadata["normalization"]
    if normalization.get("type") != "per_image" and not {"mean", "std"} <= set(normalization):
        raise EmotionlabError(f"{path}: unknown normalisation {normalization!r}")
    return {
        "name": name,
        "file": f"models/{path.name}",
        "architecture": metadata.get("architecture", "?"),
        "labels": list(metadata["labels"]),
        "input_size": int(metadata["input_size"]),
        "grayscale": bool(metadata.get("grayscale", False)),
        "normalization": normalization,
        "faces": {"detector": faces["detector"], "margin": float(faces.get("margin", 0.1))}
        if faces
        else None,
        "compound_ratio": compound_ratio(metadata),
    }


def detector_config() -> dict:
    """BlazeFace as ``emotionlab.faces.blaze`` runs it: models, anchors, thresholds, the scene rule."""
    defaults = blaze.BlazeFace.__init__.__kwdefaults__
    return {
        "models": {
            name: {
                "file": f"models/{model.file_name}",
                "input_size": model.input_size,
                "strides": list(model.strides),
                "anchors_per_layer": model.anchors_per_layer,
            }
            for name, model in blaze.MODELS.items()
        },
        "score_threshold": defaults["score_threshold"],
        "iou_threshold": defaults["iou_threshold"],
        "raw_score_limit": blaze.RAW_SCORE_LIMIT,
        "scene_fraction": blaze.SCENE_FRACTION,
        "scene_min_side": blaze.SCENE_MIN_SIDE,
        "new_face_overlap": blaze._new_face.__defaults__[0],
        "min_image_side": MIN_IMAGE_SIDE,
        "max_pixels": MAX_DETECT_PIXELS,
    }


def resolve_models(models: Sequence[str | Path] | None) -> list[tuple[str, Path]]:
    """``(name, ONNX file)`` for each requested model: shipped names or .onnx files (default: every shipped one)."""
    if not models:
        return [(name, ASSETS / file) for name, file in SHIPPED.items() if (ASSETS / file).is_file()]
    chosen = []
    for model in models:
        text = str(model)
        if text in SHIPPED and not Path(text).is_file():
            chosen.append((text, ASSETS / SHIPPED[text]))
        elif Path(text).suffix.lower() == ".onnx":
            chosen.append((Path(text).stem, Path(text)))
        else:
            raise EmotionlabError(
                f"{text}: the web page runs ONNX models: give a shipped name ({', '.join(SHIPPED)}) or a .onnx "
                "file (`emotionlab export --onnx model.onnx --model model.safetensors` makes one)"
            )
    names = [name for name, _ in chosen]
    if len(set(names)) != len(names):
        raise EmotionlabError(f"two models with the same name in {', '.join(names)}")
    return chosen


def site_files(models: Sequence[str | Path] | None = None) -> dict[str, Path | bytes]:
    """Every file of the site: relative name -> file to copy, or bytes (``config.json``)."""
    chosen = resolve_models(models)
    if not chosen:
        raise EmotionlabError(f"{ASSETS}: no shipped model in this install; pass --model MODEL.onnx")
    entries = [model_entry(name, path) for name, path in chosen]
    detector = detector_config()
    files: dict[str, Path | bytes] = {name: STATIC / name for name in PAGE_FILES}
    for name in ("predict.css", "faces.js"):
        files[name] = SERVICE_STATIC / name
    for model in detector["models"].values():
        files[model["file"]] = ASSETS / Path(model["file"]).name
    for entry, (_, path) in zip(entries, chosen, strict=True):
        files[entry["file"]] = path
    vendor = ort_web_folder()
    for name in (*ORT_WEB_FILES, "VERSION"):
        files[f"ort/{name}"] = vendor / name  # VERSION: the package's version, licence and npm integrity
    config = {
        "emotionlab": __version__,
        "onnxruntime_web": ORT_WEB_VERSION,
        "detector": detector,
        "models": entries,
    }
    files[MARKER] = (json.dumps(config, indent=1) + "\n").encode()
    return files


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def export_web(folder: str | Path, models: Sequence[str | Path] | None = None) -> tuple[Path, int]:
    """Write the site into ``folder`` (new, empty, or an earlier export); returns (folder, bytes written)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EmotionlabError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise EmotionlabError(
            f"{folder}: folder is not empty and holds no earlier web export; choose another"
        )
    files = site_files(models)
    total = 0
    for name, source in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        total += target.stat().st_size
    return folder, total
