"""The ``finetune`` recipe: every weight of a complete model file, trained at a low learning rate.

It starts from a complete model file (``--init-from RUN_DIR_OR_MODEL_FILE``, e.g. a transfer run, or the
FER+ pre-trained ``models/ferplus_backbone.safetensors``) and trains every weight, the backbone at
``learning_rate * backbone_lr_scale`` and the head (the classifier its architecture declares) at
``learning_rate``, with ``warmup_epochs`` of linear warm-up before the cosine schedule. The head is kept when the
labels match the dataset's, else replaced. (``--recipe scratch --weights FILE`` also starts from a file's
weights, but with one learning rate for all.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset

from emotionlab.config import RunConfig
from emotionlab.data.samples import SampleSet
from emotionlab.errors import EmotionlabError
from emotionlab.labels import order_labels
from emotionlab.models.factory import attach_mlp_head, classifier_of, replace_classifier
from emotionlab.models.io import load_model_file
from emotionlab.training.recipes.images import build_image_datasets
from emotionlab.training.recipes.registry import Prepared, register_recipe
from emotionlab.training.recipes.transfer import head_parameter_names

log = logging.getLogger("emotionlab")


def resolve_model_source(source: str | None) -> Path:
    """``--init-from``: a model file, or a run folder holding ``model.safetensors``."""
    if not source:
        raise EmotionlabError(
            "the finetune recipe needs --init-from RUN_DIR_OR_MODEL_FILE (a transfer run or a model file)"
        )
    path = Path(source)
    if path.is_dir():
        path = path / "model.safetensors"
        if not path.is_file():
            raise EmotionlabError(f"{source}: run folder without model.safetensors (did the run finish?)")
    elif not path.is_file():
        raise EmotionlabError(f"{source}: no such model file or run folder")
    return path


@register_recipe("finetune")
def finetune(config: RunConfig, sample_set: SampleSet, train_samples, val_samples) -> Prepared:
    """Train every weight of a complete model file at a low learning rate (backbone lower than the head)."""
    if config.train.weights:
        raise EmotionlabError(
            "finetune starts from --init-from RUN_DIR_OR_MODEL_FILE; --weights belongs to scratch/transfer"
        )
    source = resolve_model_source(config.train.init_from)
    net, source_meta = load_model_file(source)
    added = [label for label in config.train.mix.add_classes if label not in sample_set.labels]
    labels = order_labels([*sample_set.labels, *added])
    kwargs = dict(source_meta.get("architecture_kwargs") or {})
    source_labels = list(source_meta["labels"])
    if source_labels != labels and set(labels) <= set(source_labels) and not kwargs.get("head_hidden"):
        # Every class is one the source model already knows (FER+ 8 -> five + neutral): keep those rows of its
        # head, so fine-tuning starts from a classifier that already separates them.
        _select_head_rows(net, source_meta["architecture"], [source_labels.index(label) for label in labels])
        log.info("finetune: kept the rows of %s of the source head", ", ".join(labels))
    elif source_labels != labels:
        log.warning(
            "finetune: %s predicts %s, the data has %s: starting with a new head",
            source,
            ", ".join(source_meta["labels"]),
            ", ".join(labels),
        )
        if kwargs.get("head_hidden"):
            attach_mlp_head(net, source_meta["architecture"], len(labels), int(kwargs["head_hidden"]))
        else:
            net.reset_classifier(len(labels))
    if config.train.model != source_meta["architecture"]:
        log.info("finetune: architecture %s comes from %s", source_meta["architecture"], source)
    net.requires_grad_(True).train()
    metadata = {
        "architecture": source_meta["architecture"],
        "architecture_kwargs": kwargs,
        "input_size": config.data.image_size,
        "labels": labels,
        "normalization": source_meta["normalization"],
        "grayscale": bool(source_meta.get("grayscale", False)),
        "faces": config.data.faces,
        "finetuned_from": {"path": str(source), "weights_sha256": source_meta.get("weights_sha256")},
    }
    train_set, val_set = build_image_datasets(config, labels, train_samples, val_samples, metadata)
    mix = config.train.mix.ferplus
    if mix:
        train_set = _mix_ferplus(config, train_set, labels, metadata, mix)
        metadata["finetuned_from"]["mixed_with"] = {
            "dataset": f"FER+ train (majority vote; classes {', '.join(labels)})",
            "ratio": config.train.mix.ratio,
            "balanced": config.train.mix.balanced,
        }
        if added:
            val_set = _add_ferplus_validation(config, val_set, labels, added, metadata, mix)
            metadata["finetuned_from"]["added_classes"] = added
    return Prepared(
        net=net,
        train_set=train_set,
        val_set=val_set,
        metadata=metadata,
        backbone_lr_scale=config.train.backbone_lr_scale,
        head_parameters=_head_parameters(net, source_meta["architecture"]),
    )


def _select_head_rows(net: torch.nn.Module, architecture: str, rows: list[int]) -> None:
    path, head = classifier_of(net, architecture)
    new = torch.nn.Linear(head.in_features, len(rows), bias=head.bias is not None)
    with torch.no_grad():
        new.weight.copy_(head.weight[rows])
        if head.bias is not None:
            new.bias.copy_(head.bias[rows])
    replace_classifier(net, path, new)
    if hasattr(net, "num_classes"):
        net.num_classes = len(rows)


def _head_parameters(net: torch.nn.Module, architecture: str) -> frozenset[str]:
    try:
        return frozenset(head_parameter_names(net, architecture))
    except EmotionlabError:  # no single classifier (an ensemble): every weight trains at the backbone rate
        return frozenset()


class MixedDataset(Dataset):
    """The task's images plus, each epoch, a fresh random subset of extra faces (``(index, epoch)`` keys).

    Mixing FER+ faces into fine-tuning keeps the backbone's FER+ skill (no catastrophic forgetting) while the
    model adapts to the task; validation stays on the task's own images, so model selection is unchanged.
    """

    def __init__(
        self,
        primary: Dataset,
        extra: Dataset,
        per_epoch: int,
        *,
        seed: int = 0,
        classes: torch.Tensor | None = None,
    ):
        self.primary, self.extra, self.per_epoch, self.seed = primary, extra, min(per_epoch, len(extra)), seed
        # ``classes`` (the extra faces' class indices): draw every class equally often, so FER+'s own prior
        # (fearful ~3% of its faces) does not leak into a task whose classes are about balanced.
        self.by_class = (
            None if classes is None else [torch.nonzero(classes == k).flatten() for k in classes.unique()]
        )
        self._epoch: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.primary) + self.per_epoch

    def _chosen(self, epoch: int) -> torch.Tensor:
        if self._epoch is None or self._epoch[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 7_777 + epoch)
            if self.by_class is None:
                chosen = torch.randperm(len(self.extra), generator=generator)[: self.per_epoch]
            else:
                shares = [
                    members[
                        torch.randint(
                            len(members), (self.per_epoch // len(self.by_class) + 1,), generator=generator
                        )
                    ]
                    for members in self.by_class
                ]
                chosen = torch.stack(shares, dim=1).flatten()[: self.per_epoch]  # classes interleaved
            self._epoch = (epoch, chosen)
        return self._epoch[1]

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if index < len(self.primary):
            return self.primary[(index, epoch)]
        return self.extra[(int(self._chosen(epoch)[index - len(self.primary)]), epoch)]


def _mix_ferplus(
    config: RunConfig, train_set: Dataset, labels: list[str], metadata: dict, root: str
) -> Dataset:
    from emotionlab.data import ferplus

    _check_ferplus_mix(root, metadata)
    # Five-class votes unless the model adds a class only the eight-class reading has (neutral).
    classes = 5 if set(labels) <= set(ferplus.class_names(5)) else 8
    names = ferplus.class_names(classes)
    items = [item for item in ferplus.read_split(root, "train", classes=classes) if item.label in labels]
    faces = ferplus.FerPlusTensors.from_items(
        items, image_size=metadata["input_size"], augment=ferplus.TensorAugment(), seed=config.train.seed
    )
    # FER+ class indices follow FER+'s own label order; remap them to this model's label order.
    faces.targets = torch.tensor([labels.index(names[int(target)]) for target in faces.targets])
    ratio = config.train.mix.ratio
    log.info("finetune: mixing %d of %d FER+ faces into each epoch", int(ratio * len(train_set)), len(faces))
    return MixedDataset(
        train_set,
        faces,
        int(ratio * len(train_set)),
        seed=config.train.seed,
        classes=faces.targets if config.train.mix.balanced else None,
    )


class KeyedConcat(Dataset):
    """Two ``(index, epoch)``-keyed datasets one after the other (validation: task images, then FER+ faces)."""

    def __init__(self, first: Dataset, second: Dataset):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if index < len(self.first):
            return self.first[(index, epoch)]
        return self.second[(index - len(self.first), epoch)]


def _add_ferplus_validation(config, val_set, labels, added, metadata, root) -> Dataset:
    """Validation also holds FER+ validation faces of the added classes: as many per class as the task's mean,
    so model selection (the lowest validation loss) sees the new class without it dominating."""
    from emotionlab.data import ferplus

    names = ferplus.class_names(8)
    per_class = max(1, len(val_set) // max(1, len(labels) - len(added)))
    chosen = []
    for label in added:
        items = [item for item in ferplus.read_split(root, "validation", classes=8) if item.label == label]
        generator = torch.Generator().manual_seed(config.train.seed)
        order = torch.randperm(len(items), generator=generator)[:per_class].tolist()
        chosen += [items[index] for index in sorted(order)]
    faces = ferplus.FerPlusTensors.from_items(
        chosen, image_size=metadata["input_size"], seed=config.train.seed
    )
    faces.targets = torch.tensor([labels.index(names[int(target)]) for target in faces.targets])
    log.info("finetune: validation adds %d FER+ faces of %s", len(faces), ", ".join(added))
    return KeyedConcat(val_set, faces)


def _check_ferplus_mix(root: str, metadata: dict) -> None:
    from emotionlab.data import ferplus

    if not ferplus.is_ferplus_root(root):
        raise EmotionlabError(f"{root}: not a FER+ folder (FER2013Train/label.csv missing) for mix_ferplus")
    if not metadata["grayscale"] or metadata["normalization"].get("type") != "per_image":
        raise EmotionlabError(
            "mix_ferplus needs a grey, per-image standardised model (fer_cnn), as FER+ faces are"
        )
