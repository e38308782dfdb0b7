"""The picture-story tab's upload box: a ``gr.Image`` that names a file that is not a picture."""

from __future__ import annotations

from typing import Any

import gradio as gr

from pipelines.errors import InvalidInputError

NOT_A_PICTURE = InvalidInputError("无法读取这张图片：文件损坏或不是图片。请换一张 JPG/PNG/WebP 图片。",
                                  "This file cannot be read as a picture (corrupt or not an image). Try another "
                                  "JPG, PNG or WebP file.")


class PictureInput(gr.Image):
    """A ``gr.Image`` (use ``type="filepath", image_mode=None``) that hands the upload's path on undecoded and explains unreadable files.

    gradio opens an upload with PIL before our code runs; a file that is not a picture would fail there with a
    bare "Error". Size checks and decoding happen in ``pipelines.load_image``. A class, not a patched instance:
    once an event updates the box (a restored story), gradio keeps a fresh copy of it for that page, built from
    its class (``is_template``: the page draws it as an Image), and an instance's patch would be gone.
    """

    is_template = True  # no __init__ of its own: gradio reads the page's settings from the signature

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except Exception as exc:  # PIL's UnidentifiedImageError, OSError, …
            raise gr.Error(str(NOT_A_PICTURE), print_exception=False) from exc
