"""The model in the browser: a static site (page, BlazeFace, the classifier, ONNX Runtime Web) that finds and
classifies faces on the user's own device; nothing is uploaded. ``export_web(folder)`` writes it,
``emotionlab serve`` offers it at /local."""

from emotionlab.web.site import export_web, site_files

__all__ = ["export_web", "site_files"]
