"""Backends for Hugging Face Inference Providers (and dedicated endpoints) through ``InferenceClient``.

``hf:<model id>[:<provider>]`` goes through the router with the token in ``HF_TOKEN`` (a Space secret);
``hf:<endpoint URL>[#<model>]`` calls that URL (an Inference Endpoint, TGI, or any server that speaks
the chat-completions protocol). ``HF_TOKEN`` goes to Hugging Face's own hosts only; another server gets the
key an entry's ``#key_env=`` names, or none. The client makes no retries of its own: a refused connection is tried
again here, before anything was received, like every remote backend.
"""

from __future__ import annotations

import io
import time
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from .. import settings
from ..errors import PipelineError
from ..registry import ModelSpec
from ..sampling import SamplingParams, resolve_seed
from ..streaming import TextStream
from .base import Message, Render, cut_by_estimate, fit_messages
from .remote import Remote, broke_error, is_too_long, too_long_error
from .streams import openai_pieces, remote_stream

ROUTER = "https://router.huggingface.co"
HF_DOMAINS = ("huggingface.co", "huggingface.cloud", "hf.space")  # Hub, router, Inference Endpoints, Spaces


def hugging_face_host(url: str) -> bool:
    """True when ``url``'s host is one of Hugging Face's (the only hosts ``HF_TOKEN`` goes to by itself)."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == domain or host.endswith("." + domain) for domain in HF_DOMAINS)


class HFRemote(Remote):
    """One ``hf:`` entry: a Hub model through a provider, or an endpoint URL."""

    def __init__(self, spec: ModelSpec) -> None:
        assert spec.entry is not None
        self.entry = spec.entry
        self.is_url = spec.entry.source.startswith(("http://", "https://"))
        super().__init__(spec.name, spec.entry.source if self.is_url else ROUTER,
                         spec.entry.model if self.is_url else spec.entry.source, spec.variable, "HF_TOKEN")

    @property
    def provider(self) -> str:
        return self.entry.provider or "auto"

    def key_variable(self) -> str:
        """``#key_env=``'s variable, else ``HF_TOKEN`` (sent only to Hugging Face's own hosts: ``api_key``)."""
        return self.entry.option("key_env") or "HF_TOKEN"

    def api_key(self) -> str:
        """The token this server gets: the entry's ``#key_env=`` variable; else ``HF_TOKEN``, but only for the
        router and Hugging Face's hosts (an Inference Endpoint): a Hugging Face token is not sent to a TGI or
        any other server an ``hf:<URL>`` entry names unless the entry says so (``#key_env=HF_TOKEN``)."""
        if self.entry.option("key_env"):
            return settings.secret(self.entry.option("key_env"))
        return settings.get("HF_TOKEN") if not self.is_url or hugging_face_host(self.base_url) else ""

    def no_key_hint(self) -> tuple[str, str]:
        if self.is_url and not self.entry.option("key_env") and not hugging_face_host(self.base_url):
            return (f"没有发送密钥：HF_TOKEN 只发给 Hugging Face 自己的服务器；要发给这个服务器，请在 {self.variable} 里"
                    "这个条目后写 #key_env=HF_TOKEN（或存放它的密钥的变量名）",
                    f"No key was sent: HF_TOKEN goes only to Hugging Face's own servers; to send a key to this one, "
                    f"add #key_env=HF_TOKEN (or the variable holding its key) to this entry in {self.variable}")
        return super().no_key_hint()

    def inference_client(self) -> Any:
        from huggingface_hub import InferenceClient

        key = self.api_key()
        # With no key of its own the client would read HF_TOKEN (or the saved login) by itself and send it
        # whatever the URL: an empty Authorization header, which its own headers cannot override, is sent instead.
        headers = {} if key else {"authorization": ""}
        timeout = settings.get("MODELDECK_REMOTE_TIMEOUT")
        if self.is_url:
            return InferenceClient(base_url=self.base_url, token=key or None, headers=headers, timeout=timeout)
        return InferenceClient(provider=self.provider, token=key or None, headers=headers, timeout=timeout)

    def call(self, fn: Callable[[Any], Any], role: str | None = None) -> Any:
        """Run ``fn(client)``, retrying a refused connection; turn the client's errors into ours."""
        attempts = 1 + settings.get("MODELDECK_REMOTE_RETRIES")
        for attempt in range(attempts):
            try:
                return fn(self.inference_client())
            except Exception as exc:  # the client raises httpx2's, huggingface_hub's and its own errors
                error = self.translate(exc, role)
                if error is not None:
                    raise error from None
                if attempt == attempts - 1:
                    raise self.unavailable(f"cannot connect: {type(exc).__name__}") from None
                time.sleep(min(2.0, 0.25 * 2 ** attempt))
        raise AssertionError("unreachable")

    def translate(self, exc: BaseException, role: str | None = None) -> PipelineError | None:
        """Our error for one of the client's (None: a connection failure worth retrying)."""
        from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

        if isinstance(exc, PipelineError):
            return exc
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            body = getattr(exc, "server_message", None) or exc.response.text
            return self.error_for(exc.response.status_code, body or "", exc.response.headers, role=role)
        kind = type(exc).__name__
        if isinstance(exc, InferenceTimeoutError) or "Timeout" in kind and "Connect" not in kind:
            return PipelineError(f"远程模型 {self.name} 超时（MODELDECK_REMOTE_TIMEOUT）。请稍后重试。",
                                 f"The remote model {self.name} timed out (MODELDECK_REMOTE_TIMEOUT). Please retry.")
        if "Connect" in type(exc).__name__:
            return None
        if isinstance(exc, ValueError) and is_too_long(str(exc)):
            return too_long_error(self.name, str(exc), role)
        return self.unavailable(f"{type(exc).__name__}: {str(exc)[:200]}")

    def started(self) -> None:
        self.record.started, self.record.first_token_s, self.record.total_s, self.record.error = (
            time.perf_counter(), None, None, None)

    def stream(self, open_: Callable[[Any], Iterator[Any]],
               role: str) -> tuple[Iterator[dict[str, Any]], Callable[[], None]]:
        """Open a streamed call for ``role``; return (events as dicts, closer)."""
        self.started()
        holder: dict[str, Any] = {}

        def start(client: Any) -> Any:
            holder["client"] = client  # keep the client alive while its stream is read
            chunks = open_(client)
            first = next(chunks)  # a refused request fails here, before anything reached the user
            return chunks, first
        try:
            chunks, first = self.call(start, role)
        except PipelineError as exc:
            self.record.error = str(exc)
            raise

        def events() -> Iterator[dict[str, Any]]:
            client = holder["client"]  # noqa: F841  # an InferenceClient closes its streams when collected
            try:
                yield dict(first)
                for chunk in chunks:
                    yield dict(chunk)
            except Exception as exc:  # mid-stream: reported, never retried
                raise self.translate(exc, role) or broke_error(self.name, type(exc).__name__, True) from None
        return events(), lambda: getattr(chunks, "close", lambda: None)()


