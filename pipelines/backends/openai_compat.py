"""Backends for any OpenAI-compatible server: vLLM, TGI, SGLang, llama.cpp, Ollama, ``transformers serve``.

Plain HTTP through ``httpx`` (already installed with gradio) rather than the ``openai`` SDK: the same
client also reaches the endpoints the SDK does not know (vLLM's ``/tokenize`` and ``/classify``), and
retries, timeouts and closing a stream mid-way stay under our control (the SDK retries 429s and
5xx on its own, which would hide the server's Retry-After from the user).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .. import settings
from ..decoding import Usage
from ..errors import InvalidInputError, PipelineError
from ..registry import ModelSpec
from ..sampling import SamplingParams, resolve_seed
from ..streaming import TextStream
from . import keys
from .base import Message, Render, cut_by_estimate, fit_messages, prompt_cut_notice
from .remote import Remote
from .streams import openai_pieces, remote_stream

log = logging.getLogger(__name__)

EXTRAS = ("top_k", "repetition_penalty")  # outside OpenAI's schema: vLLM takes them, strict servers refuse them
# Also outside it (vLLM's): a completions prompt tokenized as the local backend does, without the special tokens a
# WordPiece vocabulary wraps it in ([CLS] … [SEP]: the model would continue after its end-of-text token).
PLAIN_PROMPT = {"add_special_tokens": False}
UNSCHEMED = EXTRAS + tuple(PLAIN_PROMPT)


def refused_extras(remote: "OpenAIRemote", exc: InvalidInputError) -> bool:
    """True (and remembered) when a refusal names a field outside OpenAI's schema: send none of them again."""
    if not any(key in str(exc) for key in UNSCHEMED):
        return False
    remote.facts.setdefault("ignored", set()).update(EXTRAS)
    return True


def takes_extras(remote: "OpenAIRemote") -> bool:
    """False once the server has refused fields outside OpenAI's schema."""
    return "top_k" not in remote.facts.get("ignored", set())


