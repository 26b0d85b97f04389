"""`emotionlab predict` on a large folder: throughput, peak memory as the folder grows, shards and resume.

    .venv/bin/python benchmarks/large_folder.py --count 100000            # 100k generated 64x64 PNGs in /tmp
    .venv/bin/python benchmarks/large_folder.py --count 20000 --detector hog

Generates ``count`` synthetic 64x64 face PNGs (once) under ``--folder``, then runs the real command line
(``emotionlab predict FOLDER --format jsonl --output FILE --workers N``) on 1%, 10% and 100% of them (the
smaller runs are ``--shard 1/100`` and ``--shard 1/10`` of the same folder), sampling the resident memory of
the command (RSS) and of it with all its worker processes (PSS: shared pages counted once) from /proc
every 0.2 s. Bounded memory means the peak stays flat
while the number of images grows 100-fold. Then a 10% run is interrupted (SIGINT), resumed and killed
(SIGKILL), and resumed again: every file must appear exactly once. Default ``--no-detect`` (the images are face crops already,
as in a crop-folder job); ``--detector hog`` adds detection in the workers. Writes
benchmarks/results/large_folder.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import recorded

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "large_folder.json"
EMOTIONLAB = Path(sys.executable).parent / "emotionlab"


def _write_chunk(job: tuple[str, int, int]) -> int:
    import numpy as np

    from emotionlab.labels import EMOTIONS
    from emotionlab.synthetic import make_face

    folder, start, stop = job
    rng = np.random.default_rng(start)
    bases = [np.asarray(make_face(EMOTIONS[i % 5], rng, 64), dtype=np.int16) for i in range(50)]
    from PIL import Image

    for index in range(start, stop):
        # A few hundred distinct faces, each file with its own noise: no two files are identical.
        pixels = bases[index % len(bases)] + rng.integers(-6, 7, size=(64, 64, 3))
        target = Path(folder) / f"{index // 1000:03d}" / f"face_{index:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target, compress_level=1)
    return stop - start


def generate(folder: Path, count: int) -> float:
    """Write ``count`` PNGs (skipped when the folder already holds them); returns the seconds spent."""
    marker = folder / f".complete-{count}"
    if marker.is_file():
        return 0.0
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    jobs = [(str(folder), begin, min(begin + 2000, count)) for begin in range(0, count, 2000)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        written = sum(pool.map(_write_chunk, jobs))
    assert written == count
    marker.write_text("done\n")
    return time.perf_counter() - start


def _memory_kb(pid: int, field: str) -> int:
    """``VmRSS`` (from status) or ``Pss`` (from smaps_rollup) of a process, in kB; 0 when it is gone."""
    source = "smaps_rollup" if field == "Pss" else "status"
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                children = []
            found += children
            stack += children
    return found


def run_predict(
    args: list[str],
    *,
    interrupt_after: int | None = None,
    watch: Path | None = None,
    stop_signal=signal.SIGINT,
) -> dict:
    """Run the command, sampling memory; with ``interrupt_after`` send ``stop_signal`` (SIGINT: Ctrl+C;
    SIGKILL: a crash) once the output file ``watch`` has grown by that many bytes (mid-run, whatever the
    machine's speed)."""
    initial = watch.stat().st_size if watch is not None and watch.exists() else 0
    command = [str(EMOTIONLAB), "predict", *args]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_main = peak_total = 0
    interrupted = False
    while process.poll() is None:
        main = _memory_kb(process.pid, "VmRSS")
        # PSS for the total: workers share pages with the fork server; summing their RSS would count them twice.
        total = sum(_memory_kb(pid, "Pss") for pid in [process.pid, *_descendants(process.pid)])
        peak_main, peak_total = max(peak_main, main), max(peak_total, total)
        grown = (watch.stat().st_size if watch.exists() else 0) - initial if watch is not None else 0
        if interrupt_after is not None and not interrupted and grown > interrupt_after:
            process.send_signal(stop_signal)
            interrupted = True
        time.sleep(0.2)
    stderr = process.stderr.read()
    seconds = time.perf_counter() - start
    stopped = process.returncode in (130, -signal.SIGKILL) and interrupted
    if process.returncode != 0 and not stopped:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-2000:]}")
    return {
        "seconds": round(seconds, 1),
        "returncode": process.returncode,
        "peak_rss_main_mb": round(peak_main / 1024, 1),
        "peak_pss_total_mb": round(peak_total / 1024, 1),
    }


