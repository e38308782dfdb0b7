"""One adapter per task: gradio's shapes in, what every screen and script shows out.

The tabs and the API endpoints (``ui/api.py``) both call these, so a task is adapted once: the
endpoint turns the notices into warnings, the tab into a Markdown list, and they show the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import pipelines
from pipelines import Speech, TextStream


def file_path(value: Any) -> str | None:
    """The server-side path of an uploaded file, whatever shape gradio hands it in."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("path")
    return getattr(value, "path", value)


def chat(message: str, history: Any, system_prompt: str | None, temperature: float, top_p: float,
         max_new_tokens: int, top_logprobs: int | None = None, model: str | None = None) -> TextStream:
    """Return the stream of the assistant's reply to ``message`` after ``history`` (from the chat model ``model``)."""
    return pipelines.chat(message, history, system_prompt=system_prompt, temperature=temperature, top_p=top_p,
                          max_new_tokens=max_new_tokens, top_logprobs=top_logprobs, model=model)


def generate(prompt: str, model: str | None, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
             repetition_penalty: float, num_return_sequences: int, seed: Any,
             top_logprobs: int | None = None) -> TextStream:
    """Return the stream of the prompt and its continuation(s); its ``seed`` reproduces them."""
    return pipelines.generate_text(prompt, model, max_new_tokens=max_new_tokens, temperature=temperature,
                                   top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                                   num_return_sequences=num_return_sequences, seed=seed, top_logprobs=top_logprobs)


@dataclass
class Classified:
    """Every label's probability, highest first, and the notices (the text was cut)."""

    scores: dict[str, float]
    notices: list[str] = field(default_factory=list)


def classify(text: str, model: str | None) -> Classified:
    """Return every label of ``text`` with its probability and why the model read only part of it, if it did."""
    notices: list[str] = []
    return Classified(pipelines.classify_text(text, model, notices), notices)


@dataclass
class CaptionShown:
    """A caption as shown: the best one (Chinese when there is a translation), the English one, notices."""

    caption: str
    english: str
    notices: list[str] = field(default_factory=list)


def caption(image: Any) -> CaptionShown:
    """Return the picture's caption as every screen shows it."""
    result = pipelines.caption_image(file_path(image))
    return CaptionShown(result.best, result.en, list(result.notices))


def story(caption_text: str, style: str, length: int, creativity: float, language: str) -> TextStream:
    """Return the stream of a story about ``caption_text``."""
    return pipelines.write_story(caption_text, style, length, creativity, language)


def speak(text: str, language: str) -> Speech:
    """Return the finished audio of ``text`` read aloud."""
    return pipelines.synthesize_speech(text, language)


@dataclass
class PictureStoryShown:
    """One step of picture → story → voice as shown: captions, story so far, audio path, all notices so far."""

    caption: str
    english: str
    story: str
    audio: str | None
    notices: list[str]
    made: dict[str, Any] | None = None  # what is writing the story (settings, caption, seed, model), once it has started


def picture_story(image: Any, style: str, length: int, creativity: float,
                  language: str) -> Iterator[PictureStoryShown]:
    """Yield what to show after each step of picture → caption → story → voice."""
    for update in pipelines.picture_story(file_path(image), style, length, creativity, language):
        shown = update.caption
        yield PictureStoryShown(shown.best if shown else "", shown.en if shown else "", update.story, update.audio,
                                list(update.notices), update.record.as_dict() if update.record else None)
