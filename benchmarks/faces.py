"""Face detectors on every seed photo: detection rate (at least one face), speed, box agreement, unions.

    .venv/bin/python benchmarks/faces.py --threads 1         # all detectors on all 1,100 photos (~15 min: mmod)
    .venv/bin/python benchmarks/faces.py --detectors blaze hog --limit 100
    .venv/bin/python benchmarks/faces.py --yunet-model face_detection_yunet_2023mar.onnx   # adds yunet

Speed counts detection only (images are decoded first, and ``images_per_second_with_decode`` adds the
measured decoding time) on whatever CPU is free; the machine's load average is saved with the figures.
``--threads`` is the thread count OpenCV and ONNX Runtime may use (dlib uses one). Box agreement compares the
largest box of every pair of detectors where both found a face. torch is never imported. Writes
benchmarks/results/faces.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import cv2
import onnxruntime
import recorded

from emotionlab.data.images import is_image_name, read_image
from emotionlab.faces import (
    CASCADE,
    BlazeDetector,
    FaceBox,
    HaarDetector,
    HogDetector,
    MmodDetector,
    create_detector,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "faces.json"
VARIANTS = {"haar": HaarDetector, "hog": HogDetector, "mmod": MmodDetector}
BLAZE = {"blaze": "short", "blaze-full": "full"}
DEFAULT_DETECTORS = ["blaze", "blaze-full", "haar", "hog", "mmod", "cascade"]


def data_root() -> Path:
    env = os.environ.get("EMOTIONLAB_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "datasets" / "seed-emotions"
    if not root.is_dir():
        sys.exit(f"{root}: seed dataset not found (set EMOTIONLAB_DATA)")
    return root


def load_images(root: Path, limit: int | None, every: int):
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p))[::every]
    if limit:
        paths = paths[:limit]
    return [(p.relative_to(root).as_posix(), read_image(p)) for p in paths]


def build(name: str, yunet_model: str | None, threads: int):
    """A detector by name; ``hog@320`` is a detector run at another working size (shorter side in px)."""
    if name in BLAZE:
        return BlazeDetector(BLAZE[name], threads=threads)
    if "@" in name:
        kind, size = name.split("@")
        detector = VARIANTS[kind]()
        detector.name = name
        detector.short_side, detector.max_side = int(size), 2 * int(size)
        return detector
    return create_detector(name, model_file=yunet_model if name == "yunet" else None)


def iou(a: FaceBox, b: FaceBox) -> float:
    left, top = max(a.x, b.x), max(a.y, b.y)
    right, bottom = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, right - left) * max(0, bottom - top)
    return inter / (a.area + b.area - inter)


def box_agreement(first: dict, second: dict) -> dict:
    """How the largest boxes of two detectors compare where both found a face, and who found what alone."""
    pairs = [(first[k], second[k]) for k in first if first[k] and second.get(k)]
    alone = {
        "only_first": sum(bool(first[k]) and not second.get(k) for k in first),
        "only_second": sum(not first[k] and bool(second.get(k)) for k in first),
    }
    if not pairs:
        return {"images": 0, **alone}
    ious = [iou(a, b) for a, b in pairs]
    size_ratio = [max(b.w, b.h) / max(a.w, a.h) for a, b in pairs]
    shift = [
        ((b.center[0] - a.center[0]) / max(a.w, a.h), (b.center[1] - a.center[1]) / max(a.w, a.h))
        for a, b in pairs
    ]
    return {
        "images": len(pairs),
        "median_iou": round(statistics.median(ious), 3),
        "share_iou_below_0.5": round(sum(v < 0.5 for v in ious) / len(ious), 3),
        "median_size_ratio": round(statistics.median(size_ratio), 3),
        "median_center_shift_x": round(statistics.median(s[0] for s in shift), 3),
        "median_center_shift_y": round(statistics.median(s[1] for s in shift), 3),
        **alone,
    }


def padded_share(boxes: dict, sizes: dict, margin: float = 0.1) -> float:
    """Share of found faces whose square crop (margin per side) leaves the image, so needs padding."""
    found = [(boxes[k], sizes[k]) for k in boxes if boxes[k]]
    count = 0
    for box, (width, height) in found:
        side = (1 + 2 * margin) * max(box.w, box.h)
        cx, cy = box.center
        if cx - side / 2 < 0 or cy - side / 2 < 0 or cx + side / 2 > width or cy + side / 2 > height:
            count += 1
    return round(count / max(1, len(found)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detectors", nargs="+", default=DEFAULT_DETECTORS)
    parser.add_argument("--threads", type=int, default=1, help="threads for OpenCV and ONNX Runtime")
    parser.add_argument("--yunet-model", default=None, help="YuNet ONNX file; adds the yunet detector")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (quick check)")
    parser.add_argument("--every", type=int, default=1, help="only every N-th image (a spread-out sample)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    detectors = list(args.detectors) + (
        ["yunet"] if args.yunet_model and "yunet" not in args.detectors else []
    )

    cv2.setNumThreads(args.threads)
    root = data_root()
    started = time.perf_counter()
    images = load_images(root, args.limit, args.every)
    decode_seconds = time.perf_counter() - started
    sizes = {key: image.size for key, image in images}
    print(f"{len(images)} images from {root} (decoded in {decode_seconds:.1f} s)", flush=True)
    machine = recorded.machine()  # before the detectors run

    results: dict[str, dict] = {}
    boxes: dict[str, dict[str, FaceBox | None]] = {}
    for name in detectors:
        detector = build(name, args.yunet_model, args.threads)
        detector.detect(images[0][1])  # warm-up: first-call allocations are not the detector's speed
        found: dict[str, FaceBox | None] = {}
        start = time.perf_counter()
        for key, image in images:
            faces = detector.detect(image)
            found[key] = faces[0] if faces else None
        seconds = time.perf_counter() - start
        boxes[name] = found
        hits = sum(box is not None for box in found.values())
        per_label = defaultdict(lambda: [0, 0])
        for key, box in found.items():
            label = key.split("/")[-2]
            per_label[label][0] += box is not None
            per_label[label][1] += 1
        by_stage = defaultdict(int)
        for box in found.values():
            if box is not None:
                by_stage[box.detector] += 1
        results[name] = {
            "images": len(images),
            "found": hits,
            "detection_rate": round(hits / len(images), 4),
            "seconds": round(seconds, 1),
            "images_per_second": round(len(images) / seconds, 2),
            "images_per_second_with_decode": round(len(images) / (seconds + decode_seconds), 2),
            "per_label_rate": {label: round(h / n, 3) for label, (h, n) in sorted(per_label.items())},
            "found_by": dict(by_stage),
            "crops_needing_padding": padded_share(found, sizes),
        }
        print(
            f"{name:>8}: {hits}/{len(images)} = {100 * hits / len(images):5.1f}%  "
            f"{len(images) / seconds:7.2f} img/s  ({seconds:.1f} s)",
            flush=True,
        )

    base = [name for name in detectors if name in ("haar", "hog", "mmod", "yunet", "blaze", "blaze-full")]
    unions = {}
    # Pairs, and all of them together (every larger combination of six detectors is noise to read).
    for combo in [*combinations(base, 2), *([tuple(base)] if len(base) > 2 else [])]:
        hits = sum(any(boxes[name][key] is not None for name in combo) for key, _ in images)
        unions["|".join(combo)] = round(hits / len(images), 4)
    missed_by_all = sorted(key for key, _ in images if all(boxes[name][key] is None for name in base))
    agreement = {
        f"{second}_vs_{first}": box_agreement(boxes[first], boxes[second])
        for first, second in combinations(detectors, 2)
    }

    report = {
        "command": recorded.command_line(),
        "data": str(root),
        "images": len(images),
        "decode_seconds": round(decode_seconds, 1),
        "threads": args.threads,
        "cascade": "+".join(CASCADE),
        "detectors": results,
        "union_rates": unions,
        "missed_by_all": missed_by_all,
        "box_agreement": agreement,
        "machine": {
            **machine,
            "load_average_after": recorded.load_average(),
            "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(),
            "onnxruntime": onnxruntime.__version__,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print("\n  detector   rate    img/s  img/s with decode")
    for name, result in results.items():
        print(
            f"{name:>10}  {100 * result['detection_rate']:5.1f}%  {result['images_per_second']:7.2f}"
            f"  {result['images_per_second_with_decode']:7.2f}"
        )
    print("\nunion (a face from any of them)")
    for combo, rate in unions.items():
        print(f"  {combo:<34} {100 * rate:5.1f}%")
    if agreement:
        print("\nbox agreement (largest boxes where both found a face; who found a face the other did not)")
        for pair, figures in agreement.items():
            second, first = pair.split("_vs_")
            print(
                f"  {pair:<22} median IoU {figures.get('median_iou', '-')!s:>5}  images {figures['images']:>4}"
                f"  only {first} {figures['only_first']:>3}  only {second} {figures['only_second']:>3}"
            )
    print(f"missed by every detector: {len(missed_by_all)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