class OpenAIRemote(Remote):
    """An OpenAI-compatible server and one of its served models."""

    def __init__(self, spec: ModelSpec) -> None:
        assert spec.entry is not None
        super().__init__(spec.name, spec.entry.source, spec.entry.model, spec.variable, "MODELDECK_OPENAI_API_KEY")
        self.entry = spec.entry

    def key_variable(self) -> str:
        return keys.key_variable(self.entry)

    def api_key(self) -> str:
        return keys.api_key(self.entry)

    def no_key_hint(self) -> tuple[str, str]:
        return (f"没有发送密钥：请在 {self.variable} 里这个条目后写 #key_env=存放它的密钥的变量名"
                f"（只有一台服务器时也可以设置 {keys.SHARED_KEY}）",
                f"No key was sent: add #key_env=<the variable holding its key> to this entry in {self.variable} "
                f"(with a single server, {keys.SHARED_KEY} also does)")

    def context_window(self) -> int:
        """The entry's ``#context=``, else the server's ``max_model_len`` (vLLM), capped by the setting."""
        cap = settings.get("MODELDECK_MAX_CONTEXT_TOKENS")
        if self.entry.option("context"):
            return min(cap, int(self.entry.option("context") or cap))
        return min(cap, int(self.served().get("max_model_len") or cap))

    def served(self) -> dict[str, Any]:
        """What ``/v1/models`` says of the served model (vLLM: ``max_model_len``, the ``root`` it loaded), asked
        once."""
        if "served" not in self.facts:
            listing = self.json("GET", self.base_url + "/models")  # also: the server is up, or a clear error now
            found = [m for m in (listing.get("data") or []) if isinstance(m, dict) and m.get("id") == self.model]
            self.facts["served"] = found[0] if found else {}
        return self.facts["served"]

    def label_names(self) -> dict[int, str]:
        """A classifier's own label names (``id2label`` of the ``#tokenizer=`` source, else of the folder or Hub
        id the server loaded, when this machine can read it); empty when neither can be read."""
        if "id2label" not in self.facts:
            from transformers import AutoConfig

            from ..classify import readable_label

            source = self.entry.option("tokenizer")
            try:
                source = source or self.served().get("root")
                config = AutoConfig.from_pretrained(source)
                self.facts["id2label"] = {int(i): readable_label(v) for i, v in (config.id2label or {}).items()}
            except Exception as exc:  # not readable here: the names come from the server's answers instead
                log.info("no label names for %s from %r: %s", self.name, source, type(exc).__name__)
                self.facts["id2label"] = {}
        return self.facts["id2label"]

    def counter(self) -> Any:
        """A function counting a conversation's prompt tokens, or None when nothing can count them."""
        if self.entry.option("tokenizer"):
            return self.template_counter()
        if self.facts.get("tokenize") is False:
            return None

        def count(messages: list[Message]) -> int:
            data = self.json("POST", self.root + "/tokenize",
                             {"model": self.model, "messages": messages, "add_generation_prompt": True}, retries=0)
            return int(data["count"])
        if self.facts.get("tokenize"):
            return count
        try:
            count([{"role": "user", "content": "hi"}])  # once: does this server have /tokenize?
            self.facts["tokenize"] = True
        except PipelineError:  # no /tokenize here (404): rely on the server's own "too long" answer
            self.facts["tokenize"] = False
            return None
        return count

    def open_stream(self, path: str, body: dict[str, Any], role: str) -> tuple[Any, Any]:
        """Start a streamed request for ``role``; return (events, closer)."""
        from .streams import sse_events

        self.record.started, self.record.first_token_s, self.record.total_s, self.record.error = (
            time.perf_counter(), None, None, None)
        try:
            response = self.send("POST", self.base_url + path, body=body, stream=True, role=role)
        except PipelineError as exc:
            self.record.error = str(exc)
            raise
        return sse_events(response, self, role), response.close


def _seed(params: SamplingParams) -> int | None:
    return None if params.temperature <= 0 else resolve_seed(params.seed)


