"""notebooks/study.ipynb runs top to bottom with FAST on, so the study's walk-through cannot rot."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "study.ipynb"


@pytest.mark.slow  # trains four small models: a few minutes on a CPU
def test_the_study_notebook_runs_top_to_bottom_in_fast_mode(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("EMOTIONLAB_NOTEBOOK_FAST", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    started = time.perf_counter()
    client = nbclient.NotebookClient(
        notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on the first failure
    seconds = time.perf_counter() - started
    outputs = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "FAST=True" in outputs
    # The comparison table came out, with the study's figure and every trained model in it.
    assert "the study (its own split)" in outputs and "71.0%" in outputs
    for name in ("study CNN", "transfer (FER+ backbone)", "fine-tuned", "shipped default model"):
        assert name in outputs
    images = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert (
        images >= 4
    )  # class balance, training curves, confusion matrix, mistakes (+ suspects and Grad-CAM inline)
    print(f"notebook ran in {seconds:.0f} s (FAST); CI budget 300 s")
    if os.environ.get("EMOTIONLAB_NOTEBOOK_OUT"):
        nbformat.write(notebook, os.environ["EMOTIONLAB_NOTEBOOK_OUT"])