def _seed(params: SamplingParams) -> int | None:
    return None if params.temperature <= 0 else resolve_seed(params.seed)


class HFChatBackend:
    """Chat and story through ``chat_completion`` (streamed, with usage)."""

    repetition_penalty = 1.0

    def __init__(self, remote: HFRemote, role: str = "chat") -> None:
        self.remote = remote
        self.role = role  # "chat" or "story": whose advice a refusal gives
        self.name = remote.name
        context = remote.entry.option("context")
        self.context_window = min(settings.get("MODELDECK_MAX_CONTEXT_TOKENS"), int(context) if context else 10**9)

    def stream_chat(self, messages: list[Message], params: SamplingParams, notices: list[str]) -> TextStream:
        count = self.remote.template_counter()  # #tokenizer=: trim the history as for openai: entries
        if count is not None:
            messages = fit_messages(messages, self.context_window - params.max_new_tokens, count, cut_by_estimate,
                                    self.context_window, notices)
        seed = _seed(params)
        options = {"model": self.remote.model, "stream": True, "max_tokens": params.max_new_tokens,
                   "temperature": params.temperature, "top_p": params.top_p, "seed": seed,
                   "stream_options": {"include_usage": True}}
        events, closer = self.remote.stream(lambda client: client.chat_completion(messages, **options), self.role)
        return remote_stream(self.remote, events, closer, rows=1, pieces=openai_pieces("delta"), notices=notices,
                             seed=seed)


