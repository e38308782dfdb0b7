"""The interfaces task modules talk to: one per capability, whoever computes the answer.

A local backend runs a model of the registry on the engine; a remote one calls a server (an
OpenAI-compatible one such as vLLM, or Hugging Face Inference Providers). Streams are always the
same ``TextStream``: cumulative text, ``cancel()``/``close()`` stop the work, ``usage`` at the end.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..sampling import SamplingParams
from ..streaming import TextStream

Render = Callable[[list[str]], str]
Message = dict[str, str]


class ChatBackend(Protocol):
    """Streams an assistant reply to role/content messages (chat and story)."""

    name: str
    context_window: int
    repetition_penalty: float

    def stream_chat(self, messages: list[Message], params: SamplingParams, notices: list[str]) -> TextStream: ...


class TextBackend(Protocol):
    """Streams ``n`` continuations of a plain prompt (text generation)."""

    name: str
    context_window: int
    ignored: set[str]  # settings this backend cannot honour ("top_k", "repetition_penalty", "n", "seed")

    def stream_text(self, prompt: str, params: SamplingParams, n: int, notices: list[str],
                    render: Render) -> TextStream: ...


class Classifier(Protocol):
    """Scores texts against its labels."""

    name: str

    def classify(self, texts: list[str]) -> list[dict[str, float]]: ...


class Captioner(Protocol):
    """Describes a picture (a PIL image) in words."""

    name: str

    def caption(self, image: Any, max_new_tokens: int) -> str: ...


class Translator(Protocol):
    """Translates English text into Chinese."""

    name: str

    def translate(self, text: str) -> str: ...


def prompt_cut_notice(budget: int) -> str:
    """The notice that only the end of a text-generation prompt was used."""
    return (f"提示文本过长，只使用了最后 {budget} 个词元。 / "
            f"The prompt was too long; only its last {budget} tokens were used.")


def trimmed_notice(dropped: int, window: int) -> str:
    """The notice that old turns were left out."""
    return (f"对话太长，已省略最早的 {dropped} 条消息以适应模型的上下文窗口（{window} 个词元）。 / "
            f"The conversation was too long: the {dropped} oldest message(s) were left out to fit "
            f"the model's context window ({window} tokens).")


# Without the server's tokenizer at hand: cut as if each overflowing token were this many characters
# (most tokens are one or more), plus a margin for the estimate's error, so one cut is enough.
CHARS_PER_TOKEN_ESTIMATE = 2
CUT_MARGIN_CHARS = 16


def cut_by_estimate(content: str, overflow: int) -> str:
    """``content`` shortened by about ``overflow`` tokens (a remote model's tokens are counted, not at hand)."""
    return content[:max(1, len(content) - CHARS_PER_TOKEN_ESTIMATE * overflow - CUT_MARGIN_CHARS)]


def fit_messages(messages: list[Message], budget: int, count: Callable[[list[Message]], int],
                 shorten: Callable[[str, int], str], window: int, notices: list[str]) -> list[Message]:
    """Drop the oldest turns (then cut the last message, then the system prompt) until ``count`` ≤ ``budget``."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    dropped = 0
    size = count(system + turns)
    while size > budget and len(turns) > 1:
        turns = turns[1:]
        while len(turns) > 1 and turns[0]["role"] != "user":  # start on a user turn
            turns = turns[1:]
        dropped += 1
        size = count(system + turns)
    if dropped:
        notices.append(trimmed_notice(dropped, window))
    if size > budget:
        last = dict(turns[-1])
        last["content"] = shorten(last["content"], size - budget)
        turns = turns[:-1] + [last]
        if count(system + turns) > budget:  # a system prompt alone too large: drop it
            system = []
        notices.append(f"消息太长，只使用了前 {len(last['content'])} 个字符。 / "
                       f"The message was too long; only its first {len(last['content'])} characters were used.")
    return system + turns
