"""Class-balanced losses and mixup: options a user sets on `emotionlab train`."""

from __future__ import annotations

import pytest
import torch

from emotionlab.config import LossOptions, TrainConfig
from emotionlab.training.module import EmotionClassifier, _balance_terms, _mixup


def test_weight_balance_gives_rare_classes_more_weight():
    weights, adjustment = _balance_terms("weight", [100, 10, 50])
    assert adjustment is None
    assert weights[1] > weights[2] > weights[0]
    assert weights.mean().item() == pytest.approx(1.0)


def test_logit_adjustment_is_the_log_prior_and_only_shifts_the_training_loss():
    _, adjustment = _balance_terms("logit-adjust", [300, 100])
    assert torch.allclose(adjustment.exp(), torch.tensor([0.75, 0.25]))
    net = torch.nn.Linear(4, 2)
    module = EmotionClassifier(
        net, TrainConfig(loss=LossOptions(class_balance="logit-adjust")), class_counts=[300, 100]
    )
    images, targets = torch.randn(8, 4), torch.tensor([0, 1] * 4)
    plain_loss = module.model_step((images, targets))[0]
    training_loss = module.model_step((images, targets), training=True)[0]
    assert not torch.isclose(plain_loss, training_loss)
    assert torch.equal(module(images), net(images))  # predictions use the plain logits


def test_unknown_balance_mode_is_refused():
    with pytest.raises(ValueError, match="unknown class balance 'wieght'"):
        _balance_terms("wieght", [1, 2])


def test_mixup_blends_images_and_turns_labels_into_distributions():
    net = torch.nn.Linear(3, 5)
    net.num_classes = 5
    images, targets = torch.randn(16, 3), torch.randint(0, 5, (16,))
    mixed, soft = _mixup((images, targets), 0.4, net)
    assert mixed.shape == images.shape and soft.shape == (16, 5)
    assert torch.allclose(soft.sum(dim=1), torch.ones(16))
    assert (soft > 0).sum(dim=1).max() <= 2
