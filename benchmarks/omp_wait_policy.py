"""Does ``OMP_WAIT_POLICY=PASSIVE`` (set by `emotionlab predict` before PyTorch loads) pay on the PyTorch backend?

    nice -n 19 .venv/bin/python benchmarks/omp_wait_policy.py              # seed test photos, 3 rounds

`emotionlab predict` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the caller set it. OpenMP reads the variable once,
when PyTorch's OpenMP runtime loads, so it counts only if torch is imported after it: the light predict path never
imports torch, and a PyTorch model file (``--backend torch``) imports it when the model loads, after the setting.
This runs the same predict (``--backend torch --batch-size 1``: many small parallel regions, where idle OpenMP
threads spinning or sleeping matters most) with the variable left to predict (PASSIVE) and with ``ACTIVE`` set
by the caller, alternating, and reports images/s. Also checks, in a child process, that torch is not loaded when
predict's command function starts. Writes benchmarks/results/omp_wait_policy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import recorded

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "omp_wait_policy.json"
SEED_TEST = REPO.parent / "shared" / "datasets" / "seed-emotions" / "test"

PROBE = """
import sys
import emotionlab.cli.predict as command
print("torch" in sys.modules)
"""


def run_once(images: Path, policy: str | None) -> float:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "emotionlab", "predict", str(images), "--backend", "torch"]
        command += ["--batch-size", "1", "--no-progress", "--output", str(Path(folder) / "records.jsonl")]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        seconds = time.perf_counter() - start
        count = sum(1 for _ in (Path(folder) / "records.jsonl").open())
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=SEED_TEST)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if not args.images.exists():
        raise SystemExit(f"{args.images}: not found (pass --images FOLDER)")
    probe = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True)
    torch_before = probe.stdout.strip() == "True"
    rates: dict[str, list[float]] = {"PASSIVE (predict's default)": [], "ACTIVE (set by the caller)": []}
    for _ in range(args.rounds):
        rates["PASSIVE (predict's default)"].append(run_once(args.images, None))
        rates["ACTIVE (set by the caller)"].append(run_once(args.images, "ACTIVE"))
    medians = {name: round(statistics.median(values), 1) for name, values in rates.items()}
    for name, value in medians.items():
        print(f"{name}: {value} images/s (median of {args.rounds}: {[round(v, 1) for v in rates[name]]})")
    print(f"torch loaded before predict's command runs: {torch_before}")
    report = {
        "benchmark": "omp_wait_policy",
        "command": recorded.command_line(),
        "images": str(args.images),
        "predict": "--backend torch --batch-size 1",
        "images_per_second_median": medians,
        "images_per_second_runs": {name: [round(v, 1) for v in values] for name, values in rates.items()},
        "torch_loaded_before_predict_command": torch_before,
        "machine": recorded.machine(),  # at the end
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
