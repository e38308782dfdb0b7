"""The OpenAI wire format: request bodies read into ``pipelines`` arguments, and the JSON sent back.

Values go to ``pipelines`` as sent, so the API follows the UI's rules (length caps; numbers outside
their range clamped, with a notice in the response's ``notices``; text that is not a number
rejected) and its bilingual messages. Only what is particular to the protocol is checked here:
the shape of the body, ``stop``, ``n``, ``stream`` and the parameters ModelDeck does not offer.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from pipelines import DEFAULT_SYSTEM_PROMPT, registry
from pipelines.inputs import normalize_messages, number
from pipelines.sampling import MAX_TOP_LOGPROBS
from pipelines.textgen import MAX_SEQUENCES
from pipelines.tokens import TokenLogprob

MAX_STOPS = 4


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
    echo: str = ""
    logprobs: int | None = None  # alternatives per token when log-probabilities were asked for
    notices: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))


def served_models() -> list[tuple[str, str]]:
    """(name, role) of every model the API serves: the chat model, then the text generation models."""
    chat = registry.specs("chat")[0]
    return [(chat.name, "chat")] + [(spec.name, "textgen") for spec in registry.specs("textgen")]


def model_list() -> dict[str, Any]:
    """The body of ``GET /v1/models``."""
    created = int(time.time())
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "modeldeck",
                                        "modeldeck_endpoint": "/v1/chat/completions" if role == "chat"
                                        else "/v1/completions"} for name, role in served_models()]}


def _model(body: dict[str, Any], wanted_role: str) -> str:
    """The model a request names (its display name or configured id), served at this endpoint."""
    value = body.get("model")
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "参数 model 必须是文本。", "The parameter model must be text.", param="model")
    name = (value or "").strip()
    for role in ("chat", "textgen"):
        for spec in (registry.specs(role)[:1] if role == "chat" else registry.specs(role)):
            if (not name and role == wanted_role) or name in (spec.name, spec.source):
                if role != wanted_role:
                    other = "/v1/completions" if role == "textgen" else "/v1/chat/completions"
                    raise ApiError(400, f"模型 {name!r} 不在这个接口提供，请改用 {other}。",
                                   f"The model {name!r} is not served here; use {other}.", param="model")
                return spec.name
    names = [n for n, _ in served_models()]
    raise ApiError(404, f"没有名为 {name!r} 的模型。可选：{'、'.join(names)}",
                   f"There is no model called {name!r}. Choose one of: {', '.join(names)}",
                   code="model_not_found", param="model")


def _unsupported(body: dict[str, Any], name: str, why_zh: str, why_en: str) -> None:
    raise ApiError(400, f"不支持参数 {name}：{why_zh}", f"The parameter {name} is not supported: {why_en}",
                   param=name)


def _common(body: dict[str, Any]) -> dict[str, Any]:
    """``stream``, ``stream_options``, ``stop`` and the refusals both endpoints share."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "参数 stream 必须是 true 或 false。", "The parameter stream must be true or false.",
                       param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "参数 stream_options 必须是对象。", "The parameter stream_options must be an object.",
                       param="stream_options")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if (not isinstance(stops, list) or len(stops) > MAX_STOPS
            or not all(isinstance(s, str) and s for s in stops)):
        raise ApiError(400, f"参数 stop 必须是一个非空字符串，或最多 {MAX_STOPS} 个非空字符串的列表。",
                       f"The parameter stop must be a non-empty string or a list of at most {MAX_STOPS} of them.",
                       param="stop")
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            _unsupported(body, name, "请改用 repetition_penalty（1–2）。", "use repetition_penalty (1–2) instead.")
    return {"stream": bool(stream), "include_usage": bool(options.get("include_usage")), "stops": list(stops)}


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"参数 {name} 必须是 0 到 {MAX_TOP_LOGPROBS} 之间的整数。",
                       f"The parameter {name} must be a whole number from 0 to {MAX_TOP_LOGPROBS}.", param=name)
    return value


def _logprobs(body: dict[str, Any], task: str, role: str, model: str) -> int | None:
    """How many alternatives per token the request wants (chat: ``logprobs`` + ``top_logprobs``;
    completions: ``logprobs: N``), None for none; refused for a model that cannot give them."""
    if task == "chat":
        wanted, top = body.get("logprobs"), body.get("top_logprobs")
        if wanted not in (None, True, False):
            raise ApiError(400, "参数 logprobs 必须是 true 或 false。", "The parameter logprobs must be true or false.",
                           param="logprobs")
        if top is not None and wanted is not True:
            raise ApiError(400, "使用 top_logprobs 时必须同时设置 logprobs: true。",
                           "top_logprobs needs logprobs: true as well.", param="top_logprobs")
        count = _count(0 if top is None else top, "top_logprobs") if wanted else None
    else:
        value = body.get("logprobs")
        count = None if value is None or value is False else _count(value, "logprobs")
    if count is not None and registry.resolve(role, model).is_remote:
        raise ApiError(400, f"模型 {model!r} 在远程服务器上运行，ModelDeck 无法从它取得词元概率：请去掉 logprobs，"
                            "或改用本地模型。",
                       f"The model {model!r} runs on a remote server, from which ModelDeck cannot get token "
                       "log-probabilities: leave out logprobs or use a local model.", param="logprobs")
    return count


def _pick(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: body[name] for name in names if body.get(name) is not None}


def _max_tokens(body: dict[str, Any]) -> dict[str, Any]:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return {} if value is None else {"max_new_tokens": value}


