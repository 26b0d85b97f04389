"""Where the model looked: Grad-CAM heat maps for every face (``emotionlab explain``, ``explain(image)``).

Grad-CAM (Selvaraju et al., 2017): take the feature maps of a late convolution, weight each map by the mean
gradient of the explained class's score over it, sum, keep the positive part and stretch it to the input. We
wrote it in ~40 lines of hooks rather than depend on ``pytorch-grad-cam`` (``grad-cam`` on PyPI): that library
hooks one layer per model and records one activation per forward call, so an ensemble with test-time flips (one
layer per member, each run on two views) would need the same bookkeeping around it anyway, and it brings four
more dependencies (ttach, tqdm, scipy and its own OpenCV).

    from emotionlab.evaluation.explain import explain
    result = explain("group.jpg")                 # the shipped model; faces found as `predict` finds them
    result.faces[0].target, result.faces[0].heatmap   # explained class, heat in [0, 1] on the model's input
    result.image_overlay().save("heat.png")       # every face's heat over the photo

Faces are found, cropped and preprocessed exactly as ``emotionlab predict`` does (the model's own settings), so
the explained input is the one the model classified. Ensembles (architecture ``ensemble``) average their members'
maps (each scaled to [0, 1] first, as the members' probabilities weigh equally); with test-time flips each
member's map of the mirrored face is mirrored back and averaged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from emotionlab.errors import EmotionlabError

# A map smaller than this says little about *where*: seed_cnn at 48 px ends in a 2x2 map, so the last
# convolution with at least a 4x4 map is explained instead (the last one overall when none is that large).
MIN_MAP_SIDE = 4
# Weight of the heat colour over the photo: OVERLAY_ALPHA where the heat peaks, a quarter of it where there is
# none, so cold parts of a face stay readable and the crop's square still shows on the full photo.
OVERLAY_ALPHA = 0.6
MIN_OVERLAY_SIDE = 160  # small crops (48 px FER faces) are enlarged so the heat map is visible


# ---- Grad-CAM on one network -------------------------------------------------------------------------------


def find_target_layer(network: nn.Module, input_size: int) -> nn.Module:
    """The last ``nn.Conv2d`` run in a forward pass whose output map is at least ``MIN_MAP_SIDE`` pixels."""
    order: list[tuple[nn.Module, tuple[int, int]]] = []

    def record(module, _inputs, output):
        order.append((module, tuple(output.shape[-2:])))

    handles = [
        module.register_forward_hook(record) for module in network.modules() if isinstance(module, nn.Conv2d)
    ]
    if not handles:
        raise EmotionlabError(
            f"{type(network).__name__} has no convolution layer: Grad-CAM cannot explain it"
        )
    try:
        with torch.no_grad():
            network(torch.zeros(1, 3, input_size, input_size))
    finally:
        for handle in handles:
            handle.remove()
    for module, size in reversed(order):
        if min(size) >= MIN_MAP_SIDE:
            return module
    return order[-1][0]


def grad_cam(
    network: nn.Module, layer: nn.Module, inputs: torch.Tensor, class_indices: Sequence[int]
) -> np.ndarray:
    """N x H x W maps in [0, 1] at the input's resolution: where ``layer``'s features raise each class's logit."""
    stored: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        stored["activation"] = output
        # Differentiate the layer's own output: a ReLU(inplace=True) after it would otherwise overwrite it.
        return output.clone()

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = network(inputs.detach().clone().requires_grad_(True))
            score = logits[torch.arange(len(inputs)), torch.as_tensor(list(class_indices))].sum()
            (gradient,) = torch.autograd.grad(score, stored["activation"])
    finally:
        handle.remove()
    activation = stored["activation"].detach()
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(inputs.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    return _unit_scale(cam.numpy())


def _unit_scale(maps: np.ndarray) -> np.ndarray:
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)


class GradCam:
    """Grad-CAM of a model file's network; an ensemble's map is the mean of its members' (and flips') maps."""

    def __init__(self, model: nn.Module, input_size: int):
        self.model = model.eval()
        self.input_size = input_size
        self._layers: dict[int, nn.Module] = {}

    def layer(self, network: nn.Module) -> nn.Module:
        key = id(network)
        if key not in self._layers:
            self._layers[key] = find_target_layer(network, self.input_size)
        return self._layers[key]

    def __call__(self, inputs: torch.Tensor, class_indices: Sequence[int]) -> np.ndarray:
        return self._maps(self.model, torch.as_tensor(inputs), list(class_indices))

    def _maps(self, network: nn.Module, inputs: torch.Tensor, class_indices: list[int]) -> np.ndarray:
        from emotionlab.models.ensemble import AveragedModel

        if not isinstance(network, AveragedModel):
            return grad_cam(network, self.layer(network), inputs, class_indices)
        maps = []
        for member in network.members:
            maps.append(self._maps(member, inputs, class_indices))
            if network.tta == "flip":
                mirrored = self._maps(member, torch.flip(inputs, dims=[3]), class_indices)
                maps.append(np.flip(mirrored, axis=2))
        return _unit_scale(np.mean(maps, axis=0))


