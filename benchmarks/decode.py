"""Decode less: large JPEGs decoded at a reduced scale for detection, against decoding them in full.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode.py                 # 200 generated 4000x3000 JPEGs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode.py --count 40 --detectors hog

Generates ``--count`` 4000 x 3000 JPEGs (quality 90): a seed photo's face (or a synthetic face when the seed
data is absent) scaled to 500-1400 px and pasted on a textured background. For each detector setting (the
shipped model's own, hog, and whole images as with ``--no-detect``) every image is prepared twice by the
shipped model's ``Recognizer`` (decode, detect, crop, transform): once with ``decode_less=False`` (decoded in
full, as before) and once as ``emotionlab predict`` now does, alternating per image so the machine's load
hits both alike. Reports images/s for each (preparation plus classification) and how far the predictions
moved: same label (and, where it changed, how close the full decode's top two labels were), largest
probability difference, box IoU. Also runs the seed JPEGs
(mostly 128 px: nothing to reduce, so nothing may change). Writes benchmarks/results/decode.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import recorded

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "decode.json"
SEED = REPO.parent / "shared" / "datasets" / "seed-emotions"


def generate(folder: Path, count: int, *, size=(4000, 3000), seed: int = 0) -> list[Path]:
    """``count`` large JPEGs with one face each (written once; reused when present)."""
    from PIL import Image, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"large_{index:03d}.jpg" for index in range(count)]
    if all(path.is_file() for path in paths):
        return paths
    rng = np.random.default_rng(seed)
    faces = sorted(SEED.rglob("*.jpg")) + sorted(SEED.rglob("*.png")) if SEED.is_dir() else []
    for _index, path in enumerate(paths):
        if path.is_file():
            continue
        # Texture: a coarse random field, upscaled and blurred, plus fine noise (JPEGs of real size and cost).
        coarse = Image.fromarray(rng.integers(40, 220, (30, 40, 3), dtype=np.uint8))
        smooth = coarse.resize((size[0] // 4, size[1] // 4), Image.BICUBIC).filter(
            ImageFilter.GaussianBlur(2)
        )
        base = np.asarray(smooth.resize(size, Image.BICUBIC), dtype=np.int16)
        noise = rng.integers(-12, 13, (size[1], size[0], 1), dtype=np.int16)
        canvas = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        if faces:
            with Image.open(faces[rng.integers(len(faces))]) as source:
                face = source.convert("RGB")
        else:
            from emotionlab.synthetic import make_face

            face = make_face("happy", rng, 256)
        side = int(rng.integers(500, 1400))
        face = face.resize((side, side), Image.BICUBIC)
        canvas.paste(face, (int(rng.integers(0, size[0] - side)), int(rng.integers(0, size[1] - side))))
        canvas.save(path, quality=90)
    return paths


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter) if inter else 0.0


def compare(recognizer, paths: list[Path], *, min_crop_side: int | None = None) -> dict:
    """Prepare every image in full and reduced, alternating; classify both; time and compare."""
    full_preparer = recognizer.preparer(decode_less=False)
    reduced_preparer = recognizer.preparer()
    if min_crop_side is not None:
        reduced_preparer.min_crop_side = min_crop_side
    full_preparer(paths[0]), reduced_preparer(paths[0])  # warm up: detector models load once
    seconds = {"full": 0.0, "reduced": 0.0}
    items = {"full": [], "reduced": []}
    for index, path in enumerate(paths):
        order = ("full", "reduced") if index % 2 == 0 else ("reduced", "full")
        for mode in order:
            preparer = full_preparer if mode == "full" else reduced_preparer
            start = time.perf_counter()
            items[mode].append(preparer(path))
            seconds[mode] += time.perf_counter() - start
    records = {}
    for mode in ("full", "reduced"):
        start = time.perf_counter()
        records[mode] = [record for _, record in recognizer.classify(items[mode], batch_size=32)]
        seconds[mode] += time.perf_counter() - start
    same_label = differences = 0
    ious, max_diff, boxes_both, faces_full, faces_reduced = [], 0.0, 0, 0, 0
    changed_margins: list[float] = []
    for full, reduced in zip(records["full"], records["reduced"], strict=True):
        if "error" in full or "error" in reduced:
            differences += ("error" in full) != ("error" in reduced)
            continue
        same_label += full["label"] == reduced["label"]
        if full["label"] != reduced["label"]:  # how close the full decode's top two labels were
            top = sorted(full["probabilities"].values())
            changed_margins.append(round(top[-1] - top[-2], 4))
        diff = max(abs(full["probabilities"][k] - reduced["probabilities"][k]) for k in full["probabilities"])
        max_diff = max(max_diff, diff)
        faces_full += not full["no_face"]
        faces_reduced += not reduced["no_face"]
        if full["faces"] and reduced["faces"] and not full["no_face"] and not reduced["no_face"]:
            boxes_both += 1
            ious.append(_iou(full["faces"][0]["box"], reduced["faces"][0]["box"]))
    count = len(paths)
    return {
        "images": count,
        "images_per_s_full": round(count / seconds["full"], 2),
        "images_per_s_reduced": round(count / seconds["reduced"], 2),
        "speedup": round(seconds["full"] / seconds["reduced"], 2),
        "ms_per_image_full": round(1000 * seconds["full"] / count, 1),
        "ms_per_image_reduced": round(1000 * seconds["reduced"] / count, 1),
        "same_label": same_label,
        "label_agreement": round(same_label / count, 4),
        "changed_labels_top2_margin": sorted(changed_margins),
        "max_probability_difference": round(max_diff, 4),
        "faces_found_full": faces_full,
        "faces_found_reduced": faces_reduced,
        "largest_face_box_iou_mean": round(float(np.mean(ious)), 4) if ious else None,
        "largest_face_box_iou_min": round(float(np.min(ious)), 4) if ious else None,
        "error_mismatches": differences,
    }


def decode_only(paths: list[Path]) -> dict:
    """Decoding alone: full versus the reduced scale detection gets (640 px shorter side)."""
    from emotionlab.data.images import read_image
    from emotionlab.inference import DETECT_DECODE_SIDE

    seconds = {"full": 0.0, "reduced": 0.0}
    for index, path in enumerate(paths):
        order = (None, DETECT_DECODE_SIDE) if index % 2 == 0 else (DETECT_DECODE_SIDE, None)
        for side in order:
            start = time.perf_counter()
            read_image(path, min_side=side)
            seconds["full" if side is None else "reduced"] += time.perf_counter() - start
    return {
        "ms_full": round(1000 * seconds["full"] / len(paths), 1),
        "ms_reduced": round(1000 * seconds["reduced"] / len(paths), 1),
        "speedup": round(seconds["full"] / seconds["reduced"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/emotionlab-decode-bench"))
    parser.add_argument(
        "--detectors", default="model,hog,none", help="model (the shipped model's), any name, none"
    )
    parser.add_argument(
        "--oversample", type=int, nargs="*", default=[4], help="also try these crop thresholds"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import torch

    from emotionlab.inference import CROP_OVERSAMPLE, DETECT_DECODE_SIDE, load_recognizer

    torch.set_num_threads(1)
    start = time.perf_counter()
    paths = generate(args.folder, args.count)
    print(f"{len(paths)} JPEGs 4000x3000 in {args.folder} ({time.perf_counter() - start:.0f} s)", flush=True)
    results = {
        "command": recorded.command_line(),
        "machine": recorded.machine(),
        "settings": {"detect_decode_side": DETECT_DECODE_SIDE, "crop_oversample": CROP_OVERSAMPLE},
        "decode_only": decode_only(paths),
        "large_jpegs": {},
    }
    print("decode only:", results["decode_only"], flush=True)
    for name in args.detectors.split(","):
        if name == "none":
            recognizer = load_recognizer(detect=False)
        else:
            recognizer = load_recognizer(detector=None if name == "model" else name)
        label = f"{name} ({recognizer.detector_name})" if name == "model" else name
        results["large_jpegs"][label] = row = compare(recognizer, paths)
        print(label, row, flush=True)
        if name == "model":
            for oversample in args.oversample:  # what a stricter crop threshold would change
                row = compare(recognizer, paths, min_crop_side=oversample * recognizer.classifier.input_size)
                results["large_jpegs"][f"{label}, crops >= {oversample}x the input"] = row
                print(label, f"oversample {oversample}", row, flush=True)
    if SEED.is_dir():
        seed_jpegs = sorted(SEED.rglob("*.jpg"))
        row = compare(load_recognizer(), seed_jpegs)
        results["seed_jpegs"] = row
        print("seed JPEGs", row, flush=True)
    results["machine"]["load_average_at_end"] = recorded.load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
