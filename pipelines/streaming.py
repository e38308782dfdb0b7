"""The one token-streaming mechanism, shared by chat, text generation and story.

``run_batch`` runs one ``generate()`` over the rows of one or more requests (a request is one
caller: one prompt, or the same prompt several times for several sequences). A logits processor
picks every row's token with that request's own settings and its own ``torch.Generator``, and
``generate`` runs greedily over the result, so a seed reproduces the same text even when other
requests share the batch or sample at the same time. A ``StoppingCriteria`` ends each row on its
request's cancel event or its own token limit, so stopping halts the computation (not only the
display) and a finished request leaves the rest of the batch running. Each step's tokens go to
each request's queue; its consumer decodes every sequence as a whole, so a character split across
byte-level tokens is held back until complete (no U+FFFD), and the spaces a WordPiece vocabulary
puts between Chinese characters are removed.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import PipelineError

log = logging.getLogger(__name__)

_CJK = (r"\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff"
        r"\uf900-\ufaff\uff00-\uffef")
_SPACE_NEXT_TO_CJK = re.compile(rf"(?<=[{_CJK}]) +| +(?=[{_CJK}])")
MAX_SEED = 2**31 - 1


def remove_cjk_spaces(text: str) -> str:
    """Drop spaces that touch a CJK character or CJK punctuation (WordPiece decoding adds them)."""
    return _SPACE_NEXT_TO_CJK.sub("", text)


def has_cjk(text: str) -> bool:
    """Return True when ``text`` contains a CJK character."""
    return re.search(rf"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", text) is not None


def spaces_between_cjk(tokenizer: Any) -> bool:
    """Return True when the tokenizer decodes Chinese with spaces between characters (WordPiece)."""
    ids = tokenizer("你好", add_special_tokens=False)["input_ids"]
    return " " in tokenizer.decode(ids, skip_special_tokens=True).strip()


@dataclass
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None


@dataclass
class Usage:
    """Token counts of one generation, and why it ended ("eos", "length", "cancelled" or "stopped")."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TextStream:
    """An iterator of the cumulative text so far; ``cancel()`` stops it, ``usage`` is final at the end."""

    def __init__(self, texts: Iterator[list[str]], *, cancel_event: threading.Event, usage: Usage,
                 seed: int | None = None, notices: list[str] | None = None,
                 render: Callable[[list[str]], str] | None = None) -> None:
        self._texts = texts
        self._render = render or (lambda rows: rows[0])
        self.cancel_event = cancel_event
        self.usage = usage
        self.seed = seed
        self.notices: list[str] = list(notices or [])
        self.texts: list[str] = []
        self.text = ""

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


def resolve_seed(seed: int | None) -> int:
    """The seed a sampled request uses: its own, else ``MODELDECK_SEED``, else a random one."""
    if seed is not None:
        return int(seed)
    fixed = os.environ.get("MODELDECK_SEED", "").strip()
    return int(fixed) % (MAX_SEED + 1) if fixed.lstrip("-").isdigit() else secrets.randbelow(MAX_SEED)


@dataclass
class Request:
    """One caller's rows in a batch: prompts, settings, cancel event, and where its tokens go."""

    rows: list[list[int]]
    params: SamplingParams
    cancel: threading.Event = field(default_factory=threading.Event)
    usage: Usage = field(default_factory=Usage)
    sink: "queue.Queue[Any]" = field(default_factory=queue.Queue)
    generated: list[int] = field(default_factory=list)
    done: list[bool] = field(default_factory=list)
    hit_length: bool = False

    def __post_init__(self) -> None:
        self.generated = [0] * len(self.rows)
        self.done = [False] * len(self.rows)
        self.usage.prompt_tokens = max(len(r) for r in self.rows)


END_OF_STREAM = object()


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def _tokenizer(loaded: Any) -> Any:
    return getattr(loaded.processor, "tokenizer", loaded.processor)


def run_batch(loaded: Any, requests: list[Request]) -> None:
    """Generate for every row of ``requests`` in one batch, feeding each request's queue; never raises."""
    try:
        _run_batch(loaded, requests)
    except BaseException as exc:  # handed to every consumer, which re-raises it
        for request in requests:
            request.sink.put(exc)
    finally:
        for request in requests:
            request.sink.put(END_OF_STREAM)


