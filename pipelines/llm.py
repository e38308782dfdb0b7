"""Where chat and story tokens come from.

Task functions talk to a ``ChatBackend``: it renders messages, fits them into its context window
and streams a reply. ``LocalChatBackend`` runs a transformers model through its chat template and the
model's continuous batcher; a remote OpenAI-compatible server (vLLM, TGI, Ollama) can implement the same
members later without touching ``chat.py`` or ``story.py``.
"""

from __future__ import annotations

from typing import Any, Protocol

from . import registry
from .inputs import env_int
from .batching import batcher_for
from .sampling import SamplingParams
from .streaming import TextStream
from .windows import model_window


class ChatBackend(Protocol):
    name: str
    context_window: int
    repetition_penalty: float

    def stream_chat(self, messages: list[dict[str, str]], params: SamplingParams,
                    notices: list[str]) -> TextStream: ...


def _fallback_template(messages: list[dict[str, str]]) -> str:
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


class LocalChatBackend:
    """A local causal LM driven through its chat template."""

    def __init__(self, loaded: registry.LoadedModel) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.processor
        self.name = loaded.spec.name
        self.context_window = min(model_window(loaded), env_int("MODELDECK_MAX_CONTEXT_TOKENS", 4096))
        # The model's own recommendation (Qwen2.5 ships 1.05), used by chat and story.
        self.repetition_penalty = float(getattr(loaded.model.generation_config, "repetition_penalty", None) or 1.0)

    def render(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return _fallback_template(messages)

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fit(self, messages: list[dict[str, str]], budget: int, notices: list[str]) -> str:
        """Render ``messages``, dropping the oldest turns (then cutting the last message) to fit ``budget``."""
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns = messages[len(system):]
        dropped = 0
        text = self.render(system + turns)
        while self.count(text) > budget and len(turns) > 1:
            turns = turns[1:]
            while len(turns) > 1 and turns[0]["role"] != "user":  # start on a user turn
                turns = turns[1:]
            dropped += 1
            text = self.render(system + turns)
        if dropped:
            notices.append(f"对话太长，已省略最早的 {dropped} 条消息以适应模型的上下文窗口（{self.context_window} 个词元）。 / "
                           f"The conversation was too long: the {dropped} oldest message(s) were left out to fit "
                           f"the model's context window ({self.context_window} tokens).")
        if self.count(text) > budget:
            last = dict(turns[-1])
            overflow = self.count(text) - budget
            ids = self.tokenizer(last["content"], add_special_tokens=False)["input_ids"]
            keep = max(1, len(ids) - overflow - 8)
            last["content"] = self.tokenizer.decode(ids[:keep], skip_special_tokens=True).rstrip("\ufffd")
            turns = turns[:-1] + [last]
            text = self.render(system + turns)
            if self.count(text) > budget:  # a system prompt alone too large: drop it
                text = self.render(turns)
            notices.append(f"消息太长，只使用了前 {keep} 个词元。 / "
                           f"The message was too long; only its first {keep} tokens were used.")
        return text

    def stream_chat(self, messages: list[dict[str, str]], params: SamplingParams,
                    notices: list[str]) -> TextStream:
        budget = self.context_window - params.max_new_tokens
        text = self.fit(messages, budget, notices)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return batcher_for(self.loaded).submit(ids, params, notices)


def chat_backend(role: str = "chat") -> ChatBackend:
    """Return the backend that serves ``role`` ("chat" or "story")."""
    return LocalChatBackend(registry.get_model(role))


def max_new_tokens_cap(backend: Any) -> int:
    """The most new tokens one request may ask for: a setting, and at most half the context window."""
    return max(1, min(env_int("MODELDECK_MAX_NEW_TOKENS", 1024), backend.context_window // 2))
