"""The one token-streaming mechanism, shared by chat, text generation and story.

``generate()`` runs in a worker thread and hands each step's token ids to a queue. A per-request
cancel event is checked by a ``StoppingCriteria`` after every token, so stopping halts the
computation, not only the display. The consumer decodes each sequence as a whole, so a character
split across byte-level tokens is held back until complete (no U+FFFD), and the spaces a
WordPiece vocabulary puts between Chinese characters are removed.

Sampling uses a private ``torch.Generator`` per request inside a logits processor, and ``generate``
itself runs greedily over the result. A seed therefore reproduces the same text even while other
requests sample at the same time, and every row of a batch draws independently.
"""

from __future__ import annotations

import logging
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
        """Stop the generation and wait for its thread; safe to call twice."""
        self.cancel_event.set()
        close = getattr(self._texts, "close", None)
        if close is not None:
            close()

    def collect(self) -> str:
        """Run to the end and return the final text."""
        for _ in self:
            pass
        return self.text


def _make_sampler(params: SamplingParams, device: Any) -> Any:
    import torch
    from transformers import LogitsProcessor

    generator = torch.Generator(device=device if str(device) != "mps" else "cpu")
    generator.manual_seed(int(params.seed or 0))

    class SeededSampler(LogitsProcessor):
        """Temperature, top-k and top-p, then one draw from a private generator per row."""

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            logits = scores.float() / params.temperature
            if params.top_k and params.top_k < logits.shape[-1]:
                kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if params.top_p < 1.0:
                sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
                probs = sorted_logits.softmax(-1)
                drop = probs.cumsum(-1) - probs > params.top_p  # keeps at least the top token
                logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
            probs = logits.softmax(-1)
            if generator.device != probs.device:
                probs = probs.to(generator.device)
            chosen = torch.multinomial(probs, 1, generator=generator).to(scores.device)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter(-1, chosen, 0.0)

    return SeededSampler()


def _cancel_criteria(event: threading.Event) -> Any:
    import torch
    from transformers import StoppingCriteria

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return Cancelled()


class _QueueStreamer:
    """Receives token ids from ``generate`` (the prompt first, then one column per step)."""

    def __init__(self, sink: "queue.Queue[Any]", usage: Usage) -> None:
        self.sink = sink
        self.usage = usage
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.usage.completion_tokens += 1  # counted where the computation happens
        self.sink.put(value.reshape(value.shape[0], -1).tolist())

    def end(self) -> None:
        pass


_END = object()


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def stream_generate(loaded: Any, input_ids: Any, attention_mask: Any, params: SamplingParams, *,
                    notices: list[str] | None = None,
                    render: Callable[[list[str]], str] | None = None,
                    cancel_event: threading.Event | None = None) -> TextStream:
    """Start generating from a batch of prompts; return the stream of decoded continuations."""
    import torch
    from transformers import GenerationConfig

    model, tokenizer = loaded.model, getattr(loaded.processor, "tokenizer", loaded.processor)
    if "cjk_spaces" not in loaded.extras:
        loaded.extras["cjk_spaces"] = spaces_between_cjk(tokenizer)
    clean = remove_cjk_spaces if loaded.extras["cjk_spaces"] else (lambda s: s)
    eos_ids = _eos_ids(model, tokenizer)
    greedy = params.temperature <= 0
    seed = None if greedy else (params.seed if params.seed is not None else secrets.randbelow(MAX_SEED))
    params = SamplingParams(**{**params.__dict__, "seed": seed})
    config = GenerationConfig(
        max_new_tokens=params.max_new_tokens, do_sample=False, num_beams=1,
        repetition_penalty=params.repetition_penalty, eos_token_id=eos_ids or None,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=getattr(model.generation_config, "bos_token_id", None),
        decoder_start_token_id=getattr(model.generation_config, "decoder_start_token_id", None),
    )
    event = cancel_event or threading.Event()
    sink: queue.Queue[Any] = queue.Queue()
    usage = Usage(prompt_tokens=int(attention_mask[0].sum()))
    input_ids, attention_mask = input_ids.to(loaded.device), attention_mask.to(loaded.device)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                  stopping_criteria=[_cancel_criteria(event)], streamer=_QueueStreamer(sink, usage))
    if not greedy:
        kwargs["logits_processor"] = [_make_sampler(params, input_ids.device)]

    def work() -> None:
        try:
            with torch.inference_mode():
                model.generate(**kwargs)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            sink.put(exc)
        finally:
            sink.put(_END)

    worker = threading.Thread(target=work, name="modeldeck-generate", daemon=True)

    def texts() -> Iterator[list[str]]:
        batch = input_ids.shape[0]
        rows: list[list[int]] = [[] for _ in range(batch)]
        done = [False] * batch
        shown = [""] * batch
        finished = False
        worker.start()
        try:
            while True:
                items = [sink.get()]
                while not sink.empty():  # decode once for everything that arrived meanwhile
                    items.append(sink.get_nowait())
                finished = False
                for item in items:
                    if item is _END:
                        finished = True
                    elif isinstance(item, BaseException):
                        raise _as_pipeline_error(item) from item
                    else:
                        for r, tokens in enumerate(item):
                            for token in tokens:
                                if done[r]:
                                    break
                                if token in eos_ids:
                                    done[r] = True
                                else:
                                    rows[r].append(token)
                changed = False
                for r in range(batch):
                    # U+FFFD marks bytes that do not (yet) form a character: hold them back.
                    text = clean(tokenizer.decode(rows[r], skip_special_tokens=True)).replace("\ufffd", "")
                    if text != shown[r]:
                        shown[r], changed = text, True
                if changed:
                    yield list(shown)
                if finished:
                    break
        finally:
            if event.is_set() or not finished:
                usage.finish_reason = "cancelled"
            else:
                usage.finish_reason = "eos" if all(done) else "length"
            event.set()
            if worker.is_alive():
                worker.join(timeout=60)

    return TextStream(texts(), cancel_event=event, usage=usage, seed=seed, notices=notices, render=render)


def _as_pipeline_error(exc: BaseException) -> BaseException:
    if isinstance(exc, PipelineError):
        return exc
    if "out of memory" in str(exc).lower():
        return PipelineError("内存不足：请缩短输入或减少生成长度后重试。",
                             "Out of memory: shorten the input or ask for fewer new tokens, then retry.")
    log.exception("generation failed", exc_info=exc)
    return PipelineError(f"生成失败：{type(exc).__name__}。请重试。",
                         f"Generation failed: {type(exc).__name__}. Please retry.")
