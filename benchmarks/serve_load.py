"""`emotionlab serve` under load: requests/s, latency, wrong answers, memory, and 1,000 fuzzed uploads.

    .venv/bin/python benchmarks/serve_load.py                            # shipped model, 2 workers (the default)
    .venv/bin/python benchmarks/serve_load.py --compare-workers 0,1,2,3 --compare-requests 300

A real server on 127.0.0.1 (a free port), clients in threads of this process. The photos are the seed test
split (/work/shared/datasets/seed-emotions/test, or $EMOTIONLAB_DATA/test) if present, else examples/. Each
distinct photo is first sent alone, one at a time: that answer is the reference. Then 1,000 requests at
concurrency 1, 8 and 32: requests/s, p50/p95 latency, failures (any status but 200) and answers that differ
from the reference (compared as JSON, to the last digit). Peak memory: the sum of the resident set of the server
and its worker processes (PSS: shared pages counted once), sampled every 0.2 s. Fuzz: 1,000 hostile uploads (the generator of
tests/test_service_fuzz.py) at concurrency 8; any 5xx is counted, and the server must still answer the reference
photo as before.

``--compare-workers`` first measures each slot layout (0 = one Recognizer in the server process behind one
slot, i.e. a lock; N = N worker processes) at concurrency 8, to choose the default. Threads with one detector
each were not worth a mode: dlib holds the GIL while it detects (``detector_thread_scaling`` below: two threads
with their own HOG detector run no faster than one).

The CPU is shared (a training job may be running): the load average and CPU count are saved with the figures.
Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the server helpers and the fuzz generator shared with the tests

import recorded
from service_helpers import Server, start_server, stop_server
from test_service_fuzz import fuzz_uploads

DEFAULT_OUT = REPO / "benchmarks" / "results" / "serve_load.json"
SEED_TEST = Path(os.environ.get("EMOTIONLAB_DATA", "/work/shared/datasets/seed-emotions")) / "test"
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def photo_paths() -> tuple[list[Path], str]:
    if SEED_TEST.is_dir():
        paths = sorted(path for path in SEED_TEST.rglob("*") if path.suffix.lower() in CONTENT_TYPES)
        if paths:
            return paths, str(SEED_TEST)
    return sorted(
        path for path in (REPO / "examples").iterdir() if path.suffix.lower() in CONTENT_TYPES
    ), "examples/"


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def pss_mb(pid: int) -> float:
    """Proportional set size: resident memory with pages shared between processes (the fork server's torch,
    read by every worker) counted once in all, not once per process as the sum of RSS would."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemorySampler:
    """Peak of the summed memory (PSS) of a process tree, sampled in a thread."""

    def __init__(self, root: int, interval: float = 0.2):
        self.root, self.interval = root, interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, sum(pss_mb(pid) for pid in tree_pids(self.root)))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run_level(server: Server, payloads, reference, requests: int, concurrency: int, seed: int) -> dict:
    order = [index % len(payloads) for index in range(requests)]
    random.Random(seed).shuffle(order)

    def one(index):
        start = time.perf_counter()
        try:
            status, _, body = server.post(payloads[index], timeout=600)
        except OSError as error:
            status, body = 0, str(error)
        return index, status, body, time.perf_counter() - start

    start = time.perf_counter()
    with MemorySampler(server.process.pid) as memory, ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(one, order))
    elapsed = time.perf_counter() - start
    latencies = [seconds for _, _, _, seconds in answers]
    failures = [(status, body) for _, status, body, _ in answers if status != 200]
    differing = sum(1 for index, status, body, _ in answers if status == 200 and body != reference[index])
    return {
        "concurrency": concurrency,
        "requests": requests,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(requests / elapsed, 2),
        "latency_p50_ms": round(1000 * percentile(latencies, 0.5), 1),
        "latency_p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "failures": len(failures),
        "failure_examples": [str(item)[:200] for item in failures[:3]],
        "differing_from_serial": differing,
        "peak_memory_mb": round(memory.peak_mb),
        "server_alive": server.alive(),
    }


