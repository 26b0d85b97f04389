"""Fetch ONNX Runtime Web (pinned) from npm into the folder `emotionlab export --web` copies it from.

    python scripts/vendor_onnxruntime_web.py [--force]   # or: make web-vendor (make test runs it)

Runs ``npm pack onnxruntime-web@VERSION`` (the npm registry, the ordinary client), checks the tarball against
the pinned sha512 integrity npm publishes, and keeps only the wasm-only build the page needs: ``ort.wasm.min.js``
and the single-threaded-capable SIMD runtime (``.mjs`` + ``.wasm``), about 12 MB of the package's 100 MB.
Nothing is fetched at export time or by the page: the exported folder carries these files itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from emotionlab.web.site import ORT_WEB_FILES, ORT_WEB_INTEGRITY, ORT_WEB_VERSION, VENDOR


def vendored(target: Path = VENDOR) -> bool:
    """Whether ``target`` already holds the pinned version's files."""
    version = target / "VERSION"
    return (
        all((target / name).is_file() for name in ORT_WEB_FILES)
        and version.is_file()
        and ORT_WEB_INTEGRITY in version.read_text(encoding="utf-8")
    )


def vendor(target: Path = VENDOR) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("error: npm not found: install Node.js 20 and npm (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory() as folder:
        packed = subprocess.run(
            [npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--json", "--pack-destination", folder],
            cwd=folder,
            check=True,
            capture_output=True,
            text=True,
        )
        tarball = Path(folder) / json.loads(packed.stdout)[0]["filename"]
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if digest != ORT_WEB_INTEGRITY:
            sys.exit(f"error: {tarball.name}: sha512 {digest} is not the pinned {ORT_WEB_INTEGRITY}")
        staging = Path(folder) / "staging"
        staging.mkdir()
        with tarfile.open(tarball) as archive:
            for name in ORT_WEB_FILES:
                member = archive.getmember(f"package/dist/{name}")
                source = archive.extractfile(member)
                (staging / name).write_bytes(source.read())
        (staging / "VERSION").write_text(
            f"onnxruntime-web {ORT_WEB_VERSION} (MIT licence, Microsoft), npm integrity {ORT_WEB_INTEGRITY}\n",
            encoding="utf-8",
        )
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, target)
    return target


if __name__ == "__main__":
    if vendored() and "--force" not in sys.argv:
        print(f"onnxruntime-web {ORT_WEB_VERSION} already vendored in {VENDOR}")
        sys.exit(0)
    path = vendor()
    size = sum(file.stat().st_size for file in path.iterdir()) / 1e6
    print(f"vendored onnxruntime-web {ORT_WEB_VERSION} into {path} ({size:.1f} MB)")
