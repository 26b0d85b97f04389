"""emotionlab: recognise emotions on human faces."""

from emotionlab.errors import EmotionlabError
from emotionlab.version import __version__

__all__ = ["EmotionlabError", "Recognizer", "__version__", "load_model", "to_dataframe"]


def load_model(path=None, **kwargs):
    """Load a model file (or the shipped model when ``path`` is None) as a ready-to-use recognizer.

    Returns an ``emotionlab.Recognizer``: ``predict(image_or_path)`` gives ``{"path", "label", "probabilities",
    "no_face", "faces": [{"box", "label", "probabilities", ...}, ...]}``; keyword arguments go to
    ``emotionlab.inference.load_recognizer`` (``detect``, ``detector``, ``backend="onnx"``, ...).
    ``classes=emotionlab.labels.EMOTIONS`` answers among the study's five only (`--five`): a model that also
    knows ``neutral`` leaves it out and renormalises the five.
    """
    from emotionlab.inference import load_recognizer

    return load_recognizer(path, **kwargs)


def __getattr__(name):
    # Lazy: `import emotionlab` stays light (no torch) until the recognizer is used.
    if name in ("Recognizer", "to_dataframe", "ImageRecord", "FaceRecord"):
        from emotionlab import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'emotionlab' has no attribute {name!r}")
