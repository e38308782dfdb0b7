"""Request bodies of ``/v1/chat/completions`` and ``/v1/completions`` read into ``pipelines`` arguments.

Values go to ``pipelines`` as sent, so the API follows the UI's rules (length caps; numbers outside
their range clamped, with a notice in the response's ``notices``; text that is not a number
rejected) and its bilingual messages. Only what is particular to the protocol is checked here: the
shape of the body and of each field, ``stop``, ``n``, ``stream`` and the parameters ModelDeck does not
offer. A field sent as ``null`` counts as not sent, as in OpenAI's API.
"""

from __future__ import annotations

from typing import Any

from pipelines import DEFAULT_SYSTEM_PROMPT, registry
from pipelines.inputs import normalize_messages, number
from pipelines.sampling import MAX_TOP_LOGPROBS
from pipelines.textgen import MAX_SEQUENCES

from .protocol import ApiError, Call, find_model, served_models

MAX_STOPS = 4
# Fields that are numbers: ``pipelines`` reads "0.7" as 0.7 (the UI's rule), but Python reads JSON's true as 1.
NUMBERS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_tokens", "max_completion_tokens",
           "n", "best_of")
WHOLE = ("top_k", "seed", "max_tokens", "max_completion_tokens", "n", "best_of")  # counts: 5.5 is no count
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _model(body: dict[str, Any], wanted_role: str) -> str:
    """The model a request names (its display name or configured id), served at this endpoint."""
    value = body.get("model")
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "参数 model 必须是文本。", "The parameter model must be text.", param="model")
    name = (value or "").strip()
    if not name:
        return registry.specs(wanted_role)[0].name
    found = find_model(name)
    if found is None:
        raise unknown_model(name)
    served, role = found
    if role != wanted_role:
        other = "/v1/completions" if role == "textgen" else "/v1/chat/completions"
        raise ApiError(400, f"模型 {name!r} 不在这个接口提供，请改用 {other}。",
                       f"The model {name!r} is not served here; use {other}.", param="model")
    return served


def unknown_model(name: str) -> ApiError:
    """The 404 for a model name the API does not serve, listing the ones it does."""
    names = [n for n, _ in served_models()]
    return ApiError(404, f"没有名为 {name!r} 的模型。可选：{'、'.join(names)}",
                    f"There is no model called {name!r}. Choose one of: {', '.join(names)}",
                    code="model_not_found", param="model")


def _unsupported(name: str, why_zh: str, why_en: str) -> None:
    raise ApiError(400, f"不支持参数 {name}：{why_zh}", f"The parameter {name} is not supported: {why_en}",
                   param=name)


def _object(body: dict[str, Any], name: str, example: str) -> dict[str, Any]:
    value = body.get(name, {})
    if not isinstance(value, dict):
        raise ApiError(400, f"参数 {name} 必须是 JSON 对象，例如 {example}。",
                       f"The parameter {name} must be a JSON object such as {example}.", param=name)
    return value


def _flag(value: Any, name: str) -> bool:
    if value not in (None, True, False):
        raise ApiError(400, f"参数 {name} 必须是 true 或 false。", f"The parameter {name} must be true or false.",
                       param=name)
    return bool(value)


def _common(body: dict[str, Any]) -> dict[str, Any]:
    """``stream``, ``stream_options``, ``stop`` and the refusals both endpoints share."""
    for name in NUMBERS:
        if isinstance(body.get(name), bool):
            shown = "true" if body[name] else "false"
            raise ApiError(400, f"参数 {name} 必须是数字，收到 {shown}。",
                           f"The parameter {name} must be a number, got {shown}.", param=name)
    for name in WHOLE:
        if isinstance(body.get(name), float) and not body[name].is_integer():
            raise ApiError(400, f"参数 {name} 必须是整数，收到 {body[name]}。",
                           f"The parameter {name} must be a whole number, got {body[name]}.", param=name)
    stream = _flag(body.get("stream"), "stream")
    options = _object(body, "stream_options", '{"include_usage": true}')
    include_usage = _flag(options.get("include_usage"), "stream_options")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if (not isinstance(stops, list) or len(stops) > MAX_STOPS
            or not all(isinstance(s, str) and s for s in stops)):
        raise ApiError(400, f"参数 stop 必须是一个非空字符串，或最多 {MAX_STOPS} 个非空字符串的列表。",
                       f"The parameter stop must be a non-empty string or a list of at most {MAX_STOPS} of them.",
                       param="stop")
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            _unsupported(name, "请改用 repetition_penalty（1–2）。", "use repetition_penalty (1–2) instead.")
    if _object(body, "logit_bias", '{"50256": -100}'):
        _unsupported("logit_bias", "ModelDeck 不调整单个词元的概率。", "ModelDeck does not bias single tokens.")
    return {"stream": stream, "include_usage": include_usage, "stops": list(stops)}


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"参数 {name} 必须是 0 到 {MAX_TOP_LOGPROBS} 之间的整数。",
                       f"The parameter {name} must be a whole number from 0 to {MAX_TOP_LOGPROBS}.", param=name)
    return value


def _logprobs(body: dict[str, Any], task: str, role: str, model: str) -> int | None:
    """How many alternatives per token the request wants (chat: ``logprobs`` + ``top_logprobs``;
    completions: ``logprobs: N``), None for none; refused for a model that cannot give them."""
    if task == "chat":
        wanted, top = _flag(body.get("logprobs"), "logprobs"), body.get("top_logprobs")
        if top is not None and not wanted:
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
    return {name: body[name] for name in names if name in body}


