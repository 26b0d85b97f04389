"""A model's frozen penultimate features (and its probabilities) for image files, computed once and cached.

Model-in-the-loop labelling, the label-error audit and the active-learning benchmark all refit a small head
(logistic regression) on these features many times; the network itself runs once per photo. Each photo is prepared
as ``predict`` prepares it (``FacePreparer`` with the model file's face settings: its largest face), and the
features are the input of the model's last linear layer (``forward_head(..., pre_logits=True)``, timm's hook);
an ensemble gives its members' features side by side, each averaged over its test-time flips.

The cache is one ``.npz`` per model under ``$EMOTIONLAB_CACHE/features`` (or ``~/.cache/emotionlab/features``),
keyed by the SHA-256 of each file's bytes, so renamed or moved photos are still hits and a changed photo is not.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotionlab import paths
from emotionlab.errors import EmotionlabError
from emotionlab.fileio import write_atomic

log = logging.getLogger("emotionlab")

# Bump when the feature definition changes, so old cache files are not read as new ones.
FEATURE_VERSION = 2  # 2: faces prepared as predict prepares them (FacePreparer: reduced JPEG decode)
BATCH_SIZE = 64


@dataclass(frozen=True)
class FeatureSet:
    """Row ``i`` belongs to ``paths[i]``: penultimate ``features`` and the model's ``probabilities``."""

    paths: list[str]
    features: np.ndarray  # N x D, float32
    probabilities: np.ndarray  # N x classes, float32, columns in ``labels`` order
    labels: list[str]  # the model's classes
    model: str  # the model file's name, for journals and reports
    model_digest: str


def _file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def penultimate(model, batch):
    """The input of ``model``'s last linear layer for a preprocessed batch (N x D tensor)."""
    import torch

    from emotionlab.models.ensemble import AveragedModel

    if isinstance(model, AveragedModel):
        views = [batch, torch.flip(batch, dims=[3])] if model.tta == "flip" else [batch]
        parts = [
            torch.stack([penultimate(member, view) for view in views]).mean(0) for member in model.members
        ]
        return torch.cat(parts, dim=1)
    if hasattr(model, "forward_head") and hasattr(model, "forward_features"):
        return model.forward_head(model.forward_features(batch), pre_logits=True).flatten(1)
    # An architecture without timm's hooks: its log-probabilities still separate the classes.
    return torch.log_softmax(model(batch), dim=1)


class FeatureExtractor:
    """``extractor(paths) -> FeatureSet`` for one model file (a path, a shipped name, or None for the default).

    Uses PyTorch (the ONNX exports end at the probabilities). ``cache_dir=False`` turns the disk cache off.
    """

    def __init__(self, model: str | Path | None = None, *, cache_dir: str | Path | None | bool = None):
        from emotionlab.inference.loading import load_classifier
        from emotionlab.inference.recognizer import Recognizer
        from emotionlab.models.io import read_metadata

        self.classifier = load_classifier(model, backend="torch")
        self.path = Path(self.classifier.path)
        self.labels = list(self.classifier.labels)
        self.preparer = Recognizer(self.classifier).preparer(keep_crops=True)
        digest = read_metadata(self.path).get("weights_sha256") or _file_sha256(self.path)
        self.model_digest = str(digest)
        if cache_dir is False:
            self.cache_file = None
        else:
            folder = paths.cache_dir("features") if cache_dir in (None, True) else Path(cache_dir)
            self.cache_file = folder / f"{self.model_digest[:24]}.v{FEATURE_VERSION}.npz"

    def _face(self, path: str):
        item = self.preparer(path)  # the image as predict prepares it; its largest face, or the whole image
        if item.error is not None:
            raise EmotionlabError(f"{path}: {item.error}")
        return item.crops[0]

    def _load_cache(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        try:
            with np.load(self.cache_file, allow_pickle=False) as data:
                return {
                    str(key): (feature, probability)
                    for key, feature, probability in zip(
                        data["digests"], data["features"], data["probabilities"], strict=True
                    )
                }
        except (OSError, ValueError, KeyError) as error:
            log.warning("%s: unreadable feature cache, recomputing (%s)", self.cache_file, error)
            return {}

    def _save_cache(self, cache: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        if self.cache_file is None or not cache:
            return
        digests = sorted(cache)

        def write(name):
            with open(name, "wb") as handle:
                np.savez(
                    handle,
                    digests=np.array(digests),
                    features=np.stack([cache[key][0] for key in digests]),
                    probabilities=np.stack([cache[key][1] for key in digests]),
                )

        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.cache_file, write)
        except OSError as error:
            log.warning("feature cache %s is not writable (%s)", self.cache_file, error)

    def __call__(
        self, paths: Sequence[str | Path], *, progress: Callable[[int, int], None] | None = None
    ) -> FeatureSet:
        import torch

        paths = [str(path) for path in paths]
        digests = []
        for path in paths:
            try:
                digests.append(_file_sha256(path))
            except OSError as error:
                raise EmotionlabError(f"{path}: cannot read ({error.strerror})") from error
        cache = self._load_cache()
        missing = [index for index, digest in enumerate(digests) if digest not in cache]
        model = self.classifier.model
        for start in range(0, len(missing), BATCH_SIZE):
            chunk = missing[start : start + BATCH_SIZE]
            faces = [self._face(paths[index]) for index in chunk]
            batch = self.classifier.preprocess(faces)
            with torch.inference_mode():
                features = penultimate(model, batch).float().numpy()
                probabilities = torch.softmax(model(batch).float(), dim=1).numpy()
            for row, index in enumerate(chunk):
                cache[digests[index]] = (
                    features[row].astype(np.float32),
                    probabilities[row].astype(np.float32),
                )
            if progress is not None:
                progress(min(start + BATCH_SIZE, len(missing)), len(missing))
        if missing:
            self._save_cache(cache)
        if not paths:
            return FeatureSet([], np.zeros((0, 0), np.float32), np.zeros((0, len(self.labels)), np.float32),
                              self.labels, self.path.name, self.model_digest)  # fmt: skip
        return FeatureSet(
            paths=paths,
            features=np.stack([cache[digest][0] for digest in digests]),
            probabilities=np.stack([cache[digest][1] for digest in digests]),
            labels=self.labels,
            model=self.path.name,
            model_digest=self.model_digest,
        )
