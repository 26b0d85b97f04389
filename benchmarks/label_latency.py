"""How fast the labelling tool is: startup scan, and per-action latency over real HTTP on 127.0.0.1.

    .venv/bin/python benchmarks/label_latency.py [FOLDER] [--actions N]

FOLDER defaults to ../shared/datasets/seed-emotions (else 300 synthetic 64 px images in a temporary folder).
The journal goes to a temporary folder: FOLDER is only read. Measures
- the startup scan (every file decoded once with read_image),
- POST /api/label round trips (journal write + fsync + next state), and GET of the next image (re-encoded),
- the journal replay time at restart.
Prints the figures and writes benchmarks/results/label_latency.json. Traffic goes to 127.0.0.1 only, bounded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import recorded
import uvicorn
from PIL import Image

from emotionlab.labeling import LabelSession, scan_images
from emotionlab.labeling.app import _bind, create_label_app
from emotionlab.labels import EMOTIONS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_FOLDER = REPO.parent / "shared" / "datasets" / "seed-emotions"


def percentiles(values: list[float]) -> dict:
    array = np.array(values) * 1000
    return {
        "median_ms": round(float(np.median(array)), 2),
        "p95_ms": round(float(np.percentile(array, 95)), 2),
        "max_ms": round(float(array.max()), 2),
    }


def synthetic_folder(root: Path, count: int = 300) -> Path:
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{index}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--actions", type=int, default=200, help="label actions to time (bounded)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="label-bench-"))
    folder = args.folder or (DEFAULT_FOLDER if DEFAULT_FOLDER.is_dir() else None)
    if folder is None:
        (work / "photos").mkdir()
        folder = synthetic_folder(work / "photos")

    started = time.perf_counter()
    images = scan_images(folder)
    scan_seconds = time.perf_counter() - started
    actions = min(args.actions, len(images.relpaths))

    journal = work / "bench.labels.jsonl"
    session = LabelSession(folder, list(EMOTIONS), journal, images=images)
    sock = _bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_label_app(session), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    label_times, image_times, image_bytes = [], [], []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(100):  # wait for the server, at most 10 s
            try:
                state = client.get("/api/state").json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        for index in range(actions):
            started = time.perf_counter()
            image = client.get(state["current"]["url"])
            image_times.append(time.perf_counter() - started)
            image_bytes.append(len(image.content))
            started = time.perf_counter()
            state = client.post(
                "/api/label", json={"id": state["current"]["id"], "label": EMOTIONS[index % 5]}
            ).json()
            label_times.append(time.perf_counter() - started)
            if state["current"] is None:
                break
    server.should_exit = True
    thread.join(timeout=10)
    session.close()
    sock.close()

    started = time.perf_counter()
    resumed = LabelSession(folder, list(EMOTIONS), journal, images=images)
    replay_seconds = time.perf_counter() - started
    resumed_done = resumed.snapshot()["done"]
    resumed.close()

    result = {
        "folder": str(folder),
        "images": len(images.relpaths),
        "unreadable": len(images.unreadable),
        "scan_seconds": round(scan_seconds, 3),
        "actions_timed": len(label_times),
        "label_round_trip": percentiles(label_times),
        "image_fetch": percentiles(image_times),
        "image_bytes_median": int(statistics.median(image_bytes)),
        "restart_replay_seconds": round(replay_seconds, 4),
        "resumed_done": resumed_done,
        "journal_bytes": journal.stat().st_size,
        "command": recorded.command_line(),
        "machine": recorded.machine(),
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "label_latency.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