# ---- faces in, explanations out ------------------------------------------------------------------------------


def heat_colours(heatmap: np.ndarray) -> np.ndarray:
    """H x W in [0, 1] -> H x W x 3 uint8 colours (matplotlib's ``jet``: blue cold, red hot)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255).astype(np.uint8)


def blend(
    pixels: np.ndarray, heat: np.ndarray, mask: np.ndarray | float = 1.0, *, alpha: float = OVERLAY_ALPHA
) -> Image.Image:
    """RGB ``pixels`` with the colours of ``heat`` (same height and width, in [0, 1]) laid over where ``mask``."""
    weight = (alpha * (0.25 + 0.75 * np.clip(heat, 0, 1)) * mask)[..., None]
    mixed = (1 - weight) * pixels.astype(np.float32) + weight * heat_colours(heat)
    return Image.fromarray(mixed.clip(0, 255).astype(np.uint8))


def overlay_heatmap(image: Image.Image, heatmap: np.ndarray, *, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The heat map (any size; stretched to the image) blended over ``image``."""
    image = image.convert("RGB")
    if min(image.size) < MIN_OVERLAY_SIDE:
        scale = MIN_OVERLAY_SIDE / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    heat = Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
    return blend(np.asarray(image), np.asarray(heat, dtype=np.float32) / 255, alpha=alpha)


@dataclass
class FaceExplanation:
    """One face: where it is, what the model said, and the heat map of the explained class."""

    box: list[int] | None  # x, y, w, h in the photo; None: the whole image was classified
    label: str
    confidence: float
    target: str  # the class whose evidence the heat map shows
    heatmap: np.ndarray  # in [0, 1], on the model's input (square)
    crop: Image.Image  # the face as cropped for the model (before resizing)
    to_image: np.ndarray | None = None  # 2x3 affine map crop -> photo pixels (None: the crop is the photo)

    def overlay(self) -> Image.Image:
        """The heat map over the face crop."""
        return overlay_heatmap(self.crop, self.heatmap)

    def record(self) -> dict:
        return {
            "box": self.box,
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "explained": self.target,
        }


@dataclass
class ImageExplanation:
    """Every face of one image; ``record`` is the same record ``predict`` gives for it."""

    name: str
    image: np.ndarray  # RGB pixels of the photo
    record: dict
    faces: list[FaceExplanation] = field(default_factory=list)

    def image_overlay(self, *, alpha: float = OVERLAY_ALPHA) -> Image.Image:
        """Every face's heat map placed over the photo at its crop (the hottest where crops overlap)."""
        import cv2

        height, width = self.image.shape[:2]
        heat = np.zeros((height, width), dtype=np.float32)
        inside = np.zeros((height, width), dtype=np.float32)
        for face in self.faces:
            side = face.crop.size[0]
            square = cv2.resize(face.heatmap, face.crop.size, interpolation=cv2.INTER_LINEAR)
            if face.to_image is None:
                placed, mask = square, np.ones_like(square)
            else:
                placed = cv2.warpAffine(square, face.to_image, (width, height), flags=cv2.INTER_LINEAR)
                mask = cv2.warpAffine(np.ones((side, side), np.float32), face.to_image, (width, height))
            heat = np.maximum(heat, placed)
            inside = np.maximum(inside, mask)
        return blend(self.image, heat, inside, alpha=alpha)


def _crop_and_map(array: np.ndarray, box, config) -> tuple[Image.Image, np.ndarray]:
    """The face crop ``predict`` made (same margin and alignment) and its 2x3 map back to photo pixels."""
    import cv2

    from emotionlab.faces import alignment_matrix, crop_face, eye_angle, face_landmarks

    crop = crop_face(array, box, margin=config.margin, align=config.align)
    angle = 0.0
    if config.align:
        angle = eye_angle(box.landmarks if box.landmarks is not None else face_landmarks(array, box))
    if abs(angle) <= 1e-3:  # crop_face's integer crop: a pure shift
        center, side = box.center, crop.size[0]
        left = np.floor(center[0] - side / 2 + 0.5)
        top = np.floor(center[1] - side / 2 + 0.5)
        return crop, np.array([[1.0, 0.0, left], [0.0, 1.0, top]])
    return crop, cv2.invertAffineTransform(alignment_matrix(box.center, angle, crop.size[0]))


