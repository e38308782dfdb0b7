"""Multi-turn chat with the chat model, streamed."""

from __future__ import annotations

from typing import Any

from .inputs import clean_text, logprobs_count, normalize_messages, number, seed as parse_seed
from .backends import chat_backend, max_new_tokens_cap
from .sampling import MIN_NEW_TOKENS, TEMPERATURE_RANGE, TOP_P_RANGE, SamplingParams
from .streaming import TextStream

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. 你是一个乐于助人的助手。"
DEFAULT_MAX_NEW_TOKENS = 512  # a full answer of a few paragraphs


def chat(message: str, history: Any = None, *, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
         temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
         seed: int | None = None, top_logprobs: int | None = None, model: str | None = None) -> TextStream:
    """Return a stream of the assistant's reply to ``message`` after ``history``, from the chat model called
    ``model`` (a display name or configured id of ``MODELDECK_CHAT_MODEL``; None for the first).

    ``history`` holds role/content dicts (gradio's content-part lists and [user, bot] pairs are
    accepted too); its system messages follow ``system_prompt``, joined in order. Old turns are dropped to
    fit the context window, with a notice in ``notices``;
    ``usage`` has the prompt and completion token counts once the stream ends. With ``top_logprobs``
    (0–20) the stream records each token's log-probability and that many alternatives (``logprobs``).
    """
    notices: list[str] = []
    text = clean_text(message, field_zh="消息", field_en="message", notices=notices)
    messages = normalize_messages(history)
    system = clean_text(system_prompt, field_zh="系统提示词", field_en="system prompt", notices=notices,
                        required=False).strip()
    # Every system message in ``history`` joins the system prompt, in order (the model reads one, first).
    parts = ([system] if system else []) + [m["content"].strip() for m in messages if m["role"] == "system"]
    system = "\n\n".join(parts)
    messages = [m for m in messages if m["role"] != "system"]
    backend = chat_backend("chat", model)
    params = SamplingParams(
        max_new_tokens=number(max_new_tokens, name="max_new_tokens", lo=MIN_NEW_TOKENS, hi=max_new_tokens_cap(backend),
                              notices=notices, integer=True, default=DEFAULT_MAX_NEW_TOKENS),
        temperature=number(temperature, name="temperature", lo=TEMPERATURE_RANGE[0], hi=TEMPERATURE_RANGE[1],
                           notices=notices, default=0.7),
        top_p=number(top_p, name="top_p", lo=TOP_P_RANGE[0], hi=TOP_P_RANGE[1], notices=notices, default=0.9),
        repetition_penalty=backend.repetition_penalty,
        seed=parse_seed(seed),
        top_logprobs=logprobs_count(top_logprobs, notices),
    )
    full = ([{"role": "system", "content": system}] if system else []) + messages + [{"role": "user", "content": text}]
    return backend.stream_chat(full, params, notices)
