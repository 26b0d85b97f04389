"""Where the time of `emotionlab predict` goes, and pipeline settings compared side by side.

    nice -n 19 .venv/bin/python benchmarks/profile_predict.py --limit 300            # stages + settings
    nice -n 19 .venv/bin/python benchmarks/profile_predict.py --limit 300 --cprofile  # + the top functions

Stages (one image at a time, nothing else running in this process, the model's own detector and ONNX
Runtime): decode (``read_image``), detect, crop + the model's transform, classify (the faces in batches of 32),
records. Each is given in milliseconds of this process's CPU per image (``time.process_time``, the classifier's
intra-op threads included: less disturbed by other processes than the wall clock) and as a share of the total.

Settings: ``Recognizer.predict_many`` end to end (files in, records out) with preparation threads 0 (prepare in
the classifying thread), 1 and 2, and the classifier's intra-op threads 1 and 2. They run in rounds, each
setting once per round, and the best round counts, so a busy machine slows all of them alike: compare the ratios
within one run, not the images/s across runs. The records of every setting are checked against the first one
(labels equal, probabilities within 1e-3). Writes benchmarks/results/profile_predict.json (``--out``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

import recorded

REPO = Path(__file__).resolve().parents[1]
SPLIT_MANIFEST = REPO / "benchmarks" / "splits" / "seed-emotions.csv"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "profile_predict.json"
BATCH_SIZE = 32


def seed_paths(limit: int | None) -> list[str]:
    """Every seed photo in manifest order, or ``limit`` of them spread over the whole list."""
    from emotionlab.data.manifest import read_manifest_rows

    env = os.environ.get("EMOTIONLAB_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "datasets" / "seed-emotions"
    if not root.is_dir():
        sys.exit(f"{root}: seed dataset not found (set EMOTIONLAB_DATA)")
    paths = [str(root / row["path"]) for row in read_manifest_rows(SPLIT_MANIFEST)]
    if limit and limit < len(paths):
        step = len(paths) / limit
        paths = [paths[int(index * step)] for index in range(limit)]
    return paths


def stage_profile(recognizer, paths: list[str]) -> dict:
    """CPU milliseconds per image of each stage, run one after the other."""
    import numpy as np

    from emotionlab.data.images import read_image
    from emotionlab.faces import as_rgb_array, crop_faces

    preparer = recognizer.preparer()
    clock = time.process_time
    spent = dict.fromkeys(("decode", "detect", "crop_transform", "classify", "records"), 0.0)
    items, all_inputs = [], []
    for path in paths:
        start = clock()
        image = read_image(path, min_side=preparer._reduced_side())
        array = as_rgb_array(image)
        middle = clock()
        boxes = preparer.detect(array) if preparer.crop_config is not None else []
        detected = clock()
        crops = [crop for crop in crop_faces(array, boxes, preparer.crop_config) if crop is not None]
        inputs = preparer._inputs(crops or [image])
        done = clock()
        spent["decode"] += middle - start
        spent["detect"] += detected - middle
        spent["crop_transform"] += done - detected
        all_inputs.append(inputs)
        items.append(preparer(path))
    batch = np.concatenate(all_inputs)
    start = clock()
    rows = recognizer.classifier.predict_inputs(batch, batch_size=BATCH_SIZE)
    spent["classify"] = clock() - start
    start = clock()
    offset = 0
    for item in items:
        recognizer.make_record(item, rows[offset : offset + max(1, item.num_inputs)])
        offset += max(1, item.num_inputs)
    spent["records"] = clock() - start
    total = sum(spent.values())
    return {
        "images": len(paths),
        "faces_classified": len(batch),
        "ms_per_image": {name: round(1000 * value / len(paths), 3) for name, value in spent.items()},
        "share": {name: round(value / total, 3) for name, value in spent.items()},
    }


def settings_comparison(model, paths: list[str], rounds: int) -> dict:
    """End-to-end images/s of each (preparation threads, classifier threads) setting, best of ``rounds``."""
    import numpy as np

    from emotionlab.inference import load_recognizer
    from emotionlab.inference.classifier import OnnxClassifier
    from emotionlab.inference.recognizer import Recognizer

    base = load_recognizer(model)
    recognizers = {}
    for classifier_threads in (1, 2):
        classifier = OnnxClassifier(base.classifier.onnx_path, threads=classifier_threads)
        recognizers[classifier_threads] = Recognizer(classifier)
    settings = [(prepare, classify) for classify in (1, 2) for prepare in (0, 1, 2)]
    best = dict.fromkeys(settings, float("inf"))
    reference = None
    differing = {}
    for recognizer in recognizers.values():  # warm-up: thread pools, detector sessions
        list(recognizer.predict_many(paths[:40], threads=2))
    for _ in range(rounds):
        for prepare, classify in settings:
            start = time.perf_counter()
            records = list(recognizers[classify].predict_many(paths, batch_size=BATCH_SIZE, threads=prepare))
            best[(prepare, classify)] = min(best[(prepare, classify)], time.perf_counter() - start)
            if reference is None:
                reference = records
            worst = 0.0
            labels = 0
            for a, b in zip(reference, records, strict=True):
                labels += a.get("label") != b.get("label")
                if "probabilities" in a:
                    worst = max(
                        worst,
                        float(
                            np.abs(
                                np.subtract(
                                    list(a["probabilities"].values()), list(b["probabilities"].values())
                                )
                            ).max()
                        ),
                    )
            differing[(prepare, classify)] = {"labels_differing": labels, "max_probability_difference": worst}
    baseline = best[(0, 2)]  # the pipeline before threads: prepare in this thread, classifier on 2 threads
    return {
        "rounds": rounds,
        "settings": [
            {
                "prepare_threads": prepare,
                "classifier_threads": classify,
                "images_per_s": round(len(paths) / best[(prepare, classify)], 1),
                "speedup_vs_prepare0_classify2": round(baseline / best[(prepare, classify)], 2),
                **differing[(prepare, classify)],
            }
            for prepare, classify in settings
        ],
    }


def top_functions(recognizer, paths: list[str], count: int = 25) -> str:
    profile = cProfile.Profile()
    profile.enable()
    list(recognizer.predict_many(paths, batch_size=BATCH_SIZE, threads=0))
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(count)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file or shipped name (default: the shipped default)")
    parser.add_argument("--limit", type=int, default=300, help="seed photos to use (0: all 1,100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from emotionlab.inference import load_recognizer

    paths = seed_paths(args.limit or None)
    recognizer = load_recognizer(args.model)
    list(recognizer.predict_many(paths[:8], threads=0))  # sessions and decoders loaded
    result = {
        "command": recorded.command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": recorded.machine(),  # before
        "model": {
            "architecture": recognizer.classifier.metadata.get("architecture"),
            "input_size": recognizer.classifier.input_size,
            "labels": len(recognizer.labels),
            "backend": recognizer.classifier.backend,
        },
        "stages": stage_profile(recognizer, paths),
        "comparison": settings_comparison(args.model, paths, args.rounds),
        "load_average_after": recorded.load_average(),
    }
    stages = result["stages"]
    print(f"{len(paths)} seed photos, {stages['faces_classified']} faces; CPU ms per image by stage:")
    for name, value in stages["ms_per_image"].items():
        print(f"  {name:15s} {value:7.3f} ms  {stages['share'][name]:6.1%}")
    print("end to end (best of rounds; ratios are what counts on a shared machine):")
    for row in result["comparison"]["settings"]:
        print(
            f"  prepare threads {row['prepare_threads']}, classifier threads {row['classifier_threads']}: "
            f"{row['images_per_s']:7.1f} images/s  x{row['speedup_vs_prepare0_classify2']:.2f}  "
            f"labels differing {row['labels_differing']}, max prob diff {row['max_probability_difference']:.1e}"
        )
    if args.cprofile:
        print(top_functions(recognizer, paths))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
