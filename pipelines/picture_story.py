"""Picture → caption → story → voice, each step handed over as soon as it is ready."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from . import backends
from .caption import Caption, add_chinese, english_caption, from_text
from .errors import PipelineError, known_error
from .images import load_image
from .speech import synthesize_speech
from .story import (DEFAULT_CREATIVITY, DEFAULT_LANGUAGE, DEFAULT_LENGTH, DEFAULT_STYLE, StoryRecord,
                    caption_for_story, story_settings, write_story)

log = logging.getLogger(__name__)


@dataclass
class PictureStoryUpdate:
    """What is known so far; ``stage`` is "caption", "story", "audio" or "done"."""

    stage: str
    caption: Caption | None = None
    story: str = ""
    audio: str | None = None
    notices: list[str] = field(default_factory=list)
    seed: int | None = None  # the story's sampling seed (it reproduces the story)
    record: StoryRecord | None = None  # what is writing the story, once it has started


def _warm(role: str) -> None:
    try:
        backends.warm(role)
    except PipelineError as exc:  # reported when the story step needs the model
        log.info("warming %s failed: %s", role, exc)


def step_failed(kept_zh: str, kept_en: str, exc: Exception) -> str:
    """A notice saying what was kept and why the next step failed; unexpected errors are logged with a trace."""
    known = known_error(exc)
    if known is not None:
        zh, en = known.zh, known.en
    else:
        log.exception("picture story: a step failed (%s)", kept_en)
        zh = en = f"{type(exc).__name__}"
    return f"{kept_zh}：{zh} / {kept_en}: {en}"


def picture_story(image: Any, style: str = DEFAULT_STYLE, length: int = DEFAULT_LENGTH,
                  creativity: float = DEFAULT_CREATIVITY, language: str = DEFAULT_LANGUAGE, *, speak: bool = True,
                  seed: Any = None) -> Iterator[PictureStoryUpdate]:
    """Yield the caption (the captioner's text, then with its translation), the story as it grows, then audio.

    Every argument is checked before the first model runs. The story model loads in the background
    while the caption is translated. A step that fails keeps what earlier steps made: a failed
    translation leaves the English caption (the story is written from it), a failed story leaves the
    caption, failed speech leaves the story; each with a notice saying why.
    """
    settings = story_settings(style, length, creativity, language, seed)
    picture = load_image(image)  # reject a bad upload before loading anything
    # The captioner's text is shown the moment it exists. Only then does the story model start
    # loading, alongside the translation: on a 2-core machine, loading it during captioning slowed
    # the caption down by half.
    caption = from_text(english_caption(picture))
    update = PictureStoryUpdate("caption", caption=Caption(caption.en, caption.zh), notices=list(settings.notices))
    yield replace(update, notices=list(update.notices))
    _warm("translator")  # before the story model takes the (one-at-a-time) loading lock
    threading.Thread(target=_warm, args=("story",), name="modeldeck-warm-story", daemon=True).start()
    add_chinese(caption)
    update.caption = caption
    update.notices += caption.notices
    yield replace(update, notices=list(update.notices))
    source = caption_for_story(caption.zh, caption.en, settings.language)
    story_done = False
    try:
        stream = write_story(source, settings=replace(settings, notices=[]))
        update.notices += stream.notices
        update.seed, update.record = stream.seed, stream.record
        try:
            for text in stream:
                update.stage, update.story = "story", text
                yield replace(update, notices=list(update.notices))
        finally:
            stream.close()
        story_done = True
    except Exception as exc:  # the caption (and any story so far) stays on screen
        update.notices.append(step_failed("故事没有写成，图片描述已保留", "The story could not be written; the caption is kept", exc))
    if speak and story_done and update.story.strip():
        try:
            speech = synthesize_speech(update.story, settings.language)
            update.audio = speech.path
            update.notices += speech.notices
        except Exception as exc:  # the story stays
            update.notices.append(step_failed("故事已生成，但没有音频", "The story is ready, but there is no audio", exc))
        update.stage = "audio"
        yield replace(update, notices=list(update.notices))
    update.stage = "done"
    yield update
