"""Text classification with every label's score, in readable label names."""

from __future__ import annotations

import re
from typing import Any

from . import registry
from .engine import engine
from .errors import InvalidInputError
from .inputs import clean_text, env_int
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


def labels_of(model: Any) -> list[str]:
    """Return the readable label of each output index, made unique."""
    id2label = getattr(model.config, "id2label", None) or {}
    names: list[str] = []
    for i in range(model.config.num_labels):
        name = readable_label(id2label.get(i, f"LABEL_{i}"))
        names.append(name if name not in names else f"{name} ({i})")
    return names


def classify_texts(texts: list[str], model: str | None = None, *, batch_size: int | None = None
                   ) -> list[dict[str, float]]:
    """Return, for each text, every label with its probability, highest first.

    Texts are sorted by length and batched with dynamic padding; each is truncated to the model's
    maximum input length.
    """
    if not isinstance(texts, list) or not texts:
        raise InvalidInputError("请至少输入一段文本。", "Give at least one text.")
    notices: list[str] = []
    cleaned = [clean_text(t, field_zh="文本", field_en="text", notices=notices) for t in texts]
    loaded = registry.get_model("classifier", model)
    tokenizer, net = loaded.processor, loaded.model
    names = labels_of(net)
    limit = input_window(loaded)
    size = batch_size or env_int("MODELDECK_CLASSIFY_BATCH", 32)
    order = sorted(range(len(cleaned)), key=lambda i: len(cleaned[i]))
    results: list[dict[str, float]] = [{} for _ in cleaned]

    def probabilities(texts: list[str]) -> list[list[float]]:
        import torch

        enc = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(loaded.device)
        with torch.inference_mode():
            return net(**enc).logits.float().softmax(-1).cpu().tolist()

    for start in range(0, len(order), size):  # one engine call a batch: generation interleaves between them
        chunk = order[start:start + size]
        for row, i in zip(engine.call(probabilities, [cleaned[i] for i in chunk]), chunk):
            results[i] = dict(sorted(zip(names, row), key=lambda kv: -kv[1]))
    return results


def classify_text(text: str, model: str | None = None) -> dict[str, float]:
    """Return every label of ``text`` with its probability, highest first."""
    return classify_texts([text], model)[0]
