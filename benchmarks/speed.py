"""End to end, side by side: emotionlab's default pipeline against every other emotionlab detector and against
the `fer` package, in one run, with accuracy beside each speed.

    .venv/bin/python benchmarks/speed.py                    # everything (~15 min on 2 shared cores)
    .venv/bin/python benchmarks/speed.py --limit 40 --skip-fer --out /tmp/speed.json   # a quick check
    .venv/bin/python benchmarks/speed.py --render benchmarks/results/speed.json        # tables of a saved run

End to end means files in, records out: decode + detect every face + crop + classify, as ``emotionlab predict``
does it (``Recognizer.predict_many``, batch 32, decoding less), in one process (decoding, detection and cropping
in preparation threads beside the network, one per physical core by default: ``prepare_threads`` in the results)
and with ``--workers 2`` (decoding, detection and cropping in 2 worker processes, the network in the main one).
Pipelines:
- ``default``: the shipped model with its own detector (the model file's ``faces`` settings) and the default
  backend (``auto``: ONNX Runtime from the export shipped beside the model); ``default-torch``: the same on PyTorch;
- the same model with each other detector (``--detector`` of predict); mmod (dlib's CNN, about 1 image/s here)
  only on the test split;
- `fer` (Haar + TFLite, its default, and MTCNN), one process each: it has no workers option.
Two image sets: the canonical test split (the test rows of benchmarks/splits/seed-emotions.csv: speed and
accuracy, the largest face's label, the whole image when no face is found; fer is scored by the argmax over our
five classes) and all 1,100 seed photos (speed and the share of photos where a face is found; most of them are
training images, so no accuracy there). Also classification alone: the largest face of each test image,
preprocessed, through the model in batches of 64 (ONNX Runtime, and PyTorch for reference).

Every pipeline runs in its own process, one after the other, after a warm-up (models loaded, the workers'
fork server started); each timed run with workers starts its 2 worker processes, as one `predict` run does. ``OMP_WAIT_POLICY=PASSIVE`` as ``emotionlab predict``
sets it (for fer too: its MTCNN runs on PyTorch); ``OMP_NUM_THREADS`` is left as the caller has it (unset:
each library's default) and saved. The CPU is shared: the load average (``os.getloadavg()``) is saved before
and after every pipeline; compare figures within one run only. `fer` runs in its own virtual environment
(--fer-venv; created on first use as /work/shared/notes/fer-peer-install.md says) through a small driver that
prints JSON; it decodes with ``cv2.imread`` as fer's README does (twice as fast as Pillow here; the seed PNGs
are RGBA but fully opaque, so the pixels are the same). Writes benchmarks/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import recorded

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "speed.json"
SPLIT_MANIFEST = REPO / "benchmarks" / "splits" / "seed-emotions.csv"
DEFAULT_FER_VENV = Path("/tmp/fer-venv")
WORKER_COUNTS = (0, 2)  # `emotionlab predict --workers`: 0 is one process
BATCH_SIZE = 32  # `emotionlab predict --batch-size` default
CLASSIFY_BATCH = 64
# fer's install (the note above): fer --no-deps, with pins; torch and facenet-pytorch only for its MTCNN mode.
FER_PACKAGES = [
    "tensorflow-cpu",
    "opencv-python-headless<5",
    "pandas",
    "pillow",
    "tqdm",
    "requests",
    "matplotlib",
]
FER_TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# Installing torch upgrades setuptools past the pin fer needs (it imports pkg_resources), so pin it in every step.
SETUPTOOLS_PIN = "setuptools<81"
# (name, detector: None for the model's own, backend, image sets)
BOTH = ("test", "all")
PIPELINES = [
    ("default", None, "auto", BOTH),
    ("default-torch", None, "torch", BOTH),
    ("hog", "hog", "torch", BOTH),
    ("haar", "haar", "torch", BOTH),
    ("cascade", "cascade", "torch", BOTH),
    ("blaze-full", "blaze-full", "torch", BOTH),
    ("mmod", "mmod", "torch", ("test",)),  # ~1 image/s: 1,100 photos would take 20 minutes per worker count
]
FER_MODES = ("haar", "mtcnn")
NOT_MEASURED = {"yunet": "needs a YuNet ONNX file that is not shipped (emotionlab data faces --yunet-model)"}


def data_root() -> Path:
    env = os.environ.get("EMOTIONLAB_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "datasets" / "seed-emotions"
    if not root.is_dir():
        sys.exit(f"{root}: seed dataset not found (set EMOTIONLAB_DATA)")
    return root


def image_sets(root: Path, limit: int | None) -> dict[str, list[dict]]:
    """{"test": the canonical test rows, "all": every photo of the manifest}, each as [{"path", "label"}], and
    "labels": the photos' classes."""
    from emotionlab.data.manifest import read_manifest

    samples = read_manifest(SPLIT_MANIFEST, root=root).samples
    rows = [{"path": str(s.path), "label": s.label, "split": s.split} for s in samples]
    sets = {"test": [row for row in rows if row["split"] == "test"], "all": rows}
    if limit:
        sets = {name: items[:limit] for name, items in sets.items()}
    return {**sets, "labels": sorted({row["label"] for row in rows})}  # the photos' classes


