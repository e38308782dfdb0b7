"""How requests reach the decode loop: continuous batching for chat and story, solo runs for text generation.

Decoding a small LLM on a CPU is bound by reading the weights once per step; a batch of four rows
reads them once for all four. Each model's ``Batcher`` keeps one ``DecodeBatch`` that the engine steps.
When it is idle, a request waits a short while for company, so requests that arrive together are
prefilled together: ``MODELDECK_BATCH_WINDOW_MS`` when it is set, else at most 30 ms and at most a quarter
of the model's latest prefill (per request), so that waiting never dominates the first token where a
prefill is quick (on an H200, 30 ms of waiting was half of a 200-token prompt's first token). While it
runs, a new request joins at the next step (after its own prefill) as long as fewer than
``MODELDECK_MAX_BATCH`` (4) requests are running or being read, and the others wait in order. Prompts are
read ``MODELDECK_PREFILL_CHUNK`` tokens a step (``decoding.Prefill``), the one with the fewest tokens left
first, and the running rows take a decode step between two chunks: a long prompt neither halts the chats
already streaming nor keeps a short one waiting. Each request keeps its own settings, seed, stream and Stop.

Text generation runs each request on its own (``stream_generate``). A seed gives the same tokens either
way: int8 layers scale each token's activations on their own (``int8.py``), so company changes nothing.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

from .decoding import DecodeBatch, Request
from .engine import engine
from . import settings
from .sampling import SamplingParams, resolve_seed
from .streaming import TextStream, consume

log = logging.getLogger(__name__)


AUTO_WINDOW = 0.030  # the longest automatic wait for company, seconds
WINDOW_SHARE = 0.25  # ... and at most this share of the latest prefill's time per request


def max_batch() -> int:
    """How many requests may run together (``MODELDECK_MAX_BATCH``, default 4)."""
    return settings.get("MODELDECK_MAX_BATCH")


def _request(rows: list[list[int]], params: SamplingParams) -> Request:
    seed = None if params.temperature <= 0 else resolve_seed(params.seed)
    return Request(rows, SamplingParams(**{**params.__dict__, "seed": seed}))


class Batcher:
    """Collects requests for one model into one continuously batched ``DecodeBatch`` (an engine decoder)."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        self.batch = DecodeBatch(loaded, reuse_prefixes=True)
        self.pending: collections.deque[tuple[float, Request]] = collections.deque()
        self._lock = threading.Lock()
        self.batches_run = 0  # prefills: groups of requests admitted together
        self.largest_batch = 0  # most requests decoded at once
        self.joined_running = 0  # requests admitted while others were generating
        self.prefill_seconds: float | None = None  # the latest admission's prefill time per request

    def submit(self, prompt: list[int], params: SamplingParams, notices: list[str]) -> TextStream:
        """Queue one prompt; return its stream (tokens start once it is admitted)."""
        request = _request([prompt], params)
        with self._lock:
            self.pending.append((time.monotonic(), request))
        engine.add(self)
        return consume(self.loaded, request, notices=notices)

    @property
    def finished(self) -> bool:
        """Nothing running or waiting: the engine forgets it until ``submit`` adds it again."""
        with self._lock:
            return not self.batch.rows and not self.batch.filling and not self.pending

    def ready_in(self, now: float) -> float | None:
        if self.batch.rows or self.batch.filling:
            return 0
        with self._lock:
            if not self.pending:
                return None
            if len(self.pending) >= max_batch():
                return 0
            return self.pending[0][0] + self.window() - now

    def window(self) -> float:
        """How long a lone request waits for company, in seconds (see the module's docstring)."""
        chosen = settings.get("MODELDECK_BATCH_WINDOW_MS")
        if chosen is not None:
            return chosen / 1000
        if self.prefill_seconds is None:  # no prefill measured yet
            return AUTO_WINDOW
        return min(AUTO_WINDOW, WINDOW_SHARE * self.prefill_seconds)

    def step(self) -> None:
        batch = self.batch
        running = len(batch.requests)
        room = max_batch() - running - sum(len(prefill.requests) for prefill in batch.filling)
        if room > 0 and batch.can_merge():
            new = self._take(room)
            if new:  # read alongside any prompt being read: the one with the fewest tokens left goes first
                self.batches_run += 1
                self.joined_running += len(new) if running else 0
                try:
                    batch.begin(new)
                except BaseException as exc:  # only the newcomers fail; the running rows go on
                    log.error("prefill failed", exc_info=exc)
                    for request in new:
                        request.finish(exc)
        if batch.filling:  # one chunk of a prompt being read, then a step for the rows already running
            joined = batch.fill()
            if joined is not None:
                self.prefill_seconds = joined.seconds / len(joined.requests)
                self.largest_batch = max(self.largest_batch, len(batch.requests))
        if batch.rows:
            batch.step()

    def fail(self, error: BaseException) -> None:
        self.batch.fail(error)

    def _take(self, room: int) -> list[Request]:
        live: list[Request] = []
        with self._lock:
            while self.pending and len(live) < room:
                _, request = self.pending.popleft()
                if request.cancel.is_set():  # stopped while waiting: nothing to compute
                    request.finish()
                else:
                    live.append(request)
        return live


class _Solo:
    """One request decoded on its own (an engine decoder that finishes with it)."""

    def __init__(self, loaded: Any, request: Request) -> None:
        self.batch, self.request = DecodeBatch(loaded), request
        self.admitted = self.finished = False

    def ready_in(self, now: float) -> float | None:
        return 0

    def step(self) -> None:
        if not self.admitted:
            self.admitted = True
            self.batch.begin([self.request])
        if self.batch.filling:  # a chunk of the prompts at a time: other models' decoders run in between
            self.batch.fill()
        elif self.batch.rows:
            self.batch.step()
        self.finished = not self.batch.rows and not self.batch.filling

    def fail(self, error: BaseException) -> None:
        self.batch.fail(error)
        self.request.finish(error)
        self.finished = True


def stream_generate(loaded: Any, input_ids: Any, attention_mask: Any, params: SamplingParams, *,
                    notices: list[str] | None = None,
                    render: Callable[[list[str]], str] | None = None) -> TextStream:
    """Generate from a batch of prompts as one request of its own; return the stream of continuations."""
    rows = [[int(t) for t, m in zip(ids, keep) if m] for ids, keep in zip(input_ids.tolist(),
                                                                          attention_mask.tolist())]
    request = _request(rows, params)
    engine.add(_Solo(loaded, request))
    return consume(loaded, request, notices=notices, render=render)


_guard = threading.Lock()


def batcher_for(loaded: Any) -> Batcher:
    """The one batcher of a loaded model."""
    with _guard:
        if "batcher" not in loaded.extras:
            loaded.extras["batcher"] = Batcher(loaded)
        return loaded.extras["batcher"]
