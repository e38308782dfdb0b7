"""Picture → caption → story → voice, each step handed over as soon as it is ready."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from . import backends
from .caption import Caption, add_chinese, english_caption, from_text
from .errors import PipelineError, SpeechUnavailableError, StorageError
from .images import load_image
from .speech import synthesize_speech
from .story import write_story

log = logging.getLogger(__name__)


@dataclass
class PictureStoryUpdate:
    """What is known so far; ``stage`` is "caption", "story", "audio" or "done"."""

    stage: str
    caption: Caption | None = None
    story: str = ""
    audio: str | None = None
    notices: list[str] = field(default_factory=list)


def _warm(role: str) -> None:
    try:
        backends.warm(role)
    except PipelineError as exc:  # reported when the story step needs the model
        log.info("warming %s failed: %s", role, exc)


def picture_story(image: Any, style: str = "温馨", length: int = 300, creativity: float = 5,
                  language: str = "zh", *, speak: bool = True, seed: Any = None) -> Iterator[PictureStoryUpdate]:
    """Yield the caption (the captioner's text, then with its translation), the story as it grows, then audio.

    The story model loads in the background while the caption is translated. When speech fails,
    the story is still delivered, with a notice saying why there is no audio.
    """
    picture = load_image(image)  # reject a bad upload before loading anything
    # The captioner's text is shown the moment it exists. Only then does the story model start
    # loading, alongside the translation: on a 2-core machine, loading it during captioning slowed
    # the caption down by half.
    caption = from_text(english_caption(picture))
    yield PictureStoryUpdate("caption", caption=Caption(caption.en, caption.zh))
    _warm("translator")  # before the story model takes the (one-at-a-time) loading lock
    threading.Thread(target=_warm, args=("story",), name="modeldeck-warm-story", daemon=True).start()
    add_chinese(caption)
    update = PictureStoryUpdate("caption", caption=caption, notices=list(caption.notices))
    yield replace(update, notices=list(update.notices))
    stream = write_story(caption.zh if language in ("zh", "中文") and caption.zh else caption.en or caption.zh,
                         style, length, creativity, language, seed=seed)
    update.notices += stream.notices
    try:
        for text in stream:
            update.stage, update.story = "story", text
            yield replace(update, notices=list(update.notices))
    finally:
        stream.close()
    if speak and update.story.strip():
        try:
            speech = synthesize_speech(update.story, language)
            update.audio = speech.path
            update.notices += speech.notices
        except (SpeechUnavailableError, StorageError) as exc:
            update.notices.append(f"故事已生成，但没有音频：{exc.zh} / The story is ready, but there is no audio: {exc.en}")
        update.stage = "audio"
        yield replace(update, notices=list(update.notices))
    update.stage = "done"
    yield update
