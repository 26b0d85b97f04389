"""Start fast: `emotionlab predict photo.jpg` as a cold process, and what the light install weighs.

    .venv/bin/python benchmarks/startup.py       # examples/grace_hopper.jpg, 10 runs (on a quiet machine)
    nice -n 19 .venv/bin/python benchmarks/startup.py --compare-src ../old/src   # also an older checkout

1. Builds the wheel of this checkout (``pip wheel --no-deps``) and installs it without extras into a fresh venv,
   twice: the first install fills pip's cache, the second is timed as "from a local package cache" (the versions
   of this environment are the constraints, as in tests/test_light_install.py). Reports the venv's size on disk,
   and the same without pip and setuptools (which every venv carries).
2. Runs ``emotionlab predict PHOTO`` (a table on the terminal, as a user types it) as a new process ``--runs`` times in the light venv and in
   this (full) environment: wall time from start to exit (imports, model load, first answer, output) and the
   process's CPU time (user + sys), median of the runs after one untimed run that warms the disk cache.
3. In the light venv, the same steps in one process, timed apart: import the CLI, load the model, first answer.

On a shared machine the wall time includes waiting for a core; the CPU time does not, so both are reported with
the load average. Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import recorded

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "startup.json"
DEFAULT_PHOTO = REPO / "examples" / "grace_hopper.jpg"

PHASES = """
import json, sys, time
start = time.perf_counter()
import emotionlab.cli
imported = time.perf_counter()
from emotionlab.inference import load_recognizer
recognizer = load_recognizer()
loaded = time.perf_counter()
recognizer.predict(sys.argv[1])
answered = time.perf_counter()
print(json.dumps({"import_cli": imported - start, "load_model": loaded - imported,
                  "first_answer": answered - loaded, "torch_imported": "torch" in sys.modules}))
"""


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(part) for part in command], check=False, capture_output=True, text=True, **kwargs
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}")
    return result


def _size(folder: Path, *, skip: tuple[str, ...] = ()) -> int:
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and not any(part in skip for part in path.parts):
            total += path.stat().st_size
    return total


def build_light_venv(work: Path) -> dict:
    """Wheel -> fresh venv (twice); returns the install figures and the venv of the second install."""
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", REPO])
    (wheel,) = (work / "dist").glob("emotionlab-*.whl")
    frozen = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"]).stdout.splitlines()
    constraints = work / "constraints.txt"
    constraints.write_text(
        "\n".join(line for line in frozen if "==" in line and not line.startswith("emotionlab"))
    )
    seconds = []
    for attempt in ("first", "cached"):
        venv = work / f"venv-{attempt}"
        _run([sys.executable, "-m", "venv", venv])
        start = time.perf_counter()
        _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", constraints, wheel])
        seconds.append(time.perf_counter() - start)
    packages = _run([venv / "bin" / "python", "-m", "pip", "list", "--format", "json"]).stdout
    return {
        "venv": venv,
        "wheel_mb": round(wheel.stat().st_size / 1e6, 1),
        "install_seconds_first": round(seconds[0], 1),
        "install_seconds_from_cache": round(seconds[1], 1),
        "venv_mb": round(_size(venv) / 1e6, 1),
        "venv_mb_without_pip_setuptools": round(
            _size(venv, skip=("pip", "setuptools", "_distutils_hack")) / 1e6, 1
        ),
        "packages": sorted(f"{p['name']}=={p['version']}" for p in json.loads(packages)),
    }


def time_predict(command: list, photo: Path, runs: int, env: dict | None = None) -> dict:
    """Median wall and CPU seconds of ``command predict PHOTO`` as a new process each time."""
    full = [*command, "predict", photo]  # as a user types it: a table on the terminal
    untimed = _run([*command, "predict", photo, "--format", "jsonl"], env=env)  # warms the disk cache
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        _run(full, env=env)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    record = json.loads(untimed.stdout.splitlines()[0])
    return {
        "command": " ".join(map(str, full)),
        "median_wall_seconds": round(statistics.median(walls), 3),
        "median_cpu_seconds": round(statistics.median(cpus), 3),
        "min_wall_seconds": round(min(walls), 3),
        "wall_seconds": [round(value, 3) for value in walls],
        "label": record.get("label"),
    }


def time_phases(python: Path, photo: Path, runs: int) -> dict:
    rows = [json.loads(_run([python, "-c", PHASES, photo]).stdout) for _ in range(runs)]
    phases = {
        key: round(statistics.median(row[key] for row in rows), 3)
        for key in rows[0]
        if key != "torch_imported"
    }
    return {**phases, "torch_imported": any(row["torch_imported"] for row in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--compare-src", type=Path, help="an older checkout's src/ to time in this environment too"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they come, also in a log
    photo = args.photo.resolve()
    machine = recorded.machine()  # before
    with tempfile.TemporaryDirectory(prefix="emotionlab-startup-") as folder:
        light = build_light_venv(Path(folder))
        venv = light.pop("venv")
        print(
            f"light install: {light['venv_mb']} MB ({light['venv_mb_without_pip_setuptools']} MB without pip and "
            f"setuptools), {len(light['packages'])} packages; pip install {light['install_seconds_first']} s, "
            f"{light['install_seconds_from_cache']} s from the local cache"
        )
        results = {"light": time_predict([venv / "bin" / "emotionlab"], photo, args.runs)}
        results["light"]["phases"] = time_phases(venv / "bin" / "python", photo, args.runs)
    results["full"] = time_predict([Path(sys.executable).parent / "emotionlab"], photo, args.runs)
    if args.compare_src is not None:
        env = {**os.environ, "PYTHONPATH": str(args.compare_src.resolve())}
        results["compare"] = time_predict([sys.executable, "-m", "emotionlab"], photo, args.runs, env=env)
        results["compare"]["src"] = str(args.compare_src)
    for name, row in results.items():
        print(
            f"{name:8s} predict {photo.name}: median {row['median_wall_seconds']:.2f} s wall, "
            f"{row['median_cpu_seconds']:.2f} s CPU (min {row['min_wall_seconds']:.2f} s) -> {row['label']}"
        )
    print(f"light, in one process: {results['light']['phases']}")
    report = {
        "benchmark": "startup",
        "command": recorded.command_line(),
        "photo": str(photo.relative_to(REPO)) if photo.is_relative_to(REPO) else str(photo),
        "runs": args.runs,
        "targets": {"predict_cold_seconds": 0.5, "light_install_mb": 300, "install_seconds_from_cache": 30},
        "light_install": light,
        "predict": results,
        "machine": {**machine, "load_average_after": recorded.load_average()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
