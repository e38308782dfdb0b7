"""The scriptable API: one function per endpoint, with the parameter names scripts use.

Registered with ``gr.api`` so that every parameter reaches ``pipelines`` as sent and is checked
there (one set of rules for the UI and scripts). Each returns plain JSON or a file.

``gr.api`` takes a generator's return annotation as the type of each value it yields (a tuple
means several outputs), and it reads the annotation object itself, so this module must not use
``from __future__ import annotations``.
"""

from typing import Any, Optional, Union

import gradio as gr
from gradio import FileData

import pipelines
from pipelines import DEFAULT_SYSTEM_PROMPT

from .common import CAPTIONER, CLASSIFIER, LLM, SPEECH, TEXTGEN, concurrency_limit, edge, gpu


def warn(notices: list[str]) -> None:
    """Show notices as toasts in the UI and as warnings to gradio_client."""
    for notice in notices:
        gr.Warning(notice)


def file_path(value: Any) -> Optional[str]:
    """The server-side path of an uploaded file, whatever shape gradio hands it in."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("path")
    return getattr(value, "path", value)


@gpu
@edge
def chat(message: str, history: Optional[list[dict]] = None, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
         temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 512) -> str:
    """Stream the assistant's reply to `message` after `history` (a list of role/content dicts)."""
    stream = pipelines.chat(message, history, system_prompt=system_prompt, temperature=temperature, top_p=top_p,
                            max_new_tokens=max_new_tokens)
    warn(stream.notices)
    yield ""
    yield from stream


@gpu
@edge
def generate(prompt: str, model: Optional[str] = None, max_new_tokens: int = 100, temperature: float = 0.8,
             top_k: int = 50, top_p: float = 0.95, repetition_penalty: float = 1.1, num_return_sequences: int = 1,
             seed: Union[int, str, None] = None) -> tuple[str, Optional[int]]:
    """Stream (text, seed): the prompt and its continuation(s), and the seed that reproduces them."""
    stream = pipelines.generate_text(prompt, model, max_new_tokens=max_new_tokens, temperature=temperature,
                                     top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                                     num_return_sequences=num_return_sequences, seed=seed)
    warn(stream.notices)
    shown = len(stream.notices)
    yield prompt, stream.seed
    for text in stream:
        yield text, stream.seed
    warn(stream.notices[shown:])  # what the backend found out while generating (settings it ignored)


@gpu
@edge
def classify(text: str, model: Optional[str] = None) -> dict[str, float]:
    """Return every label of `text` with its probability, highest first."""
    return pipelines.classify_text(text, model)


@gpu
@edge
def caption(image: FileData) -> tuple[str, str]:
    """Return (Chinese caption, English caption) of an uploaded picture."""
    result = pipelines.caption_image(file_path(image))
    warn(result.notices)
    return result.zh, result.en


@gpu
@edge
def story(caption: str, style: str = "温馨", length: int = 300, creativity: float = 5,
          language: str = "zh") -> str:
    """Stream a story about `caption` in `style`, about `length` characters (zh) or words (en)."""
    stream = pipelines.write_story(caption, style, length, creativity, language)
    warn(stream.notices)
    yield ""
    yield from stream


@edge
def speak(text: str, language: str = "auto") -> FileData:
    """Return an audio file of `text` read aloud ("zh", "en" or "auto")."""
    result = pipelines.synthesize_speech(text, language)
    warn(result.notices)
    return FileData(path=result.path)


@gpu
@edge
def picture_story(image: FileData, style: str = "温馨", length: int = 300, creativity: float = 5,
                  language: str = "zh") -> tuple[str, str, Optional[FileData]]:
    """Stream (caption, story, audio): the caption first, then the story, then the audio file."""
    warned = 0
    for update in pipelines.picture_story(file_path(image), style, length, creativity, language):
        warn(update.notices[warned:])
        warned = len(update.notices)
        audio = FileData(path=update.audio) if update.audio else None
        yield update.caption.best if update.caption else "", update.story, audio


def register() -> None:
    """Add the API endpoints to the Blocks being built."""
    for fn, concurrency_id in [(chat, LLM), (story, LLM), (picture_story, LLM), (generate, TEXTGEN),
                               (classify, CLASSIFIER), (caption, CAPTIONER), (speak, SPEECH)]:
        gr.api(fn, api_name=fn.__name__, concurrency_limit=concurrency_limit(concurrency_id),
               concurrency_id=concurrency_id)
