"""Text classification with every label's score, in readable label names."""

from __future__ import annotations

import re
from typing import Any

from .backends import classifier
from .errors import InvalidInputError
from .inputs import clean_text

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


def classify_texts(texts: list[str], model: str | None = None, *, batch_size: int | None = None
                   ) -> list[dict[str, float]]:
    """Return, for each text, every label with its probability, highest first.

    A local model sorts texts by length and batches them with dynamic padding (``batch_size``, else
    ``MODELDECK_CLASSIFY_BATCH``); each is truncated to the model's maximum input length.
    """
    if not isinstance(texts, list) or not texts:
        raise InvalidInputError("请至少输入一段文本。", "Give at least one text.")
    notices: list[str] = []
    cleaned = [clean_text(t, field_zh="文本", field_en="text", notices=notices) for t in texts]
    backend = classifier(model)
    if batch_size is not None and hasattr(backend, "loaded"):
        return backend.classify(cleaned, batch_size)  # type: ignore[call-arg]
    return backend.classify(cleaned)


def classify_text(text: str, model: str | None = None) -> dict[str, float]:
    """Return every label of ``text`` with its probability, highest first."""
    return classify_texts([text], model)[0]
