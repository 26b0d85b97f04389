"""The LightningModule: one ``model_step`` shared by train, validation and test; optimiser per config."""

from __future__ import annotations

import math
from collections.abc import Collection

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from emotionlab.config import TrainConfig


class EmotionClassifier(L.LightningModule):
    """Wraps a plain ``nn.Module`` (kept apart, as in lightning-hydra-template) with loss, metrics, optimiser.

    ``backbone_lr_scale`` gives the backbone a lower learning rate than the head (fine-tuning): the head is
    ``head_parameters``, the names of the classifier's parameters (``Prepared.head_parameters``).
    """

    def __init__(
        self,
        net: nn.Module,
        config: TrainConfig,
        *,
        backbone_lr_scale: float = 1.0,
        head_parameters: Collection[str] = (),
        soft_targets: bool = False,
        class_counts: list[int] | None = None,
    ):
        super().__init__()
        self.net = net
        self.config = config
        self.backbone_lr_scale = backbone_lr_scale
        self.head_parameters = frozenset(
            head_parameters
        )  # none (an ensemble): every weight at the backbone rate
        self.soft_targets = soft_targets
        weights, adjustment = _balance_terms(config.loss.class_balance, class_counts)
        self.register_buffer("class_weights", weights, persistent=False)
        self.register_buffer("logit_adjustment", adjustment, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def model_step(self, batch, *, training: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets = batch
        logits = self(images)
        # Logit adjustment (Menon et al. 2021) shifts the training loss only; the model's logits stay plain.
        adjusted = (
            logits + self.logit_adjustment if training and self.logit_adjustment is not None else logits
        )
        weight = self.class_weights if training else None
        loss = F.cross_entropy(adjusted, targets, weight=weight, label_smoothing=self.config.label_smoothing)
        hard = targets.argmax(dim=1) if targets.ndim == 2 else targets
        correct = (logits.argmax(dim=1) == hard).float().mean()
        return loss, correct, logits

    def training_step(self, batch, batch_index):
        alpha = self.config.loss.mixup
        loss, accuracy, _ = self.model_step(
            _mixup(batch, alpha, self.net) if alpha > 0 else batch, training=True
        )
        size = batch[0].shape[0]
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True
        )
        self.log(
            "train/acc",
            accuracy,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=size,
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch, batch_index):
        loss, accuracy, _ = self.model_step(batch)
        size = batch[0].shape[0]
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("val/acc", accuracy, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)

    def _parameter_groups(self) -> list[dict]:
        lr = self.config.learning_rate
        trainable = [(name, p) for name, p in self.net.named_parameters() if p.requires_grad]
        if self.backbone_lr_scale == 1.0:
            return [{"params": [p for _, p in trainable], "lr": lr}]
        head = [p for name, p in trainable if name in self.head_parameters]
        body = [p for name, p in trainable if name not in self.head_parameters]
        return [{"params": body, "lr": lr * self.backbone_lr_scale}, {"params": head, "lr": lr}]

    def configure_optimizers(self):
        groups = self._parameter_groups()
        name, decay = self.config.optimizer, self.config.weight_decay
        if name == "adam":
            optimizer = torch.optim.Adam(groups, weight_decay=decay)
        elif name == "adamw":
            optimizer = torch.optim.AdamW(groups, weight_decay=decay)
        elif name == "sgd":
            optimizer = torch.optim.SGD(groups, momentum=0.9, nesterov=True, weight_decay=decay)
        else:
            raise ValueError(f"unknown optimizer {name!r} (adam, adamw, sgd)")
        if self.config.scheduler == "none" and self.config.warmup_epochs == 0:
            return optimizer
        epochs, warmup = max(1, self.config.epochs), self.config.warmup_epochs

        def factor(epoch: int) -> float:
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            if self.config.scheduler == "cosine":
                progress = (epoch - warmup) / max(1, epochs - warmup)
                return 0.5 * (1 + math.cos(math.pi * progress))
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


BALANCE_MODES = ("none", "weight", "logit-adjust")


def _balance_terms(mode: str, counts: list[int] | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Class weights (inverse frequency, mean 1) or logit adjustments (log prior) from training counts."""
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown class balance {mode!r} ({', '.join(BALANCE_MODES)})")
    if mode == "none" or not counts:
        return None, None
    counts_tensor = torch.tensor(counts, dtype=torch.float32).clamp(min=1)
    if mode == "weight":
        weights = counts_tensor.sum() / counts_tensor
        return weights / weights.mean(), None
    return None, torch.log(counts_tensor / counts_tensor.sum())


def _mixup(batch, alpha: float, net: nn.Module):
    """Mixup (Zhang et al. 2018): blend pairs of images and their (one-hot or soft) targets with Beta(alpha, alpha)."""
    images, targets = batch
    if targets.ndim == 1:
        classes = getattr(net, "num_classes", None) or int(targets.max()) + 1
        targets = F.one_hot(targets, classes).float()
    weight = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(images.shape[0], device=images.device)
    return weight * images + (1 - weight) * images[order], weight * targets + (1 - weight) * targets[order]