def _run_batch(loaded: Any, requests: list[Request]) -> None:
    import torch
    from transformers import GenerationConfig, LogitsProcessor, StoppingCriteria

    model, tokenizer = loaded.model, _tokenizer(loaded)
    eos_ids = set(_eos_ids(model, tokenizer))
    slots = [(request, i) for request in requests for i in range(len(request.rows))]
    width = max(len(request.rows[i]) for request, i in slots)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)
    # Left padding: every row's next token follows its own last prompt token.
    input_ids = torch.full((len(slots), width), pad, dtype=torch.long)
    mask = torch.zeros((len(slots), width), dtype=torch.long)
    for b, (request, i) in enumerate(slots):
        row = request.rows[i]
        input_ids[b, width - len(row):] = torch.tensor(row)
        mask[b, width - len(row):] = 1
    device = loaded.device
    groups = []
    for request in requests:
        index = torch.tensor([b for b, (r, _) in enumerate(slots) if r is request], device=device)
        generator = None
        if request.params.temperature > 0:
            generator = torch.Generator(device="cpu" if str(device) == "mps" else device)
            generator.manual_seed(int(request.params.seed or 0))
        groups.append((request, index, generator))

    class RowSampler(LogitsProcessor):
        """Each request's repetition penalty, temperature, top-k, top-p and private generator."""

        def __call__(self, ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            out = torch.full_like(scores, float("-inf"))
            for request, index, generator in groups:
                p = request.params
                logits = scores[index].float()
                if p.repetition_penalty != 1.0:
                    seen = ids[index]
                    prior = logits.gather(1, seen)
                    prior = torch.where(prior < 0, prior * p.repetition_penalty, prior / p.repetition_penalty)
                    logits = logits.scatter(1, seen, prior)
                if generator is None:
                    chosen = logits.argmax(-1, keepdim=True)
                else:
                    chosen = _sample(logits, p, generator)
                out[index] = out[index].scatter(-1, chosen, 0.0)
            return out

    class RowStop(StoppingCriteria):
        """A row ends on its request's cancel event, its own token limit, or its end token."""

        def __call__(self, ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            flags = []
            for request, i in slots:
                if not request.done[i] and request.generated[i] >= request.params.max_new_tokens:
                    request.done[i] = request.hit_length = True
                flags.append(request.done[i] or request.cancel.is_set())
            return torch.tensor(flags, dtype=torch.bool, device=ids.device)

    class Dispatcher:
        """Receives each step's tokens from generate (the prompt first) and hands them out."""

        prompt_seen = False

        def put(self, value: torch.Tensor) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            tokens = value.reshape(len(slots), -1)[:, -1].tolist()
            items: dict[int, list[list[int]]] = {}
            for b, (request, i) in enumerate(slots):
                item = items.setdefault(id(request), [[] for _ in request.rows])
                if request.done[i] or request.cancel.is_set():
                    continue
                if tokens[b] in eos_ids:
                    request.done[i] = True
                else:
                    request.generated[i] += 1  # counted where the computation happens
                    item[i].append(tokens[b])
            for request in requests:
                request.usage.completion_tokens = max(request.generated)
                item = items.get(id(request))
                if item and any(item):
                    request.sink.put(item)

        def end(self) -> None:
            pass

    config = GenerationConfig(
        max_new_tokens=max(r.params.max_new_tokens for r in requests) + 1, do_sample=False, num_beams=1,
        repetition_penalty=1.0, eos_token_id=sorted(eos_ids) or None, pad_token_id=pad,
        bos_token_id=getattr(model.generation_config, "bos_token_id", None),
        decoder_start_token_id=getattr(model.generation_config, "decoder_start_token_id", None))
    with torch.inference_mode():
        model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), generation_config=config,
                       logits_processor=[RowSampler()], stopping_criteria=[RowStop()], streamer=Dispatcher())


TOP_P_CANDIDATES = 1024  # top-p looks at this many most likely tokens: a full sort of 152k costs 15 ms a row