class Explainer:
    """A recognizer (PyTorch backend) plus Grad-CAM: images in, faces with heat maps out."""

    def __init__(self, recognizer):
        from emotionlab.inference import Classifier

        if not isinstance(recognizer.classifier, Classifier):
            raise EmotionlabError(
                "explain needs the PyTorch model (a .safetensors model file), not an ONNX one"
            )
        self.recognizer = recognizer
        self.labels = list(recognizer.labels)
        self.cam = GradCam(recognizer.classifier.model, recognizer.classifier.input_size)

    @classmethod
    def from_file(cls, model: str | Path | None = None, **recognizer_options) -> Explainer:
        """``recognizer_options`` go to ``load_recognizer`` (``detect``, ``detector``, ``max_faces``)."""
        from emotionlab.inference import load_recognizer

        return cls(load_recognizer(model, backend="torch", **recognizer_options))  # gradients need PyTorch

    def class_index(self, target: str | None) -> int | None:
        if target is None:
            return None
        if target not in self.labels:
            raise EmotionlabError(f"unknown class {target!r}: the model knows {', '.join(self.labels)}")
        return self.labels.index(target)

    def heatmaps(
        self, inputs, probabilities: np.ndarray, target: str | None = None
    ) -> tuple[list[int], np.ndarray]:
        """(explained class per row, Grad-CAM maps) for preprocessed inputs: the predicted class unless ``target``."""
        fixed = self.class_index(target)
        classes = [int(row.argmax()) if fixed is None else fixed for row in probabilities]
        return classes, self.cam(torch.as_tensor(np.asarray(inputs)), classes)

    def explain(self, source, *, target: str | None = None, name: str | None = None) -> ImageExplanation:
        """Find, crop and classify every face of ``source`` (path, PIL image or RGB array) and explain each."""
        item = self.recognizer.preparer(keep_image=True)(source, name=name)
        if item.error is not None:
            raise EmotionlabError(f"{item.name}: {item.error}")
        record = next(self.recognizer.classify([item]))[1]
        # No face found: the whole image was classified, and the record's own fields describe it.
        faces = record["faces"] or [{**record, "box": None}]
        probabilities = np.array([[face["probabilities"][label] for label in self.labels] for face in faces])
        classes, maps = self.heatmaps(item.inputs, probabilities, target)
        result = ImageExplanation(item.name, item.image, record)
        config = self.recognizer.crop_config
        for index, face in enumerate(faces):
            if item.no_face or config is None:  # the whole image went through the network
                crop, to_image = Image.fromarray(item.image), None
            else:
                crop, to_image = _crop_and_map(item.image, item.boxes[index], config)
            result.faces.append(
                FaceExplanation(
                    face["box"],
                    face["label"],
                    float(face["confidence"]),
                    self.labels[classes[index]],
                    maps[index],
                    crop,
                    to_image,
                )
            )
        return result


def explain(image, model=None, *, target: str | None = None, **recognizer_options) -> ImageExplanation:
    """Grad-CAM for every face of one image. ``model``: a model file (default: the shipped model), a
    ``Recognizer`` or an ``Explainer``; ``target``: the class to explain (default: each face's prediction)."""
    from emotionlab.inference import Recognizer

    if isinstance(model, Explainer):
        explainer = model
    elif isinstance(model, Recognizer):
        explainer = Explainer(model)
    else:
        explainer = Explainer.from_file(model, **recognizer_options)
    return explainer.explain(image, target=target)


# ---- the `emotionlab explain` command's job ------------------------------------------------------------------


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, count = path.stem, 1
    while stem in used:
        count += 1
        stem = f"{path.stem}-{count}"
    used.add(stem)
    return stem


def explain_files(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    model: str | Path | None = None,
    target: str | None = None,
    detect: bool | None = None,
    detector=None,
    max_faces: int | None = None,
    on_record=None,
) -> list[dict]:
    """Write ``OUT/<name>.faceK.png`` (heat over each face crop) and ``OUT/<name>.overlay.png`` (over the photo)
    for every image; returns one record per image (``predict``'s fields, with ``explained`` and overlay paths)."""
    from emotionlab.data.images import is_image_name
    from emotionlab.inference import expand_inputs
    from emotionlab.isolation import printable

    explainer = Explainer.from_file(model, detect=detect, detector=detector, max_faces=max_faces)
    explainer.class_index(target)  # an unknown class fails before any image is read
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, used = [], set()
    for path in expand_inputs(inputs):
        if not is_image_name(path):
            record = {"path": printable(str(path)), "error": "not an image (explain reads images only)"}
        else:
            try:
                result = explainer.explain(path, target=target)
            except EmotionlabError as error:
                record = {"path": printable(str(path)), "error": str(error)}
            else:
                stem = _unique_stem(path, used)
                overlay = out / f"{stem}.overlay.png"
                result.image_overlay().save(overlay)
                record = {**result.record, "path": printable(str(path)), "overlay": str(overlay), "faces": []}
                for number, face in enumerate(result.faces, start=1):
                    face_path = out / f"{stem}.face{number}.png"
                    face.overlay().save(face_path)
                    record["faces"].append({**face.record(), "overlay": str(face_path)})
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records
