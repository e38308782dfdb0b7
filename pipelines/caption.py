"""Describe a picture in English (BLIP) and in Chinese (Marian translation)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .engine import engine
from .errors import ModelUnavailableError, PipelineError
from .images import load_image
from .streaming import has_cjk
from .windows import input_window

log = logging.getLogger(__name__)

DEFAULT_TRANSLATE_PREFIX = ">>cmn_Hans<<"  # opus-mt-en-zh's target token for simplified Mandarin
CAPTION_TOKENS = 30  # BLIP's captions are one sentence; a short cap keeps greedy decoding from rambling
TRANSLATION_TOKENS = 96  # a one-sentence caption in Chinese, with room to spare


@dataclass
class Caption:
    """A picture's description: ``en`` from the captioner, ``zh`` in Chinese (may be empty)."""

    en: str
    zh: str
    notices: list[str] = field(default_factory=list)

    @property
    def best(self) -> str:
        """The Chinese caption when there is one, else the English one."""
        return self.zh or self.en


def translate_to_chinese(text: str) -> str:
    """Return ``text`` translated into Chinese by the translator model."""
    import torch

    loaded = registry.get_model("translator")
    tokenizer = loaded.processor
    prefix = os.environ.get("MODELDECK_TRANSLATE_PREFIX", DEFAULT_TRANSLATE_PREFIX).strip()
    # Prepend the target-language token only when this vocabulary has it as one token.
    if prefix and tokenizer.convert_tokens_to_ids(prefix) not in (None, tokenizer.unk_token_id):
        text = f"{prefix} {text}"
    # The encoder reads the source within its window; the decoder writes after its start token.
    enc = tokenizer([text], return_tensors="pt", truncation=True, max_length=input_window(loaded)).to(loaded.device)
    most = min(TRANSLATION_TOKENS, input_window(loaded, room_for_output=1))

    def translate() -> Any:
        with torch.inference_mode():  # greedy: half the time of the default 4 beams, same quality on captions
            return loaded.model.generate(**enc, max_new_tokens=most, num_beams=1, do_sample=False)

    return tokenizer.decode(engine.call(translate)[0], skip_special_tokens=True).strip()


def english_caption(image: Any, *, max_new_tokens: int = CAPTION_TOKENS) -> str:
    """Return the captioner's description of ``image`` (a PIL image or a file path)."""
    import torch

    picture = load_image(image)
    loaded = registry.get_model("captioner")
    most = min(max_new_tokens, input_window(loaded, room_for_output=1))  # the decoder starts with [DEC]

    def describe() -> Any:  # the image's conversion to a tensor is torch work too: all of it on the engine
        inputs = loaded.processor(images=picture, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(loaded.device, dtype=next(loaded.model.parameters()).dtype)
        with torch.inference_mode():  # greedy with a short cap: as good as beams here, and faster
            return loaded.model.generate(pixel_values=pixel_values, max_new_tokens=most, num_beams=1,
                                         do_sample=False)

    return loaded.processor.decode(engine.call(describe)[0], skip_special_tokens=True).strip()


def add_chinese(caption: Caption) -> Caption:
    """Fill ``caption.zh`` by translation; a translation that fails for any reason leaves a notice instead."""
    if caption.zh or not caption.en:
        return caption
    try:
        caption.zh = translate_to_chinese(caption.en)
    except Exception as exc:  # the English caption is still useful: never lose it to a later step
        if isinstance(exc, PipelineError):
            log.warning("translation failed: %s", exc)
        else:
            log.exception("translation failed")
        model = f" ({exc.model})" if isinstance(exc, ModelUnavailableError) else ""
        caption.notices.append(f"翻译失败，只显示英文描述。 / The translation failed; showing the English caption "
                               f"only.{model}")
    return caption


def from_text(text: str) -> Caption:
    """A caption from the captioner's text: Chinese text is kept as the Chinese caption."""
    return Caption(en="", zh=text) if has_cjk(text) else Caption(en=text, zh="")


def caption_image(image: Any) -> Caption:
    """Return the English and Chinese captions of ``image`` (a PIL image or a file path)."""
    return add_chinese(from_text(english_caption(image)))
