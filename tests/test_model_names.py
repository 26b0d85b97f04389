"""Shipped models by short name: `--model default`, `--model ferplus8`."""

from __future__ import annotations

import pytest

from emotionlab.errors import EmotionlabError
from emotionlab.inference import ASSETS, DEFAULT_MODEL, SHIPPED_MODELS, resolve_model_path


def test_short_names_resolve_to_the_shipped_files():
    assert resolve_model_path("default") == DEFAULT_MODEL
    if (ASSETS / SHIPPED_MODELS["ferplus8"]).is_file():
        assert resolve_model_path("ferplus8") == ASSETS / SHIPPED_MODELS["ferplus8"]


def test_a_file_of_that_name_in_the_current_folder_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ferplus8").write_bytes(b"x")
    assert resolve_model_path("ferplus8").resolve() == (tmp_path / "ferplus8").resolve()


def test_a_missing_shipped_model_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr("emotionlab.inference.loading.ASSETS", tmp_path)
    with pytest.raises(EmotionlabError, match="this install has no shipped model ferplus8_model.safetensors"):
        resolve_model_path("ferplus8")
