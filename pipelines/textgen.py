"""Free text continuation with a choice of models, streamed."""

from __future__ import annotations

from .backends import max_new_tokens_cap, text_backend
from .inputs import clean_text, logprobs_count, number, seed as parse_seed
from .sampling import MIN_NEW_TOKENS, SamplingParams, checked_settings
from .streaming import TextStream

MAX_SEQUENCES = 8
DEFAULT_MAX_NEW_TOKENS = 100  # a paragraph: enough to see what the settings do, quick on a CPU
NEUTRAL = {"top_k": 0, "repetition_penalty": 1.0, "n": 1}  # a setting at this value changes nothing


def join_sequences(texts: list[str]) -> str:
    """Render several continuations as one text, numbered."""
    if len(texts) == 1:
        return texts[0]
    return "\n\n".join(f"【{i + 1}】\n{t}" for i, t in enumerate(texts))


def generate_text(prompt: str, model: str | None = None, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                  temperature: float = 0.8, top_k: int = 50, top_p: float = 0.95,
                  repetition_penalty: float = 1.1, num_return_sequences: int = 1,
                  seed: int | None = None, top_logprobs: int | None = None) -> TextStream:
    """Return a stream of ``prompt`` followed by each continuation; ``temperature`` 0 is greedy.

    The stream's ``seed`` is the seed actually used (random when none is given), so a result can
    be reproduced; ``texts`` holds each sequence separately. Settings the chosen backend cannot honour
    are named in ``notices``, never dropped silently. With ``top_logprobs`` (0–20) a local model also records
    each token's log-probability and that many alternatives (``logprobs``, ``pieces``).
    """
    notices: list[str] = []
    text = clean_text(prompt, field_zh="提示文本", field_en="prompt", notices=notices)
    backend = text_backend(model)
    params = SamplingParams(
        max_new_tokens=number(max_new_tokens, name="max_new_tokens", lo=MIN_NEW_TOKENS, hi=max_new_tokens_cap(backend),
                              notices=notices, integer=True, default=DEFAULT_MAX_NEW_TOKENS),
        **checked_settings(temperature, top_k, top_p, repetition_penalty, notices, defaults=(0.8, 50, 0.95, 1.1)),
        seed=parse_seed(seed),
        top_logprobs=logprobs_count(top_logprobs, notices),
    )
    n = number(num_return_sequences, name="num_return_sequences", lo=1, hi=MAX_SEQUENCES, notices=notices,
               integer=True, default=1)
    if n > 1 and params.temperature == 0:
        notices.append(f"温度为 0 时每一步都取最可能的词，所以 {n} 个序列完全相同；要不同的续写请把温度调高。 / "
                       f"With temperature 0 every step takes the most likely token, so the {n} sequences are the "
                       f"same; raise the temperature for different ones.")
    return backend.stream_text(text, params, n, notices, join_sequences)
