"""What every remote backend shares: one HTTP client, timeouts, retries, errors, latency.

Retries (``MODELDECK_REMOTE_RETRIES``, with a short back-off) happen only before anything was
received: a refused connection, a connect timeout, 502/503/504. Once a stream has started nothing is
resent, so a reply is never duplicated. Connect and read timeouts are ``MODELDECK_REMOTE_TIMEOUT``
seconds (read: the longest silence between two chunks). Every failure becomes a ``PipelineError``
that says what to do; the key travels only in the ``Authorization`` header, never in a URL, a log
line, an error or the status tab.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import settings
from ..errors import InvalidInputError, PipelineError, RemoteBusyError, RemoteUnavailableError

log = logging.getLogger(__name__)

RETRY_STATUSES = {502, 503, 504}
_TOO_LONG = ("maximum context length", "too long", "max_model_len", "context length", "longer than",
             "exceeds the maximum", "input length")


def public_url(url: str) -> str:
    """``url`` without user, password, query or fragment (what may be shown or logged)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass
class CallRecord:
    """The last call to one remote backend, for the status tab."""

    started: float = 0.0
    first_token_s: float | None = None
    total_s: float | None = None
    error: str | None = None


def retry_after(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (a number or an HTTP date), if there is one."""
    value = (headers.get("retry-after") or "").strip() if headers is not None else ""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def server_message(body: bytes | str) -> str:
    """The human part of an error body: OpenAI's ``error.message``, FastAPI's ``detail``, or the text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message", data)))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:500]
    return str(data)[:500]


def is_too_long(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _TOO_LONG)


def broke_error(name: str, kind: str, answered: bool) -> PipelineError:
    """The error for a connection that broke (``kind``: the exception's name), mid-answer or before it."""
    if answered:
        return PipelineError(
            f"与远程模型 {name} 的连接在回答途中中断（{kind}）：已收到的部分保留着；"
            "服务器可能已停止，请稍后重试以得到完整的回答。",
            f"The connection to the remote model {name} broke mid-answer ({kind}): the part that arrived is kept; "
            "the server may have stopped, so retry in a moment for a whole answer.")
    return PipelineError(f"与远程模型 {name} 的连接中断（{kind}），还没有收到回答。请确认服务器仍在运行后重试。",
                         f"The connection to the remote model {name} broke before it answered ({kind}). Check that "
                         "the server is still running and retry.")


# What a user of each role can do when the request is more than the remote model's context holds.
TOO_LONG_ADVICE = {
    "chat": ("请清空对话或删去较早的消息、缩短消息，或调低“最多生成词元数”",
             "clear the chat or delete earlier messages, shorten the message, or lower “Max new tokens”"),
    "story": ("请缩短图片描述，或选一个更短的故事长度", "shorten the caption or choose a shorter story length"),
    "textgen": ("请缩短提示文本，或调低“最多生成词元数”", "shorten the prompt or lower “Max new tokens”"),
    None: ("请缩短输入", "shorten the input"),
}


def too_long_error(name: str, message: str, role: str | None = None) -> InvalidInputError:
    """The error for a request longer than the remote model's context, with the advice for ``role``."""
    zh, en = TOO_LONG_ADVICE.get(role, TOO_LONG_ADVICE[None])
    return InvalidInputError(f"输入超出了远程模型 {name} 的上下文长度：{zh}。（服务器：{message}）",
                             f"The input is longer than the remote model {name} accepts: {en}. (Server: {message})")


class Remote:
    """One remote target: base URL + model, a pooled HTTP client, and its last call."""

    entry: Any = None  # the model entry (its ``#`` options), set by each kind of remote

    def __init__(self, name: str, base_url: str, model: str | None, variable: str, api_key_setting: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.variable = variable
        self.api_key_setting = api_key_setting
        self.record = CallRecord()
        self._client: Any = None
        self._lock = threading.Lock()
        self.facts: dict[str, Any] = {}  # what was learnt about the server (context window, /tokenize, …)

    def template_counter(self) -> Any:
        """Count a conversation's prompt tokens with the local tokenizer the entry names (``#tokenizer=``, loaded
        once, its chat template), or None when it names none."""
        tok = self.local_tokenizer()
        if tok is None:
            return None
        return lambda ms: len(tok.apply_chat_template(ms, tokenize=True, add_generation_prompt=True, return_dict=False))

    def local_tokenizer(self) -> Any:
        """The local tokenizer the entry names (``#tokenizer=``), loaded once; None when it names none."""
        source = self.entry.option("tokenizer") if self.entry is not None else None
        if not source:
            return None
        if "tokenizer" not in self.facts:
            from transformers import AutoTokenizer

            self.facts["tokenizer"] = AutoTokenizer.from_pretrained(source)
        return self.facts["tokenizer"]

    @property
    def shown(self) -> str:
        return public_url(self.base_url)

    @property
    def root(self) -> str:
        """The server's root: vLLM serves ``/tokenize``, ``/classify`` and ``/health`` beside ``/v1``."""
        return self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url

    def client(self) -> Any:
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(follow_redirects=False)  # timeouts: per request, from the setting
            return self._client

    def key_variable(self) -> str:
        """The variable holding the key this server gets (its name only, never its value)."""
        return self.api_key_setting

    def api_key(self) -> str:
        """The key this server gets ('' for none)."""
        return settings.get(self.api_key_setting)

    def headers(self) -> dict[str, str]:
        key = self.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def key_refused(self, status: int) -> RemoteUnavailableError:
        """The error for a 401/403: the key sent was refused, or none was sent and one is needed."""
        var = self.key_variable()
        if self.api_key():
            return self.unavailable(f"HTTP {status}: the server refused the key",
                                    (f"服务器拒绝了密钥：请检查 {var}", f"The server refused the key: check {var}"))
        return self.unavailable(f"HTTP {status}: the server wants a key and none was sent", self.no_key_hint())

    def no_key_hint(self) -> tuple[str, str]:
        var = self.key_variable()
        return f"请把密钥设为 {var}", f"Set {var} to its key"

    def unavailable(self, reason: str, hint: tuple[str, str] | None = None) -> RemoteUnavailableError:
        return RemoteUnavailableError(f"{self.name} ({self.model or '?'} @ {self.shown})", self.variable, reason, hint)

    def no_endpoint(self, url: str) -> tuple[str, str]:
        """Why a running server has no ``url`` (a 404 that names no model), in Chinese and English."""
        path, var = urlsplit(url).path, self.variable
        if path.endswith("/classify"):
            return (f"这个服务器没有 /classify 接口：文本分类要用以 --runner pooling 启动的 vLLM，请修改 {var}",
                    f"This server has no /classify endpoint: classification needs vLLM started with --runner pooling; "
                    f"change {var}")
        if not self.base_url.endswith("/v1"):
            return (f"这个服务器没有 {path}：OpenAI 兼容服务的地址通常以 /v1 结尾，请检查 {var}",
                    f"This server has no {path}: an OpenAI-compatible address usually ends in /v1; check {var}")
        return f"这个服务器没有 {path} 接口，请检查 {var}", f"This server has no {path} endpoint; check {var}"

    def error_for(self, status: int, body: bytes | str, headers: Any = None, url: str | None = None,
                  role: str | None = None) -> PipelineError:
        """The error a user can act on for an HTTP error answer (``url``: the address asked, when known; ``role``:
        whose request it was, for the advice)."""
        message = server_message(body)
        if status == 429:
            return RemoteBusyError(self.name, retry_after(headers))
        if status in (401, 403):
            return self.key_refused(status)
        if status in (400, 413, 422) and is_too_long(message):
            return too_long_error(self.name, message, role)
        quoted = self.model and any(f"{q}{self.model}{q}" in message for q in "'\"`")
        if status == 404 and url and not quoted and "model" not in message.lower():  # no such path, not no such model
            return self.unavailable(f"HTTP 404: {message}", self.no_endpoint(url))
        if status == 404 or (status == 400 and quoted):
            return self.unavailable(f"HTTP {status}: {message}")  # the server does not serve this model
        if status in (400, 413, 422):
            return InvalidInputError(f"远程模型 {self.name} 拒绝了这个请求：{message}",
                                     f"The remote model {self.name} refused the request: {message}")
        if status in RETRY_STATUSES:
            return self.unavailable(f"HTTP {status}")
        return PipelineError(f"远程模型 {self.name} 出错（HTTP {status}）：{message}。请重试。",
                             f"The remote model {self.name} failed (HTTP {status}): {message}. Please retry.")

    def send(self, method: str, url: str, *, body: Any = None, stream: bool = False, timeout: float | None = None,
             retries: int | None = None, role: str | None = None) -> Any:
        """Send one request, retrying only failures where nothing was received; return the open response."""
        import httpx

        attempts = 1 + (settings.get("MODELDECK_REMOTE_RETRIES") if retries is None else retries)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                wait = settings.get("MODELDECK_REMOTE_TIMEOUT") if timeout is None else timeout
                request = self.client().build_request(method, url, json=body, headers=self.headers(),
                                                      timeout=httpx.Timeout(wait))
                response = self.client().send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise self.unavailable(f"cannot connect: {type(exc).__name__}") from None
            except httpx.TimeoutException:
                raise PipelineError(
                    f"远程模型 {self.name} 超时（{settings.get('MODELDECK_REMOTE_TIMEOUT'):g} 秒无响应，"
                    "MODELDECK_REMOTE_TIMEOUT）。请稍后重试。",
                    f"The remote model {self.name} timed out (no answer for "
                    f"{settings.get('MODELDECK_REMOTE_TIMEOUT'):g} s, MODELDECK_REMOTE_TIMEOUT). Please retry."
                ) from None
            except httpx.HTTPError as exc:
                raise self.unavailable(f"{type(exc).__name__}") from None
            else:
                if response.status_code < 300:
                    return response
                content = response.read()
                response.close()
                if response.status_code < 400:  # not followed: the key would go wherever it points
                    moved = public_url(response.headers.get("location") or "?")
                    raise self.unavailable(f"HTTP {response.status_code}: redirected to {moved}",
                                           (f"ModelDeck 不跟随跳转（密钥会被带过去）："
                                            f"请把 {self.variable} 里的地址改成跳转后的地址",
                                            "ModelDeck follows no redirect (the key would go along): put the address "
                                            f"it redirects to in {self.variable}"))
                if response.status_code not in RETRY_STATUSES or last:
                    raise self.error_for(response.status_code, content, response.headers, url, role)
            time.sleep(min(2.0, 0.25 * 2 ** attempt))  # back off before the next attempt
        raise AssertionError("unreachable")

    def json(self, method: str, url: str, body: Any = None, *, timeout: float | None = None,
             retries: int | None = None) -> Any:
        response = self.send(method, url, body=body, timeout=timeout, retries=retries)
        try:
            return response.json()
        except ValueError:
            raise PipelineError(f"远程模型 {self.name} 的回答不是 JSON（{public_url(url)}）："
                                f"请检查 {self.variable} 里的地址（OpenAI 兼容服务的地址通常以 /v1 结尾）。",
                                f"The remote model {self.name} did not answer with JSON ({public_url(url)}): check the "
                                f"address in {self.variable} (an OpenAI-compatible one usually ends in /v1).") from None
        finally:
            response.close()

    def probe(self, timeout: float = 2.0) -> bool:
        """True when the server answers ``GET /v1/models`` (or its root) within ``timeout`` seconds."""
        import httpx

        try:
            response = self.client().get(self.base_url + "/models", headers=self.headers(),
                                         timeout=httpx.Timeout(timeout))
            return response.status_code < 500
        except (httpx.HTTPError, PipelineError):  # PipelineError: no key may be sent (keys.check_shared_key)
            return False

