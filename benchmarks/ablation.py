"""The study's ablation on the canonical split, several seeds, bootstrap CIs -> benchmarks/results/ablation.{md,json}.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ablation.py                 # all rows, 3 seeds (~3 CPU hours)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ablation.py --rows baseline transfer --seeds 2

Runs go to runs/ablation/<row>/seed<N>/ (gitignored); finished runs are reused, interrupted ones resumed, so the
script can be re-run after a kill. The transfer backbone is models/ferplus_backbone.safetensors (FER+ pre-trained
fer_cnn: the offline stand-in for the study's ImageNet VGG16). The printed command is saved with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import recorded

from emotionlab.experiments.ablation import (
    ROWS,
    AblationSettings,
    keep_rows,
    render_markdown,
    run_ablation,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.environ.get("EMOTIONLAB_DATA", str(REPO.parent / "shared/datasets/seed-emotions")),
    )
    parser.add_argument("--manifest", default=str(REPO / "benchmarks/splits/seed-emotions.csv"))
    parser.add_argument("--out", default=str(REPO / "runs/ablation"), help="run folders")
    parser.add_argument(
        "--results", default=str(REPO / "benchmarks/results"), help="where ablation.md/.json go"
    )
    parser.add_argument(
        "--stem", default="ablation", help="file name of the results (<stem>.md, <stem>.json)"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--backbone-model", default="fer_cnn")
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--pretrained", action="store_true")
    parser.add_argument("--transfer-size", type=int, default=None, help="default: the backbone's own")
    parser.add_argument("--finetune-size", type=int, default=AblationSettings.finetune_size)
    parser.add_argument(
        "--keep-rows-from",
        default=None,
        help="an earlier <stem>.json on the same split and seeds: its rows that are not re-run are kept",
    )
    parser.add_argument("--scratch-epochs", type=int, default=AblationSettings.scratch_epochs)
    parser.add_argument("--finetune-epochs", type=int, default=AblationSettings.finetune_epochs)
    parser.add_argument(
        "--patience", type=int, default=AblationSettings.patience, help="0: no early stopping"
    )
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():
        sys.exit(f"{args.data}: seed dataset not found (set EMOTIONLAB_DATA or pass --data)")

    settings = AblationSettings(
        out=args.out,
        data=args.data,
        manifest=args.manifest,
        seeds=tuple(range(args.seeds)),
        rows=tuple(args.rows),
        backbone_model=args.backbone_model,
        backbone_weights=args.backbone_weights,
        pretrained=args.pretrained,
        transfer_size=args.transfer_size,
        finetune_size=args.finetune_size,
        scratch_epochs=args.scratch_epochs,
        finetune_epochs=args.finetune_epochs,
        patience=args.patience,
    )
    command = recorded.command_line(__file__, argv)
    print(command, flush=True)
    results = run_ablation(settings)
    if args.keep_rows_from:
        results = keep_rows(results, json.loads(Path(args.keep_rows_from).read_text()), args.keep_rows_from)
    json_path, md_path = write_report(results, args.results, stem=args.stem, command=command)
    print(render_markdown(results, command=command))
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
