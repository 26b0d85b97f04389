"""Inference speed, memory and accuracy: emotionlab (PyTorch and ONNX Runtime, float32 and int8) against the
`fer` package (Haar + TFLite, and MTCNN), on the same seed test images, in one run.

    .venv/bin/python benchmarks/speed.py                          # shipped model, canonical test split, + fer
    .venv/bin/python benchmarks/speed.py --model runs/x/model.safetensors --skip-fer --seconds 2

Measured per emotionlab backend, each in its own process (so peak memory is that backend's):
- classification alone: preprocessed face crops -> probabilities, faces/s at batch 1 and batch 64;
- end to end: files -> decode -> detect every face -> crop -> classify, images/s in one process and with
  2 DataLoader workers (fork server already running; over the test set repeated to >= 400 images), for the model's own detector, the fast
  interactive one and Haar; PyTorch runs with OMP_WAIT_POLICY=PASSIVE, as `emotionlab predict` sets it;
- single-image latency p50/p95 (``recognizer.predict(path)``), peak RSS, accuracy (largest face, or the whole
  image when none is found).
`fer` runs in its own virtual environment (created and filled by this script on first use: tensorflow-cpu,
opencv-python-headless<5, fer --no-deps, facenet-pytorch --no-deps; see /work/shared/notes/fer-peer-install.md)
through a small driver that prints JSON; torch for its MTCNN detector is shared from this project's venv by a
.pth file instead of a second 3 GB download. The machine's load average is saved with the figures: the CPU is
shared, re-run when it is quiet. Writes benchmarks/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "speed.json"
SPLIT_MANIFEST = REPO / "benchmarks" / "splits" / "seed-emotions.csv"
DEFAULT_FER_VENV = Path("/tmp/fer-venv")
FER_PACKAGES = [
    "tensorflow-cpu",
    "opencv-python-headless<5",
    "pandas",
    "pillow",
    "tqdm",
    "requests",
    "matplotlib",
    "setuptools<81",
]
FER_NO_DEPS = ["fer", "facenet-pytorch"]

BACKENDS = {  # name -> (backend, int8)
    "torch": ("torch", False),
    "onnx": ("onnx", False),
    "onnx-int8-dynamic": ("onnx", "dynamic"),
    "onnx-int8-static": ("onnx", "static"),
}


def data_root() -> Path:
    env = os.environ.get("EMOTIONLAB_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "datasets" / "seed-emotions"
    if not root.is_dir():
        sys.exit(f"{root}: seed dataset not found (set EMOTIONLAB_DATA)")
    return root


def test_images(root: Path) -> tuple[list[dict], str, list[str]]:
    """(test images, which set, training images for int8 calibration): the canonical split when present."""
    from emotionlab.data.dataset import read_manifest, scan_image_folder

    if SPLIT_MANIFEST.is_file():
        samples = read_manifest(SPLIT_MANIFEST, root=root).samples
        source = f"canonical split {SPLIT_MANIFEST.relative_to(REPO)} (test rows)"
    else:
        samples = scan_image_folder(root, verify=False).samples
        source = f"{root}/test (folder split)"
    test = [{"path": str(s.path), "label": s.label} for s in samples if s.split == "test"]
    train = [str(s.path) for s in samples if s.split == "train"]
    return test, source, train


def load_text() -> dict:
    uptime = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    return {"uptime": uptime, "loadavg": [round(v, 2) for v in os.getloadavg()]}


def peak_rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_rss_worker_mb": round(children, 1) if children else None}


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p95_ms": round(p95 * 1000, 2)}


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("nan")


# ---- emotionlab: one backend, in its own process ---------------------------------------------------------


def timed_loop(step, items: int, seconds: float) -> float:
    """Run ``step()`` (handling ``items`` items) until ``seconds`` passed; items per second."""
    step()  # warm-up: lazy allocations, thread pools
    count, start = 0, time.perf_counter()
    while True:
        step()
        count += items
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return rate(count, elapsed)


def measure_backend(args) -> dict:
    import numpy as np

    from emotionlab.data.faces import PREDICT_DETECTOR
    from emotionlab.inference import Recognizer, load_classifier
    from emotionlab.onnx_export import calibration_inputs, export_onnx

    backend, int8 = BACKENDS[args.measure]
    images = json.loads(Path(args.images).read_text())
    paths = [item["path"] for item in images]
    truth = [item["label"] for item in images]
    start = time.perf_counter()
    if int8:
        target = Path(tempfile.mkdtemp()) / "model.int8.onnx"
        calibration = None
        if int8 == "static":
            train = json.loads(Path(args.calibration).read_text())
            calibration = calibration_inputs(args.model, train[:: max(1, len(train) // 200)], limit=200)
        export_onnx(args.model, target, int8=True, calibration=calibration)
        classifier = load_classifier(target, backend="onnx")
    else:
        classifier = load_classifier(args.model, backend=backend)
    load_seconds = time.perf_counter() - start
    recognizer = Recognizer(classifier)
    labels = classifier.labels
    model_detector = recognizer.detector_name

    # Classification alone, on the largest face of each image as the model's own detector crops it.
    preparer = recognizer.preparer()
    prepared = [preparer(path) for path in paths]
    inputs = np.concatenate([item.inputs[:1] for item in prepared]).astype(np.float32)
    probabilities = classifier.predict_inputs(inputs, batch_size=64)
    crop_accuracy = float(
        np.mean([labels[int(row.argmax())] == label for row, label in zip(probabilities, truth)])
    )
    pool = np.concatenate([inputs] * (1 + 256 // len(inputs)))[:256]
    position = {"i": 0}

    def single():
        i = position["i"] = (position["i"] + 1) % len(pool)
        classifier.probabilities(pool[i : i + 1])

    batch64 = [pool[i : i + 64] for i in range(0, 256, 64)]

    def batched():
        for batch in batch64:
            classifier.probabilities(batch)

    result = {
        "backend": args.measure,
        "model_detector": model_detector,
        "load_seconds": round(load_seconds, 2),
        "classification": {
            "faces_per_s_batch1": timed_loop(single, 1, args.seconds),
            "faces_per_s_batch64": timed_loop(batched, 256, args.seconds),
            "accuracy_on_crops": round(crop_accuracy, 4),
        },
    }
    # The same with one thread: on a CPU shared with other jobs, threads of one call wait for each other.
    import torch

    threads = {
        "default_threads": classifier.session.get_session_options().intra_op_num_threads
        if backend == "onnx"
        else torch.get_num_threads()
    }
    if backend == "onnx":
        from emotionlab.onnx_export import OnnxClassifier

        one = OnnxClassifier(classifier.onnx_path, classifier.metadata, threads=1)
    else:
        torch.set_num_threads(1)
        one = classifier
    threads["faces_per_s_batch1_1thread"] = timed_loop(lambda: one.probabilities(pool[:1]), 1, args.seconds)
    threads["faces_per_s_batch64_1thread"] = timed_loop(
        lambda: [one.probabilities(batch) for batch in batch64], 256, args.seconds
    )
    if backend != "onnx":
        torch.set_num_threads(threads["default_threads"])
    result["classification"].update(threads)

    # Preprocessing (resize + normalise a crop), which the classification figures above leave out.
    from emotionlab.data.faces import crop_face
    from emotionlab.data.images import read_image

    crops = []
    for path, item in zip(paths[:64], prepared[:64]):
        image = read_image(path)
        crops.append(
            crop_face(image, item.boxes[0], margin=recognizer.crop_config.margin) if item.boxes else image
        )
    result["classification"]["preprocess_faces_per_s"] = timed_loop(
        lambda: [classifier.transform(crop) for crop in crops], len(crops), min(args.seconds, 2)
    )

    # End to end, per detector.
    detectors = (
        [model_detector] if args.quick else list(dict.fromkeys([model_detector, PREDICT_DETECTOR, "haar"]))
    )
    result["end_to_end"] = {}
    for detector in detectors if model_detector != "none" else ["none"]:
        runner = Recognizer(classifier, detector=None if detector in ("none", model_detector) else detector)
        list(runner.predict_many(paths[:3]))  # warm-up: detector models load here
        entry = {}
        records = list(runner.predict_many(paths, batch_size=32))
        # Throughput over at least 400 images (the test set repeated), so that starting worker processes
        # (about a second) does not dominate; accuracy and latency below use each test image once.
        stream = paths * max(1, -(-400 // len(paths)))
        if not args.quick:
            list(runner.predict_many(paths[:8], workers=2))  # start the fork server outside the timing
        for workers in [0] if args.quick else [0, 2]:
            begin = time.perf_counter()
            count = sum(1 for _ in runner.predict_many(stream, batch_size=32, workers=workers))
            entry[f"images_per_s_workers{workers}"] = rate(count, time.perf_counter() - begin)
        entry["accuracy"] = round(float(np.mean([r.get("label") == t for r, t in zip(records, truth)])), 4)
        entry["no_face"] = sum(bool(r.get("no_face")) for r in records)
        entry["errors"] = sum("error" in r for r in records)
        latencies = []
        for path in paths:
            begin = time.perf_counter()
            runner.predict(path)
            latencies.append(time.perf_counter() - begin)
        entry["latency"] = percentiles(latencies)
        result["end_to_end"][detector] = entry
    result.update(peak_rss_mb())
    return result


# ---- fer: its own venv and a driver ----------------------------------------------------------------------

FER_DRIVER = r'''
import json, resource, statistics, sys, time
mode, images_file = sys.argv[1], sys.argv[2]
if mode == "mtcnn":  # torch (and torchvision) must be imported before tensorflow, or the process crashes
    import torch, torchvision, facenet_pytorch  # noqa: F401
import numpy as np
from PIL import Image, ImageOps
from fer.fer import FER

KEEP = {"angry": "angry", "fear": "fearful", "happy": "happy", "sad": "sad", "surprise": "surprised"}


def load(path):
    """Decoded as emotionlab decodes (EXIF upright, transparency on white), then BGR as fer expects."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode != "RGB":
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("RGB")
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