def _sample(logits: Any, p: SamplingParams, generator: Any) -> Any:
    """Draw one token per row after temperature, top-k and top-p, from ``generator``."""
    import torch

    logits = logits / p.temperature
    if p.top_k or p.top_p < 1.0:
        values, index = torch.topk(logits, min(logits.shape[-1], p.top_k or TOP_P_CANDIDATES), dim=-1)
        if p.top_p < 1.0:  # values are sorted, most likely first
            probs = values.softmax(-1)
            values = values.masked_fill(probs.cumsum(-1) - probs > p.top_p, float("-inf"))  # keeps the top one
        probs = values.softmax(-1)
        if generator.device != probs.device:
            probs, index = probs.to(generator.device), index.to(generator.device)
        return index.gather(-1, torch.multinomial(probs, 1, generator=generator)).to(logits.device)
    probs = logits.softmax(-1)
    if generator.device != probs.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).to(logits.device)


def consume(loaded: Any, request: Request, *, notices: list[str] | None = None,
            render: Callable[[list[str]], str] | None = None,
            on_close: Callable[[], None] | None = None) -> TextStream:
    """Return the stream of ``request``'s decoded texts as its tokens arrive."""
    tokenizer = _tokenizer(loaded)
    if "cjk_spaces" not in loaded.extras:
        loaded.extras["cjk_spaces"] = spaces_between_cjk(tokenizer)
    clean = remove_cjk_spaces if loaded.extras["cjk_spaces"] else (lambda s: s)
    usage = request.usage

    def texts() -> Iterator[list[str]]:
        rows: list[list[int]] = [[] for _ in request.rows]
        shown = [""] * len(rows)
        finished = False
        try:
            while not finished:
                items = [request.sink.get()]
                while not request.sink.empty():  # decode once for everything that arrived meanwhile
                    items.append(request.sink.get_nowait())
                for item in items:
                    if item is END_OF_STREAM:
                        finished = True
                    elif isinstance(item, BaseException):
                        raise _as_pipeline_error(item) from item
                    else:
                        for r, tokens in enumerate(item):
                            rows[r].extend(tokens)
                changed = False
                for r in range(len(rows)):
                    # U+FFFD marks bytes that do not (yet) form a character: hold them back.
                    text = clean(tokenizer.decode(rows[r], skip_special_tokens=True)).replace("\ufffd", "")
                    if text != shown[r]:
                        shown[r], changed = text, True
                if changed:
                    yield list(shown)
        finally:
            if request.cancel.is_set() or not finished:
                usage.finish_reason = "cancelled"
            else:
                usage.finish_reason = "length" if request.hit_length else "eos"
            request.cancel.set()
            if on_close is not None:
                on_close()

    return TextStream(texts(), cancel_event=request.cancel, usage=usage, seed=request.params.seed,
                      notices=notices, render=render)


def stream_generate(loaded: Any, input_ids: Any, attention_mask: Any, params: SamplingParams, *,
                    notices: list[str] | None = None,
                    render: Callable[[list[str]], str] | None = None,
                    cancel_event: threading.Event | None = None) -> TextStream:
    """Generate from a batch of prompts in a thread of its own; return the stream of continuations."""
    seed = None if params.temperature <= 0 else resolve_seed(params.seed)
    rows = [[int(t) for t, m in zip(ids, keep) if m] for ids, keep in zip(input_ids.tolist(),
                                                                          attention_mask.tolist())]
    request = Request(rows, SamplingParams(**{**params.__dict__, "seed": seed}),
                      cancel=cancel_event or threading.Event())
    worker = threading.Thread(target=run_batch, args=(loaded, [request]), name="modeldeck-generate", daemon=True)
    worker.start()
    return consume(loaded, request, notices=notices, render=render, on_close=lambda: worker.join(timeout=60))


def _as_pipeline_error(exc: BaseException) -> BaseException:
    if isinstance(exc, PipelineError):
        return exc
    if "out of memory" in str(exc).lower():
        return PipelineError("内存不足：请缩短输入或减少生成长度后重试。",
                             "Out of memory: shorten the input or ask for fewer new tokens, then retry.")
    log.error("generation failed", exc_info=exc)
    return PipelineError(f"生成失败：{type(exc).__name__}。请重试。",
                         f"Generation failed: {type(exc).__name__}. Please retry.")
