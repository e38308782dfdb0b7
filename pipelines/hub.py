"""Fail fast when the Hugging Face Hub cannot be reached at all, and remember it for a while.

Without this, huggingface_hub retries a refused connection or an unknown host name five times
with back-off for every file a model needs: the first chat waited ~48 s for its (clear) error,
and each other tab waited again. Here a connection that cannot even be opened (name does not
resolve, connection refused, no answer within ``CONNECT_SECONDS``) fails at once without retries,
and later requests to that host fail immediately for ``REMEMBER_SECONDS``. Slow answers and 5xx
responses are untouched: the Hub client still retries those.

The failure is raised as huggingface_hub's ``OfflineModeIsEnabled`` (a ``ConnectionError``), which
it does not retry and which still lets it fall back to files already in the local cache.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0  # opening a TCP connection to a reachable Hub takes well under a second
REMEMBER_SECONDS = 60.0  # long enough for every tab of one visit to answer at once; short enough to notice recovery

_down: dict[str, float] = {}  # host -> monotonic time its connection failed
_lock = threading.Lock()
_installed = False


def unreachable_since(host: str, now: float | None = None) -> float | None:
    """When ``host`` was last found unreachable, if that is less than ``REMEMBER_SECONDS`` ago."""
    now = time.monotonic() if now is None else now
    with _lock:
        since = _down.get(host)
        if since is not None and now - since >= REMEMBER_SECONDS:
            del _down[host]
            since = None
    return since


def forget() -> None:
    """Forget every remembered failure (tests, or after the network is known to be back)."""
    with _lock:
        _down.clear()


class FastFailTransport:
    """An httpx transport that turns "cannot connect" into one quick, remembered, non-retried error."""

    def __init__(self, inner: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.clock = clock

    def handle_request(self, request: Any) -> Any:
        import httpx2
        from huggingface_hub.errors import OfflineModeIsEnabled

        host = request.url.host
        if unreachable_since(host, self.clock()) is not None:
            raise OfflineModeIsEnabled(f"{host} could not be reached a moment ago; not retrying for "
                                       f"{REMEMBER_SECONDS:.0f} s (no network access to the Hub)")
        timeouts = dict(request.extensions.get("timeout") or {})
        connect = timeouts.get("connect")
        timeouts["connect"] = CONNECT_SECONDS if connect is None else min(connect, CONNECT_SECONDS)
        request.extensions["timeout"] = timeouts
        try:
            return self.inner.handle_request(request)
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
            with _lock:
                _down[host] = self.clock()
            log.warning("cannot connect to %s (%s); Hub requests fail at once for %.0f s", host, exc,
                        REMEMBER_SECONDS)
            raise OfflineModeIsEnabled(f"cannot connect to {host} ({type(exc).__name__}): no network access "
                                       "to the Hub") from exc

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> "FastFailTransport":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def install() -> None:
    """Make huggingface_hub's shared HTTP client fail fast on unreachable hosts (once per process)."""
    global _installed
    if _installed:
        return
    import huggingface_hub
    from huggingface_hub.utils._http import default_client_factory  # the library's own settings, kept

    def factory() -> Any:
        client = default_client_factory()
        client._transport = FastFailTransport(client._transport)  # no public way to wrap the transport
        return client

    huggingface_hub.set_client_factory(factory)
    _installed = True