images = json.loads(open(images_file).read())
start = time.perf_counter()
detector = FER(mtcnn=(mode == "mtcnn"))
load_seconds = time.perf_counter() - start
for item in images[:3]:
    detector.detect_emotions(load(item["path"]))
latencies, correct, no_face = [], 0, 0
for item in images:
    begin = time.perf_counter()
    array = load(item["path"])
    faces = detector.detect_emotions(array)
    if not faces:  # as we do: classify the whole image, and count it
        no_face += 1
        height, width = array.shape[:2]
        faces = detector.detect_emotions(array, face_rectangles=[(0, 0, width, height)])
    predicted = None
    if faces:
        largest = max(faces, key=lambda face: int(face["box"][2]) * int(face["box"][3]))
        predicted = KEEP[max(KEEP, key=lambda name: largest["emotions"][name])]
    latencies.append(time.perf_counter() - begin)
    correct += predicted == item["label"]
ordered = sorted(latencies)
print(json.dumps({
    "mode": mode,
    "load_seconds": round(load_seconds, 2),
    "images_per_s": round(len(images) / sum(latencies), 1),
    "latency": {"p50_ms": round(statistics.median(ordered) * 1000, 2),
                "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000, 2)},
    "accuracy": round(correct / len(images), 4),
    "no_face": no_face,
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
'''


def ensure_fer_venv(venv: Path) -> Path:
    """The venv's python, with fer, tensorflow-cpu, facenet-pytorch and (shared) torch importable."""
    python = venv / "bin" / "python"
    probe = "import torch, torchvision, facenet_pytorch, tensorflow; from fer.fer import FER"
    if (
        python.exists()
        and subprocess.run([python, "-c", probe], check=False, capture_output=True).returncode == 0
    ):
        return python
    print(f"setting up fer in {venv} (first run only) ...", file=sys.stderr)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *FER_PACKAGES], check=True)
    subprocess.run([*pip, "--no-deps", *FER_NO_DEPS], check=True)
    # torch/torchvision for MTCNN: appended from this venv (fer's own packages stay first on sys.path).
    own = sysconfig.get_paths()["purelib"]
    theirs = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(theirs, "zz_emotionlab_torch.pth").write_text(own + "\n")
    subprocess.run([python, "-c", probe], check=True, capture_output=True)
    return python


def fer_version(python: Path) -> dict:
    code = "import fer, tensorflow, cv2; print(fer.__version__, tensorflow.__version__, cv2.__version__)"
    out = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True).stdout.split()
    return dict(zip(("fer", "tensorflow", "opencv"), out))


def run_json(command: list, env: dict | None = None) -> dict:
    completed = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---- report ----------------------------------------------------------------------------------------------


BACKEND_NAMES = {
    "torch": "PyTorch",
    "onnx": "ONNX Runtime",
    "onnx-int8-dynamic": "ONNX Runtime int8 (dynamic)",
    "onnx-int8-static": "ONNX Runtime int8 (static)",
}


def table(results: dict) -> str:
    """Two markdown tables: end to end (emotionlab and fer), and classification alone."""
    model_detector = next(iter(results["emotionlab"].values()), {}).get("model_detector", "")
    lines = [
        (
            "| tool | detector | images/s, 1 process | images/s, 2 workers | latency p50 / p95 (ms) | accuracy "
            "| no face found | peak RSS (MB) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["emotionlab"].items():
        if "int8" in name:
            continue
        for detector, e2e in entry.get("end_to_end", {}).items():
            own = " (the model's)" if detector == model_detector else ""
            lines.append(
                f"| emotionlab, {BACKEND_NAMES[name]} | {detector}{own} | {e2e['images_per_s_workers0']} | "
                f"{e2e.get('images_per_s_workers2', '')} | {e2e['latency']['p50_ms']:.1f} / "
                f"{e2e['latency']['p95_ms']:.1f} | {e2e['accuracy']:.3f} | {e2e['no_face']} | "
                f"{entry['peak_rss_mb']:.0f} |"
            )
    for mode, entry in results.get("fer", {}).items():
        if "error" in entry:
            lines.append(f"| fer {mode} | | error: {entry['error'][:60]} | | | | | |")
            continue
        label = "fer, MTCNN" if mode == "mtcnn" else "fer, default (TFLite)"
        lines.append(
            f"| {label} | {'MTCNN' if mode == 'mtcnn' else 'Haar'} | {entry['images_per_s']} | | "
            f"{entry['latency']['p50_ms']:.1f} / {entry['latency']['p95_ms']:.1f} | {entry['accuracy']:.3f} | "
            f"{entry['no_face']} | {entry['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        (
            "| classification alone (face crops in, probabilities out) | faces/s, batch 1 | faces/s, batch 64 "
            "| 1 thread: batch 1 / 64 | accuracy on the same crops |"
        ),
        "|---|---|---|---|---|",
    ]
    for name, entry in results["emotionlab"].items():
        c = entry["classification"]
        lines.append(
            f"| {BACKEND_NAMES[name]} | {c['faces_per_s_batch1']:.0f} | {c['faces_per_s_batch64']:.0f} | "
            f"{c.get('faces_per_s_batch1_1thread', 0):.0f} / {c.get('faces_per_s_batch64_1thread', 0):.0f} | "
            f"{c['accuracy_on_crops']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--seconds", type=float, default=3.0, help="time per classification measurement")
    parser.add_argument("--skip-fer", action="store_true")
    parser.add_argument("--fer-venv", type=Path, default=DEFAULT_FER_VENV)
    parser.add_argument("--limit", type=int, help="only the first N test images (quick checks)")
    parser.add_argument("--quick", action="store_true", help="one detector, no worker run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--render", type=Path, help="only print the tables of a saved results JSON")
    parser.add_argument("--measure", choices=list(BACKENDS), help=argparse.SUPPRESS)  # internal: one backend
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--calibration", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        print(json.dumps(measure_backend(args)))
        return
    if args.render:
        print(table(json.loads(args.render.read_text())))
        return

    from emotionlab import __version__
    from emotionlab.inference import DEFAULT_MODEL, physical_cores
    from emotionlab.models.io import read_metadata

    model = args.model or DEFAULT_MODEL
    if not model.is_file():
        sys.exit(f"{model}: no model (the shipped model is not there yet); pass --model")
    metadata = read_metadata(model)
    images, source, train = test_images(data_root())
    if args.limit:
        images = images[: args.limit]
    work = Path(tempfile.mkdtemp(prefix="speed-"))
    images_file, calibration_file = work / "images.json", work / "train.json"
    images_file.write_text(json.dumps(images))
    calibration_file.write_text(json.dumps(train))

    import numpy
    import onnxruntime
    import torch

    results = {
        "what": "emotionlab inference speed and accuracy against fer on the same images",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "physical_cores": physical_cores(),
            "logical_cpus": os.cpu_count(),
            "load_before": load_text(),
        },
        "versions": {
            "emotionlab": __version__,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
        "model": {
            "path": str(model),
            "architecture": metadata["architecture"],
            "input_size": metadata["input_size"],
            "faces": metadata.get("faces"),
            "weights_sha256": metadata.get("weights_sha256", "")[:16],
        },
        "images": {"source": source, "count": len(images)},
        "emotionlab": {},
        "fer": {},
    }
    for name in args.backends:
        print(f"emotionlab {name} ...", file=sys.stderr)
        command = [
            sys.executable,
            __file__,
            "--measure",
            name,
            "--model",
            str(model),
            "--images",
            str(images_file),
            "--calibration",
            str(calibration_file),
            "--seconds",
            str(args.seconds),
        ]
        if args.quick or "int8" in name:
            command.append("--quick")
        # As `emotionlab predict` sets it (cli.py): passive OpenMP waiting, unless the caller chose otherwise.
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        results["emotionlab"][name] = run_json(command, env=env)
        results["emotionlab"][name]["omp_wait_policy"] = env["OMP_WAIT_POLICY"]
    if not args.skip_fer:
        try:
            python = ensure_fer_venv(args.fer_venv)
            results["fer_versions"] = fer_version(python)
            driver = work / "fer_driver.py"
            driver.write_text(FER_DRIVER)
            # The same OpenMP setting as ours: fer's MTCNN runs on PyTorch too, and a comparison is fair only so.
            env = {
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
            }
            results["fer_env"] = {"OMP_WAIT_POLICY": env["OMP_WAIT_POLICY"]}
            for mode in ("haar", "mtcnn"):
                print(f"fer {mode} ...", file=sys.stderr)
                try:
                    results["fer"][mode] = run_json(
                        [str(python), str(driver), mode, str(images_file)], env=env
                    )
                except RuntimeError as error:
                    results["fer"][mode] = {"error": str(error)[-500:]}
        except subprocess.CalledProcessError as error:
            results["fer"] = {"setup": {"error": f"could not set up fer: {error}"}}
    results["machine"]["load_after"] = load_text()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"images: {source}, {len(images)}; model {model.name} ({metadata['architecture']}, "
        f"{metadata['input_size']} px, faces {metadata.get('faces')})"
    )
    print(
        f"load before {results['machine']['load_before']['loadavg']}, after {results['machine']['load_after']['loadavg']}"
    )
    print(table(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
