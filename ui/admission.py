"""Admission to the queue: each model group waits in its own bounded line, and a full line refuses at once,
in both languages, saying how long to wait.

Gradio 6.31's queue has one bound, ``queue(max_size=)``, on the count of waiting requests of every group
together; beyond it, it answers HTTP 503 with a fixed English text ("Queue is full! Please try again." in
gradio_client, which raises ``QueueError``; "This application is currently busy." on the page), and that
text cannot be set. So a request is checked here on arrival, before gradio queues it, against the line of
its concurrency group (``ui.common``: chat, text generation, classification, caption, speech) and against
the total. A refused request is answered the way gradio answers a function that raised ``gr.Error``: a
finished event carrying the message, so the page shows it as an error toast and gradio_client raises
``AppError`` with its text. Admitted requests are gradio's: its own display shows their place in line and
the expected wait, and a visitor who leaves gives up their place (gradio removes their events).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio import route_utils
from gradio.queueing import Event, Queue
from gradio.server_messages import ProcessCompletedMessage
from gradio.utils import error_payload

from pipelines import BusyError
from pipelines import settings

from .common import CAPTIONER, CLASSIFIER, LLM, SPEECH, TEXTGEN

log = logging.getLogger("modeldeck.ui")
# Gradio 6.31's page titles every error toast "Error" (its frontend reads a field its client never sets);
# clients that read the title get this one. The message itself starts by saying what happened.
TITLE = "排队已满 / The line is full"


@dataclass(frozen=True)
class Line:
    """One concurrency group's line: its names, its variable (default length in ``pipelines.settings``), and what
    a request costs."""

    zh: str
    en: str
    variable: str
    seconds: float  # a typical request on a 2-vCPU CPU Space (bench/README.md), until gradio has measured


# Defaults: about 90 s of waiting at the back of a full line, i.e. 90 s × requests run at once / seconds
# each, capped at 200 (see README "Queue"). Fast tasks may queue far more than long generations.
LINES = {
    LLM: Line("对话 / 故事", "chat and stories", "MODELDECK_QUEUE_CHAT", 30.0),
    TEXTGEN: Line("文本生成", "text generation", "MODELDECK_QUEUE_TEXTGEN", 2.0),
    CLASSIFIER: Line("文本分类", "classification", "MODELDECK_QUEUE_CLASSIFY", 0.1),
    CAPTIONER: Line("图片描述", "picture captions", "MODELDECK_QUEUE_CAPTION", 3.5),
    SPEECH: Line("语音合成", "speech", "MODELDECK_QUEUE_SPEECH", 1.0),
}
TOTAL_VARIABLE = "MODELDECK_QUEUE_SIZE"


def line_lengths() -> dict[str, int]:
    """How many requests may wait in each group's line (``MODELDECK_QUEUE_<GROUP>``)."""
    return {group: settings.get(line.variable) for group, line in LINES.items()}


def total_length() -> int:
    """How many requests may wait in all lines together (``MODELDECK_QUEUE_SIZE``), a safety bound."""
    return settings.get(TOTAL_VARIABLE)


def wait_text(seconds: float) -> tuple[str, str]:
    """A wait rounded up for people: (Chinese, English), e.g. ("约 40 秒", "about 40 s")."""
    if seconds < 90:
        s = max(5, 5 * math.ceil(seconds / 5))
        return f"约 {s} 秒", f"about {s} s"
    minutes = math.ceil(seconds / 60)
    return f"约 {minutes} 分钟", f"about {minutes} min"


def busy_error(group: str | None, waiting: int, seconds: float) -> BusyError:
    """The refusal for a full line (``group``) or a full Space (``None``), saying when to come back."""
    zh_wait, en_wait = wait_text(seconds)
    requests = f"{waiting} request is" if waiting == 1 else f"{waiting} requests are"
    if group in LINES:
        line = LINES[group]
        return BusyError(f"「{line.zh}」的排队已满：已有 {waiting} 个请求在等，{zh_wait}后会轮完。"
                         f"请到时再试，或先用其他功能。",
                         f"The line for {line.en} is full: {requests} waiting, to be served "
                         f"in {en_wait}. Please try again then, or use another tab meanwhile.")
    return BusyError(f"现在访问的人太多：共有 {waiting} 个请求在排队。请{zh_wait}后再试。",
                     f"The Space is very busy: {requests} waiting in all. Please try again in "
                     f"{en_wait}.")


