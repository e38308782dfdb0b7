"""Turning a remote server's stream of chunks into the same ``TextStream`` local generation gives.

Texts are cumulative per sequence; a decoder that puts spaces between Chinese characters (a WordPiece
vocabulary such as GPT-2 Chinese's, decoded by the server) is recognised from the text and cleaned as
locally. Closing the stream (Stop, a closed tab, a story long enough) closes the HTTP response, so the
server sees the client go and stops generating. Usage comes from the server's usage chunk; a stream closed
before it counts one completion token per content chunk (servers send one token a chunk) and no prompt.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterator

from .. import settings
from ..decoding import Usage
from ..errors import PipelineError
from ..streaming import TextStream, looks_wordpiece_spaced, remove_cjk_spaces
from .base import Render
from .remote import Remote, broke_error, is_too_long, server_message, too_long_error

Pieces = Callable[[dict[str, Any]], list[tuple[int, str, str | None]]]  # (row, text, finish reason)
_FINISH = {"stop": "eos", "eos_token": "eos", "length": "length"}


def openai_pieces(field: str) -> Pieces:
    """Pieces of an OpenAI chunk: ``choices[i].delta.content`` (chat) or ``choices[i].text`` (completions)."""
    def pieces(event: dict[str, Any]) -> list[tuple[int, str, str | None]]:
        out = []
        for choice in event.get("choices") or []:
            if field == "delta":
                text = (choice.get("delta") or {}).get("content") or ""
            else:
                text = choice.get("text") or ""
            out.append((int(choice.get("index") or 0), text, choice.get("finish_reason")))
        return out
    return pieces


def remote_stream(remote: Remote, events: Iterator[dict[str, Any]], closer: Callable[[], None], *, rows: int,
                  pieces: Pieces, notices: list[str], seed: int | None, render: Render | None = None,
                  on_end: Callable[[list[str], Usage, list[str]], None] | None = None) -> TextStream:
    """Return a ``TextStream`` over ``events``; ``closer`` closes the HTTP response."""
    cancel = threading.Event()
    usage = Usage()
    record = remote.record
    started = record.started

    def texts() -> Iterator[list[str]]:
        raw = [""] * rows
        reasons = [""] * rows
        spaced = counted = False
        finished = False
        interval = settings.get("MODELDECK_STREAM_INTERVAL_MS") / 1000
        last = 0.0  # when the texts last went out (0: never)
        pending = False  # text that arrived within the interval and has not gone out yet

        def shown() -> list[str]:
            return [(remove_cjk_spaces(r) if spaced else r).replace("\ufffd", "") for r in raw]
        try:
            for event in events:
                if cancel.is_set():
                    break
                if isinstance(event.get("usage"), dict):
                    usage.prompt_tokens = int(event["usage"].get("prompt_tokens") or 0)
                    usage.completion_tokens = int(event["usage"].get("completion_tokens") or 0)
                    counted = True
                changed = False
                for row, text, finish in pieces(event):
                    if text and 0 <= row < rows:
                        raw[row] += text
                        changed = True
                        if not counted:  # a token a chunk, until the server's own count arrives
                            usage.completion_tokens += 1
                    if finish and 0 <= row < rows:
                        reasons[row] = _FINISH.get(finish, finish)
                if changed:
                    if record.first_token_s is None:
                        record.first_token_s = time.perf_counter() - started
                    spaced = spaced or looks_wordpiece_spaced("".join(raw))
                    if interval and last and time.monotonic() - last < interval:  # as locally
                        pending = True
                        continue
                    pending, last = False, time.monotonic()
                    yield shown()
            else:
                finished = True
            if finished and (pending or not last):  # the rest; or, when nothing readable came, render once
                yield shown()                         # (text generation shows the prompt, as locally)
            if finished and on_end is not None:
                on_end(raw, usage, stream.notices)
        except Exception as exc:
            record.error = str(exc)
            if pending and not cancel.is_set():  # what arrived within the interval is kept, then the error
                pending = False
                yield shown()
            raise
        finally:
            closer()
            record.total_s = time.perf_counter() - started
            if not finished or cancel.is_set():
                usage.finish_reason = "cancelled"
            else:
                usage.finish_reasons = [reason or "eos" for reason in reasons]
                usage.finish_reason = "length" if "length" in usage.finish_reasons else usage.finish_reasons[0]

    stream = TextStream(texts(), cancel_event=cancel, usage=usage, seed=seed, notices=notices, render=render)
    return stream


def sse_events(response: Any, remote: Remote, role: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield each JSON event of a server-sent-events stream until ``[DONE]``; an error event raises."""
    import httpx

    ended = False  # a finish reason or usage arrived: a missing [DONE] after it is harmless
    answered = False  # an event went out: a break now loses the rest of the answer, not all of it
    try:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("error"):
                message = server_message(json.dumps(event))
                if is_too_long(message):
                    raise too_long_error(remote.name, message, role)
                raise PipelineError(f"远程模型 {remote.name} 生成时出错：{message}",
                                    f"The remote model {remote.name} failed while generating: {message}")
            ended = ended or bool(event.get("usage")) or any(
                isinstance(c, dict) and c.get("finish_reason") for c in event.get("choices") or [])
            answered = True
            yield event
        if not ended:
            raise httpx.RemoteProtocolError("the stream ended before the reply did")
    except httpx.TimeoutException:
        raise PipelineError(
            f"远程模型 {remote.name} 中途停止发送（{settings.get('MODELDECK_REMOTE_TIMEOUT'):g} 秒无新内容，"
            "MODELDECK_REMOTE_TIMEOUT）。已显示收到的部分。",
            f"The remote model {remote.name} stopped sending (nothing for "
            f"{settings.get('MODELDECK_REMOTE_TIMEOUT'):g} s, MODELDECK_REMOTE_TIMEOUT); what arrived is shown."
        ) from None
    except httpx.HTTPError as exc:
        raise broke_error(remote.name, type(exc).__name__, answered) from None
