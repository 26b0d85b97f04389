"""The ``scratch`` recipe: train every weight of the model on images (the study's baseline)."""

from __future__ import annotations

from emotionlab.config import RunConfig
from emotionlab.data.samples import SampleSet
from emotionlab.models.factory import create_model
from emotionlab.training.recipes.images import build_image_datasets, image_metadata
from emotionlab.training.recipes.registry import Prepared, register_recipe


@register_recipe("scratch")
def scratch(config: RunConfig, sample_set: SampleSet, train_samples, val_samples) -> Prepared:
    """Train every weight of the model on images (the study's baseline and augmentation steps)."""
    train = config.train
    net = create_model(
        train.model,
        num_classes=len(sample_set.labels),
        image_size=config.data.image_size,
        pretrained=train.pretrained,
        weights=train.weights,
    )
    metadata = image_metadata(config)
    train_set, val_set = build_image_datasets(config, sample_set.labels, train_samples, val_samples, metadata)
    return Prepared(net=net, train_set=train_set, val_set=val_set, metadata=metadata)
