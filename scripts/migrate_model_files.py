"""Re-save the shipped model files in model-file format 2 (checksum over metadata and weights), and record the
shipped model's training data by content so that evaluation can refuse images it was trained on.

    .venv/bin/python scripts/migrate_model_files.py            # both files, in place
    .venv/bin/python scripts/migrate_model_files.py --check    # only report what would change

Each file is upgraded only if its weights match the checksum of format 1 and its metadata validates. The shipped
model was fine-tuned with ``benchmarks/splits/seed-emotions.csv`` (its training config says so): the train and
validation rows' SHA-256 (first 16 hex digits) and the test rows (path, label, digest) go into its metadata as
``dataset``, as ``emotionlab train`` now records for every model. The dataset files are hashed again when the
dataset is present, so a manifest that no longer describes them is caught. Outputs are compared before and after:
the weights are the same tensors, so predictions must be bit-identical.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from emotionlab.fileio import CONTENT_DIGEST_HEX, content_digest
from emotionlab.models.io import (
    FORMAT,
    _read_raw,
    build_model_from_metadata,
    load_model_file,
    resave_model_file,
    upgrade_model_file,
)

REPO = Path(__file__).resolve().parents[1]
BACKBONE = REPO / "models/ferplus_backbone.safetensors"
SHIPPED = REPO / "src/emotionlab/assets/default_model.safetensors"
MANIFEST = REPO / "benchmarks/splits/seed-emotions.csv"
SEED_DATA = Path(os.environ.get("EMOTIONLAB_DATA", REPO.parent / "shared/datasets/seed-emotions"))


def manifest_record(manifest: Path, data_root: Path | None) -> dict:
    """The ``dataset`` metadata of a model trained on ``manifest``'s train and validation rows."""
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    if data_root is not None and data_root.is_dir():
        stale = [
            row["path"]
            for row in rows
            if content_digest(data_root / row["path"]) != row["sha256"][:CONTENT_DIGEST_HEX]
        ]
        if stale:
            sys.exit(
                f"{manifest}: {len(stale)} row(s) do not match the files under {data_root} (first: {stale[0]})"
            )
        print(f"checked {len(rows)} manifest digests against {data_root}")
    digests = {
        split: sorted({row["sha256"][:CONTENT_DIGEST_HEX] for row in rows if row["split"] == split})
        for split in ("train", "validation")
    }
    test = [
        [row["path"], row["label"], row["sha256"][:CONTENT_DIGEST_HEX]]
        for row in rows
        if row["split"] == "test"
    ]
    leaked = {digest for _, _, digest in test} & (set(digests["train"]) | set(digests["validation"]))
    if leaked:
        sys.exit(f"{manifest}: {len(leaked)} test image(s) are also train/validation images")
    return {
        "digest": f"sha256 of the file bytes, first {CONTENT_DIGEST_HEX} hex digits",
        "source": f"manifest:{manifest.name}",
        **digests,
        "test": test,
    }


def _outputs(path: Path, legacy: bool) -> torch.Tensor:
    """The network's outputs on a fixed batch: format-1 files are rebuilt by hand (the loader refuses them)."""
    if legacy:
        meta, _ = _read_raw(path)
        model = build_model_from_metadata(meta)
        model.load_state_dict(load_file(str(path)), strict=True)
        model.eval()
    else:
        model, meta = load_model_file(path)
    size = meta["input_size"]
    with torch.no_grad():
        return model(torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(0)))


def migrate(path: Path, *, dataset: dict | None, check: bool) -> None:
    meta, _ = _read_raw(path)
    legacy = meta.get("format") != FORMAT
    wants_dataset = dataset is not None and meta.get("dataset") != dataset
    print(
        f"{path.relative_to(REPO)}: format {meta.get('format')}"
        + (", dataset record missing" if wants_dataset else "")
    )
    if check or not (legacy or wants_dataset):
        return
    before = _outputs(path, legacy)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(temporary)
    try:
        if legacy:
            upgrade_model_file(path, temporary)
        if dataset is not None:
            resave_model_file(temporary if legacy else path, temporary, lambda m: m.update(dataset=dataset))
        after = _outputs(temporary, legacy=False)
        if not torch.equal(before, after):
            sys.exit(f"{path}: outputs changed after re-saving; left unchanged")
        new_meta = load_model_file(temporary)[1]
        kept = {key for key in meta if key not in ("format", "sha256", "dataset")}
        changed = sorted(key for key in kept if new_meta.get(key) != meta[key])
        if changed:
            sys.exit(f"{path}: metadata changed unexpectedly ({', '.join(changed)}); left unchanged")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    print(f"  re-saved as {FORMAT}; outputs identical on a fixed batch; {path.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only report; change nothing.")
    args = parser.parse_args()
    migrate(BACKBONE, dataset=None, check=args.check)
    training = json.loads(json.dumps(_read_raw(SHIPPED)[0].get("training", {})))
    manifest = training.get("config", {}).get("data", {}).get("manifest")
    if manifest != "benchmarks/splits/seed-emotions.csv":
        sys.exit(
            f"{SHIPPED}: trained with manifest {manifest!r}, not {MANIFEST.relative_to(REPO)}; not recorded"
        )
    migrate(
        SHIPPED,
        dataset=manifest_record(MANIFEST, SEED_DATA if SEED_DATA.is_dir() else None),
        check=args.check,
    )


if __name__ == "__main__":
    main()
