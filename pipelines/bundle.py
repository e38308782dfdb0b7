"""A finished picture story as one zip: the picture, both captions, the story, its audio and ``story.json``
(the settings, caption, seed and model that wrote the story, as recorded when it was written; the captioning
models), written where generated files are cleaned up."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import zipfile
from typing import Any

from . import registry
from .downloads import save_download
from .errors import InvalidInputError
from .speech import audio_dir
from .story import StoryRecord


def served_file(path: Any) -> str | None:
    """``path`` when it is a file inside the temp folder or the audio folder (where gradio keeps uploads and
    outputs), else None: a path from outside is never read into a bundle."""
    if not isinstance(path, str) or not path:
        return None
    real = os.path.realpath(path)
    roots = {os.path.realpath(r) for r in (tempfile.gettempdir(), audio_dir(), os.environ.get("GRADIO_TEMP_DIR", ""))
             if r}
    inside = any(os.path.commonpath([real, root]) == root for root in roots)
    return real if inside and os.path.isfile(real) else None


def _model_ids() -> dict[str, str]:
    ids = {}
    for role in ("captioner", "translator"):
        try:
            ids[role] = registry.resolve(role).source
        except InvalidInputError:  # a role left unconfigured: say nothing rather than guess
            continue
    return ids


def story_bundle(image: Any, caption_zh: str, caption_en: str, story: str, audio: Any,
                 record: StoryRecord | None) -> str:
    """Write the picture story as a zip in the audio folder and return its path.

    ``record`` is what wrote the story (None for a story typed by hand: its settings are then null)."""
    story = story if isinstance(story, str) else ""
    caption_zh = caption_zh if isinstance(caption_zh, str) else ""
    caption_en = caption_en if isinstance(caption_en, str) else ""
    if not story.strip():
        raise InvalidInputError("还没有故事可以下载。请先生成故事。", "There is no story to download yet. Make one first.")
    picture, sound = served_file(image), served_file(audio)
    files: dict[str, bytes] = {"caption_zh.txt": caption_zh.encode(), "caption_en.txt": caption_en.encode(),
                               "story.txt": story.encode()}
    if picture:
        with open(picture, "rb") as f:
            files["picture" + (os.path.splitext(picture)[1].lower() or ".png")] = f.read()
    if sound:
        with open(sound, "rb") as f:
            files["story" + (os.path.splitext(sound)[1].lower() or ".mp3")] = f.read()
    speech = {".mp3": "gTTS", ".wav": "espeak-ng"}.get(os.path.splitext(sound or "")[1].lower())
    made = record.as_dict() if record else dict.fromkeys(("style", "length", "creativity", "language", "seed",
                                                              "caption", "model"))
    written = {"style": made["style"], "length": made["length"], "creativity": made["creativity"],
               "language": made["language"], "seed": made["seed"], "written_from": made["caption"],
               "models": {**_model_ids(), **({"story": made["model"]} if made["model"] else {}),
                          **({"speech": speech} if speech else {})},
               "caption": {"zh": caption_zh, "en": caption_en}, "story": story,
               # typed by hand (no record), or the model's text changed after (None: a record from before texts)
               "edited_by_hand": True if record is None else record.edited(story),
               "files": sorted(files) + ["story.json"], "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    files["story.json"] = json.dumps(written, ensure_ascii=False, indent=2).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            packed = name.endswith((".txt", ".json", ".wav"))  # pictures and mp3 are compressed already
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if packed else zipfile.ZIP_STORED)
    return save_download(buffer.getvalue(), "modeldeck-story", "zip")
