"""What keeps the /v1 routes bounded and private: their own concurrency limit and waiting room, and the key.

Gradio's queue bounds the UI's events, not raw routes. ``Gate`` lets ``MODELDECK_API_CONCURRENCY``
requests generate at once (default ``MODELDECK_MAX_BATCH``: they meet in the same batch) and up to
``MODELDECK_API_QUEUE`` wait in order; a request beyond that is refused at once (429 with
``Retry-After``) instead of piling up. Everything here runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import hmac

from pipelines import settings
from pipelines.batching import max_batch


def api_concurrency() -> int:
    """How many API requests generate at once (``MODELDECK_API_CONCURRENCY``, default ``MODELDECK_MAX_BATCH``)."""
    return settings.get("MODELDECK_API_CONCURRENCY") or max_batch()


def api_queue() -> int:
    """How many API requests may wait for a slot (``MODELDECK_API_QUEUE``, default 16; 0 = none)."""
    return settings.get("MODELDECK_API_QUEUE")


def api_key() -> str:
    """The bearer key the API requires (``MODELDECK_API_KEY``); empty = open."""
    return settings.get("MODELDECK_API_KEY")


def authorized(header: str | None) -> bool:
    """True when no key is set, or ``header`` is ``Bearer <key>`` (compared in constant time)."""
    key = api_key()
    if not key:
        return True
    scheme, _, given = (header or "").partition(" ")
    return hmac.compare_digest(given.strip().encode(), key.encode()) and scheme.lower() == "bearer"


class Gate:
    """Admits requests up to the concurrency limit, queues a bounded number, refuses the rest."""

    def __init__(self) -> None:
        self.running = 0
        self.waiters: collections.deque[asyncio.Future] = collections.deque()

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in self.waiters)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about one turn per request ahead of it."""
        return 1 + self.waiting // api_concurrency()

    async def enter(self) -> bool:
        """Wait for a slot and return True, or return False at once when the waiting room is full."""
        if self.running < api_concurrency() and not self.waiting:
            self.running += 1
            return True
        if self.waiting >= api_queue():
            return False
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter  # ``leave`` hands its slot over: ``running`` stays the same
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot just as it gave up
                self.leave()
            raise
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
        return True

    def leave(self) -> None:
        """Free a slot: the longest waiter gets it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1


gate = Gate()
