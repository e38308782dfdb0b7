"""The one token-streaming mechanism, shared by chat, text generation and story.

The tokens come from ``decoding`` (one request is one caller: one prompt, or the same prompt several
times for several sequences); each step's tokens arrive on the request's queue. Its consumer here
decodes every sequence as a whole, so a character split across byte-level tokens is held back until
complete (no U+FFFD), and the spaces a WordPiece vocabulary puts between Chinese characters are
removed. Closing the stream (Stop, a closed tab) sets the request's cancel event, which the decode
loop checks before every step.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .decoding import END_OF_STREAM, Reading, Request, Usage, tokenizer_of
from . import settings
from .errors import PipelineError, known_error
from .tokens import TokenLogprob, token_logprob

__all__ = ["TextStream", "consume", "has_cjk", "looks_wordpiece_spaced", "remove_cjk_spaces", "spaces_between_cjk"]

log = logging.getLogger(__name__)

_CJK = (r"\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff"
        r"\uf900-\ufaff\uff00-\uffef")
_SPACE_NEXT_TO_CJK = re.compile(rf"(?<=[{_CJK}]) +| +(?=[{_CJK}])")


def remove_cjk_spaces(text: str) -> str:
    """Drop spaces that touch a CJK character or CJK punctuation (WordPiece decoding adds them)."""
    return _SPACE_NEXT_TO_CJK.sub("", text)


def looks_wordpiece_spaced(text: str) -> bool:
    """True when nearly every pair of neighbouring Chinese characters has a space between (WordPiece decoding)."""
    spaced = len(re.findall(rf"[{_CJK}] (?=[{_CJK}])", text))
    joined = len(re.findall(rf"[{_CJK}](?=[{_CJK}])", text))
    return spaced >= 3 and spaced > 4 * joined


def has_cjk(text: str) -> bool:
    """Return True when ``text`` contains a CJK character."""
    return re.search(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", text) is not None


def spaces_between_cjk(tokenizer: Any) -> bool:
    """Return True when the tokenizer decodes Chinese with spaces between characters (WordPiece)."""
    ids = tokenizer("你好", add_special_tokens=False)["input_ids"]
    return " " in tokenizer.decode(ids, skip_special_tokens=True).strip()


@dataclass
class Progress:
    """How much of the prompt the model has read, while a long prompt is read in chunks (``Prefill``)."""

    read: int = 0
    total: int = 0
    wanted: bool = False  # set by a consumer that shows it: the stream then also yields when it moves

    @property
    def reading(self) -> bool:
        """True from the first chunk until the whole prompt is read."""
        return 0 < self.total and self.read < self.total


class TextStream:
    """An iterator of the cumulative text so far; ``cancel()`` stops it, ``usage`` is final at the end.

    ``progress`` tells how much of a long prompt is read before the first token; a consumer that shows it
    sets ``progress.wanted``, and the stream then also yields (the texts unchanged) each time it moves.

    When the request asked for ``top_logprobs``, ``logprobs`` holds each row's tokens so far with their
    log-probabilities and ``pieces`` each row's text cut into the tokens that wrote it.
    """

    def __init__(self, texts: Iterator[list[str]], *, cancel_event: threading.Event, usage: Usage,
                 seed: int | None = None, notices: list[str] | None = None,
                 render: Callable[[list[str]], str] | None = None,
                 records: Callable[[], list[list[tuple[str, list[TokenLogprob]]]]] | None = None,
                 progress: Progress | None = None) -> None:
        self._texts = texts
        self.progress = progress or Progress()
        self._render = render or (lambda rows: rows[0])
        self.cancel_event = cancel_event
        self.usage = usage
        self.seed = seed
        self.notices: list[str] = list(notices or [])
        self.texts: list[str] = []
        self.text = ""
        self._records = records or (lambda: [])

    @property
    def pieces(self) -> list[list[tuple[str, list[TokenLogprob]]]]:
        """Per row: (text, tokens) pieces that join into the row's text; bytes of one character share a piece."""
        return self._records()

    @property
    def logprobs(self) -> list[list[TokenLogprob]]:
        """Per row: every token generated so far with its log-probability and top alternatives."""
        return [[token for _, tokens in row for token in tokens] for row in self._records()]

    def __iter__(self) -> Iterator[str]:
        try:
            for rows in self._texts:
                self.texts = rows
                self.text = self._render(rows)
                yield self.text
        finally:  # a consumer that stops early (Stop button, closed tab) stops the computation too
            self.close()

    def cancel(self) -> None:
        """Ask the generation to stop after the current token."""
        self.cancel_event.set()

    def close(self) -> None:
        """Stop this request's generation; safe to call twice."""
        self.cancel_event.set()
        close = getattr(self._texts, "close", None)
        if close is not None:
            close()

    def collect(self) -> str:
        """Run to the end and return the final text."""
        for _ in self:
            pass
        return self.text