def peak_rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_rss_worker_mb": round(children, 1) if children else None}


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("nan")


def accuracy(predicted: list, items: list[dict]) -> float:
    return round(sum(p == item["label"] for p, item in zip(predicted, items, strict=True)) / len(items), 4)


# ---- emotionlab: one pipeline, in its own process ------------------------------------------------------


def measure_pipeline(args) -> dict:
    """Throughput of one pipeline on each image set, 1 process and 2 workers; accuracy, faces found."""
    from emotionlab.inference import load_recognizer

    sets = json.loads(Path(args.images).read_text())
    start = time.perf_counter()
    recognizer = load_recognizer(args.model, detector=args.detector, backend=args.backend)
    load_seconds = time.perf_counter() - start
    warm = [item["path"] for item in sets["test"][:8]]
    list(recognizer.predict_many(warm[:3]))  # detector models and thread pools load here
    list(recognizer.predict_many(warm, workers=2))  # the fork server starts here, outside the timing
    session = getattr(recognizer.classifier, "session", None)
    result = {
        "detector": recognizer.detector_name,
        "backend": recognizer.classifier.backend,  # what auto chose
        "labels": list(recognizer.labels),
        "prepare_threads": recognizer.prepare_threads(),  # threads preparing images beside the network (workers 0)
        "classifier_threads": session.get_session_options().intra_op_num_threads if session else None,
        "load_seconds": round(load_seconds, 2),
        "load_before": recorded.load_average(),
        "sets": {},
    }
    for set_name in args.sets.split(","):
        items = sets[set_name]
        paths = [item["path"] for item in items]
        entry: dict = {"images": len(paths)}
        records = {}
        for workers in WORKER_COUNTS:
            begin = time.perf_counter()
            records[workers] = list(recognizer.predict_many(paths, batch_size=BATCH_SIZE, workers=workers))
            seconds = time.perf_counter() - begin
            entry[f"images_per_s_workers{workers}"] = rate(len(paths), seconds)
            entry[f"seconds_workers{workers}"] = round(seconds, 2)
        one = records[0]
        found = sum(1 for r in one if "error" not in r and not r.get("no_face"))
        entry["faces_found"] = found
        entry["face_found_rate"] = round(found / len(one), 4)
        entry["errors"] = sum("error" in r for r in one)
        # The same images must get the same answers whichever way they were prepared.
        entry["labels_differing_with_workers"] = sum(
            a.get("label") != b.get("label") for a, b in zip(one, records[2], strict=True)
        )
        if set_name == "test":
            entry["accuracy"] = accuracy([r.get("label") for r in one], items)
            data_labels = sets["labels"]
            if set(recognizer.labels) - set(data_labels):
                # A model with classes the photos lack (e.g. neutral): also its answers among the photos'
                # classes (`predict --five`: the same argmax as restricting and renormalising).
                entry["accuracy_among_data_classes"] = accuracy(
                    [_best_among(r, data_labels) for r in one], items
                )
        result["sets"][set_name] = entry
    result["load_after"] = recorded.load_average()
    result.update(peak_rss_mb())
    return result


def _best_among(record: dict, labels: list[str]) -> str | None:
    probabilities = record.get("probabilities")
    if not probabilities:
        return None
    return max((name for name in labels if name in probabilities), key=probabilities.get, default=None)


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