class OpenAIChatBackend:
    """Chat and story through ``/v1/chat/completions``, streamed with usage."""

    repetition_penalty = 1.0  # the server applies the model's own generation settings

    def __init__(self, remote: OpenAIRemote, role: str = "chat") -> None:
        self.remote = remote
        self.role = role  # "chat" or "story": whose advice a refusal gives
        self.name = remote.name
        self.context_window = remote.context_window()

    def stream_chat(self, messages: list[Message], params: SamplingParams, notices: list[str]) -> TextStream:
        count = self.remote.counter()
        if count is not None:
            messages = fit_messages(messages, self.context_window - params.max_new_tokens, count, cut_by_estimate,
                                    self.context_window, notices)
        seed = _seed(params)
        body: dict[str, Any] = {"model": self.remote.model, "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True}, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "top_p": params.top_p}
        if seed is not None:
            body["seed"] = seed
        events, closer = self.remote.open_stream("/chat/completions", body, self.role)
        return remote_stream(self.remote, events, closer, rows=1, pieces=openai_pieces("delta"), notices=notices,
                             seed=seed)


def ignored_notice(name: str, ignored: list[str]) -> str:
    """The notice that a backend ignores some settings."""
    shown = ", ".join(ignored)
    return (f"远程模型 {name} 不支持这些设置，已忽略：{shown}。 / "
            f"The remote model {name} does not support these settings, so they were ignored: {shown}.")


class OpenAITextBackend:
    """Text generation through ``/v1/completions`` (``n``, ``seed``; ``top_k`` and ``repetition_penalty`` as extras)."""

    def __init__(self, remote: OpenAIRemote) -> None:
        self.remote = remote
        self.name = remote.name
        self.context_window = remote.context_window()

    @property
    def ignored(self) -> set[str]:
        return set(self.remote.facts.get("ignored", set()))

    def fit(self, prompt: str, params: SamplingParams, notices: list[str]) -> str:
        """The end of ``prompt`` that leaves room for the reply in the context window, as locally, counted with the
        entry's ``#tokenizer=`` (without it a prompt too long is the server's to refuse)."""
        tok = self.remote.local_tokenizer()
        budget = self.context_window - params.max_new_tokens
        if tok is None:
            return prompt
        encoded = tok(prompt, add_special_tokens=False, return_offsets_mapping=tok.is_fast)
        if len(encoded["input_ids"]) <= budget:
            return prompt
        from .local import kept_end

        notices.append(prompt_cut_notice(budget))
        return kept_end(prompt, encoded, budget, tok)

    def stream_text(self, prompt: str, params: SamplingParams, n: int, notices: list[str],
                    render: Render) -> TextStream:
        seed = _seed(params)
        prompt = self.fit(prompt, params, notices)
        body: dict[str, Any] = {"model": self.remote.model, "prompt": prompt, "stream": True, "n": n,
                                "stream_options": {"include_usage": True}, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "top_p": params.top_p,
                                "top_k": params.top_k, "repetition_penalty": params.repetition_penalty}
        if seed is not None:
            body["seed"] = seed
        facts = self.remote.facts
        if takes_extras(self.remote):
            body.update(PLAIN_PROMPT)
        else:
            for key in EXTRAS:
                body.pop(key)
        try:
            events, closer = self.remote.open_stream("/completions", body, "textgen")
        except InvalidInputError as exc:  # a strict server refuses fields outside OpenAI's schema: drop them
            if not refused_extras(self.remote, exc):
                raise
            for key in UNSCHEMED:
                body.pop(key, None)
            events, closer = self.remote.open_stream("/completions", body, "textgen")
        used = [k for k in EXTRAS if k not in body and getattr(params, k) not in (0, 1.0)]
        if used:
            notices.append(ignored_notice(self.name, used))

        def on_end(rows: list[str], usage: Usage, shown_notices: list[str]) -> None:
            if n > 1 and not any(rows[1:]):  # the server gave one sequence for n (transformers serve ignores n)
                facts.setdefault("ignored", set()).add("n")
                shown_notices.append(ignored_notice(self.name, [f"num_return_sequences={n}"]))

        def shown(rows: list[str]) -> str:
            return render([prompt + r for r in ([r for r in rows if r] or rows[:1])])

        return remote_stream(self.remote, events, closer, rows=n, pieces=openai_pieces("text"), notices=notices,
                             seed=seed, render=shown, on_end=on_end)


class OpenAIClassifier:
    """Classification through vLLM's pooling ``/classify`` (a server started with ``--runner pooling``)."""

    def __init__(self, remote: OpenAIRemote) -> None:
        self.remote = remote
        self.name = remote.name

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        from ..classify import readable_label

        names: dict[int, str] = self.remote.facts.setdefault("labels", dict(self.remote.label_names()))
        started = time.perf_counter()
        self.remote.record.started, self.remote.record.error = started, None
        data = self.remote.json("POST", self.remote.root + "/classify", {"model": self.remote.model, "input": texts})
        self.remote.record.first_token_s = self.remote.record.total_s = time.perf_counter() - started
        results: list[dict[str, float]] = [{} for _ in texts]
        for item in data.get("data") or []:
            probs = [float(p) for p in item.get("probs") or []]
            if not probs:
                continue
            top = max(range(len(probs)), key=probs.__getitem__)
            if item.get("label") is not None and top not in names:  # the server names only the top class
                names[top] = readable_label(item["label"])
            labels = [names.get(i) or readable_label(f"LABEL_{i}") for i in range(len(probs))]
            results[int(item.get("index") or 0)] = dict(sorted(zip(labels, probs), key=lambda kv: -kv[1]))
        return results
