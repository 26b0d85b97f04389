"""No `emotionlab data ...` command changes, adds or removes anything under a dataset root.

Every file and folder under a synthetic root (with corrupt, empty and mislabelled files in it) is recorded
(sha256, size, mtime, permissions; folders' mtime changes when an entry is created or deleted in them, even
briefly), each data command is run through the CLI, and the record must come out identical.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from test_audit import make_planted_dataset
from typer.testing import CliRunner

from emotionlab.cli import app, data_app


def snapshot(root: Path) -> dict[str, tuple]:
    record = {}
    for path in sorted([root, *root.rglob("*")]):
        info = os.lstat(path)
        key = path.relative_to(root).as_posix() or "."
        if path.is_file():
            record[key] = (
                "file",
                hashlib.sha256(path.read_bytes()).hexdigest(),
                info.st_size,
                info.st_mtime_ns,
                info.st_mode,
            )
        else:
            record[key] = ("dir", info.st_mtime_ns, info.st_mode)
    return record


# Command name -> (arguments, whether it must succeed). ROOT is the dataset, OUT a scratch folder outside it.
CASES: dict[str, list[tuple[list[str], bool]]] = {
    "audit": [
        (["data", "audit", "--data", "{ROOT}", "--out", "{OUT}/audit"], True),
        (["data", "audit", "--data", "{ROOT}", "--out", "{OUT}/audit0", "--threshold", "0"], True),
        (["data", "audit", "--data", "{ROOT}", "--out", "{OUT}/audit-people", "--people"], True),
        (["data", "audit", "--data", "{ROOT}", "--out", "{ROOT}/audit"], False),  # refused: inside the root
    ],
    "split": [
        (["data", "split", "--data", "{ROOT}", "--output", "{OUT}/manifest.csv"], True),
        (
            [
                "data",
                "split",
                "--data",
                "{ROOT}",
                "--output",
                "{OUT}/keep.csv",
                "--keep-splits",
                "--seed",
                "5",
            ],
            True,
        ),
        (["data", "split", "--data", "{ROOT}", "--output", "{OUT}/people.csv", "--group-by", "person"], True),
        (
            ["data", "split", "--data", "{ROOT}", "--output", "{ROOT}/manifest.csv"],
            False,
        ),  # refused: inside the root
    ],
    "download": [
        (["data", "download", "seed-emotions", "{OUT}/copy", "--from", "{ROOT}"], True),
    ],
    "faces": [
        (
            [
                "data",
                "faces",
                "--data",
                "{ROOT}",
                "--output",
                "{OUT}/faces.csv",
                "--detector",
                "haar",
                "--cache-dir",
                "{OUT}/cache",
            ],
            True,
        ),
    ],
    "suspects": [
        (
            ["data", "suspects", "--data", "{ROOT}", "--out", "{OUT}/suspects"],
            False,
        ),  # may find too few per class
        (
            ["data", "suspects", "--data", "{ROOT}", "--out", "{ROOT}/suspects"],
            False,
        ),  # refused: inside the root
    ],
    "import": [
        (["data", "import", "{ROOT}", "--out", "{OUT}/imported"], True),
        (["data", "import", "{ROOT}", "--out", "{OUT}/imported", "--against", "{ROOT}"], True),  # resumes
        (["data", "import", "{ROOT}", "--out", "{ROOT}/imported"], False),  # refused: inside the source
    ],
    "download-yunet": [
        # Not a dataset command; pointed at a file in the root, it must still leave the root alone.
        (["data", "download-yunet", "{OUT}/yunet.onnx", "--from", "{ROOT}/train/angry/angry_0.png"], False),
    ],
}


def registered_data_commands() -> set[str]:
    return {info.name or info.callback.__name__.replace("_", "-") for info in data_app.registered_commands}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("untouchable") / "data"
    make_planted_dataset(root)
    return root


def test_every_data_command_is_checked_here():
    missing = registered_data_commands() - set(CASES)
    assert not missing, (
        f"add a case for `emotionlab data {', '.join(sorted(missing))}` to tests/test_nothing_lost.py"
    )


@pytest.mark.parametrize("command", sorted(CASES))
def test_data_command_leaves_the_dataset_root_untouched(command, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))  # face crops and embeddings
    if command not in registered_data_commands():
        pytest.skip(f"`emotionlab data {command}` does not exist")
    before = snapshot(dataset)
    for arguments, must_succeed in CASES[command]:
        args = [a.replace("{ROOT}", str(dataset)).replace("{OUT}", str(tmp_path)) for a in arguments]
        result = CliRunner().invoke(app, args)
        if must_succeed:
            assert result.exit_code == 0, (args, result.output, result.exception)
        after = snapshot(dataset)
        changed = sorted(key for key in before.keys() & after.keys() if before[key] != after[key])
        assert after == before, {
            "command": " ".join(args),
            "appeared": sorted(after.keys() - before.keys()),
            "vanished": sorted(before.keys() - after.keys()),
            "changed": changed,
        }
