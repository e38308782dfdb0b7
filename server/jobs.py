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

from .protocol import Call, finish_reason, visible

_END = ("end",)


@gpu
def produce(call: Call, holder: dict[str, Any]) -> Iterator[tuple]:
    """Yield ("start", usage, seed, notices) once the request is accepted, then ("rows", texts) per update."""
    task = pipelines.chat if call.task == "chat" else pipelines.generate_text
    stream = task(**call.arguments)
    holder["stream"] = stream  # the same process (off ZeroGPU): cancel through it at once
    yield "start", stream.usage, stream.seed, call.notices + stream.notices
    for _ in stream:
        yield "rows", list(stream.texts)
    yield "end", stream.usage


class Job:
    """A running request: the texts so far, what was sent, and how each choice ended."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self._holder: dict[str, Any] = {}
        self._items = produce(call, self._holder)
        self._inside = False  # a worker thread is reading the next item
        self.texts = [""] * call.n
        self.sent = [""] * call.n
        self.stopped = [False] * call.n
        self.usage = Usage()
        self.seed: int | None = None
        self.notices: list[str] = []
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
            _, self.usage, self.seed, self.notices = item
        elif item[0] == "rows":
            for i, text in enumerate(item[1][:self.call.n]):
                if not self.stopped[i]:
                    self.texts[i], self.stopped[i] = visible(text, self.call.stops, final=True)
            if all(self.stopped):
                self.cancel()
        else:
            if len(item) > 1:
                self.usage = item[1]
            self.over = True
        return not self.over

    def _next(self) -> tuple:
        try:
            return next(self._items, _END)
        finally:
            self._inside = False

    def news(self, final: bool = False) -> list[tuple[int, str]]:
        """(choice, new text) for every choice with text not sent yet; while streaming, held-back tails stay."""
        out = []
        for i, text in enumerate(self.texts):
            shown = text if final or self.stopped[i] else visible(text, self.call.stops, final=False)[0]
            if len(shown) > len(self.sent[i]) and shown.startswith(self.sent[i]):
                out.append((i, shown[len(self.sent[i]):]))
                self.sent[i] = shown
            elif final and shown != self.sent[i]:  # decoding changed sent text: send what follows the common part
                common = len(_common_prefix(shown, self.sent[i]))
                out.append((i, shown[common:]))
                self.sent[i] = shown
        return out

    def reasons(self) -> list[str]:
        """Each choice's OpenAI finish reason."""
        return [finish_reason(self.usage.finish_reason, stopped) for stopped in self.stopped]

    def cancel(self) -> None:
        """Stop the generation (a client that left, or every choice stopped); safe to call twice."""
        self.over = True
        stream = self._holder.get("stream")
        if stream is not None:
            stream.cancel()
        if not self._inside:  # a thread still reading ends with the stream; closing it under the thread fails
            self._items.close()


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
