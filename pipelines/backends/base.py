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


# Only decides whether a conversation is worth counting whole before searching from its end: a text that
# long (more characters per token than tokenizers reach on prose) cannot fit. The result does not depend on it.
MAX_CHARS_PER_TOKEN = 8


def fit_messages(messages: list[Message], budget: int, count: Callable[[list[Message]], int],
                 shorten: Callable[[str, int], str], window: int, notices: list[str]) -> list[Message]:
    """Drop the oldest turns (then cut the last message, then the system prompt) until ``count`` ≤ ``budget``.

    The turns kept start on a user turn (or are the last message alone). A count renders and tokenizes the
    turns (for a remote model it is a request), so counting once per dropped turn made a long history
    quadratic. A conversation that may fit is counted whole first; otherwise the longest tail that fits is
    found by galloping back from the last message, then bisecting: a few counts of tails about the budget's
    size, however long the history (fewer turns never count more, so the result is the same).
    """
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    starts = sorted({0, max(len(turns) - 1, 0)} | {i for i, m in enumerate(turns) if m["role"] == "user"})
    sizes: dict[int, int] = {}

    def size_at(j: int) -> int:
        if j not in sizes:
            sizes[j] = count(system + turns[starts[j]:])
        return sizes[j]

    fits = 0
    may_fit = sum(len(m["content"]) for m in messages) <= budget * MAX_CHARS_PER_TOKEN
    if not (may_fit and size_at(0) <= budget):
        fits = last = len(starts) - 1  # the shortest tail, cut below if even it is too long
        tight = -1  # the longest tail known not to fit (-1: none yet)
        if size_at(last) <= budget:
            step = 1
            while fits > 0:
                j = max(last - step, 0)
                if size_at(j) > budget:
                    tight = j
                    break
                fits, step = j, step * 2
            while tight >= 0 and fits - tight > 1:
                middle = (tight + fits) // 2
                if size_at(middle) <= budget:
                    fits = middle
                else:
                    tight = middle
    dropped, size = starts[fits], size_at(fits)
    turns = turns[dropped:]
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
