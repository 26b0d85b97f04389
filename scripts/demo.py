"""`make demo` (`python scripts/demo.py`): the main job on built-in defaults.

With the shipped model: predict the example images (annotated copies and a one-page summary), then evaluate
the model on the duplicate-aware test split of the seed dataset when that dataset is present. Without a
shipped model (a bare checkout of an early version): train the study's baseline briefly instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from emotionlab.errors import EmotionlabError
from emotionlab.paths import SEED_DOWNLOAD_HINT, default_data_root

REPO = Path(__file__).resolve().parents[1]  # the repository: this is its demo, not library code
EXAMPLES = REPO / "examples"
CANONICAL_SPLIT = REPO / "benchmarks" / "splits" / "seed-emotions.csv"


def _run(*args: str) -> None:
    from emotionlab.cli import app

    print(f"\n$ emotionlab {' '.join(args)}", flush=True)
    app(list(args), standalone_mode=False)


def _contact_sheet(records: list[dict], annotated: Path, out: Path) -> Path | None:
    """One PNG with every annotated example and its label line: the demo's summary at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    items = [
        (annotated / Path(r["path"]).name, r) for r in records if (annotated / Path(r["path"]).name).is_file()
    ]
    if not items:
        return None
    figure, axes_list = plt.subplots(1, len(items), figsize=(4 * len(items), 4.6), squeeze=False)
    for axes, (path, record) in zip(axes_list[0], items, strict=True):
        axes.imshow(Image.open(path))
        axes.axis("off")
        faces = record.get("faces") or []
        note = "no face found: whole image" if record.get("no_face") else f"{len(faces)} face(s)"
        axes.set_title(
            f"{Path(record['path']).name}\n{record['label']} ({record['confidence']:.0%}), {note}", fontsize=9
        )
    figure.tight_layout()
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


def shipped_model_demo(out: Path, data_root: Path | None) -> None:
    annotated, records_path = out / "annotated", out / "predictions.jsonl"
    _run(
        "predict",
        str(EXAMPLES),
        "--annotate",
        str(annotated),
        "--format",
        "jsonl",
        "--output",
        str(records_path),
    )
    records = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
    _run("predict", str(EXAMPLES))
    sheet = _contact_sheet([r for r in records if "error" not in r], annotated, out / "summary.png")
    lines = [
        "# emotionlab demo",
        "",
        "| image | label | confidence | faces | no face |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        if "error" not in r:
            lines.append(
                f"| {Path(r['path']).name} | {r['label']} | {r['confidence']:.2f} | {len(r.get('faces') or [])} | {r.get('no_face', False)} |"
            )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    if data_root is not None and CANONICAL_SPLIT.is_file():
        _run(
            "evaluate",
            "--data",
            str(data_root),
            "--manifest",
            str(CANONICAL_SPLIT),
            "--split",
            "test",
            "--out",
            str(out / "evaluation"),
        )
    print(
        f"\nannotated images: {annotated}/\nsummary: {out / 'summary.md'}"
        + (f" and {sheet}" if sheet else "")
    )
    if data_root is not None:
        print(
            f"evaluation on the duplicate-aware seed test split: {out / 'evaluation'}/ "
            "(metrics.json, confusion_counts.png, confusion_percent.png, training_curves.png, misclassified.png)"
        )


def baseline_demo(out: Path, data_root: Path) -> None:
    run = out / "baseline-run"
    manifest = ["--manifest", str(CANONICAL_SPLIT)] if CANONICAL_SPLIT.is_file() else []
    resume = ["--resume", str(run)] if (run / "config.yaml").is_file() else []
    _run(
        "train",
        *(
            resume
            or [
                "--data",
                str(data_root),
                *manifest,
                "--model",
                "seed_cnn",
                "--epochs",
                "3",
                "--out",
                str(run),
            ]
        ),
    )
    _run(
        "evaluate",
        "--model",
        str(run / "model.safetensors"),
        "--data",
        str(data_root),
        *manifest,
        "--split",
        "test",
        "--out",
        str(out / "evaluation"),
    )
    _run(
        "predict", str(data_root / "test" / "happy"), "--model", str(run / "model.safetensors"), "--no-detect"
    )
    print(f"\nfigures: {out / 'evaluation'}/")


def main() -> None:
    out = Path(os.environ.get("EMOTIONLAB_DEMO_OUT", "demo-output"))
    out.mkdir(parents=True, exist_ok=True)
    data_root = default_data_root()
    if data_root is not None and not data_root.is_dir():
        data_root = None
    try:
        from emotionlab.inference import DEFAULT_MODEL

        if DEFAULT_MODEL.is_file():
            shipped_model_demo(out, data_root)
        elif data_root is not None:
            baseline_demo(out, data_root)
        else:
            print(f"no shipped model and no seed dataset: {SEED_DOWNLOAD_HINT}, or set EMOTIONLAB_DATA")
        if data_root is None:
            print(
                f"seed dataset not found (for the evaluation part): {SEED_DOWNLOAD_HINT}, or set EMOTIONLAB_DATA"
            )
    except EmotionlabError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
