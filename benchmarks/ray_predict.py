"""`emotionlab predict --engine ray` against the plain path with `--workers 2`, on the same files, in one run.

    .venv/bin/python benchmarks/ray_predict.py                    # 300 seed photos (or generated ones if absent)
    .venv/bin/python benchmarks/ray_predict.py --count 100 --cpus 2

Runs the real command line two ways on the same files (their paths given as inputs):
the plain path (``--workers N``), and ``--engine ray --workers N`` (a local Ray instance with N CPUs), each
writing jsonl records to its own file, and checks that the two record files are identical line for line.
Ray's start-up (starting the local instance, then the actors loading the model) is timed apart from the
images: the ``ray`` figure is images / (wall time - start-up), the ``ray_with_startup`` figure images / wall
time. Also times ``import ray; ray.init(num_cpus=N)`` alone. Writes benchmarks/results/ray_predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import recorded

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "ray_predict.json"
SEED = Path(os.environ.get("EMOTIONLAB_DATA", "/work/shared/datasets/seed-emotions"))
EMOTIONLAB = Path(sys.executable).parent / "emotionlab"


def pick_files(count: int, folder: Path) -> tuple[list[Path], str]:
    """``count`` seed photos (sorted, every k-th for a spread over classes), or generated faces if absent."""
    from emotionlab.data.images import is_image_name

    if SEED.is_dir():
        photos = sorted(p for p in SEED.rglob("*") if p.is_file() and is_image_name(p))
        step = max(1, len(photos) // count)
        return photos[::step][:count], f"seed photos ({SEED})"
    import numpy as np

    from emotionlab.labels import EMOTIONS
    from emotionlab.synthetic import make_face

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for index in range(count):
        path = folder / f"face_{index:04d}.png"
        make_face(EMOTIONS[index % 5], rng, 256).save(path)
        files.append(path)
    return files, "generated 256x256 faces"


def run(command: list[str]) -> dict:
    """Run the command; wall seconds, and the start-up seconds the Ray job reports on stderr."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    import re

    startup = None
    for line in result.stderr.splitlines():
        # printed by the ray engine: "ray: started a local instance in 7.1 s (2 CPUs)"
        found = re.match(r"ray: .* in ([0-9.]+) s \(", line)
        if found:
            startup = float(found.group(1))
    return {"wall_seconds": round(wall, 2), "ray_startup_seconds": startup}


def ray_init_seconds(cpus: int) -> float:
    code = (
        "import time; t = time.perf_counter(); import ray; "
        f"ray.init(num_cpus={cpus}, include_dashboard=False, log_to_driver=False); "
        "print(time.perf_counter() - t); ray.shutdown()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(result.stdout.split()[-1]), 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--cpus", type=int, default=2, help="--workers of both runs (Ray: the local CPUs)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotionlab-ray-bench"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    files, source = pick_files(args.count, args.work / "generated")
    inputs = [str(path) for path in files]
    common = ["--format", "jsonl", "--no-progress", "--workers", str(args.cpus)]

    outputs = {name: args.work / f"{name}.jsonl" for name in ("plain", "ray")}
    for output in outputs.values():
        output.unlink(missing_ok=True)
    plain = run([str(EMOTIONLAB), "predict", *inputs, *common, "--output", str(outputs["plain"])])
    ray = run(
        [str(EMOTIONLAB), "predict", *inputs, *common, "--engine", "ray", "--output", str(outputs["ray"])]
    )
    init = ray_init_seconds(args.cpus)

    same = outputs["plain"].read_text() == outputs["ray"].read_text()
    images = len(files)
    startup = ray["ray_startup_seconds"] or 0.0
    result = {
        "images": images,
        "source": source,
        "cpus": args.cpus,
        "plain_workers": {**plain, "images_per_second": round(images / plain["wall_seconds"], 1)},
        "ray": {
            **ray,
            "images_per_second": round(images / max(1e-9, ray["wall_seconds"] - startup), 1),
            "images_per_second_with_startup": round(images / ray["wall_seconds"], 1),
        },
        "ray_init_alone_seconds": init,
        "identical_records": same,
        "command": recorded.command_line(),
        "machine": recorded.machine(),  # the CPUs are shared with other work
        "note": "wall times include the command's own start (imports, model load) for both engines",
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
