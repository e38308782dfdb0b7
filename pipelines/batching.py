"""Micro-batching: chat and story requests that arrive close together share one ``generate``.

Decoding a small LLM on a CPU is bound by reading the weights once per step; a batch of four rows
reads them once for all four. Requests wait at most ``MODELDECK_BATCH_WINDOW_MS`` (30) for company,
at most ``MODELDECK_MAX_BATCH`` (4) rows run together, and each keeps its own settings, seed, stream
and Stop. A request that arrives while a batch runs waits for the next one (micro-batching, not
continuous batching).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from .inputs import env_int
from .streaming import END_OF_STREAM, Request, SamplingParams, TextStream, consume, resolve_seed, run_batch

def max_batch() -> int:
    """How many requests may share one generate (``MODELDECK_MAX_BATCH``, default 4)."""
    return env_int("MODELDECK_MAX_BATCH", 4)


class MicroBatcher:
    """Collects requests for one model and runs them in batches, one batch at a time."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        self.pending: queue.Queue[Request] = queue.Queue()
        self.batches_run = 0
        self.largest_batch = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, prompt: list[int], params: SamplingParams, notices: list[str]) -> TextStream:
        """Queue one prompt; return its stream (tokens start once its batch runs)."""
        seed = None if params.temperature <= 0 else resolve_seed(params.seed)
        request = Request([prompt], SamplingParams(**{**params.__dict__, "seed": seed}))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="modeldeck-batcher", daemon=True)
                self._thread.start()
        self.pending.put(request)
        return consume(self.loaded, request, notices=notices)

    def _collect(self) -> list[Request]:
        batch = [self.pending.get()]
        window = env_int("MODELDECK_BATCH_WINDOW_MS", 30) / 1000
        deadline = time.monotonic() + window
        while len(batch) < max_batch():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.pending.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            live = [r for r in batch if not r.cancel.is_set()]
            for request in batch:
                if request not in live:  # stopped while waiting: nothing to compute
                    request.sink.put(END_OF_STREAM)
            if live:
                self.batches_run += 1
                self.largest_batch = max(self.largest_batch, len(live))
                run_batch(self.loaded, live)


_guard = threading.Lock()


def batcher_for(loaded: Any) -> MicroBatcher:
    """The one batcher of a loaded model."""
    with _guard:
        if "batcher" not in loaded.extras:
            loaded.extras["batcher"] = MicroBatcher(loaded)
        return loaded.extras["batcher"]