def _tgi_pieces(event: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    token = event.get("token") or {}
    details = event.get("details") or {}
    finish = details.get("finish_reason") if isinstance(details, dict) else None
    return [(0, "" if token.get("special") else token.get("text") or "", finish)]


class HFTextBackend:
    """Text generation through ``text_generation`` (one sequence per request)."""

    ignored = {"n"}

    def __init__(self, remote: HFRemote) -> None:
        self.remote = remote
        self.name = remote.name
        context = remote.entry.option("context")
        self.context_window = min(settings.get("MODELDECK_MAX_CONTEXT_TOKENS"), int(context) if context else 10**9)

    def stream_text(self, prompt: str, params: SamplingParams, n: int, notices: list[str],
                    render: Render) -> TextStream:
        from .openai_compat import ignored_notice

        seed = _seed(params)
        if n > 1:
            notices.append(ignored_notice(self.name, [f"num_return_sequences={n}"]))
        options = {"model": self.remote.model, "stream": True, "details": True,
                   "max_new_tokens": params.max_new_tokens, "do_sample": params.temperature > 0,
                   "temperature": params.temperature or None, "top_p": min(params.top_p, 0.999),
                   "top_k": params.top_k or None, "repetition_penalty": params.repetition_penalty, "seed": seed}
        events, closer = self.remote.stream(lambda client: client.text_generation(prompt, **options), "textgen")
        return remote_stream(self.remote, events, closer, rows=1, pieces=_tgi_pieces, notices=notices, seed=seed,
                             render=lambda rows: render([prompt + r for r in rows]))


class HFClassifier:
    """Classification through ``text_classification`` (every label's score)."""

    def __init__(self, remote: HFRemote) -> None:
        self.remote = remote
        self.name = remote.name

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        from ..classify import readable_label

        self.remote.started()
        out = []
        for text in texts:
            scores = self.remote.call(lambda c: c.text_classification(text, model=self.remote.model, top_k=None))
            out.append(dict(sorted(((readable_label(s.label), float(s.score)) for s in scores), key=lambda kv: -kv[1])))
        self.remote.record.first_token_s = self.remote.record.total_s = time.perf_counter() - self.remote.record.started
        return out


class HFCaptioner:
    """Captions through ``image_to_text``."""

    def __init__(self, remote: HFRemote) -> None:
        self.remote = remote
        self.name = remote.name

    def caption(self, image: Any, max_new_tokens: int) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        self.remote.started()
        result = self.remote.call(lambda c: c.image_to_text(buffer.getvalue(), model=self.remote.model))
        self.remote.record.total_s = time.perf_counter() - self.remote.record.started
        return str(getattr(result, "generated_text", result) or "").strip()


class HFTranslator:
    """English → Chinese through ``translation``."""

    def __init__(self, remote: HFRemote) -> None:
        self.remote = remote
        self.name = remote.name

    def translate(self, text: str) -> str:
        self.remote.started()
        result = self.remote.call(lambda c: c.translation(text, model=self.remote.model))
        self.remote.record.total_s = time.perf_counter() - self.remote.record.started
        return str(getattr(result, "translation_text", result) or "").strip()