class Admission:
    """Checks each request against its group's line and the total before gradio's queue takes it."""

    def __init__(self, queue: Queue, lengths: dict[str, int], total: int) -> None:
        self.queue = queue
        self.lengths = lengths
        self.total = total
        self.push = queue.push
        self.lock: asyncio.Lock | None = None  # made in the server's event loop, on the first request
        self.loop: asyncio.AbstractEventLoop | None = None

    def seconds_each(self, fn: Any) -> float:
        """Gradio's measured average for ``fn``, else its group's typical cost."""
        measured = self.queue.process_time_per_fn.get(fn)
        if measured is not None and measured.avg_time:
            return measured.avg_time
        line = LINES.get(fn.concurrency_id)
        return line.seconds if line else 1.0

    def waiting(self, group: str) -> list[Event]:
        """The requests of ``group`` waiting for their turn (not those running)."""
        line = self.queue.event_queue_per_concurrency_id.get(group)
        return list(line.queue) if line else []

    def expected_wait(self, group: str, fn: Any) -> float:
        """Seconds until the requests now in ``group``'s line have been served."""
        line = self.queue.event_queue_per_concurrency_id.get(group)
        limit = (line.concurrency_limit if line else None) or fn.concurrency_limit
        limit = limit if isinstance(limit, int) and limit > 0 else 1
        return (sum(self.seconds_each(e.fn) for e in self.waiting(group)) + self.seconds_each(fn)) / limit

    def refusal(self, fn: Any) -> BusyError | None:
        """Why ``fn``'s request cannot wait now, or None when it may."""
        group = fn.concurrency_id
        waiting = len(self.waiting(group))
        if group in self.lengths and waiting >= self.lengths[group]:
            return busy_error(group, waiting, self.expected_wait(group, fn))
        total = len(self.queue)
        if total >= self.total:
            seconds = max((self.expected_wait(g, q.queue[0].fn)
                           for g, q in self.queue.event_queue_per_concurrency_id.items() if q.queue), default=0)
            return busy_error(None, total, seconds)
        return None

    async def __call__(self, body: Any, request: Any, username: str | None) -> tuple[bool, Any, str]:
        """``Queue.push`` with the check first: a refused request gets its answer without waiting."""
        if body.fn_index is None:
            return await self.push(body=body, request=request, username=username)
        fn = route_utils.get_fn(self.queue.blocks, None, body)
        loop = asyncio.get_running_loop()
        if self.lock is None or self.loop is not loop:  # a relaunched server runs in a new event loop
            self.lock, self.loop = asyncio.Lock(), loop
        async with self.lock:  # check and enqueue as one step, so a burst cannot overshoot the line
            error = self.refusal(fn)
            if error is None:
                return await self.push(body=body, request=request, username=username)
        log.info("refused a request for %s: %s", fn.api_name or fn.concurrency_id, error.en)
        return await self.answer(body, request, username, fn, error)

    async def answer(self, body: Any, request: Any, username: str | None, fn: Any,
                     error: BusyError) -> tuple[bool, str, str]:
        """Finish the request at once with ``error``, as gradio finishes one whose function raised it."""
        event = Event(body.session_hash, fn, request, username)
        body.session_hash = event.session_hash
        queue = self.queue
        async with queue.pending_message_lock:
            if event.session_hash not in queue.pending_messages_per_session:
                queue.pending_messages_per_session[event.session_hash] = asyncio.Queue()
            queue.pending_event_ids_session.setdefault(event.session_hash, set()).add(event._id)
        shown = gr.Error(str(error), title=TITLE, print_exception=False)
        output = error_payload(shown, True)
        queue.send_message(event, ProcessCompletedMessage(output=output, title=TITLE, success=False))
        return True, event._id, "success"


PROGRESS_EVERY_S = 0.1  # how often gradio sends a progress bar's state (its default: every 10 ms)
BUSY_POLL_S = 0.001  # gradio's own interval on Linux


class PollingQueue(Queue):
    """Gradio's queue looks for work every 1 ms (``sleep_when_free``), and for progress to send every 10 ms,
    whether anything waits or not: ~10 % of a core with nobody on the page (bench/idle_cpu.py). This one looks
    every ``MODELDECK_QUEUE_POLL_MS`` while no request waits (the next one starts at most that much later), and
    every 1 ms as before while some wait for a free slot, so a burst is served as quickly as before."""

    idle_poll_s = 0.02

    @property
    def sleep_when_free(self) -> float:
        return BUSY_POLL_S if len(self) else self.idle_poll_s

    @sleep_when_free.setter
    def sleep_when_free(self, value: float) -> None:
        pass  # gradio's __init__ sets its fixed interval


def install(blocks: gr.Blocks) -> Admission:
    """Put the per-group lines in front of ``blocks``' queue (call after ``blocks.queue()``)."""
    queue = blocks._queue
    queue.__class__ = PollingQueue  # gradio's queue, polling less while nothing waits (below)
    queue.idle_poll_s = settings.get("MODELDECK_QUEUE_POLL_MS") / 1000
    queue.progress_update_sleep_when_free = PROGRESS_EVERY_S
    admission = Admission(queue, line_lengths(), total_length())
    queue.push = admission  # type: ignore[method-assign]
    for fn in blocks.fns.values():
        line = LINES.get(fn.concurrency_id)
        if line is not None and fn not in queue.process_time_per_fn:
            # Gradio shows an expected wait only for functions it has timed; until then, the typical cost.
            # The count stays 0, so the first real measurement replaces this guess.
            queue.process_time_per_fn[fn].avg_time = line.seconds
    return admission
