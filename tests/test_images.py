"""Reading images: any mode to RGB, EXIF rotation, format from bytes, and one-line errors for bad files."""

import io

import numpy as np
import pytest
from PIL import Image

from emotionlab.data.images import ImageReadError, read_image


def _save(image: Image.Image, path, fmt: str, **options):
    image.save(path, format=fmt, **options)
    return path


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "L", "CMYK", "I;16", "1", "RGB"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    base = Image.new("RGB", (20, 10), (200, 30, 30))
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    image = (
        base.convert(mode) if mode != "I;16" else Image.fromarray(np.full((10, 20), 40000, dtype=np.uint16))
    )
    path = _save(image, tmp_path / f"x.{fmt.lower()}", fmt)
    result = read_image(path)
    assert result.mode == "RGB" and result.size == (20, 10)


def test_transparent_pixels_become_white_not_black(tmp_path):
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    result = read_image(_save(image, tmp_path / "t.png", "PNG"))
    assert result.getpixel((3, 3)) == (255, 255, 255)


def test_an_opaque_alpha_channel_keeps_every_colour_and_a_translucent_one_is_blended(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8))
    opaque = read_image(_save(rgb.convert("RGBA"), tmp_path / "o.png", "PNG"))
    assert np.array_equal(np.asarray(opaque), np.asarray(rgb))
    translucent = rgb.convert("RGBA")
    translucent.putpixel((0, 0), (0, 0, 0, 128))  # one half-transparent black pixel: half way to white
    result = read_image(_save(translucent, tmp_path / "h.png", "PNG"))
    assert result.getpixel((0, 0)) in ((127, 127, 127), (128, 128, 128))
    assert np.array_equal(np.asarray(result)[1:], np.asarray(rgb)[1:])


def test_sixteen_bit_keeps_contrast(tmp_path):
    array = np.zeros((10, 10), dtype=np.uint16)
    array[:, 5:] = 60000
    result = np.asarray(read_image(_save(Image.fromarray(array), tmp_path / "d.png", "PNG")))
    assert result[0, 0, 0] == 0 and result[0, 9, 0] == 255


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(image, tmp_path / "r.jpg", "JPEG", exif=exif)
    assert read_image(path).size == (20, 40)


def test_format_comes_from_bytes_not_extension(tmp_path):
    path = _save(Image.new("RGB", (9, 9), "blue"), tmp_path / "lying.jpg", "PNG")
    assert read_image(path).size == (9, 9)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am text", "not an image"),
        ("truncated", "truncated"),
        ("corrupt", "corrupt"),
    ],
)
def test_bad_files_raise_one_line_error_with_path(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    if content == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            buffer, "PNG"
        )
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif content == "corrupt":
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            buffer, "PNG"
        )
        data = bytearray(buffer.getvalue())
        data[100:400] = b"\x00" * 300  # inside the compressed pixel data: header intact, pixels broken
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(content)
    with pytest.raises(ImageReadError) as error:
        read_image(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert reason in message


def test_pixel_limit_guards_against_decompression_bombs(tmp_path):
    path = _save(Image.new("L", (3000, 3000)), tmp_path / "big.png", "PNG")
    with pytest.raises(ImageReadError, match="too large"):
        read_image(path, max_pixels=1_000_000)
    assert read_image(path).size == (3000, 3000)
