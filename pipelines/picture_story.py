"""Picture → caption → story → voice, each step handed over as soon as it is ready."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from . import registry
from .caption import Caption, caption_image
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
        registry.get_model(role)
    except PipelineError as exc:  # reported when the story step needs the model
        log.info("warming %s failed: %s", role, exc)


def picture_story(image: Any, style: str = "温馨", length: int = 300, creativity: float = 5,
                  language: str = "zh", *, speak: bool = True, seed: Any = None) -> Iterator[PictureStoryUpdate]:
    """Yield the caption, then the story as it grows, then the audio file.

    The story model loads in the background while the picture is captioned. When speech fails,
    the story is still delivered, with a notice saying why there is no audio.
    """
    picture = load_image(image)  # reject a bad upload before loading anything
    registry.get_model("captioner")
    _warm("translator")
    # Loads run one at a time, so the story model loads while the caption is being computed.
    threading.Thread(target=_warm, args=("story",), name="modeldeck-warm-story", daemon=True).start()
    caption = caption_image(picture)
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