def consume(loaded: Any, request: Request, *, notices: list[str] | None = None,
            render: Callable[[list[str]], str] | None = None) -> TextStream:
    """Return the stream of ``request``'s decoded texts as its tokens arrive."""
    tokenizer = tokenizer_of(loaded)
    if "cjk_spaces" not in loaded.extras:
        loaded.extras["cjk_spaces"] = spaces_between_cjk(tokenizer)
    clean = remove_cjk_spaces if loaded.extras["cjk_spaces"] else (lambda s: s)
    usage = request.usage
    rows: list[list[int]] = [[] for _ in request.rows]

    def decoded(ids: list[int]) -> str:
        # U+FFFD marks bytes that do not (yet) form a character: hold them back.
        return clean(tokenizer.decode(ids, skip_special_tokens=True)).replace("\ufffd", "")

    cuts = [_Cut() for _ in rows]
    progress = Progress()

    def records() -> list[list[tuple[str, list[TokenLogprob]]]]:
        return [cuts[r].extend(tokenizer, decoded, rows[r], request.logprobs[r]) for r in range(len(rows))]

    interval = settings.get("MODELDECK_STREAM_INTERVAL_MS") / 1000

    def texts() -> Iterator[list[str]]:
        shown = [""] * len(rows)
        finished = False
        last = 0.0
        try:
            while not finished:
                if interval:  # at most one update per interval: tokens that arrive meanwhile go out together
                    request.cancel.wait(max(0.0, last + interval - time.monotonic()))
                items = [request.sink.get()]
                while not request.sink.empty():  # decode once for everything that arrived meanwhile
                    items.append(request.sink.get_nowait())
                moved = False
                for item in items:
                    if item is END_OF_STREAM:
                        finished = True
                    elif isinstance(item, BaseException):
                        raise _as_pipeline_error(item) from item
                    elif isinstance(item, Reading):
                        progress.read, progress.total, moved = item.read, item.total, True
                    else:
                        progress.read = progress.total  # tokens come once the whole prompt is read
                        for r, tokens in enumerate(item):
                            rows[r].extend(tokens)
                changed = moved and progress.wanted
                for r in range(len(rows)):
                    text = decoded(rows[r])
                    if text != shown[r]:
                        shown[r], changed = text, True
                if changed:
                    last = time.monotonic()
                    yield list(shown)
        finally:
            if request.cancel.is_set() or not finished:
                usage.finish_reason = "cancelled"
            else:
                usage.finish_reasons = ["length" if hit else "eos" for hit in request.hit_length]
                usage.finish_reason = "length" if any(request.hit_length) else "eos"
            request.cancel.set()

    return TextStream(texts(), cancel_event=request.cancel, usage=usage, seed=request.params.seed,
                      notices=notices, render=render,
                      records=records if request.params.top_logprobs is not None else None, progress=progress)


class _Cut:
    """One row's text cut into the pieces each token added, extended as tokens arrive (each new token decodes
    its prefix once, so asking again while streaming costs only the new tokens)."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, list[TokenLogprob]]] = []
        self.waiting: list[TokenLogprob] = []
        self.shown = ""
        self.done = 0  # tokens cut so far

    def extend(self, tokenizer: Any, decoded: Callable[[list[int]], str], ids: list[int],
               recorded: list[tuple[float, list[tuple[int, float]]]]) -> list[tuple[str, list[TokenLogprob]]]:
        """Cut the tokens not seen yet, then return every piece (tokens still waiting join the last one)."""
        pieces = self.pieces
        for n, (token, (logprob, top)) in enumerate(zip(ids[self.done:], recorded[self.done:]), start=self.done + 1):
            self.done = n
            self.waiting.append(token_logprob(tokenizer, token, logprob, top))
            text = decoded(ids[:n])
            if text == self.shown:  # part of a character, or a special token: it joins the next piece
                continue
            keep = len(os.path.commonprefix([self.shown, text]))
            while sum(len(t) for t, _ in pieces) > keep:  # a later token changed earlier text (rare): re-cut
                t, tokens = pieces.pop()
                cut = max(0, keep - sum(len(x) for x, _ in pieces))
                if cut:
                    pieces.append((t[:cut], tokens))
                else:
                    self.waiting = tokens + self.waiting
            pieces.append((text[sum(len(t) for t, _ in pieces):], self.waiting))
            self.waiting, self.shown = [], text
        if self.waiting and pieces:
            return pieces[:-1] + [(pieces[-1][0], pieces[-1][1] + self.waiting)]
        return list(pieces)


def _as_pipeline_error(exc: BaseException) -> BaseException:
    known = known_error(exc)
    if known is not None:
        return known
    log.error("generation failed", exc_info=exc)
    return PipelineError(f"生成失败：{type(exc).__name__}。请重试。",
                         f"Generation failed: {type(exc).__name__}. Please retry.")
