"""emotionlab: recognise emotions on human faces."""

from emotionlab.errors import EmotionlabError

__version__ = "0.1.0"

__all__ = ["EmotionlabError", "__version__", "load_model"]


def load_model(path=None, **kwargs):
    """Load a model file (or the shipped model when ``path`` is None) as a ready-to-use recognizer.

    The returned object's ``predict(image_or_path)`` gives ``{"path", "label", "probabilities", ...}``.
    """
    from emotionlab.inference import load_recognizer

    return load_recognizer(path, **kwargs)