def _text_only(messages: Any) -> None:
    for message in messages if isinstance(messages, list) else []:
        parts = message.get("content") if isinstance(message, dict) else None
        if isinstance(parts, list) and any(isinstance(p, dict) and p.get("type") != "text" for p in parts):
            raise ApiError(400, "这个模型只读文字：消息里只能有 text 类型的内容。",
                           "This model reads text only: messages may hold only parts of type text.",
                           param="messages")


def read_chat(body: dict[str, Any]) -> Call:
    """Read a ``/v1/chat/completions`` body into a call of ``pipelines.chat``."""
    model = _model(body, "chat")
    common = _common(body)
    if body.get("n") not in (None, 1):
        _unsupported(body, "n", "对话接口每次只生成一个回答（n=1），可多次请求。",
                     "chat answers one choice per request (n=1); send several requests instead.")
    if body.get("tools") or body.get("functions"):
        _unsupported(body, "tools", "这个模型不调用工具。", "this model does not call tools.")
    if (body.get("response_format") or {}).get("type", "text") != "text":
        _unsupported(body, "response_format", "只支持普通文本。", "only plain text is offered.")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "参数 messages 必须是非空的消息列表。", "The parameter messages must be a non-empty list.",
                       param="messages")
    _text_only(raw)
    messages = normalize_messages(raw)
    if not messages or messages[-1]["role"] != "user":
        raise ApiError(400, "最后一条消息必须来自 user。", "The last message must come from the user.",
                       param="messages")
    history, message = messages[:-1], messages[-1]["content"]
    has_system = any(m["role"] == "system" for m in history)
    arguments = {"message": message, "history": history,
                 "system_prompt": "" if has_system else DEFAULT_SYSTEM_PROMPT,
                 **_pick(body, "temperature", "top_p", "seed"), **_max_tokens(body)}
    count = _logprobs(body, "chat", "chat", model)
    if count is not None:
        arguments["top_logprobs"] = count
    return Call("chat", model, arguments, logprobs=count, **common)


def read_completion(body: dict[str, Any]) -> Call:
    """Read a ``/v1/completions`` body into a call of ``pipelines.generate_text``."""
    model = _model(body, "textgen")
    common = _common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "参数 prompt 必须是一段文本（或只含一段文本的列表）。",
                       "The parameter prompt must be one text (or a list holding one text).", param="prompt")
    if body.get("suffix"):
        _unsupported(body, "suffix", "只能续写结尾。", "only continuing the end is offered.")
    if body.get("best_of") not in (None, body.get("n", 1)):
        _unsupported(body, "best_of", "请只用 n。", "use n alone.")
    notices: list[str] = []
    n = number(body.get("n"), name="n", lo=1, hi=MAX_SEQUENCES, notices=notices, integer=True, default=1)
    if body.get("echo") not in (None, False, True):
        raise ApiError(400, "参数 echo 必须是 true 或 false。", "The parameter echo must be true or false.",
                       param="echo")
    arguments = {"prompt": prompt, "model": model, "num_return_sequences": n,
                 **_pick(body, "temperature", "top_p", "top_k", "repetition_penalty", "seed"), **_max_tokens(body)}
    count = _logprobs(body, "complete", "textgen", model)
    if count is not None:
        arguments["top_logprobs"] = count
    return Call("complete", model, arguments, n=n, logprobs=count, echo=prompt if body.get("echo") else "",
                notices=notices, **common)


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


def logprobs_body(call: Call, tokens: Tokens | None) -> dict[str, Any] | None:
    """OpenAI's ``logprobs`` of one choice: chat's ``content`` list, or completions' parallel lists."""
    if call.logprobs is None or tokens is None:
        return None
    if call.task == "chat":
        return {"content": [token.to_openai() for _, token in tokens], "refusal": None}
    return {"tokens": [t.token for _, t in tokens], "token_logprobs": [t.logprob for _, t in tokens],
            "top_logprobs": [{a.token: a.logprob for a in t.top} for _, t in tokens],
            "text_offset": [len(call.echo) + offset for offset, _ in tokens]}


def choice_delta(call: Call, index: int, text: str | None, reason: str | None,
                 tokens: Tokens | None = None) -> dict[str, Any]:
    """One choice of a streamed event: new text (with its tokens' log-probabilities), or the finish reason."""
    logprobs = logprobs_body(call, tokens) if tokens else None
    if call.task == "chat":
        delta = {} if text is None else {"content": text}
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
    return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": reason}


def role_chunk(call: Call) -> dict[str, Any]:
    """The first event of a chat stream, sent before the first token."""
    if call.task == "chat":
        return chunk(call, [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None}])
    return chunk(call, [choice_delta(call, i, call.echo, None) for i in range(call.n)])


def response(call: Call, texts: list[str], reasons: list[str], usage: Any, seed: int | None,
             notices: list[str], tokens: list[Tokens]) -> dict[str, Any]:
    """The whole answer of a request that was not streamed."""
    if call.task == "chat":
        choices = [{"index": 0, "message": {"role": "assistant", "content": texts[0]},
                    "logprobs": logprobs_body(call, tokens[0]), "finish_reason": reasons[0]}]
        kind = "chat.completion"
    else:
        choices = [{"index": i, "text": call.echo + text, "logprobs": logprobs_body(call, tokens[i]),
                    "finish_reason": reason} for i, (text, reason) in enumerate(zip(texts, reasons))]
        kind = "text_completion"
    return {"id": _id(call), "object": kind, "created": call.created, "model": call.model, "choices": choices,
            "usage": usage_body(usage), "seed": seed, "notices": notices}


def _id(call: Call) -> str:
    return ("chatcmpl-" if call.task == "chat" else "cmpl-") + call.id
