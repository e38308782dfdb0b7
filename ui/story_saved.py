"""The picture story kept in the browser: a reload brings back the picture, both captions, the story, the
audio, the settings and what wrote the story; Clear empties the tab and forgets it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr
from gradio.context import Context

from pipelines import STYLES
from pipelines.bundle import served_file
from pipelines.story import (DEFAULT_CREATIVITY, DEFAULT_LANGUAGE, DEFAULT_LENGTH, DEFAULT_STYLE, MAX_CREATIVITY,
                             MAX_LENGTH, MIN_CREATIVITY, MIN_LENGTH, StoryRecord)

from .common import checked

STORE_SECRET = "modeldeck-picture-story-v1"  # fixed: a story kept before a server restart stays readable
MAX_KEPT_CHARS = 20_000  # per text; far above a 1000-word story, far below what a browser's storage holds
PICTURES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
SOUNDS = (".mp3", ".wav")
RESTORED = "↩️ 上次的图片故事已恢复。 / Your last picture story is back."
AUDIO_GONE = ("音频已被清理：按“重新配音”再生成。 / The audio was cleaned up: press Voice again to make it anew.")
DEFAULTS = {"style": DEFAULT_STYLE, "length": DEFAULT_LENGTH, "creativity": DEFAULT_CREATIVITY,
            "language": DEFAULT_LANGUAGE}


@dataclass
class StoryFields:
    """The tab's components, in the order ``save`` reads and ``restore`` writes them."""

    image: Any
    caption: Any
    caption_en: Any
    story: Any
    audio: Any
    style: Any
    length: Any
    creativity: Any
    language: Any
    made: Any  # what wrote the story: a ``StoryRecord.as_dict()`` or None
    status: Any

    def kept(self) -> list[Any]:
        """What is kept: everything but the status line."""
        return [self.image, self.caption, self.caption_en, self.story, self.audio, self.style, self.length,
                self.creativity, self.language, self.made]


def save(image: Any, caption: Any, caption_en: Any, story: Any, audio: Any, style: Any, length: Any,
         creativity: Any, language: Any, made: Any) -> dict[str, Any]:
    """The browser's record of the tab as it is now (empty when the tab holds nothing)."""
    texts = {"caption": caption, "caption_en": caption_en, "story": story}
    texts = {k: v[:MAX_KEPT_CHARS] for k, v in texts.items() if isinstance(v, str) and v.strip()}
    files = {k: v for k, v in (("image", _path(image)), ("audio", _path(audio))) if v}
    if not texts and not files:
        return {}
    return {**texts, **files, "style": style, "length": length, "creativity": creativity, "language": language,
            "made": made if StoryRecord.from_dict(made) else None}


def _path(value: Any) -> str | None:
    path = value.get("path") if isinstance(value, dict) else value
    return path if isinstance(path, str) and path else None


def _kept_file(path: Any, suffixes: tuple[str, ...]) -> str | None:
    """A kept file's path if it is still there, of the right kind, where the app keeps uploads and outputs:
    the browser's record can be edited, and a path from anywhere else is never shown or served."""
    real = served_file(path)
    return real if real and real.lower().endswith(suffixes) else None


def _kept_picture(path: Any) -> str | None:
    """A kept picture that is still a picture (an upload that was not one is kept as it was chosen)."""
    from PIL import Image

    real = _kept_file(path, PICTURES)
    try:
        with Image.open(real or ""):  # reads the header only
            return real
    except (OSError, ValueError):
        return None


def _number(value: Any, lo: float, hi: float, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return default
    return min(max(value, lo), hi)


def restore(store: Any, restored: bool, busy: int, *shown: Any) -> tuple[Any, ...]:
    """After a reload, show the kept story: once per page, only into an empty tab with no step running."""
    nothing = (gr.skip(),) * 12
    if restored or busy or any(v for v in shown) or not isinstance(store, dict) or not store:
        return nothing
    text = {k: store[k][:MAX_KEPT_CHARS] if isinstance(store.get(k), str) else "" for k in
            ("caption", "caption_en", "story")}
    image, audio = _kept_picture(store.get("image")), _kept_file(store.get("audio"), SOUNDS)
    if not any(text.values()) and not image:
        return nothing
    style = store.get("style") if store.get("style") in STYLES else DEFAULTS["style"]
    length = int(_number(store.get("length"), MIN_LENGTH, MAX_LENGTH, DEFAULTS["length"]))
    creativity = _number(store.get("creativity"), MIN_CREATIVITY, MAX_CREATIVITY, DEFAULTS["creativity"])
    language = store.get("language") if store.get("language") in ("zh", "en") else DEFAULTS["language"]
    record = StoryRecord.from_dict(store.get("made"))  # none in a story kept before records were
    notes = [RESTORED] + ([AUDIO_GONE] if store.get("audio") and not audio else [])
    status = "\n".join(f"- {n}" for n in notes)
    return (image, text["caption"], text["caption_en"], text["story"], audio, style, length, creativity, language,
            record.as_dict() if record else None, status, True)


def clear() -> tuple[Any, ...]:
    """An empty tab, and nothing kept."""
    return None, "", "", "", None, None, "", gr.update(value=None, visible=False), {}


def build(fields: StoryFields, busy: gr.State, runs: list[Any], clear_btn: gr.Button, bundle: gr.File,
          idle: Callable[[int], None]) -> None:
    """Keep the tab in the browser after each step, edit and upload; restore it after a reload; wire Clear
    (``idle`` refuses it while a step runs)."""
    store = gr.BrowserState({}, storage_key="modeldeck-picture-story", secret=STORE_SECRET)
    restored = gr.State(False)
    private = {"api_visibility": "private", "show_progress": "hidden", "queue": False}
    kept = fields.kept()
    # Raw values (preprocess=False): paths as they are, and no error from gradio opening an upload that is
    # not a picture (the tab's own check names that file; a failed unqueued event would hide its message).
    for run in runs:  # after Stop too: a story stopped half-way is kept as shown
        run.then(save, kept, store, preprocess=False, **private)
    edits = [fields.caption.blur, fields.caption_en.blur, fields.story.blur, fields.image.upload, fields.image.clear, fields.style.input,
             fields.language.input, fields.length.release, fields.creativity.release]
    gr.on(edits, save, kept, store, preprocess=False, **private)
    root = Context.root_block
    if root is not None:  # once the page has read the browser's store (either may come first)
        shown = [fields.image, fields.caption, fields.caption_en, fields.story, fields.audio]
        # always_last: gr.on's default for a load trigger ("once") drops the store's change while the load's
        # call (before the store was read: nothing to restore) is still under way, as on a loaded machine.
        gr.on([root.load, store.change], restore, [store, restored, busy, *shown], [*kept, fields.status, restored],
              preprocess=False, trigger_mode="always_last", **private)
    checked(clear_btn.click, idle, [busy]).success(
        clear, None, [fields.image, fields.caption, fields.caption_en, fields.story, fields.audio, fields.made,
                      fields.status, bundle, store], **{**private, "queue": True})