def _max_tokens(body: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    for name in ("max_completion_tokens", "max_tokens"):
        if name in body:
            names["max_new_tokens"] = name
            return {"max_new_tokens": body[name]}
    return {}


def _messages(raw: Any) -> list[dict[str, Any]]:
    """OpenAI's messages as role/content messages, checked but not yet cleaned (a blank one is still there);
    each malformed one is a 400 that names it."""
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "参数 messages 必须是非空的消息列表。", "The parameter messages must be a non-empty list.",
                       param="messages")

    def bad(i: int, zh: str, en: str) -> ApiError:
        return ApiError(400, f"messages[{i}]：{zh}", f"messages[{i}]: {en}", param="messages")

    out = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise bad(i, "每条消息必须是带 role 和 content 的对象。",
                      "each message must be an object with a role and a content.")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise bad(i, f"未知的角色 {role!r}，可用 system、developer、user、assistant。",
                      f"unknown role {role!r}; use system, developer, user or assistant.")
        content = message.get("content")
        if content is None and role == "assistant":
            continue  # an assistant turn that only called tools: nothing for this model to read
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                    raise bad(i, "content 列表里的每一项必须是 {\"type\": \"text\", \"text\": \"...\"}。",
                              'each part of content must be {"type": "text", "text": "..."}.')
                if part.get("type") != "text":
                    raise ApiError(400, "这个模型只读文字：消息里只能有 text 类型的内容。",
                                   "This model reads text only: messages may hold only parts of type text.",
                                   param="messages")
        elif not isinstance(content, str):
            raise bad(i, "content 必须是文本，或 text 片段的列表。", "content must be text or a list of text parts.")
        out.append({"role": ROLES[role], "content": content})
    return out


def read_chat(body: dict[str, Any]) -> Call:
    """Read a ``/v1/chat/completions`` body into a call of ``pipelines.chat``."""
    body = {name: value for name, value in body.items() if value is not None}
    model = _model(body, "chat")
    common = _common(body)
    if body.get("n", 1) != 1:
        _unsupported("n", "对话接口每次只生成一个回答（n=1），可多次请求。",
                     "chat answers one choice per request (n=1); send several requests instead.")
    if body.get("tools") or body.get("functions"):
        _unsupported("tools", "这个模型不调用工具。", "this model does not call tools.")
    kind = _object(body, "response_format", '{"type": "text"}').get("type", "text")
    if kind != "text":
        _unsupported("response_format", "只支持普通文本（{\"type\": \"text\"}）。",
                     'only plain text ({"type": "text"}) is offered.')
    messages = _messages(body.get("messages"))
    if not messages or messages[-1]["role"] != "user":
        raise ApiError(400, "最后一条消息必须来自 user。", "The last message must come from the user.",
                       param="messages")
    # The last message is the one answered: a blank one is the UI's "enter the message" error, not dropped
    # like a blank turn of the history (which left an earlier message to be answered, or a wrong error).
    history = normalize_messages(messages[:-1])
    message = next((m["content"] for m in normalize_messages(messages[-1:])), "")
    has_system = any(m["role"] == "system" for m in history)
    names = {"message": "messages", "system_prompt": "messages"}
    arguments = {"message": message, "history": history, "model": model,
                 "system_prompt": "" if has_system else DEFAULT_SYSTEM_PROMPT,
                 **_pick(body, "temperature", "top_p", "seed"), **_max_tokens(body, names)}
    count = _logprobs(body, "chat", "chat", model)
    if count is not None:
        arguments["top_logprobs"] = count
    ignored = [name for name in ("top_k", "repetition_penalty") if name in body]
    notices = [f"对话接口不使用 {name}，已忽略。 / The chat endpoint does not use {name}; it was ignored."
               for name in ignored]
    return Call("chat", model, arguments, logprobs=count, notices=notices, names=names, **common)


def read_completion(body: dict[str, Any]) -> Call:
    """Read a ``/v1/completions`` body into a call of ``pipelines.generate_text``."""
    body = {name: value for name, value in body.items() if value is not None}
    model = _model(body, "textgen")
    common = _common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one prompt
    ids = _token_ids(prompt)
    if not isinstance(prompt, str) and ids is None:
        raise ApiError(400, "参数 prompt 必须是一段文本或一列词元 id（或只含其中一个的列表）。",
                       "The parameter prompt must be one text or one list of token ids (or a list holding one).",
                       param="prompt")
    if body.get("suffix"):
        _unsupported("suffix", "只能续写结尾。", "only continuing the end is offered.")
    if body.get("best_of", body.get("n", 1)) != body.get("n", 1):
        _unsupported("best_of", "请只用 n。", "use n alone.")
    notices: list[str] = []
    n = number(body.get("n"), name="n", lo=1, hi=MAX_SEQUENCES, notices=notices, integer=True, default=1)
    echo = _flag(body.get("echo"), "echo")
    names = {"num_return_sequences": "n"}
    arguments = {"prompt": "" if ids else prompt, "model": model, "num_return_sequences": n,
                 **_pick(body, "temperature", "top_p", "top_k", "repetition_penalty", "seed"),
                 **_max_tokens(body, names)}
    count = _logprobs(body, "complete", "textgen", model)
    if count is not None:
        arguments["top_logprobs"] = count
    if ids:  # the text they spell is read once the model is loaded (``jobs.produce``)
        return Call("complete", model, arguments, n=n, logprobs=count, prompt_ids=ids, echo_ids=echo,
                    notices=notices, names=names, **common)
    return Call("complete", model, arguments, n=n, logprobs=count, echo=prompt if echo else "",
                notices=notices, names=names, **common)


def _token_ids(prompt: Any) -> list[int] | None:
    """``prompt`` as token ids when it is a non-empty list of whole numbers, else None."""
    if isinstance(prompt, list) and prompt and all(isinstance(i, int) and not isinstance(i, bool) for i in prompt):
        return prompt
    return None