def count_records(path: Path) -> tuple[int, int]:
    """(records, distinct paths) in a jsonl output."""
    paths = [json.loads(line)["path"] for line in path.read_text().splitlines() if line.strip()]
    return len(paths), len(set(paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/emotionlab-large"))
    parser.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--detector", help="detect faces with this detector (default: --no-detect)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    # Started in the background by a shell, this process ignores SIGINT and its children would inherit that;
    # a Python handler here is reset to the default in them, so Ctrl+C (SIGINT) reaches the command.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from emotionlab.inference import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    if not model.is_file():
        sys.exit(f"{model}: no model (the shipped model is not there yet); pass --model")
    images = args.folder / "images"
    generated_seconds = generate(images, args.count)
    work = args.folder / "outputs"
    work.mkdir(parents=True, exist_ok=True)
    common = [
        "--model",
        str(model),
        "--format",
        "jsonl",
        "--workers",
        str(args.workers),
        "--backend",
        args.backend,
        "--no-progress",
        "--batch-size",
        "64",
    ]
    common += ["--detector", args.detector] if args.detector else ["--no-detect"]
    results = {
        "what": "emotionlab predict on a large folder of generated 64x64 PNG faces",
        "command": recorded.command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": recorded.machine(),
        "count": args.count,
        "generation_seconds": round(generated_seconds, 1),
        "model": str(model),
        "options": common[2:],
        "runs": [],
    }
    for shard in ("1/100", "1/10", None):
        output = work / f"run-{(shard or 'all').replace('/', 'of')}.jsonl"
        output.unlink(missing_ok=True)
        extra = ["--shard", shard] if shard else []
        print(f"predict {shard or 'all'} ...", file=sys.stderr)
        run = run_predict([str(images), *common, "--output", str(output), *extra])
        records, distinct = count_records(output)
        run.update(
            shard=shard, images=records, distinct=distinct, images_per_s=round(records / run["seconds"], 1)
        )
        results["runs"].append(run)
        print(json.dumps(run), file=sys.stderr)

    # A 10% run stopped with Ctrl+C, resumed and killed (SIGKILL: a crash, maybe mid-line), resumed again.
    output = work / "resume.jsonl"
    output.unlink(missing_ok=True)
    shard = [str(images), *common, "--output", str(output), "--shard", "1/10"]
    steps = []
    # Stopped after about 2,000 and then 1,500 more of the 10,000 records (~440 bytes each).
    plan = (([], signal.SIGINT, 900_000), (["--resume"], signal.SIGKILL, 650_000), (["--resume"], None, None))
    for extra, stop, after in plan:
        run = run_predict(
            [*shard, *extra], interrupt_after=after, watch=output, stop_signal=stop or signal.SIGINT
        )
        run.update(stopped_with=stop.name if stop else None, records_after=count_records(output)[0])
        steps.append(run)
        print(json.dumps(run), file=sys.stderr)
    records, distinct = count_records(output)
    expected = len(range(0, args.count, 10))
    results["resume"] = {
        "steps": steps,
        "records": records,
        "distinct_paths": distinct,
        "expected": expected,
        "ok": records == distinct == expected,
    }
    results["machine"]["load_average_after"] = recorded.load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'images':>8} {'seconds':>8} {'images/s':>9} {'peak RSS main MB':>17} {'peak PSS all MB':>16}")
    for run in results["runs"]:
        print(
            f"{run['images']:>8} {run['seconds']:>8} {run['images_per_s']:>9} {run['peak_rss_main_mb']:>17} "
            f"{run['peak_pss_total_mb']:>16}"
        )
    counts = " -> ".join(str(step["records_after"]) for step in steps)
    print(f"resume: records after each step {counts} ({distinct} distinct, {expected} expected)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
