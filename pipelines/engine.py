"""The one thread that runs inference, so that torch's OpenMP threads spin instead of sleeping.

PyTorch's CPU kernels run in OpenMP parallel regions, and every thread that enters one gets its own
team of OpenMP threads, kept until that thread ends. A decode step of a 0.5B model enters about 200
regions; between them the team's threads spin, and wake up at once, only while libgomp manages no
more threads than there are CPUs. A second long-lived thread that ever ran torch work (a Gradio
worker that classified a sentence, or loaded a model) breaks that on a 2-core machine: libgomp then
lets its threads sleep between regions, and each region pays a wake-up. Measured here: an int8 decode
step took 20.5 ms on the only torch thread and 31 ms once a second one existed.

So every model call runs on this one engine thread: one-shot calls (classify, caption, translate)
through ``call()``, and token generation as decoders that the engine steps in turn, so requests for
several models interleave step by step. Models load on short-lived threads of their own (see
``registry``), whose OpenMP threads end with them; a long load does not stall generation.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import logging
import os
import threading
import time
from typing import Any, Callable, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Decoder(Protocol):
    """Work the engine advances one step at a time."""

    finished: bool  # True when it has nothing to do: the engine forgets it until it is added again

    def ready_in(self, now: float) -> float | None:
        """Seconds until it has work (0: now), or None when it waits for something from outside."""

    def step(self) -> None:
        """Do one bounded piece of work (one forward pass)."""

    def fail(self, error: BaseException) -> None:
        """Hand ``error`` to everyone waiting on this decoder's work."""


class Engine:
    """Runs calls and decoder steps on one daemon thread, started on first use."""

    def __init__(self, name: str = "modeldeck-engine") -> None:
        self.name = name
        self._calls: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future]] = collections.deque()
        self._decoders: list[Decoder] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._working = False

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def decoders(self) -> list[Decoder]:
        """The decoders the engine still steps (or will step)."""
        with self._wake:
            return [d for d in self._decoders if not d.finished]

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the engine thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._wake:
            self._start()
            self._calls.append((lambda: fn(*args, **kwargs), future))
            self._wake.notify()
        return future.result()

    def add(self, decoder: Decoder) -> None:
        """Have the engine step ``decoder`` until it is finished (adding it twice changes nothing)."""
        with self._wake:
            self._start()
            if decoder not in self._decoders:
                self._decoders.append(decoder)
            self._wake.notify()

    def busy(self) -> bool:
        """True while the engine computes, has calls queued, or has decoders with work now or soon."""
        with self._wake:
            now = time.monotonic()
            return (self._working or bool(self._calls)
                    or any(d.ready_in(now) is not None for d in self._decoders if not d.finished))

    def stop(self, timeout: float = 10.0) -> None:
        """Let the step in progress finish, then end the thread (at exit: a torch kernel still running on a
        daemon thread while the interpreter shuts down aborts the process)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _start(self) -> None:
        if self._stopping:
            raise RuntimeError("the engine has stopped: the process is shutting down")
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                now = time.monotonic()
                self._decoders = [d for d in self._decoders if not d.finished]
                waits = [(d, d.ready_in(now)) for d in self._decoders]
                ready = [d for d, wait in waits if wait is not None and wait <= 0]
                call = self._calls.popleft() if self._calls else None
                if call is None and not ready:
                    self._working = False
                    self._wake.wait(min((w for _, w in waits if w is not None), default=None))
                    continue
                self._working = True
            if call is not None:  # one call, then one step of every ready decoder: neither starves
                fn, future = call
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:
                        future.set_exception(exc)
            for decoder in ready:
                try:
                    decoder.step()
                except BaseException as exc:
                    log.error("generation step failed", exc_info=exc)
                    decoder.fail(exc)


engine = Engine()
atexit.register(engine.stop)
# A forked child (ZeroGPU runs @spaces.GPU functions in one) has no engine thread and may have copied a
# held lock: it starts afresh.
os.register_at_fork(after_in_child=engine.__init__)


def in_own_thread(fn: Callable[..., T], *args: Any, name: str = "modeldeck-load") -> T:
    """Run ``fn(*args)`` on a new thread that ends afterwards (its OpenMP threads end with it)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn(*args)
        except BaseException as exc:
            result["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
