"""The OpenAI wire format: the request read (``Call``; ``requests`` reads bodies into it), errors, models,
and the JSON sent back."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from pipelines import registry
from pipelines.tokens import TokenLogprob


class ApiError(Exception):
    """An error with its HTTP status and OpenAI error type; the message is bilingual like every other."""

    def __init__(self, status: int, zh: str, en: str, *, kind: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(f"{zh} / {en}")
        self.status, self.kind, self.code, self.param = status, kind, code, param


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Call:
    """One request, read: which task runs, its ``pipelines`` arguments and how to answer."""

    task: str  # "chat" (pipelines.chat) or "complete" (pipelines.generate_text)
    model: str
    arguments: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    stops: list[str] = field(default_factory=list)
    n: int = 1
    echo: str = ""  # the prompt, when it is echoed
    prompt_ids: list[int] | None = None  # a completion's prompt sent as token ids (``echo_ids``: echo their text)
    echo_ids: bool = False
    logprobs: int | None = None  # alternatives per token when log-probabilities were asked for
    notices: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # a ``pipelines`` parameter -> the field it came from
    id: str = field(default_factory=lambda: secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))


def _served_specs() -> list[tuple[registry.ModelSpec, str]]:
    return [(spec, role) for role in ("chat", "textgen") for spec in registry.specs(role)]


def served_models() -> list[tuple[str, str]]:
    """(name, role) of every model the API serves: the chat models, then the text generation models."""
    return [(spec.name, role) for spec, role in _served_specs()]


def find_model(name: str) -> tuple[str, str] | None:
    """(served name, role) of the model ``name`` means, by its display name or its configured id (a Hub id,
    a folder or a remote entry); None for none."""
    return next(((spec.name, role) for spec, role in _served_specs() if name in (spec.name, spec.source)), None)


def in_request_terms(text: str, names: dict[str, str]) -> str:
    """``text`` (a notice or an error of ``pipelines``) with each parameter name of ``pipelines`` that differs
    from the request's field (``max_new_tokens``, ``num_return_sequences``) written as that field. Only names
    with an underscore are rewritten: a plain word such as "message" is also prose."""
    for pipeline_name, field_name in names.items():
        if "_" in pipeline_name and pipeline_name != field_name:
            text = re.sub(rf"(?<![\w]){re.escape(pipeline_name)}(?![\w])", field_name, text)
    return text


def model_object(name: str, role: str, created: int) -> dict[str, Any]:
    """One model as ``GET /v1/models`` lists it and ``GET /v1/models/{id}`` answers."""
    return {"id": name, "object": "model", "created": created, "owned_by": "modeldeck",
            "modeldeck_endpoint": "/v1/chat/completions" if role == "chat" else "/v1/completions"}


def model_list() -> dict[str, Any]:
    """The body of ``GET /v1/models``."""
    created = int(time.time())
    return {"object": "list", "data": [model_object(name, role, created) for name, role in served_models()]}


def visible(text: str, stops: list[str], final: bool) -> tuple[str, bool]:
    """The part of ``text`` that may be sent, and whether a stop string ended it.

    Text ends before the first stop string. While streaming, a tail that could begin a stop string is
    held back, and so is trailing whitespace (decoding may still drop a space before punctuation or
    between Chinese characters, and a sent character cannot be taken back).
    """
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    if found:
        return text[:min(found)], True
    if final:
        return text, False
    hold = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return text[:len(text) - hold].rstrip(), False


def finish_reason(usage_reason: str, stopped: bool) -> str:
    """OpenAI's finish reason for how a generation ended."""
    return "length" if usage_reason == "length" and not stopped else "stop"


def usage_body(usage: Any) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def chunk(call: Call, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One streamed event's object."""
    kind = "chat.completion.chunk" if call.task == "chat" else "text_completion"
    return {"id": _id(call), "object": kind, "created": call.created, "model": call.model, "choices": choices,
            **extra}


Tokens = list[tuple[int, TokenLogprob]]  # (offset of the text it wrote, token)
# An echoed prompt's tokens: (offset in the prompt, token); the first has no log-probability (None).
PromptTokens = list[tuple[int, TokenLogprob | None]]


def logprobs_body(call: Call, tokens: Tokens | None, echoed: PromptTokens | None = None) -> dict[str, Any] | None:
    """OpenAI's ``logprobs`` of one choice: chat's ``content`` list, or completions' parallel lists (the echoed
    prompt's tokens first, its first token's log-probability and alternatives ``null``)."""
    if call.logprobs is None or (tokens is None and not echoed):
        return None
    if call.task == "chat":
        return {"content": [token.to_openai() for _, token in tokens], "refusal": None}
    both = [(offset, t) for offset, t in echoed or []] + [(len(call.echo) + offset, t) for offset, t in tokens or []]
    return {"tokens": [t.token if t else _first_token(call, both, i) for i, (_, t) in enumerate(both)],
            "token_logprobs": [t.logprob if t else None for _, t in both],
            "top_logprobs": [{a.token: a.logprob for a in t.top} if t else None for _, t in both],
            "text_offset": [offset for offset, _ in both]}


def _first_token(call: Call, tokens: list[tuple[int, Any]], index: int) -> str:
    """The text of a prompt token with no log-probability (the first): the prompt up to the next token."""
    end = tokens[index + 1][0] if index + 1 < len(tokens) else len(call.echo)
    return call.echo[tokens[index][0]:end]


def choice_delta(call: Call, index: int, text: str | None, reason: str | None,
                 tokens: Tokens | None = None, echoed: PromptTokens | None = None) -> dict[str, Any]:
    """One choice of a streamed event: new text (with its tokens' log-probabilities), or the finish reason."""
    logprobs = logprobs_body(call, tokens, echoed) if tokens or echoed else None
    if call.task == "chat":
        delta = {} if text is None else {"content": text}
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
    return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": reason}


def role_chunk(call: Call, echoed: PromptTokens | None = None) -> dict[str, Any]:
    """The first event of a stream, sent before the first token (a completion's echoed prompt, with its tokens'
    log-probabilities when asked for)."""
    if call.task == "chat":
        return chunk(call, [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None}])
    return chunk(call, [choice_delta(call, i, call.echo, None, echoed=echoed) for i in range(call.n)])


def response(call: Call, texts: list[str], reasons: list[str], usage: Any, seed: int | None,
             notices: list[str], tokens: list[Tokens], echoed: PromptTokens | None = None) -> dict[str, Any]:
    """The whole answer of a request that was not streamed."""
    if call.task == "chat":
        choices = [{"index": 0, "message": {"role": "assistant", "content": texts[0]},
                    "logprobs": logprobs_body(call, tokens[0]), "finish_reason": reasons[0]}]
        kind = "chat.completion"
    else:
        choices = [{"index": i, "text": call.echo + text, "logprobs": logprobs_body(call, tokens[i], echoed),
                    "finish_reason": reason} for i, (text, reason) in enumerate(zip(texts, reasons))]
        kind = "text_completion"
    return {"id": _id(call), "object": kind, "created": call.created, "model": call.model, "choices": choices,
            "usage": usage_body(usage), "seed": seed, "notices": notices}


def _id(call: Call) -> str:
    return ("chatcmpl-" if call.task == "chat" else "cmpl-") + call.id