def measure_classification(args) -> dict:
    """Faces/s of the model alone on preprocessed crops (the largest face of each test image)."""
    import numpy as np

    from emotionlab.inference import load_classifier, load_recognizer

    items = json.loads(Path(args.images).read_text())["test"]
    preparer = load_recognizer(args.model).preparer()
    prepared = [preparer(item["path"]) for item in items]
    kept = [(p, item) for p, item in zip(prepared, items, strict=True) if p.num_inputs]
    inputs = np.concatenate([p.inputs[:1] for p, _ in kept]).astype(np.float32)
    pool = np.concatenate([inputs] * (1 + 256 // len(inputs)))[:256]
    batches = [pool[i : i + CLASSIFY_BATCH] for i in range(0, len(pool), CLASSIFY_BATCH)]
    result = {"faces": len(inputs), "batch_size": CLASSIFY_BATCH, "load_before": recorded.load_average()}
    for backend in ("onnx", "torch"):
        classifier = load_classifier(args.model, backend=backend)
        rows = classifier.predict_inputs(inputs, batch_size=CLASSIFY_BATCH)
        labels = [classifier.labels[int(row.argmax())] for row in rows]
        result[backend] = {
            "faces_per_s": timed_loop(
                lambda c=classifier: [c.probabilities(batch) for batch in batches], len(pool), args.seconds
            ),
            "accuracy_on_crops": accuracy(labels, [item for _, item in kept]),
        }
    result["load_after"] = recorded.load_average()
    result.update(peak_rss_mb())
    return result


# ---- fer: its own venv and a driver --------------------------------------------------------------------

FER_DRIVER = r'''
import json, resource, sys, time, os
mode, images_file = sys.argv[1], sys.argv[2]
if mode == "mtcnn":  # torch (and torchvision) must be imported before tensorflow, or the process crashes
    import torch, torchvision, facenet_pytorch  # noqa: F401
import cv2
import numpy as np
from PIL import Image, ImageOps
from fer.fer import FER

KEEP = {"angry": "angry", "fear": "fearful", "happy": "happy", "sad": "sad", "surprise": "surprised"}


def load(path):
    """As fer's README reads images (BGR); Pillow only for what OpenCV cannot read."""
    array = cv2.imread(path)
    if array is None:
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        array = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    return array


def predict(detector, path):
    """(label of the largest face or of the whole image, whether a face was found)."""
    array = load(path)
    faces = detector.detect_emotions(array)
    found = bool(faces)
    if not faces:  # as emotionlab does: classify the whole image, and count it
        height, width = array.shape[:2]
        faces = detector.detect_emotions(array, face_rectangles=[(0, 0, width, height)])
    if not faces:
        return None, found
    largest = max(faces, key=lambda face: int(face["box"][2]) * int(face["box"][3]))
    return KEEP[max(KEEP, key=lambda name: largest["emotions"][name])], found


sets = json.loads(open(images_file).read())
start = time.perf_counter()
detector = FER(mtcnn=(mode == "mtcnn"))
load_seconds = time.perf_counter() - start
for item in sets["test"][:3]:
    predict(detector, item["path"])
result = {"mode": mode, "load_seconds": round(load_seconds, 2), "load_before": [round(v, 2) for v in os.getloadavg()], "sets": {}}
for name in sys.argv[3].split(","):
    items = sets[name]
    begin = time.perf_counter()
    answers = [predict(detector, item["path"]) for item in items]
    seconds = time.perf_counter() - begin
    found = sum(f for _, f in answers)
    entry = {"images": len(items), "images_per_s": round(len(items) / seconds, 1), "seconds": round(seconds, 2),
             "faces_found": found, "face_found_rate": round(found / len(items), 4)}
    if name == "test":
        entry["accuracy"] = round(sum(label == item["label"] for (label, _), item in zip(answers, items)) / len(items), 4)
    result["sets"][name] = entry
result["load_after"] = [round(v, 2) for v in os.getloadavg()]
result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(result))
'''


def ensure_fer_venv(venv: Path) -> Path:
    """The venv's python with fer importable (and torch + facenet-pytorch for MTCNN, when they install)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "from fer.fer import FER"]
    if python.exists() and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return python
    print(
        f"setting up fer in {venv} (first run only; tensorflow-cpu and torch download) ...", file=sys.stderr
    )
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *FER_PACKAGES, SETUPTOOLS_PIN], check=True)
    subprocess.run([*pip, "--no-deps", "fer"], check=True)
    if subprocess.run([*pip, *FER_TORCH, SETUPTOOLS_PIN], check=False).returncode == 0:
        subprocess.run([*pip, "--no-deps", "facenet-pytorch"], check=False)
    subprocess.run(probe, check=True, capture_output=True)
    return python


def fer_versions(python: Path) -> dict:
    code = "import fer, tensorflow, cv2; print(fer.__version__, tensorflow.__version__, cv2.__version__)"
    out = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True).stdout.split()
    return dict(zip(("fer", "tensorflow", "opencv"), out, strict=False))


def run_json(command: list, env: dict) -> dict:
    completed = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command[:4]))} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---- report --------------------------------------------------------------------------------------------


def ratios(results: dict) -> dict:
    """emotionlab's default pipeline over fer's fastest mode, on each set, 1 process and 2 workers."""
    default = results["emotionlab"].get("default", {}).get("sets", {})
    out = {}
    for set_name in BOTH:
        fer = {
            mode: entry["sets"][set_name]["images_per_s"]
            for mode, entry in results.get("fer", {}).items()
            if set_name in entry.get("sets", {})
        }
        if not fer or set_name not in default:
            continue
        fastest = max(fer, key=fer.get)
        out[set_name] = {
            "fer_fastest_mode": fastest,
            "fer_images_per_s": fer[fastest],
            **{
                f"workers{w}": round(default[set_name][f"images_per_s_workers{w}"] / fer[fastest], 2)
                for w in WORKER_COUNTS
            },
        }
    return out


def _accuracy_cell(entry: dict) -> str:
    cell = str(entry.get("accuracy", ""))
    if "accuracy_among_data_classes" in entry:
        cell += f" ({entry['accuracy_among_data_classes']} among the photos' classes)"
    return cell


def table(results: dict) -> str:
    """Markdown: one end-to-end table per image set, the ratios, and classification alone."""
    lines = []
    for set_name, title in (("test", "seed test split"), ("all", "all seed photos")):
        rows = []
        for name, entry in results["emotionlab"].items():
            if "error" in entry and set_name == "test":
                rows.append(f"| emotionlab {name} | | | error: {entry['error'][-60:]} | | | | |")
            if set_name not in entry.get("sets", {}):
                continue
            e = entry["sets"][set_name]
            backend = "ONNX Runtime" if entry["backend"] == "onnx" else "PyTorch"
            rows.append(
                f"| emotionlab {name} | {entry['detector']} | {backend} | {e['images_per_s_workers0']} "
                f"| {e['images_per_s_workers2']} | {_accuracy_cell(e)} | {e['face_found_rate']:.1%} "
                f"| {entry['peak_rss_mb']:.0f} |"
            )
        for mode, entry in results.get("fer", {}).items():
            if "error" in entry:
                rows.append(f"| fer {mode} | | | error: {entry['error'][:60]} | | | | |")
                continue
            if set_name not in entry.get("sets", {}):
                continue
            e = entry["sets"][set_name]
            detector, runtime = ("MTCNN", "TensorFlow + PyTorch") if mode == "mtcnn" else ("Haar", "TFLite")
            rows.append(
                f"| fer {mode} | {detector} | {runtime} | {e['images_per_s']} | | {e.get('accuracy', '')} "
                f"| {e['face_found_rate']:.1%} | {entry['peak_rss_mb']:.0f} |"
            )
        lines += [
            f"End to end, {title} ({results['images'][set_name]['count']} images):",
            "",
            (
                "| pipeline | detector | runtime | images/s, 1 process | images/s, --workers 2 | accuracy "
                "| face found | peak RSS (MB) |"
            ),
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    for set_name, r in results.get("ratio_default_to_fer_fastest", {}).items():
        lines.append(
            f"emotionlab default / fer's fastest ({r['fer_fastest_mode']}, {r['fer_images_per_s']} images/s), "
            f"{set_name}: {r['workers0']}x in 1 process, {r['workers2']}x with --workers 2"
        )
    classification = results.get("classification")
    if classification and "error" not in classification:
        lines += [
            "",
            (
                f"Classification alone ({classification['faces']} test faces, "
                f"batch {classification['batch_size']}): "
                f"ONNX Runtime {classification['onnx']['faces_per_s']:.0f} faces/s, "
                f"PyTorch {classification['torch']['faces_per_s']:.0f} faces/s "
                f"(accuracy on these crops {classification['onnx']['accuracy_on_crops']})"
            ),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    parser.add_argument("--pipelines", nargs="+", help="only these emotionlab pipelines (default: all)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="time per classification-alone measurement"
    )
    parser.add_argument("--skip-fer", action="store_true")
    parser.add_argument(
        "--fer-modes", nargs="+", choices=FER_MODES, default=list(FER_MODES), help="fer modes to run"
    )
    parser.add_argument("--fer-venv", type=Path, default=DEFAULT_FER_VENV)
    parser.add_argument("--limit", type=int, help="only the first N images of each set (quick checks)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--render", type=Path, help="only print the tables of a saved results JSON")
    # internal: one measurement in a child process
    parser.add_argument("--measure", choices=["pipeline", "classification"], help=argparse.SUPPRESS)
    parser.add_argument("--detector", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--sets", default="test,all", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure == "pipeline":
        print(json.dumps(measure_pipeline(args)))
        return
    if args.measure == "classification":
        print(json.dumps(measure_classification(args)))
        return
    if args.render:
        print(table(json.loads(args.render.read_text())))
        return

    from emotionlab import __version__
    from emotionlab.inference import DEFAULT_MODEL, physical_cores
    from emotionlab.models.io import read_metadata

    model = args.model or DEFAULT_MODEL
    if not model.is_file():
        sys.exit(f"{model}: no model; pass --model")
    metadata = read_metadata(model)
    sets = image_sets(data_root(), args.limit)
    work = Path(tempfile.mkdtemp(prefix="speed-"))
    images_file = work / "images.json"
    images_file.write_text(json.dumps(sets))

    import onnxruntime
    import torch

    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    results = {
        "what": "end to end (decode + detect + classify): emotionlab's pipelines against fer, in one run",
        "command": recorded.command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            **recorded.machine(),  # before
            "cpu": platform.processor() or platform.machine(),
            "physical_cores": physical_cores(),
            "uptime_before": subprocess.run(
                ["uptime"], check=False, capture_output=True, text=True
            ).stdout.strip(),
        },
        "environment": {
            "OMP_WAIT_POLICY": env["OMP_WAIT_POLICY"],
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),  # None: each library's default
            "batch_size": BATCH_SIZE,
        },
        "versions": {
            "emotionlab": __version__,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
        "model": {
            "path": str(model.resolve().relative_to(REPO) if model.resolve().is_relative_to(REPO) else model),
            "architecture": metadata["architecture"],
            "input_size": metadata["input_size"],
            "faces": metadata.get("faces"),
            "sha256": (metadata.get("sha256") or metadata.get("weights_sha256") or "")[:16],
        },
        "images": {
            "test": {
                "source": f"test rows of {SPLIT_MANIFEST.relative_to(REPO)}",
                "count": len(sets["test"]),
            },
            "all": {"source": f"every row of {SPLIT_MANIFEST.relative_to(REPO)}", "count": len(sets["all"])},
        },
        "emotionlab": {},
        "not_measured": NOT_MEASURED,
        "fer": {},
    }

    def emotionlab_pipeline(name, detector, backend, set_names):
        print(f"emotionlab {name} ...", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--measure", "pipeline", "--model", str(model)]
        command += ["--backend", backend, "--sets", ",".join(set_names), "--images", str(images_file)]
        if detector:
            command += ["--detector", detector]
        try:
            results["emotionlab"][name] = run_json(command, env)
        except RuntimeError as error:
            results["emotionlab"][name] = {"error": str(error)[-800:]}

    chosen = [p for p in PIPELINES if not args.pipelines or p[0] in args.pipelines]
    # The two figures the target compares run next to each other: emotionlab's default, then fer.
    for pipeline in chosen[:1]:
        emotionlab_pipeline(*pipeline)
    if not args.skip_fer:
        try:
            python = ensure_fer_venv(args.fer_venv)
            results["fer_versions"] = fer_versions(python)
            driver = work / "fer_driver.py"
            driver.write_text(FER_DRIVER)
            fer_env = {**env, "TF_CPP_MIN_LOG_LEVEL": "3"}
            for mode in args.fer_modes:
                print(f"fer {mode} ...", file=sys.stderr, flush=True)
                try:
                    command = [str(python), str(driver), mode, str(images_file), ",".join(BOTH)]
                    results["fer"][mode] = run_json(command, fer_env)
                except RuntimeError as error:
                    results["fer"][mode] = {"error": str(error)[-800:]}
        except subprocess.CalledProcessError as error:
            results["fer"] = {"setup": {"error": f"could not set up fer: {error}"}}
    for pipeline in chosen[1:]:
        emotionlab_pipeline(*pipeline)
    print("classification alone ...", file=sys.stderr, flush=True)
    command = [sys.executable, __file__, "--measure", "classification", "--model", str(model)]
    command += ["--images", str(images_file), "--seconds", str(args.seconds)]
    try:
        results["classification"] = run_json(command, env)
    except RuntimeError as error:
        results["classification"] = {"error": str(error)[-800:]}
    results["emotionlab"] = {k: v for k, v in results["emotionlab"].items() if "error" not in v} | {
        k: v for k, v in results["emotionlab"].items() if "error" in v
    }
    results["ratio_default_to_fer_fastest"] = ratios(results)
    results["machine"]["load_average_after"] = recorded.load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"model {results['model']['path']} ({metadata['architecture']}, {metadata['input_size']} px, "
        f"faces {metadata.get('faces')})"
    )
    machine = results["machine"]
    print(f"load average before {machine['load_average']}, after {machine['load_average_after']}")
    print(table(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
