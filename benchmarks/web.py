"""The model in the browser against the Python path, and its speed on a camera -> benchmarks/results/web.json.

    .venv/bin/python benchmarks/web.py      # on a quiet machine: frames/s depend on free cores

Exports the page (`emotionlab export --web`), serves it with a plain static server and drives headless Chromium:

1. Agreement: every example image and the 109 seed test photos (the canonical duplicate-aware split,
   benchmarks/splits/seed-emotions.csv; skipped when ../shared/datasets is absent) go through the page and
   through ``emotionlab.load_model(name).predict`` for both shipped models: same label, same face boxes, and the
   largest probability difference.
2. Speed: frames analysed per second on Chromium's fake camera (640 x 480), each frame once, one at a time
   (the page waits for a new frame; the camera delivers 30/s): the default fake pattern (no face, so the
   full-range detector runs too and the whole frame is classified) and a Y4M of a face (examples/grace_hopper.jpg).
   Besides the wall-clock rate (which a busy machine lowers), the browser's CPU time per frame (all its
   processes, from /proc), and where a frame's time goes (window.emotionlab.timings: the classifier's figure is
   its latency in the worker, waiting included, while the page finds the next frame's faces).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import recorded

import emotionlab
from emotionlab.web.site import ORT_WEB_VERSION, export_web
from tests.browser import browser_missing, write_y4m


def start_browser(profile: Path, extra: tuple[str, ...] = ()):
    from tests.browser import start_chromium

    return start_chromium(profile, window="1200,1000", extra=extra)


def serve(folder: Path):
    from tests.browser import serve_folder

    return serve_folder(folder)


def agreement(driver, names: list[str], files: list[Path]) -> dict:
    from tests.browser import page_records

    out = {}
    for name in names:
        recognizer = emotionlab.load_model(name)
        driver.execute_script(
            "const choice = document.getElementById('model-choice');"
            "choice.value = arguments[0]; choice.dispatchEvent(new Event('change'));",
            name,
        )
        started = time.perf_counter()
        records = page_records(driver, files)
        seconds = time.perf_counter() - started
        same_label = same_boxes = errors = 0
        largest = 0.0
        differ = []
        for path, web in zip(files, records, strict=True):
            python = recognizer.predict(path)
            if "error" in web:
                errors += 1
                continue
            boxes_equal = [face["box"] for face in web["faces"]] == [face["box"] for face in python["faces"]]
            same_label += web["label"] == python["label"]
            same_boxes += boxes_equal
            if web["label"] != python["label"] or not boxes_equal:
                differ.append({"path": path.name, "python": python["label"], "web": web["label"]})
            if boxes_equal:
                pairs = [(python, web), *zip(python["faces"], web["faces"], strict=True)]
                for expected, got in pairs:
                    for label, value in expected["probabilities"].items():
                        largest = max(largest, abs(got["probabilities"][label] - value))
        out[name] = {
            "images": len(files),
            "same_label": same_label,
            "same_boxes": same_boxes,
            "errors": errors,
            "max_probability_difference": round(largest, 7),
            "page_ms_per_image": round(1000 * seconds / len(files), 1),
            "different": differ,
        }
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by process ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    used: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        used[int(entry.name)] = int(fields[11]) + int(fields[12])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += used.get(pid, 0)
        stack += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def camera_rate(folder: Path, work: Path, video: Path | None, seconds: float) -> dict:
    from tests.browser import open_page, wait_for

    extra = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    if video is not None:
        extra.append(f"--use-file-for-fake-video-capture={video}")
    server, url, _ = serve(folder)
    driver = start_browser(work / f"profile-{'file' if video else 'pattern'}", tuple(extra))
    try:
        open_page(driver, url)
        driver.find_element("id", "camera").click()
        wait_for(driver, "const c = window.emotionlab.camera(); return c && c.frames >= 10")
        time.sleep(2)  # warm-up: the WebAssembly code and the full-range model are loaded by now
        driver.execute_script(
            "for (const key in window.emotionlab.timings) delete window.emotionlab.timings[key]"
        )
        browser = driver.service.process.pid
        cpu = tree_cpu_seconds(browser)
        first = driver.execute_script("return window.emotionlab.camera()")
        time.sleep(seconds)
        last = driver.execute_script("return window.emotionlab.camera()")
        cpu = tree_cpu_seconds(browser) - cpu
        timings = driver.execute_script("return window.emotionlab.timings")
        frames = last["frames"] - first["frames"]
        span = last["seconds"] - first["seconds"]
        record = last["last"]
        cpu_ms = 1000 * cpu / max(frames, 1)
        return {
            "source": f"Y4M of {video.name}" if video else "Chromium's default fake camera (no face)",
            "frame_size": record["size"],
            "faces_in_last_frame": len(record["faces"]),
            "frames": frames,
            "seconds": round(span, 2),
            "frames_per_second": round(frames / span, 1),
            # A view less bent by other processes: the whole browser's CPU time per frame (the page's two
            # threads, video capture and drawing included), and frames per second of that CPU time.
            "browser_cpu_ms_per_frame": round(cpu_ms, 1),
            "frames_per_browser_cpu_second": round(1000 / cpu_ms, 1),
            "stage_ms_per_frame": {
                stage: round(ms / max(frames, 1), 1) for stage, (_, ms) in timings.items()
            },
        }
    finally:
        driver.quit()
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/datasets/seed-emotions"))
    parser.add_argument("--manifest", default=str(REPO / "benchmarks/splits/seed-emotions.csv"))
    parser.add_argument("--seconds", type=float, default=15.0, help="camera measurement per source")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/web.json"))
    args = parser.parse_args()
    reason = browser_missing()
    if reason:
        sys.exit(f"error: {reason}")
    examples = sorted(path for path in (REPO / "examples").iterdir() if path.suffix in (".jpg", ".png"))
    seed = []
    if Path(args.data).is_dir():
        from emotionlab.data.dataset import load_samples

        seed = [sample.path for sample in load_samples(args.data, args.manifest).split("test")]
    else:
        print(f"{args.data} absent: the seed test photos are skipped")
    result = {
        "command": recorded.command_line(),
        "onnxruntime_web": ORT_WEB_VERSION,
        "machine": recorded.machine(),  # at the start
    }
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        folder, size = export_web(work / "site")
        result["site_megabytes"] = round(size / 1e6, 1)
        server, url, _ = serve(folder)
        driver = start_browser(work / "profile")
        try:
            from tests.browser import open_page

            started = time.perf_counter()
            open_page(driver, url)
            result["page_ready_seconds"] = round(time.perf_counter() - started, 2)
            result["examples"] = agreement(driver, ["default", "ferplus8"], examples)
            if seed:
                result["seed_test"] = agreement(driver, ["default", "ferplus8"], seed)
        finally:
            driver.quit()
            server.shutdown()
        video = write_y4m(REPO / "examples" / "grace_hopper.jpg", work / "face.y4m")
        result["camera"] = [
            camera_rate(folder, work, None, args.seconds),
            camera_rate(folder, work, video, args.seconds),
        ]
    for key in ("examples", "seed_test"):
        for name, block in result.get(key, {}).items():
            print(
                f"{key} {name}: same label {block['same_label']}/{block['images']}, same boxes "
                f"{block['same_boxes']}/{block['images']}, max probability difference "
                f"{block['max_probability_difference']:.2g}, {block['page_ms_per_image']} ms/image in the page"
            )
    for block in result["camera"]:
        print(
            f"camera, {block['source']}: {block['frames_per_second']} frames/s ({block['frames']} frames); browser "
            f"CPU {block['browser_cpu_ms_per_frame']} ms/frame ({block['frames_per_browser_cpu_second']} frames "
            "per CPU second)"
        )
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
