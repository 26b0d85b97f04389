"""Models: the study's CNN, the FER+ backbone, ensembles and every timm backbone, built by name; safe model files.

Importing this package registers every architecture of ours (each file registers itself with
``@register_model``), so which function runs first never changes what the registry holds.
"""

from emotionlab.models import efficientnet_lite, ensemble, fer_cnn, seed_cnn  # noqa: F401  (they register themselves)
from emotionlab.models.factory import create_model, model_spec
from emotionlab.models.registry import ModelSpec, list_models, register_model

__all__ = ["ModelSpec", "create_model", "list_models", "model_spec", "register_model"]
