"""How many tokens a loaded model can really read: one rule for every role.

A model's window is the smaller of its position table (``max_position_embeddings``, GPT-2's
``n_positions``, a composite model's text part) and its tokenizer's ``model_max_length``: RoBERTa
has 514 positions but reads 512 tokens, and a Marian checkpoint may have a position table shorter
than the 512 its tokenizer allows. Inputs longer than the window fail inside the model with an
``IndexError``, so every task cuts its input with ``input_window`` before the model runs.
"""

from __future__ import annotations

from typing import Any

from . import settings

# Tokenizers without a limit report a huge placeholder (transformers' VERY_LARGE_INTEGER, ~1e30).
_NO_LIMIT = 10**9
# A model whose config names no position table (none of ours): assume the common BERT-era size.
_UNKNOWN_WINDOW = 512


def _positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_window(loaded: Any) -> int:
    """Return the most tokens ``loaded`` can read: position table and tokenizer limit, the smaller."""
    config = loaded.model.config
    limits = [_positions(config)]
    get_text_config = getattr(config, "get_text_config", None)
    if limits[0] is None and callable(get_text_config):  # BLIP: the text decoder's own table
        limits.append(_positions(get_text_config(decoder=True)))
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    most = getattr(tokenizer, "model_max_length", None)
    if isinstance(most, int) and 0 < most < _NO_LIMIT:
        limits.append(most)
    known = [n for n in limits if n]
    return min(known) if known else _UNKNOWN_WINDOW


def input_window(loaded: Any, room_for_output: int = 0) -> int:
    """Return how many input tokens fit in ``loaded``'s window after ``room_for_output`` (at least 1)."""
    return max(1, model_window(loaded) - max(0, room_for_output))


def context_window(loaded: Any) -> int:
    """Return how many tokens a local language model's prompt and reply may hold together: its window,
    capped by ``MODELDECK_MAX_CONTEXT_TOKENS`` (chat, story, text generation and the next-token view)."""
    return min(model_window(loaded), settings.get("MODELDECK_MAX_CONTEXT_TOKENS"))