def run_fuzz(server: Server, count: int, probe, probe_answer) -> dict:
    cases = fuzz_uploads(count, seed=1)

    def one(case):
        kind, files, raw = case
        try:
            if raw is not None:
                status, _, _ = server.post(None, body=raw["body"], headers=raw["headers"], timeout=600)
            else:
                status, _, _ = server.post(files, timeout=600)
        except OSError:
            status = 0
        return kind, status

    start = time.perf_counter()
    with MemorySampler(server.process.pid) as memory, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, cases))
    statuses: dict[str, dict[str, int]] = {}
    for kind, status in results:
        counts = statuses.setdefault(kind, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
    after = server.post(probe) if server.alive() else (0, {}, None)
    return {
        "uploads": count,
        "seconds": round(time.perf_counter() - start, 1),
        "server_errors_5xx": sum(1 for _, status in results if status >= 500),
        "no_answer": sum(1 for _, status in results if status == 0),
        "statuses_by_kind": statuses,
        "peak_memory_mb": round(memory.peak_mb),
        "server_alive_after": server.alive(),
        "answers_as_before_after": after[0] == 200 and after[2] == probe_answer,
    }


def run_large_images(server: Server) -> dict:
    """16 plain 40-MP PNGs in one request (refused by the pixel budget?), then 2 requests of one each at once."""
    import io

    from PIL import Image

    side = int(40_000_000**0.5)
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "PNG")
    png = buffer.getvalue()
    with MemorySampler(server.process.pid) as memory:
        start = time.perf_counter()
        status, _, body = server.post(
            [(f"{index}.png", png, "image/png") for index in range(16)], timeout=600
        )
        sixteen = {
            "status": status,
            "seconds": round(time.perf_counter() - start, 2),
            "detail": body.get("detail"),
        }
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            pair = list(
                pool.map(lambda _: server.post([("big.png", png, "image/png")], timeout=600)[0], range(2))
            )
        two = {"statuses": pair, "seconds": round(time.perf_counter() - start, 2)}
    return {
        "png_bytes": len(png),
        "pixels_each": side * side,
        "sixteen_in_one_request": sixteen,
        "two_requests_of_one_at_once": two,
        "peak_memory_mb": round(memory.peak_mb),
    }


def build_payloads(paths: list[Path]) -> list[list[tuple[str, bytes, str]]]:
    return [[(path.name, path.read_bytes(), CONTENT_TYPES[path.suffix.lower()])] for path in paths]


def serial_reference(server: Server, payloads) -> list:
    reference = []
    for files in payloads:
        status, _, body = server.post(files, timeout=600)
        if status != 200:
            raise SystemExit(f"{files[0][0]}: the server answered {status} alone: {body}")
        reference.append(body)
    return reference


def detector_thread_scaling(paths: list[Path], names=("hog", "haar")) -> dict:
    """Images/s of two threads, each with its own detector, over one thread: ~1.0 means the GIL is held."""
    import numpy as np
    from PIL import Image

    from emotionlab.faces import create_detector

    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in paths[:40]]
    scaling = {}
    for name in names:
        detectors = [type(create_detector(name))() for _ in range(2)]  # new instances, not the cached one
        start = time.perf_counter()
        for array in arrays:
            detectors[0].detect(array)
        one = time.perf_counter() - start
        threads = [threading.Thread(target=lambda d=d: [d.detect(a) for a in arrays]) for d in detectors]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        two = time.perf_counter() - start
        scaling[name] = round(2 * one / two, 2)
    return scaling


