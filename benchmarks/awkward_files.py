"""No run stopped by any single file: the awkward-file corpus through every command, and the cost of the
worker pool that makes `predict --workers N` survive a dying worker.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/awkward_files.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/awkward_files.py --skip-train --throughput-count 200

1. Writes the corpus (tests/awkward_corpus.py: empty, truncated, lying, bombs, strips, odd modes, EXIF
   rotations, links, FIFO, odd names, ...), a folder of good and bad videos, and a dataset whose `happy`
   class is the corpus. Runs each command on them as a user would (a subprocess each, shipped model and
   default detector): predict (1 process, 2 workers, --resume), predict on the videos, data audit, data faces
   (1 and 2 workers), evaluate, and train --faces for one epoch. For each: exit code, whether it stopped
   (a non-zero exit or a signal), seconds, records, errors, files whose outcome differs from the corpus's
   expectation, and whether the input folder is byte-for-byte unchanged.
2. Throughput of the preparation workers (``--workers 2``) on ``--throughput-count`` generated 160 px faces,
   with whole images (as --no-detect) and with the default detector: the previous DataLoader pipeline
   (rebuilt here exactly as it was) against the isolating pool now used, alternating rounds in one process;
   the records of both must be identical.

Writes benchmarks/results/awkward_files.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
DEFAULT_OUT = REPO / "benchmarks" / "results" / "awkward_files.json"

import recorded
from awkward_corpus import ANY, ERROR, kinds_count, snapshot, write_corpus, write_videos

TIMEOUT = 900


def run(args: list, cwd: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "emotionlab", *map(str, args)],
            capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=env, check=False,
        )  # fmt: skip
        code, stderr, stdout = result.returncode, result.stderr, result.stdout
    except subprocess.TimeoutExpired as error:
        code, stderr, stdout = "timeout", str(error.stderr or ""), str(error.stdout or "")
    return {
        "command": "emotionlab " + " ".join(str(a) for a in args),
        "exit_code": code,
        "stopped": code != 0,
        "seconds": round(time.perf_counter() - start, 1),
        "_stderr": stderr[-2000:],
        "_stdout": stdout,
    }


def mismatches(outcomes: dict[str, bool], kinds: dict) -> list[str]:
    return sorted(
        name
        for name, failed in outcomes.items()
        if name in kinds and kinds[name].expect != ANY and failed != (kinds[name].expect == ERROR)
    )


def corpus_runs(work: Path, *, train: bool) -> dict:
    import csv

    import numpy as np

    from emotionlab.synthetic import make_face

    corpus, videos, dataset = work / "corpus", work / "videos", work / "dataset"
    kinds = write_corpus(corpus)
    listed = {name: kind for name, kind in kinds.items() if name != "folder.jpg"}
    video_kinds = write_videos(videos)
    write_corpus(dataset / "train" / "happy")
    for split in ("train", "validation"):
        for label in ("happy", "sad"):
            (dataset / split / label).mkdir(parents=True, exist_ok=True)
            for index in range(3):
                face = make_face(label, np.random.default_rng(index), 64)
                face.save(dataset / split / label / f"plain_{label}_{index}.png")
    before = {folder: snapshot(folder) for folder in (corpus, videos, dataset)}
    runs = {}

    def records_of(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    for workers in (0, 2):
        output = work / f"predict_{workers}.jsonl"
        row = run(["predict", corpus, "--format", "jsonl", "-o", output, "--workers", workers], work)
        records = records_of(output) if output.is_file() else []
        outcomes = {Path(r["path"]).name: "error" in r for r in records}
        row.update(
            records=len(records),
            errors=sum(outcomes.values()),
            files=len(listed),
            each_file_once=sorted(outcomes) == sorted(listed) and len(records) == len(listed),
            unexpected=mismatches(outcomes, kinds),
        )
        runs[f"predict --workers {workers}"] = row
    first = work / "predict_0.jsonl"
    lines_before = len(first.read_text(encoding="utf-8").splitlines())
    row = run(["predict", corpus, "--format", "jsonl", "-o", first, "--resume"], work)
    row["records_added"] = len(first.read_text(encoding="utf-8").splitlines()) - lines_before
    runs["predict --resume (finished run)"] = row

    output = work / "videos.jsonl"
    row = run(["predict", videos, "--format", "jsonl", "-o", output, "--fps", "2"], work)
    records = records_of(output) if output.is_file() else []
    errors = {Path(r["path"]).name for r in records if "error" in r}
    framed = {Path(r["path"]).name for r in records if "error" not in r}
    row.update(
        videos=len(video_kinds),
        with_frames=sorted(framed),
        with_error=sorted(errors),
        unexpected=sorted(
            name
            for name, expect in video_kinds.items()
            if expect != ANY and (name in errors) != (expect == ERROR)
        ),
    )
    runs["predict (folder of videos)"] = row

    row = run(["data", "audit", "--data", corpus, "--out", work / "audit"], work)
    if (work / "audit" / "audit.json").is_file():
        report = json.loads((work / "audit" / "audit.json").read_text(encoding="utf-8"))
        outcomes = {f["path"]: not f["readable"] for f in report["files"]}
        row.update(
            files=len(outcomes), unreadable=sum(outcomes.values()), unexpected=mismatches(outcomes, kinds)
        )
    runs["data audit"] = row

    for workers in (1, 2):
        out = work / f"faces_{workers}.csv"
        args = [
            "data",
            "faces",
            "--data",
            dataset,
            "--output",
            out,
            "--workers",
            workers,
            "--cache-dir",
            work / f"crops{workers}",
        ]
        row = run(args, work)
        if out.is_file():
            with out.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
                rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
            outcomes = {
                r["path"].removeprefix("train/happy/"): r["face_detector"] == ""
                for r in rows
                if r["path"].startswith("train/happy/")
            }
            row.update(
                rows=len(rows), unreadable=sum(outcomes.values()), unexpected=mismatches(outcomes, kinds)
            )
        runs[f"data faces --workers {workers}"] = row

    out = work / "evaluation"
    row = run(["evaluate", "--data", dataset, "--split", "all", "--out", out], work)
    if (out / "metrics.json").is_file():
        metrics = json.loads((out / "metrics.json").read_text())
        row.update(evaluated=metrics["num_images"], skipped=len(metrics.get("skipped", [])))
    runs["evaluate"] = row

    if train:
        args = [
            "train",
            "--data",
            dataset,
            "--detect",
            "--epochs",
            "1",
            "--image-size",
            "48",
            "--batch-size",
            "10",
        ]
        row = run([*args, "--out", work / "run", "--no-progress"], work)
        row["model_written"] = (work / "run" / "model.safetensors").is_file()
        runs["train --faces (1 epoch)"] = row

    unchanged = {folder.name: snapshot(folder) == before[folder] for folder in before}
    for row in runs.values():
        stderr = row.pop("_stderr")
        row.pop("_stdout")
        if row["stopped"]:
            row["stderr_tail"] = stderr[-600:]
    return {
        "kinds": kinds_count(),
        "runs": runs,
        "runs_stopped": sum(1 for row in runs.values() if row["stopped"]),
        "inputs_unchanged": unchanged,
    }


# ---- throughput of the preparation workers: the DataLoader they replaced against the isolating pool ----


class _SourceDataset:
    """The previous pipeline's dataset (inference.py before the isolating pool)."""

    def __init__(self, sources, preparer):
        self.sources, self.preparer = sources, preparer

    def __len__(self):
        return len(self.sources)

    def __getitem__(self, index):
        return self.preparer(self.sources[index])


