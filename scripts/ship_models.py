"""Make the shipped model files from finished runs (the exact step between training and the package).

    .venv/bin/python scripts/ship_models.py --model runs/ship-wide8/model.safetensors \
        --eight runs/ferplus8-wide/model.safetensors
    .venv/bin/python scripts/ship_models.py --cv runs/cv --recipe NAME   # the fold models as one ensemble

1. The five-class default (``assets/default_model.safetensors``): either one run's model (``--model``, trained
   with the recipe cross-validation chose, on the canonical split) or the cross-validation's fold models of the
   chosen recipe (``runs/cv/NAME/fold*/model.safetensors``) averaged into ONE ensemble model; both with
   test-time flips inside the model (``emotionlab ensemble``). The file records the images it trained on by
   content and its held-out split is the canonical test split, so ``emotionlab evaluate`` (no options) scores it
   there and refuses training images.
2. The eight-class FER+ model (``assets/ferplus8_model.safetensors``, ``--model ferplus8``): the FER+
   pre-training run's model with face-crop settings added (the default detector, the same margin as the
   five-class model), so it reads photos, not only ready 48 px faces.
3. Beside each, its ONNX export (``*.onnx``, the same weights and metadata): the default backend (``auto``) runs
   the shipped models on ONNX Runtime from it. ``--onnx`` alone re-exports the twins of the shipped files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from emotionlab.data.manifest import read_manifest_rows
from emotionlab.faces import PREPARE_DETECTOR, FaceCropConfig
from emotionlab.fileio import CONTENT_DIGEST_HEX, content_digest
from emotionlab.inference.export import export_onnx
from emotionlab.models.ensemble import build_ensemble
from emotionlab.models.io import read_metadata, resave_model_file

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src/emotionlab/assets"
MANIFEST = REPO / "benchmarks/splits/seed-emotions.csv"
SEED_DATA = Path(os.environ.get("EMOTIONLAB_DATA", REPO.parent / "shared/datasets/seed-emotions"))


def manifest_record(manifest: Path, data_root: Path | None) -> dict:
    """The ``dataset`` metadata of a model trained on ``manifest``'s train and validation rows (the files under
    ``data_root``, when given, are hashed again so a manifest that no longer describes them is caught)."""
    rows = read_manifest_rows(manifest)
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


def ship_default(cv: Path, recipe: str, tta: str) -> Path:
    members = sorted((cv / recipe).glob("fold*/model.safetensors"))
    if not members:
        sys.exit(f"{cv / recipe}: no fold models")
    target = ASSETS / "default_model.safetensors"
    built = build_ensemble(members, target.with_suffix(".tmp.safetensors"), tta=tta)
    record = manifest_record(MANIFEST, SEED_DATA if SEED_DATA.is_dir() else None)
    merged = read_metadata(built)["dataset"]
    trained = set(merged["train"]) | set(merged["validation"])
    expected = set(record["train"]) | set(record["validation"])
    if trained != expected:
        sys.exit(
            f"the fold models trained on {len(trained)} images, the canonical train + validation has {len(expected)}"
        )
    resave_model_file(built, target, lambda meta: meta.update(dataset=record))
    built.unlink()
    print(
        f"wrote {target} ({len(members)} fold models of {recipe!r}, tta {tta}, {target.stat().st_size} bytes)"
    )
    return target


def ship_single(model: Path, tta: str) -> Path:
    target = ASSETS / "default_model.safetensors"
    built = build_ensemble([model], target.with_suffix(".tmp.safetensors"), tta=tta)
    built.replace(target)
    print(f"wrote {target} ({model}, tta {tta}, {target.stat().st_size} bytes)")
    return target


def ship_eight(path: Path, margin: float) -> Path:
    target = ASSETS / "ferplus8_model.safetensors"
    faces = FaceCropConfig(detector=PREPARE_DETECTOR, margin=margin).to_dict()
    resave_model_file(path, target, lambda meta: meta.update(faces=faces))
    print(f"wrote {target} (faces: {faces}, {target.stat().st_size} bytes)")
    return target


def ship_onnx(target: Path) -> Path:
    twin = export_onnx(target, target.with_suffix(".onnx"))
    print(f"wrote {twin} ({twin.stat().st_size} bytes)")
    return twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, default=REPO / "runs/cv")
    parser.add_argument("--recipe", help="The cross-validated recipe whose fold models make the default.")
    parser.add_argument(
        "--model", type=Path, help="One run's model file to ship as the default (with --tta)."
    )
    parser.add_argument("--tta", default="flip")
    parser.add_argument("--eight", type=Path, help="The eight-class FER+ model file to ship as ferplus8.")
    parser.add_argument("--margin", type=float, default=0.1, help="ferplus8's face-crop margin per side.")
    parser.add_argument("--onnx", action="store_true", help="Only re-export the shipped files' ONNX twins.")
    args = parser.parse_args()
    written = []
    if args.model:
        written.append(ship_single(args.model, args.tta))
    elif args.recipe:
        written.append(ship_default(args.cv, args.recipe, args.tta))
    if args.eight:
        written.append(ship_eight(args.eight, args.margin))
    if args.onnx:
        written = sorted(ASSETS.glob("*_model.safetensors"))
    for target in written:
        ship_onnx(target)


if __name__ == "__main__":
    main()