def compare_workers(
    common: list[str], payloads, layouts: list[int], requests: int, rounds: int
) -> list[dict]:
    """Requests/s of each slot layout at concurrency 8. All servers run at once and take turns, round by round,
    so that a change in the machine's load (other jobs) falls on every layout alike."""
    servers, comparison = {}, []
    try:
        for workers in layouts:
            started = time.perf_counter()
            servers[workers] = start_server(*common, "--workers", str(workers), "--queue-size", "64")
            comparison.append(
                {"workers": workers, "startup_seconds": round(time.perf_counter() - started, 1)}
            )
        references = {workers: serial_reference(server, payloads) for workers, server in servers.items()}
        rounds_done: dict[int, list[dict]] = {workers: [] for workers in layouts}
        for round_index in range(rounds):
            for workers, server in servers.items():
                level = run_level(
                    server, payloads, references[workers], requests // rounds, 8, seed=round_index
                )
                level["load_average"] = round(os.getloadavg()[0], 2)
                rounds_done[workers].append(level)
                print(
                    f"  round {round_index + 1}, workers {workers}: {level['requests_per_second']} req/s",
                    flush=True,
                )
    finally:
        for server in servers.values():
            stop_server(server)
    for entry in comparison:
        levels = rounds_done[entry["workers"]]
        total_seconds = sum(level["seconds"] for level in levels)
        entry.update(
            requests=sum(level["requests"] for level in levels),
            requests_per_second=round(sum(level["requests"] for level in levels) / total_seconds, 2),
            rounds_requests_per_second=[level["requests_per_second"] for level in levels],
            latency_p95_ms_per_round=[level["latency_p95_ms"] for level in levels],
            failures=sum(level["failures"] for level in levels),
            differing_from_serial=sum(level["differing_from_serial"] for level in levels),
            peak_memory_mb=max(level["peak_memory_mb"] for level in levels),
            load_average_per_round=[level["load_average"] for level in levels],
        )
        print(
            f"workers {entry['workers']}: {entry['requests_per_second']} req/s at concurrency 8 "
            f"(rounds {entry['rounds_requests_per_second']}), failures {entry['failures']}, differing "
            f"{entry['differing_from_serial']}, peak memory {entry['peak_memory_mb']} MB"
        )
    return comparison


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--detector", default=None, help="detector instead of the model's")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the main run")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--fuzz", type=int, default=1000, help="fuzzed uploads (0: none)")
    parser.add_argument("--compare-workers", default="", help="e.g. 0,1,2,3: measured first at concurrency 8")
    parser.add_argument("--compare-requests", type=int, default=300, help="per layout, over all rounds")
    parser.add_argument(
        "--compare-rounds", type=int, default=3, help="layouts take turns: a shared CPU's load drifts"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    # `kill` stops the servers too: SIGTERM becomes SystemExit, so every `finally: stop_server(...)` runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    paths, source = photo_paths()
    payloads = build_payloads(paths)
    common = [
        *(["--model", args.model] if args.model else []),
        *(["--detector", args.detector] if args.detector else []),
    ]
    results: dict = {
        "command": recorded.command_line(),
        "photos": {"source": source, "count": len(paths)},
        "machine": recorded.machine(),
        "detector_thread_scaling": detector_thread_scaling(paths),
    }
    print(f"photos: {len(paths)} from {source}; load average {results['machine']['load_average']}")
    print(f"two threads with their own detector / one thread: {results['detector_thread_scaling']}")

    if args.compare_workers:
        results["workers_comparison"] = compare_workers(
            common,
            payloads,
            [int(value) for value in args.compare_workers.split(",")],
            args.compare_requests,
            args.compare_rounds,
        )

    if args.requests <= 0:  # only the comparison
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
        return
    started = time.perf_counter()
    server = start_server(*common, "--workers", str(args.workers))
    results["startup_seconds"] = round(time.perf_counter() - started, 1)
    results["workers"] = args.workers
    try:
        health = server.get("/model")[1]
        results["service"] = {key: health.get(key) for key in ("detector", "max_request_pixels", "formats")}
        reference = serial_reference(server, payloads)
        levels = []
        for concurrency in [int(value) for value in args.concurrency.split(",")]:
            level = run_level(server, payloads, reference, args.requests, concurrency, seed=concurrency)
            level["load_average"] = round(os.getloadavg()[0], 2)
            levels.append(level)
            print(
                f"concurrency {concurrency:>2}: {level['requests_per_second']:>6} req/s, p50 {level['latency_p50_ms']} ms, "
                f"p95 {level['latency_p95_ms']} ms, failures {level['failures']}, differing "
                f"{level['differing_from_serial']}, peak memory {level['peak_memory_mb']} MB"
            )
        results["levels"] = levels
        large = run_large_images(server)
        results["large_images"] = large
        print(
            f"16 x 40-MP PNG in one request: {large['sixteen_in_one_request']['status']} in "
            f"{large['sixteen_in_one_request']['seconds']} s; two 40-MP requests at once: "
            f"{large['two_requests_of_one_at_once']}; peak memory {large['peak_memory_mb']} MB"
        )
        if args.fuzz:
            fuzz = run_fuzz(server, args.fuzz, payloads[0], reference[0])
            results["fuzz"] = fuzz
            print(
                f"fuzz: {fuzz['uploads']} uploads, {fuzz['server_errors_5xx']} 5xx, {fuzz['no_answer']} without answer, "
                f"server alive {fuzz['server_alive_after']}, same answer after {fuzz['answers_as_before_after']}, "
                f"peak memory {fuzz['peak_memory_mb']} MB"
            )
    finally:
        stop_server(server)
    results["machine"]["load_average_after"] = recorded.load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
