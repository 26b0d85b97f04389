"""Every file of a folder run is accounted for: scored (or an error record), named as not scored, or counted as
junk (hidden and system files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from emotionlab.data.images import list_inputs


def photo_folder(root: Path) -> Path:
    folder = root / "photos"
    (folder / "trip" / ".thumbnails").mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 150, 120)).save(folder / "trip" / "beach.jpg")
    (folder / "broken.png").symlink_to(root / "synced-elsewhere" / "gone.png")  # a dangling link
    (folder / "notes.txt").write_text("shot list")
    (folder / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    for junk in (".DS_Store", "._beach.jpg", "Thumbs.db", "trip/.thumbnails/beach.png"):
        (folder / junk).write_bytes(b"junk")
    return folder


def test_a_folder_lists_photos_and_broken_links_names_other_files_and_counts_junk(tmp_path):
    folder = photo_folder(tmp_path)
    listing = list_inputs([folder])
    assert listing.files == [folder / "broken.png", folder / "trip" / "beach.jpg"]
    assert listing.not_images == [folder / "IMG_0001.HEIC", folder / "notes.txt"]
    assert listing.junk == 4
    assert listing.summary() == [
        f"not scored: 2 file(s) not named as an image or video: {folder / 'IMG_0001.HEIC'}, {folder / 'notes.txt'}",
        "skipped 4 hidden or system file(s) (.DS_Store, Thumbs.db, dot-files)",
    ]


def test_predict_on_a_folder_names_every_file_it_does_not_score(tmp_path):
    folder = photo_folder(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "emotionlab", "predict", str(folder), "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = {Path(record["path"]).name: record for record in map(json.loads, result.stdout.splitlines())}
    assert set(records) == {"beach.jpg", "broken.png"}
    assert "broken symbolic link" in records["broken.png"]["error"]
    assert "not scored: 2 file(s)" in result.stderr and "notes.txt" in result.stderr
    assert "IMG_0001.HEIC" in result.stderr and "skipped 4 hidden or system file(s)" in result.stderr
