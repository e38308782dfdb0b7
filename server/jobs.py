"""One API request's generation: the ``pipelines`` stream behind it, read without blocking the event loop.

The request runs through the same functions, engine and continuous batcher as the UI, so API requests and
UI chats share decode steps. ``Job`` reads the stream one update at a time on a worker thread, cuts each
choice at its stop strings, works out what is new since the last event, and stops the generation when
the client goes away or every choice has met a stop string.
"""

from __future__ import annotations

from typing import Any, Iterator

import anyio

import pipelines
from pipelines import Usage
from ui.common import gpu

from .protocol import Call, PromptTokens, Tokens, finish_reason, in_request_terms, visible

_END = ("end",)


@gpu
def produce(call: Call, holder: dict[str, Any]) -> Iterator[tuple]:
    """Yield ("start", usage, seed, notices, echoed) once the request is accepted, ("rows", texts, pieces) per
    update, then ("end", usage, pieces); ``pieces`` (each row's text cut into the tokens that wrote it) only when
    the request asked for log-probabilities; ``echoed``, the prompt's tokens with theirs, only when it asked for
    them and for the prompt to be echoed."""
    task = pipelines.chat if call.task == "chat" else pipelines.generate_text
    if call.prompt_ids:  # the continuation follows the text the ids spell
        call.arguments["prompt"] = pipelines.prompt_text(call.prompt_ids, call.arguments["model"])
        call.echo = call.arguments["prompt"] if call.echo_ids else ""
    stream = task(**call.arguments)
    holder["stream"] = stream  # the same process (off ZeroGPU): cancel through it at once
    scored: list[str] = []
    echoed = None
    if call.echo and call.logprobs is not None:  # the ids as they were sent, or the text's own
        echoed = pipelines.prompt_logprobs(call.prompt_ids or call.echo, call.arguments["model"],
                                           top_logprobs=call.logprobs, notices=scored)
    notices = [in_request_terms(notice, call.names) for notice in call.notices + stream.notices + scored]
    yield "start", stream.usage, stream.seed, notices, echoed
    wanted = call.logprobs is not None
    for _ in stream:
        yield "rows", list(stream.texts), stream.pieces if wanted else None
    yield "end", stream.usage, stream.pieces if wanted else None


class Job:
    """A running request: the texts so far, what was sent, and how each choice ended."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self._holder: dict[str, Any] = {}
        self._items = produce(call, self._holder)
        self._inside = False  # a worker thread is reading the next item
        self.texts = [""] * call.n
        self.sent = [""] * call.n  # the text each choice's client has
        self.upto = [0] * call.n  # where that text ends in the choice's decoded text
        self.stopped = [False] * call.n
        self.usage = Usage()
        self.seed: int | None = None
        self.notices: list[str] = []
        self.echoed: PromptTokens | None = None  # the echoed prompt's tokens, when their log-probabilities were asked
        self.pieces: list[list[tuple[str, list[Any]]]] = [[] for _ in range(call.n)]
        self.tokens_sent = [0] * call.n
        self.over = False
        self.released = False  # its gate slot is free again

    async def start(self) -> None:
        """Check the inputs and queue the request (raises the pipeline's error)."""
        await self.advance()

    async def advance(self) -> bool:
        """Read the next update; False once the generation has ended or every choice has stopped."""
        if self.over:
            return False
        self._inside = True
        item = await anyio.to_thread.run_sync(self._next, abandon_on_cancel=True)
        if item[0] == "start":
            _, self.usage, self.seed, self.notices, self.echoed = item
        elif item[0] == "rows":
            self._keep(item[2])
            for i, text in enumerate(item[1][:self.call.n]):
                if not self.stopped[i]:
                    self.texts[i], self.stopped[i] = visible(text, self.call.stops, final=True)
            if all(self.stopped):
                self.cancel()
        else:
            if len(item) > 1:
                self.usage = item[1]
                self._keep(item[2])
            self.over = True
        return not self.over

    def _keep(self, pieces: list[list[tuple[str, list[Any]]]] | None) -> None:
        for i, row in enumerate((pieces or [])[:self.call.n]):
            self.pieces[i] = row

    def tokens(self, index: int, final: bool = False) -> Tokens:
        """Choice ``index``'s tokens not given yet whose text has been sent (at the end: all that wrote it).

        Each comes with the offset of its text in the choice. A token that only helps write a character
        waits for the piece it belongs to; tokens past a stop string are never given.
        """
        if self.call.logprobs is None:
            return []
        sent, start, ready = self.upto[index], 0, []
        for text, tokens in self.pieces[index]:
            if start + len(text) <= sent or (final and (start < sent or not self.stopped[index])):
                ready += [(start, token) for token in tokens]
            start += len(text)
        fresh = ready[self.tokens_sent[index]:]
        self.tokens_sent[index] = len(ready)
        return fresh

    def _next(self) -> tuple:
        try:
            return next(self._items, _END)
        finally:
            self._inside = False

    def news(self, final: bool = False) -> list[tuple[int, str]]:
        """(choice, new text) for every choice with text not sent yet; while streaming, held-back tails stay.

        Decoding may still change text already sent (a tokenizer's clean-up drops the space in "he 's"); a
        client that appends deltas keeps what it has, so what follows is sent from where its text ends.
        """
        out = []
        for i, text in enumerate(self.texts):
            shown = text if final or self.stopped[i] else visible(text, self.call.stops, final=False)[0]
            at = len(self.sent[i]) if shown.startswith(self.sent[i]) else _resume_at(shown, self.sent[i])
            if len(shown) > at:
                out.append((i, shown[at:]))
                self.sent[i] += shown[at:]
            self.upto[i] = len(shown)
        return out

    def reasons(self) -> list[str]:
        """Each choice's OpenAI finish reason."""
        each = self.usage.finish_reasons or [self.usage.finish_reason] * self.call.n
        return [finish_reason(reason, stopped) for reason, stopped in zip(each, self.stopped)]

    def cancel(self) -> None:
        """Stop the generation (a client that left, or every choice stopped); safe to call twice."""
        self.over = True
        stream = self._holder.get("stream")
        if stream is not None:
            stream.cancel()
        if not self._inside:  # a thread still reading ends with the stream; closing it under the thread fails
            self._items.close()


def _resume_at(shown: str, sent: str) -> int:
    """Where the text a client has (``sent``) ends in ``shown``: spaces decoding has since dropped are
    skipped, a character it has since changed counts as the one sent."""
    at = 0
    for ch in sent:
        if at < len(shown) and shown[at] == ch:
            at += 1
        elif not ch.isspace():
            at += 1
    return at