def _as_list(batch):
    return batch


def _old_worker_init(_worker_id):
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def dataloader_prepared(preparer, sources, workers: int):
    """Exactly the previous `--workers N` path: a DataLoader of fork-server workers, 4 images per task."""
    import torch

    from emotionlab.isolation import worker_context

    loader = torch.utils.data.DataLoader(
        _SourceDataset(sources, preparer),
        batch_size=4,
        num_workers=workers,
        collate_fn=_as_list,
        worker_init_fn=_old_worker_init,
        prefetch_factor=4,
        multiprocessing_context=worker_context(["emotionlab.inference"]),
    )
    return (item for chunk in loader for item in chunk)


def _error_item(source, reason: str):
    from emotionlab.inference import PreparedImage

    return PreparedImage(str(source), error=reason)


def throughput(work: Path, count: int, rounds: int) -> dict:
    import numpy as np

    from emotionlab.inference import load_recognizer
    from emotionlab.isolation import isolated_map
    from emotionlab.labels import EMOTIONS
    from emotionlab.synthetic import make_face

    folder = work / "faces"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"face_{index:04d}.png"
        make_face(EMOTIONS[index % 5], rng, 160).save(path)
        paths.append(path)
    results = {}
    for setting, detect in (("whole images (--no-detect)", False), ("default detector", None)):
        recognizer = load_recognizer(detect=detect)
        preparer = recognizer.preparer(decode_less=False)
        pipelines = {
            "dataloader (before)": partial(dataloader_prepared, preparer, paths, 2),
            "isolating pool (now)": partial(
                isolated_map,
                preparer,
                paths,
                workers=2,
                on_error=_error_item,
                preload=["emotionlab.inference", "emotionlab.faces"],
            ),
        }
        seconds = {name: [] for name in pipelines}
        records = {}
        for round_index in range(rounds):
            names = list(pipelines) if round_index % 2 == 0 else list(reversed(pipelines))
            for name in names:
                start = time.perf_counter()
                records[name] = [r for _, r in recognizer.classify(pipelines[name](), batch_size=32)]
                seconds[name].append(time.perf_counter() - start)
        results[setting] = {
            "detector": recognizer.detector_name,
            **{f"{name} images/s": round(count / min(times), 1) for name, times in seconds.items()},
            "seconds_per_round": {name: [round(t, 2) for t in times] for name, times in seconds.items()},
            "identical_records": records["dataloader (before)"] == records["isolating pool (now)"],
        }
        print(setting, results[setting], flush=True)
    return {"images": count, "workers": 2, "rounds": rounds, "best_of_rounds": True, "settings": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--throughput-count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    results = {
        "command": recorded.command_line(),
        "machine": recorded.machine(),
    }
    with tempfile.TemporaryDirectory(prefix="emotionlab-awkward-") as folder:
        work = Path(folder)
        os.environ["EMOTIONLAB_CACHE"] = str(work / "cache")
        if not args.skip_corpus:
            results["corpus"] = corpus_runs(work, train=not args.skip_train)
            print(json.dumps(results["corpus"], indent=1), flush=True)
        if not args.skip_throughput:
            results["throughput"] = throughput(work, args.throughput_count, args.rounds)
    results["machine"]["load_average_at_end"] = recorded.load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
