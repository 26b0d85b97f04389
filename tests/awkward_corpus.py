"""A corpus of awkward files, made by code: every kind of file a user's photo folder can hold that is not a
plain photo (empty, truncated, lying extensions, extreme sizes, bombs, odd modes, EXIF rotations, special
files, odd names, videos). Used by tests/test_awkward_files.py and benchmarks/awkward_files.py.

``write_corpus(folder)`` writes one file (or special entry) per kind and returns the kinds with what a reader
must make of each: ``"ok"`` (a usable image: predicted), ``"error"`` (one error record) or ``"any"`` (either,
e.g. a valid but degenerate image whose outcome depends on the detector).
"""

from __future__ import annotations

import importlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

OK, ERROR, ANY = "ok", "error", "any"


@dataclass(frozen=True)
class Kind:
    """One kind of awkward file: its file name in the corpus and the outcome a reader must give."""

    name: str  # the file's name (str, or bytes for names that are not UTF-8)
    expect: str  # OK, ERROR or ANY
    what: str


def _face(size: int = 160, seed: int = 0) -> Image.Image:
    from emotionlab.synthetic import make_face

    return make_face("happy", np.random.default_rng(seed), size)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    if fmt in ("PPM", "ICO"):  # emotionlab never loads these plugins; the corpus writes such files on purpose
        importlib.import_module(f"PIL.{fmt.capitalize()}ImagePlugin")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds one tiny IDAT: a decompression-bomb header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _zero_png(width: int, height: int) -> bytes:
    """A valid all-black greyscale PNG of any size, compressed row by row (a 12000 x 12000 one is ~150 KB)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def _exif_rotated(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(_face(seed=orientation).resize((160, 120)), "JPEG", quality=90, exif=exif.tobytes())


def _huge_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a JPEG APP1 segment holds at most 64 KB
    exif[0x0112] = 1
    return _encode(_face(), "JPEG", exif=exif.tobytes())


def _video(frames: int = 6, size: tuple[int, int] = (96, 64)) -> bytes:
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, size)
        for index in range(frames):
            frame = np.full((size[1], size[0], 3), 40 * index % 255, dtype=np.uint8)
            writer.write(frame)
        writer.release()
        return path.read_bytes()


def _multipage_tiff() -> bytes:
    pages = [_face(seed=seed) for seed in range(3)]
    return _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _animated_gif() -> bytes:
    frames = [_face(seed=seed).convert("P") for seed in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _palette_transparent() -> bytes:
    image = _face().convert("P")
    return _encode(image, "PNG", transparency=0)


def _corrupt_tiff() -> bytes:
    data = bytearray(_encode(_face(), "TIFF"))
    data[8:40] = b"\xff" * 32  # scramble the first directory's entries
    return bytes(data)


def _eps() -> bytes:
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n"
        b"newpath 10 10 moveto 90 90 lineto stroke showpage\n%%EOF\n"
    )


def _postscript() -> bytes:
    return b"%!PS\n/Helvetica findfont 12 scalefont setfont 10 10 moveto (photo) show showpage\n"


def _pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims another size (a bomb header)."""
    data = bytearray(_encode(_face(64), "JPEG"))
    marker = data.find(b"\xff\xc0")
    data[marker + 5 : marker + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_text_bomb() -> bytes:
    """A PNG with a zTXt chunk that inflates to 64 MB."""
    png = _encode(_face(64), "PNG")
    text = b"Comment\0\0" + zlib.compress(b"\0" * (64 << 20), 9)
    end = png.rfind(b"IEND") - 4
    return png[:end] + _png_chunk(b"zTXt", text) + png[end:]


def _bad_crc() -> bytes:
    data = bytearray(_encode(_face(), "PNG"))
    idat = data.find(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    data[idat + 4 + length] ^= 0xFF  # first byte of the IDAT chunk's CRC
    return bytes(data)


def _truncate(data: bytes, fraction: float) -> bytes:
    return data[: max(1, int(len(data) * fraction))]


def _rgb(width: int, height: int, value: int | None = None) -> Image.Image:
    if value is not None:
        return Image.new("RGB", (width, height), (value, value, value))
    rng = np.random.default_rng(width * 7 + height)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def file_kinds() -> list[tuple[Kind, bytes]]:
    """(kind, bytes) for every kind that is a plain file."""
    face = _face()
    png, jpeg = _encode(face, "PNG"), _encode(face, "JPEG", quality=90)
    kinds: list[tuple[Kind, bytes]] = [
        (Kind("good.png", OK, "a plain face photo (control)"), png),
        (Kind("good.jpg", OK, "a plain face JPEG (control)"), jpeg),
        (Kind("empty.jpg", ERROR, "0 bytes"), b""),
        (Kind("one_byte.png", ERROR, "1 byte"), b"\x89"),
        (Kind("random_bytes.jpg", ERROR, "random bytes named .jpg"), np.random.default_rng(0).bytes(4096)),
        (Kind("text.png", ERROR, "a text file named .png"), b"hello, I am not an image\n" * 10),
        (Kind("html.png", ERROR, "an HTML page named .png"), b"<!doctype html><html><body>404</body></html>"),
        (
            Kind("svg.png", ERROR, "an SVG named .png"),
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        ),
        (Kind("pdf.jpg", ERROR, "a PDF named .jpg"), _pdf()),
        (Kind("eps.jpg", ERROR, "an EPS named .jpg (must never reach Ghostscript)"), _eps()),
        (Kind("ps.png", ERROR, "PostScript named .png (must never reach Ghostscript)"), _postscript()),
        (Kind("video.png", ERROR, "an MP4 video named .png"), _video()),
        (Kind("truncated_png_8.png", ERROR, "PNG cut after the signature"), png[:8]),
        (Kind("truncated_png_33.png", ERROR, "PNG cut after IHDR"), png[:33]),
        (Kind("truncated_png_50.png", ERROR, "PNG cut at half"), _truncate(png, 0.5)),
        (Kind("truncated_png_95.png", ERROR, "PNG cut at 95%"), _truncate(png, 0.95)),
        (Kind("truncated_jpeg_2.jpg", ERROR, "JPEG: only the SOI marker"), jpeg[:2]),
        (Kind("truncated_jpeg_header.jpg", ERROR, "JPEG cut inside the headers"), jpeg[:200]),
        (Kind("truncated_jpeg_50.jpg", ERROR, "JPEG cut at half"), _truncate(jpeg, 0.5)),
        (Kind("truncated_jpeg_95.jpg", ERROR, "JPEG cut at 95%"), _truncate(jpeg, 0.95)),
        (Kind("bad_crc.png", ANY, "PNG with a wrong IDAT CRC (the pixels are intact)"), _bad_crc()),
        (Kind("jpeg_named.png", OK, "a JPEG named .png"), jpeg),
        (Kind("png_named.jpg", OK, "a PNG named .jpg"), png),
        (Kind("gif_named.jpg", OK, "a GIF named .jpg"), _encode(face.convert("P"), "GIF")),
        (Kind("trailing_garbage.png", OK, "a PNG followed by garbage"), png + b"garbage" * 100),
        (Kind("jpeg_after_eoi.jpg", OK, "a JPEG followed by garbage"), jpeg + b"\0garbage" * 100),
        (Kind("tiny_1x1.png", ANY, "1 x 1"), _encode(_rgb(1, 1), "PNG")),
        (Kind("tiny_2x2.png", ANY, "2 x 2"), _encode(_rgb(2, 2), "PNG")),
        (Kind("strip_1x5000.png", ANY, "1 x 5000"), _encode(_rgb(1, 5000), "PNG")),
        (Kind("strip_5000x1.png", ANY, "5000 x 1"), _encode(_rgb(5000, 1), "PNG")),
        (Kind("strip_10x4000.png", ANY, "10 x 4000 (crashed dlib's CNN)"), _encode(_rgb(10, 4000), "PNG")),
        (Kind("strip_4000x10.png", ANY, "4000 x 10 (dlib RuntimeError)"), _encode(_rgb(4000, 10), "PNG")),
        (Kind("strip_8x640.png", ANY, "8 x 640 (crashed dlib's CNN)"), _encode(_rgb(8, 640), "PNG")),
        (Kind("strip_10x1000.png", ANY, "10 x 1000 (crashed dlib's CNN)"), _encode(_rgb(10, 1000), "PNG")),
        (Kind("strip_640x8.png", ANY, "640 x 8"), _encode(_rgb(640, 8), "PNG")),
        (
            Kind("zero_12000x12000.png", ERROR, "12000 x 12000 black (144 MP, ~150 KB)"),
            _zero_png(12000, 12000),
        ),
        (
            Kind("bomb_header.png", ERROR, "PNG header claiming 100000 x 100000"),
            _png_header_only(100_000, 100_000),
        ),
        (
            Kind("bomb_header.jpg", ERROR, "JPEG frame claiming 60000 x 60000"),
            _jpeg_declaring(60_000, 60_000),
        ),
        (Kind("text_bomb.png", ANY, "PNG with a zTXt chunk inflating to 64 MB"), _png_text_bomb()),
        (
            Kind("grey16.png", OK, "16-bit greyscale"),
            _encode(
                Image.fromarray((np.asarray(face.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)),
                "PNG",
            ),
        ),
        (Kind("palette_transparent.png", OK, "palette with transparency"), _palette_transparent()),
        (Kind("la.png", OK, "grey + alpha (LA)"), _encode(face.convert("LA"), "PNG")),
        (Kind("rgba.png", OK, "RGBA"), _encode(face.convert("RGBA"), "PNG")),
        (Kind("bilevel.png", OK, "1-bit"), _encode(face.convert("1"), "PNG")),
        (Kind("grey.jpg", OK, "greyscale JPEG"), _encode(face.convert("L"), "JPEG")),
        (Kind("cmyk.jpg", OK, "CMYK JPEG"), _encode(face.convert("CMYK"), "JPEG")),
        (Kind("progressive.jpg", OK, "progressive JPEG"), _encode(face, "JPEG", progressive=True)),
        *[
            (Kind(f"exif_orientation_{o}.jpg", OK, f"EXIF orientation {o}"), _exif_rotated(o))
            for o in range(1, 9)
        ],
        (Kind("huge_exif.jpg", OK, "60 KB of EXIF"), _huge_exif()),
        (Kind("animated.gif", OK, "animated GIF (first frame)"), _animated_gif()),
        (Kind("multipage.tif", OK, "multi-page TIFF (first page)"), _multipage_tiff()),
        (
            Kind("float.tif", OK, "32-bit float TIFF"),
            _encode(Image.fromarray(np.asarray(face.convert("L"), dtype=np.float32) / 255), "TIFF"),
        ),
        (Kind("corrupt.tif", ERROR, "TIFF with a scrambled directory"), _corrupt_tiff()),
        (Kind("face.webp", OK, "WebP"), _encode(face, "WEBP")),
        (Kind("face.bmp", OK, "BMP"), _encode(face, "BMP")),
        (Kind("face.ppm", ERROR, "PPM (outside the decoder allow-list)"), _encode(face, "PPM")),
        (Kind("ico_named.png", ERROR, "an ICO named .png (outside the allow-list)"), _encode(face, "ICO")),
        (Kind("all_black.png", OK, "all black"), _encode(_rgb(256, 256, 0), "PNG")),
        (Kind("all_white.jpg", OK, "all white"), _encode(_rgb(256, 256, 255), "JPEG")),
        (
            Kind("large_4000x3000.jpg", OK, "a 12 MP JPEG"),
            _encode(face.resize((4000, 3000)), "JPEG", quality=85),
        ),
        (Kind("with space and, comma.png", OK, "spaces and a comma in the name"), png),
        (Kind("new\nline.png", OK, "a newline in the name"), png),
        (Kind("-rf.png", OK, "a name that looks like an option"), png),
        (Kind("ünïcødé 😀.png", OK, "non-ASCII name"), png),
        (Kind("x" * 240 + ".png", OK, "a 244-character name"), png),
        (Kind(b"latin1_\xe9\xff.png", OK, "a file name that is not UTF-8"), png),  # type: ignore[arg-type]
    ]
    return kinds


SPECIAL = (
    Kind("folder.jpg", ANY, "a directory named .jpg (its contents are scanned)"),
    Kind("loop.jpg", ERROR, "a symbolic-link loop"),
    Kind("dangling.jpg", ERROR, "a broken symbolic link"),
    Kind("fifo.jpg", ERROR, "a FIFO (reading it would block for ever)"),
    Kind("unreadable.jpg", ERROR, "chmod 000 (readable anyway when run as root)"),
)

VIDEO_KINDS = (
    ("good.mp4", OK, "a short MP4"),
    ("truncated.mp4", ANY, "an MP4 cut at 60%"),
    ("empty.mp4", ERROR, "0 bytes"),
    ("random.avi", ERROR, "random bytes named .avi"),
    ("image_named.mp4", ANY, "a PNG named .mp4"),
)


def _name(kind: Kind) -> str:
    return os.fsdecode(kind.name) if isinstance(kind.name, bytes) else kind.name


def write_corpus(folder: str | Path, *, special: bool = True) -> dict[str, Kind]:
    """Write every kind into ``folder`` (created); returns file name (str, as listed by Python) -> kind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Kind] = {}
    for kind, data in file_kinds():
        path = folder / _name(kind)
        path.write_bytes(data)
        written[path.name] = kind
    if special:
        for kind in SPECIAL:
            path = folder / kind.name
            if kind.name == "folder.jpg":
                path.mkdir()
            elif kind.name == "loop.jpg":
                os.symlink("loop_b.jpg", path)
                os.symlink("loop.jpg", folder / "loop_b.jpg")
                written["loop_b.jpg"] = Kind("loop_b.jpg", ERROR, "the loop's other link")
            elif kind.name == "dangling.jpg":
                os.symlink("does-not-exist.jpg", path)
            elif kind.name == "fifo.jpg":
                os.mkfifo(path)
            elif kind.name == "unreadable.jpg":
                path.write_bytes(_encode(_face(), "JPEG"))
                path.chmod(0)
                if os.geteuid() == 0:  # root reads it anyway
                    kind = Kind(kind.name, OK, kind.what)
            written[path.name] = kind
    return written


def write_videos(folder: str | Path) -> dict[str, str]:
    """A folder of videos, good and bad; returns file name -> expected outcome."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    video = _video(frames=10)
    data = {
        "good.mp4": video,
        "truncated.mp4": video[: int(len(video) * 0.6)],
        "empty.mp4": b"",
        "random.avi": np.random.default_rng(1).bytes(20_000),
        "image_named.mp4": _encode(_face(), "PNG"),
    }
    for name, payload in data.items():
        (folder / name).write_bytes(payload)
    return {name: expect for name, expect, _ in VIDEO_KINDS}


def kinds_count() -> int:
    return len(file_kinds()) + len(SPECIAL) + len(VIDEO_KINDS)


def snapshot(root: str | Path) -> dict[str, tuple]:
    """Every entry under ``root`` (without following links): type, size, mtime, mode and a content hash for
    regular files. Equal before and after a command means the command changed nothing there."""
    import hashlib
    import stat

    record = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, "."] if dirpath == str(root) else [*dirnames, *filenames]:
            path = Path(dirpath) / name
            info = os.lstat(path)
            key = os.fsencode(path.relative_to(root).as_posix())
            digest = None
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o444:
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except PermissionError:
                    digest = "unreadable"
            record[key] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns, info.st_mode, digest)
    return record
