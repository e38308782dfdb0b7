"""Every kind of upload becomes an upright RGB picture of bounded size, or a clear refusal."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipelines as p
from pipelines.images import MAX_SIDE


def save(tmp_path: Path, name: str, image: Image.Image, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return str(path)


def bomb_png(path: Path, width: int, height: int) -> str:
    """A valid PNG header claiming width × height pixels, with almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return str(path)


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGBA", (50, 40), (255, 0, 0, 0)),
    lambda: Image.new("RGB", (50, 40), "red").convert("P", palette=Image.Palette.ADAPTIVE),
    lambda: Image.new("L", (50, 40), 128),
    lambda: Image.new("CMYK", (50, 40), (0, 100, 100, 0)),
    lambda: Image.fromarray(np.arange(2000, dtype=np.uint16).reshape(40, 50) * 30, mode="I;16"),
    lambda: Image.new("1", (50, 40)),
    lambda: Image.new("RGB", (1, 1), "blue"),
])
def test_every_mode_becomes_rgb(make):
    picture = p.load_image(make())
    assert picture.mode == "RGB" and picture.size[0] >= 1


def test_transparent_pixels_become_white():
    picture = p.load_image(Image.new("RGBA", (4, 4), (255, 0, 0, 0)))
    assert picture.getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotated_photo_is_captioned_upright(tmp_path):
    wide = Image.new("RGB", (60, 30), "green")
    exif = wide.getexif()
    exif[274] = 6  # "rotate 90° clockwise to view"
    path = save(tmp_path, "rotated.jpg", wide, exif=exif)
    assert p.load_image(path).size == (30, 60)


def test_animated_gif_uses_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue", "green")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    picture = p.load_image(str(path))
    assert picture.getpixel((5, 5))[0] > 200  # red


def test_large_pictures_are_downscaled(tmp_path):
    path = save(tmp_path, "big.jpg", Image.new("RGB", (4000, 3000), "white"))
    assert max(p.load_image(path).size) <= MAX_SIDE


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = bomb_png(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(p.InvalidInputError) as err:
        p.load_image(path)
    assert "too large" in str(err.value)


@pytest.mark.parametrize("content", [b"this is not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 30])
def test_non_images_and_truncated_files_are_refused(tmp_path, content):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(p.InvalidInputError) as err:
        p.load_image(str(path))
    assert "cannot be read" in str(err.value)


def test_truncated_jpeg_is_refused(tmp_path):
    good = Path(save(tmp_path, "good.jpg", Image.new("RGB", (200, 200), "red")))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(p.InvalidInputError):
        p.load_image(str(cut))


def test_missing_picture_is_a_clear_error():
    with pytest.raises(p.InvalidInputError) as err:
        p.load_image(None)
    assert "Upload a picture" in str(err.value)
