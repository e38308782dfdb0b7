"""Describe a picture in English (BLIP) and in Chinese (Marian translation)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .backends import captioner, translator
from .errors import ModelUnavailableError, PipelineError
from .images import load_image
from .streaming import has_cjk

log = logging.getLogger(__name__)


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
    """Return ``text`` translated into Chinese by the translator."""
    return translator().translate(text)


def english_caption(image: Any, *, max_new_tokens: int = 30) -> str:
    """Return the captioner's description of ``image`` (a PIL image or a file path)."""
    picture = load_image(image)
    return captioner().caption(picture, max_new_tokens)


def add_chinese(caption: Caption) -> Caption:
    """Fill ``caption.zh`` by translation; an unavailable translator leaves a notice instead."""
    if caption.zh or not caption.en:
        return caption
    try:
        caption.zh = translate_to_chinese(caption.en)
    except PipelineError as exc:  # a local load or a remote call failed: the English caption is still useful
        log.warning("translation unavailable: %s", exc)
        which = exc.model if isinstance(exc, ModelUnavailableError) else exc.en
        caption.notices.append(f"翻译模型不可用，只显示英文描述。 / The translator is unavailable; showing the "
                               f"English caption only. ({which})")
    return caption


def from_text(text: str) -> Caption:
    """A caption from the captioner's text: Chinese text is kept as the Chinese caption."""
    return Caption(en="", zh=text) if has_cjk(text) else Caption(en=text, zh="")


def caption_image(image: Any) -> Caption:
    """Return the English and Chinese captions of ``image`` (a PIL image or a file path)."""
    return add_chinese(from_text(english_caption(image)))
