"""What the image recipes (scratch, transfer, fine-tune) share: the sample reader, metadata and datasets."""

from __future__ import annotations

from emotionlab.config import RunConfig
from emotionlab.data.dataset import ImageDataset
from emotionlab.data.transforms import build_eval_transform, build_train_transform
from emotionlab.models.factory import model_spec


def build_image_loader(config: RunConfig):
    """What reads a sample for training: the whole image, or, when ``data.faces`` is set, its face crop as
    ``predict`` makes it for this model (``FaceCropper``: the one preparation, cached)."""
    if not config.data.faces:
        return None
    from emotionlab.faces import FaceCropConfig, FaceCropper

    crop_config = FaceCropConfig.from_dict(config.data.faces)
    return FaceCropLoader(FaceCropper(crop_config, input_size=config.data.image_size))


class FaceCropLoader:
    """``loader(sample) -> crop``: its manifest ``face_box`` when set (no detection), else the largest face found.
    A class, not a lambda, so it pickles into DataLoader workers."""

    def __init__(self, cropper):
        self.cropper = cropper

    def __call__(self, sample):
        return self.cropper(sample.path, sample.face_box)[0]


def image_metadata(config: RunConfig) -> dict:
    spec = model_spec(config.train.model)
    return {
        "architecture": config.train.model,
        "architecture_kwargs": {},
        "input_size": config.data.image_size,
        "normalization": spec.normalization,
        "grayscale": spec.grayscale,
        "faces": config.data.faces,
    }


def build_image_datasets(config: RunConfig, labels, train_samples, val_samples, metadata: dict):
    size, normalization, grey = metadata["input_size"], metadata["normalization"], metadata["grayscale"]
    loader = build_image_loader(config)
    train_transform = build_train_transform(
        image_size=size, normalization=normalization, policy=config.data.augment, grayscale=grey
    )
    eval_transform = build_eval_transform(image_size=size, normalization=normalization, grayscale=grey)
    seed = config.train.seed
    return (
        ImageDataset(train_samples, labels, train_transform, loader=loader, seed=seed),
        ImageDataset(val_samples, labels, eval_transform, loader=loader, seed=seed),
    )
