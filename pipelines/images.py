"""Turning whatever was uploaded into a safe, upright RGB picture of bounded size."""

from __future__ import annotations

import os
from typing import Any

from .errors import InvalidInputError
from . import settings

MAX_SIDE = 1024  # BLIP sees 384×384; a larger picture only costs memory


def max_pixels() -> int:
    """The largest picture accepted, in pixels (``MODELDECK_MAX_IMAGE_PIXELS``, default 50 million)."""
    return settings.get("MODELDECK_MAX_IMAGE_PIXELS")


def _too_large(pixels: int) -> InvalidInputError:
    return InvalidInputError(
        f"图片太大（{pixels / 1e6:.0f} 百万像素），上限为 {max_pixels() / 1e6:.0f} 百万像素。请缩小后再上传。",
        f"The picture is too large ({pixels / 1e6:.0f} megapixels; the limit is {max_pixels() / 1e6:.0f}). "
        "Resize it and upload again.")


def use_own_pixel_limit() -> None:
    """Let MODELDECK_MAX_IMAGE_PIXELS, checked before decoding, be the only picture-size limit."""
    # PIL refuses pictures above 2 × its own limit (178 MP) at open(), with an exception the UI
    # cannot explain; our limit is checked first, from the header, with a message that can.
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None


def need_picture(image: Any) -> None:
    """Refuse a missing picture, saying what to do."""
    if image is None or (isinstance(image, str) and not image.strip()):
        raise InvalidInputError("请先上传一张图片。", "Upload a picture first.")


def check_picture(image: Any) -> None:
    """Refuse a missing picture, a file that is no picture and one above ``max_pixels()``, from its header only.

    The checks ``load_image`` makes, done before any work starts (the tab's check step, the upload)."""
    from PIL import Image, UnidentifiedImageError

    need_picture(image)
    if not isinstance(image, (str, os.PathLike)):
        return
    use_own_pixel_limit()
    try:
        with Image.open(image) as opened:  # reads the header, not the pixels
            pixels = opened.width * opened.height
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _unreadable() from exc
    if pixels > max_pixels():
        raise _too_large(pixels)


def _unreadable() -> InvalidInputError:
    return InvalidInputError("无法读取这张图片：文件损坏或不是图片。请换一张 JPG/PNG/WebP 图片。",
                             "This file cannot be read as a picture (corrupt or not an image). "
                             "Try another JPG, PNG or WebP file.")


def load_image(image: Any) -> Any:
    """Return an RGB ``PIL.Image`` no larger than ``MAX_SIDE``, EXIF-rotated, first frame only.

    ``image`` is a PIL image or a file path. Corrupt files, non-images and pictures above
    ``max_pixels()`` raise ``InvalidInputError`` before their pixels are decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    use_own_pixel_limit()
    need_picture(image)
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                return load_image(_decoded(opened))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise _unreadable() from exc
    if not isinstance(image, Image.Image):
        raise InvalidInputError("图片格式不受支持。", "This kind of picture is not supported.")
    pixels = image.width * image.height
    if pixels > max_pixels():
        raise _too_large(pixels)
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image) or image
    image = _to_rgb(image)
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image


def _decoded(opened: Any) -> Any:
    """Decode a freshly opened file, refusing oversized pictures before their pixels are read."""
    pixels = opened.width * opened.height
    if pixels > max_pixels():
        raise _too_large(pixels)
    if opened.format == "JPEG":
        opened.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode large JPEGs at reduced scale
    opened.load()
    if getattr(opened, "is_animated", False):
        opened.seek(0)
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(opened)
    return (upright or opened).copy()


def _to_rgb(image: Any) -> Any:
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        data = np.asarray(image, dtype=np.float64)
        span = float(data.max() - data.min()) or 1.0
        image = Image.fromarray(((data - data.min()) / span * 255).astype("uint8"))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image
