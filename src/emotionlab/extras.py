"""Which extra brings which optional package, and the one-line error when it is missing.

``pip install emotionlab`` is the light core (predict and serve with the shipped models on ONNX Runtime, numpy
and Pillow). Training and its tools, video, the dlib detectors and Ray are extras; a command that needs one stops
with ``error: 'emotionlab train' needs PyTorch: pip install 'emotionlab[train]'``.
"""

from __future__ import annotations

import importlib.util

from emotionlab.errors import EmotionlabError

# Top-level module -> (what a user knows it as, the extra that installs it).
OPTIONAL_MODULES = {
    "torch": ("PyTorch", "train"),
    "torchvision": ("PyTorch", "train"),
    "timm": ("PyTorch", "train"),
    "lightning": ("PyTorch", "train"),
    "torchmetrics": ("PyTorch", "train"),
    "sklearn": ("scikit-learn", "train"),
    "matplotlib": ("matplotlib", "train"),
    "onnx": ("the onnx package", "train"),
    "yaml": ("PyYAML", "train"),
    "imagehash": ("imagehash", "train"),
    "cleanlab": ("cleanlab", "train"),
    "cv2": ("OpenCV", "video"),
    "dlib": ("dlib", "dlib"),
    "face_recognition_models": ("dlib", "dlib"),
    "ray": ("Ray", "ray"),
    "pandas": ("pandas", "pandas"),
}


def missing_message(subject: str, module: str) -> str | None:
    """``"<subject> needs PyTorch: pip install 'emotionlab[train]'"`` for a known optional module, else None."""
    known = OPTIONAL_MODULES.get(module.partition(".")[0])
    if known is None:
        return None
    what, extra = known
    if extra == "train" and importlib.util.find_spec("torch") is None:
        what = "PyTorch"  # the extra's headline: a light install lacks all of it, not just this one package
    return f"{subject} needs {what}: pip install 'emotionlab[{extra}]'"


def require(module: str, subject: str) -> None:
    """Raise the one-line ``EmotionlabError`` when optional ``module`` is not installed (nothing is imported)."""
    if importlib.util.find_spec(module) is None:
        raise EmotionlabError(missing_message(subject, module) or f"{subject} needs {module}")
