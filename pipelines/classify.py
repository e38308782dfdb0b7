"""Text classification with every label's score, in readable label names."""

from __future__ import annotations

import re
from typing import Any, Callable

from .backends import classifier
from .errors import InvalidInputError
from .inputs import clean_text
from .windows import input_window

_SENTIMENT = {"negative": "负面 negative", "neg": "负面 negative", "positive": "正面 positive",
              "pos": "正面 positive", "neutral": "中性 neutral"}


def readable_label(raw: str) -> str:
    """Turn a model's label into a short bilingual name (never a bare ``LABEL_1``)."""
    text = str(raw).strip()
    generic = re.fullmatch(r"(?i)label[_ ]?(\d+)", text)
    if generic:
        return f"类别 {generic.group(1)} (class {generic.group(1)})"
    head = re.match(r"(?i)(negative|positive|neutral|neg|pos)\b", text)
    if head:
        return _SENTIMENT[head.group(1).lower()]
    return text


def too_long(limit: int) -> str:
    """The note for a text longer than the model's window of ``limit`` tokens."""
    return f"过长：模型只读了前 {limit} 个词元 / too long: the model read only its first {limit} tokens"


def _cut_notes(backend: Any, cleaned: list[str], notes: list[str]) -> list[str]:
    """Per text, why the model reads only part of it: past its window, else past the character cap, else ""."""
    loaded = getattr(backend, "loaded", None)  # a remote classifier's window is the server's business
    if loaded is None:
        return notes
    limit = input_window(loaded)
    lengths = [len(ids) for ids in loaded.processor(cleaned, truncation=False)["input_ids"]]
    return [too_long(limit) if length > limit else note for length, note in zip(lengths, notes)]


def classify_texts(texts: list[str], model: str | None = None, *, batch_size: int | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   notes: list[str] | None = None) -> list[dict[str, float]]:
    """Return, for each text, every label with its probability, highest first.

    A local model sorts texts by length and batches them with dynamic padding (``batch_size``, else
    ``MODELDECK_CLASSIFY_BATCH``); each is truncated to the model's maximum input length.
    ``progress(done, total)`` is called after each batch (once at the end for a remote model). A ``notes`` list
    is filled with one entry per text: why the model read only part of it, or "" when it read all of it.
    """
    if not isinstance(texts, list) or not texts:
        raise InvalidInputError("请至少输入一段文本。", "Give at least one text.")
    cleaned, cut = [], []
    for text in texts:
        notices: list[str] = []
        cleaned.append(clean_text(text, field_zh="文本", field_en="text", notices=notices))
        cut.append(notices[0] if notices else "")
    backend = classifier(model)
    if notes is not None:
        notes[:] = _cut_notes(backend, cleaned, cut)
    if hasattr(backend, "loaded"):
        return backend.classify(cleaned, batch_size, progress)  # type: ignore[call-arg]
    results = backend.classify(cleaned)
    if progress is not None:
        progress(len(cleaned), len(cleaned))
    return results


def classify_text(text: str, model: str | None = None, notices: list[str] | None = None) -> dict[str, float]:
    """Return every label of ``text`` with its probability, highest first; ``notices`` gets a note when the
    model read only part of it."""
    notes: list[str] = []
    scores = classify_texts([text], model, notes=notes)[0]
    if notices is not None and notes[0]:
        notices.append(notes[0])
    return scores
