"""Timing by state, never by the clock: hold the engine, let forward passes through one permit at a time,
wait for a condition. A slow machine makes these tests slower, never different."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from pipelines.engine import engine

DEADLINE = 120  # seconds a state may take on a loaded 2-core machine before a hung test gives up


def wait_until(condition: Callable[[], bool], what: str | Callable[[], str]) -> None:
    """Return once ``condition()`` holds (a state, not a duration: the deadline only stops a hung test)."""
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for: {what() if callable(what) else what}"
        time.sleep(0.01)


class HeldEngine:
    """Holds the one engine thread (a blocking call) until the block ends: requests submitted meanwhile
    all wait, whatever the batch window, and are admitted together once it is released."""

    def __enter__(self) -> "HeldEngine":
        self.release, self.started = threading.Event(), threading.Event()

        def hold() -> None:
            self.started.set()
            self.release.wait(DEADLINE)

        self.thread = threading.Thread(target=engine.call, args=(hold,), daemon=True)
        self.thread.start()
        assert self.started.wait(DEADLINE), "the engine thread never took the holding call"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.thread.join(DEADLINE)


class PassGate:
    """A forward pre-hook on ``loaded``'s model that counts passes and their batch sizes; with ``permits``
    given, each pass first waits for a permit, so the test, not the clock, decides how far generation gets."""

    def __init__(self, loaded: Any, permits: int | None = None) -> None:
        self.sizes: list[int] = []
        self.shapes: list[tuple[int, ...]] = []  # each pass's input ids: (rows, tokens)
        self.arrived = 0  # passes that reached the gate, let through or not
        self.gated = permits is not None
        self.permits = threading.Semaphore(permits or 0)
        self.handle = loaded.model.register_forward_pre_hook(self._pass, with_kwargs=True)

    @property
    def passes(self) -> int:
        return len(self.sizes)

    def _pass(self, module: Any, args: Any, kwargs: Any) -> None:
        self.arrived += 1  # only the engine thread runs forward passes
        if self.gated and not self.permits.acquire(timeout=DEADLINE):
            raise RuntimeError("the test never let this forward pass run")
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.sizes.append(int(ids.shape[0]) if ids is not None else 0)
        self.shapes.append(tuple(ids.shape) if ids is not None else ())

    def allow(self, n: int) -> None:
        """Let ``n`` more forward passes run."""
        for _ in range(n):
            self.permits.release()

    def open(self) -> None:
        """Let every pass run from now on, still counting them."""
        self.gated = False
        self.allow(10_000)  # a pass already waiting for a permit

    def remove(self) -> None:
        """Open the gate and take the hook off the model."""
        self.open()
        self.handle.remove()

    def __enter__(self) -> "PassGate":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()
