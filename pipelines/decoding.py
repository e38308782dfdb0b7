"""The decode loop behind chat, story and text generation: many requests, one KV cache, one forward a step.

A ``DecodeBatch`` holds the rows being generated with one model: their KV cache, attention mask and
positions. ``step()`` runs one forward pass for every row at once (decoding a small LLM on a CPU is bound
by reading the weights, so four rows cost little more than one), picks each row's next token with its own
request's settings and ``torch.Generator`` (other rows' draws never shift its own; see ``sampling.py`` for
when int8 makes the batch matter),
hands the tokens to each request's queue, and drops the rows that are finished or cancelled: Stop halts
the computation, and a finished request stops costing anything. New requests are prefilled on their own
(``Prefill``: ``MODELDECK_PREFILL_CHUNK`` prompt tokens a forward pass, the running rows stepping between
chunks when ``begin()`` / ``fill()`` drive it, every chunk at once through ``admit()``) and their cache is
merged into the running one, left-padded, so a request that arrives while others are generating joins
(continuous batching) instead of waiting for them to end.

``model.generate`` is not used: its per-step bookkeeping (logits processors, stopping criteria, input
preparation) cost about a quarter of an int8 decode step here, and it cannot take rows in mid-way.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import lean_decode, settings
from .prefix_cache import PrefixCache, budget as prefix_budget
from .sampling import Sampler, SamplingParams

END_OF_STREAM = object()
log = logging.getLogger(__name__)

CPU_PREFILL_CHUNK = 256  # prompt tokens a forward pass on a CPU (~0.3-0.8 s for Qwen2.5-0.5B on 2 cores)
GPU_PREFILL_CHUNK = 2048  # on a GPU, where a pass costs ~30 ms of launches whatever its length


def prefill_chunk(device: Any) -> int:
    """Prompt tokens a forward pass: ``MODELDECK_PREFILL_CHUNK``, else by device (0: whole prompts)."""
    chosen = settings.get("MODELDECK_PREFILL_CHUNK")
    if chosen is not None:
        return chosen
    return CPU_PREFILL_CHUNK if getattr(device, "type", str(device)) == "cpu" else GPU_PREFILL_CHUNK


@dataclass
class Usage:
    """Token counts of one generation, and why it ended ("eos", "length", "cancelled" or "stopped").

    With several sequences, ``completion_tokens`` counts the tokens of all of them (as OpenAI does), and
    ``finish_reasons`` holds each sequence's own reason ("eos" or "length"; ``finish_reason`` is "length"
    when any reached the limit).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    finish_reasons: list[str] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Reading:
    """A progress note in a request's queue: ``read`` of its ``total`` prompt tokens are in the cache."""

    read: int
    total: int


@dataclass
class Request:
    """One caller's rows: prompts, settings, cancel event, and the queue its tokens go to.

    The queue receives, while a long prompt is read in chunks, a ``Reading`` after each chunk but the last;
    then, per step, a list with each row's new tokens; then, once, an exception if the computation failed;
    and last ``END_OF_STREAM``. With ``params.top_logprobs`` set, ``logprobs`` gets,
    per row and before its token reaches the queue, each token's (log-probability, [(id, logprob)]).
    """

    rows: list[list[int]]
    params: SamplingParams
    cancel: threading.Event = field(default_factory=threading.Event)
    usage: Usage = field(default_factory=Usage)
    sink: "queue.Queue[Any]" = field(default_factory=queue.Queue)
    generated: list[int] = field(default_factory=list)
    done: list[bool] = field(default_factory=list)
    logprobs: list[list[tuple[float, list[tuple[int, float]]]]] = field(default_factory=list)
    hit_length: list[bool] = field(default_factory=list)  # per row: it reached ``max_new_tokens``
    closed: bool = False

    def __post_init__(self) -> None:
        self.generated = [0] * len(self.rows)
        self.done = [False] * len(self.rows)
        self.hit_length = [False] * len(self.rows)
        self.logprobs = [[] for _ in self.rows]
        self.usage.prompt_tokens = max(len(r) for r in self.rows)

    def finish(self, error: BaseException | None = None) -> None:
        """Close the request's queue (after ``error``, if any); later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        if error is not None:
            self.sink.put(error)
        self.sink.put(END_OF_STREAM)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return {e for e in (eos if isinstance(eos, list) else [eos]) if e is not None}


def tokenizer_of(loaded: Any) -> Any:
    """The text tokenizer of a loaded model (a processor's own tokenizer, or the tokenizer itself)."""
    return getattr(loaded.processor, "tokenizer", loaded.processor)


class DecodeBatch:
    """The rows being generated with one model, and their KV cache. Used by one thread at a time.

    With ``reuse_prefixes``, single-row requests leave their keys and values in a ``PrefixCache`` and
    new prompts that start with kept tokens are prefilled from where they part.
    """

    def __init__(self, loaded: Any, *, reuse_prefixes: bool = False) -> None:
        self.model, self.device = loaded.model, loaded.device
        tokenizer = tokenizer_of(loaded)
        self.eos = _eos_ids(self.model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad = pad if pad is not None else min(self.eos, default=0)
        accepted = inspect.signature(self.model.forward).parameters
        self.keeps_last_logits = "logits_to_keep" in accepted
        # transformers 5.23 renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40).
        self.cache_argument = "cache" if "cache" in accepted else "past_key_values"
        self.slots: list[tuple[Request, int]] = []  # (request, row) for every row, in batch order
        self.samplers: dict[int, Sampler] = {}
        self.cache: Any = None
        self.mask: Any = None  # 1 for every cached token that is real, 0 for left padding
        self.positions: Any = None  # each row's position of its last cached token
        self.pending: Any = None  # each row's chosen token, fed at the next step
        self.chosen: dict[tuple[int, int], list[int]] = {}  # every token chosen for a row, the unfed last too
        self.filling: list[Prefill] = []  # prefills under way (``begin``), read a chunk at a time (``fill``)
        plain = self._plain_layers()
        self.prefixes = PrefixCache(prefix_budget()) if reuse_prefixes and plain else None
        # Decode steps of Qwen2- and Llama-style models on the CPU: the same numbers in fewer calls.
        self.lean_decoder = lean_decode.LeanDecoder(self.model) if plain and lean_decode.supports(self.model) else None
        self.lean = self.lean_decoder is not None and settings.get("MODELDECK_LEAN_DECODE")

    @property
    def rows(self) -> int:
        return len(self.slots)

    @property
    def requests(self) -> list[Request]:
        return list({id(r): r for r, _ in self.slots}.values())

    def admit(self, requests: list[Request]) -> None:
        """Prefill ``requests`` and add their rows; each gets its first token (every chunk at once)."""
        for prefill in self.prefills(requests):
            while not prefill.finished:
                prefill.advance()
            self.join(prefill)

    def prefills(self, requests: list[Request]) -> list["Prefill"]:
        """The prefills ``requests`` need, each run a chunk at a time (``Prefill.advance``), then ``join``-ed.

        Requests whose prompt starts with kept tokens are prefilled alone, from where they part; the
        others together.
        """
        fresh, prefills = [], []
        for request in requests:
            shared, entry = (0, None)
            if self.prefixes is not None and len(request.rows) == 1:
                shared, entry = self.prefixes.match(request.rows[0])
            if entry is None:
                fresh.append(request)
            else:
                prefills.append(Prefill(self, [request], shared, [(k[:, :, :shared], v[:, :, :shared])
                                                                  for k, v in entry.layers]))
        if fresh:
            prefills.append(Prefill(self, fresh, 0, []))
        return prefills

    def begin(self, requests: list[Request]) -> None:
        """Queue the prefills of ``requests``; ``fill()`` runs them a chunk at a time between decode steps."""
        self.filling.extend(self.prefills(requests))

    def fill(self) -> "Prefill | None":
        """Run the next chunk of the queued prefill with the fewest prompt tokens left (a short prompt does not
        wait behind a long one); join its rows once its prompts are all in, and return it then.

        A prefill whose requests were all stopped is dropped; one that fails fails its own requests only.
        """
        prefill = min(self.filling, key=lambda p: p.left)
        if all(request.cancel.is_set() for request in prefill.requests):
            self.filling.remove(prefill)
            for request in prefill.requests:
                request.finish()
            return None
        try:
            prefill.advance()
            if not prefill.finished:
                return None
            self.filling.remove(prefill)
            self.join(prefill)
            return prefill
        except BaseException as exc:  # only these newcomers fail; the running rows go on
            log.error("prefill failed", exc_info=exc)
            if prefill in self.filling:
                self.filling.remove(prefill)
            for request in prefill.requests:
                request.cancel.set()  # rows already merged leave at the next step
                request.finish(exc)
            return None

    def join(self, prefill: "Prefill") -> None:
        """Add a finished prefill's rows to the batch and pick their first tokens."""
        for request in prefill.requests:
            self.samplers[id(request)] = Sampler(request, self.device)
        start = self.rows
        self._merge(prefill.slots, prefill.cache, prefill.mask, prefill.positions[:, -1])
        self._choose(prefill.logits, start)

    def step(self) -> None:
        """Run one forward pass for every row and hand out the next tokens."""
        import torch

        self._drop_finished()  # a request cancelled since the last step costs no more
        if not self.rows:
            return
        mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        positions = self.positions + 1
        logits = self.forward(self.pending, mask, positions[:, None], self.cache, prompt=False)
        self.mask, self.positions = mask, positions
        self._choose(logits, 0)

    def fail(self, error: BaseException) -> None:
        """Hand ``error`` to every request in the batch and empty it."""
        for request in self.requests + [r for prefill in self.filling for r in prefill.requests]:
            request.finish(error)
        self.filling.clear()
        self.slots, self.samplers, self.chosen = [], {}, {}
        self.cache = self.mask = self.positions = self.pending = None

    def new_cache(self) -> Any:
        """An empty KV cache for this model (plain layers grow into spare room: ``kv_cache.GrowingLayer``)."""
        from transformers import DynamicCache

        from .kv_cache import growing

        config = getattr(self.model, "config", None)
        return growing(DynamicCache(config=config) if config is not None else DynamicCache())

    def forward(self, ids: Any, mask: Any, positions: Any, cache: Any, *, prompt: bool | None = None) -> Any:
        """Feed ``ids`` after what ``cache`` holds (which grows); return each row's last logits.

        ``prompt`` says whether the pass reads prompt tokens or takes a decode step (None: more than one
        column is a prompt): int8 weights packed for two kernels use the one for that kind of pass
        (``int8.reading``), whatever the pass's shape, so a request's numbers do not depend on its company.
        """
        import torch

        from .int8 import reading

        with torch.inference_mode(), reading(ids.shape[1] > 1 if prompt is None else prompt):
            if self.lean and ids.shape[1] == 1 and not self.lean_decoder.hooked():
                return self.lean_decoder.step(ids, mask, positions, cache)
            extra = {"logits_to_keep": 1} if self.keeps_last_logits else {}
            extra[self.cache_argument] = cache
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
        return out.logits[:, -1, :]

    def _merge(self, slots: list[tuple[Request, int]], cache: Any, mask: Any, positions: Any) -> None:
        """Append new rows: the shorter of the two caches is padded on the left to the other's length."""
        import torch
        import torch.nn.functional as F

        if self.cache is None or not self.slots:
            self.slots, self.cache, self.mask, self.positions = list(slots), cache, mask, positions
            self.pending = mask.new_zeros((len(slots), 1))
            return
        old, new = self.mask.shape[1], mask.shape[1]
        width = max(old, new)
        for mine, theirs in zip(self.cache.layers, cache.layers):  # (batch, heads, length, head size)
            mine.keys = torch.cat([F.pad(mine.keys, (0, 0, width - old, 0)),
                                   F.pad(theirs.keys, (0, 0, width - new, 0))])
            mine.values = torch.cat([F.pad(mine.values, (0, 0, width - old, 0)),
                                     F.pad(theirs.values, (0, 0, width - new, 0))])
        self.mask = torch.cat([F.pad(self.mask, (width - old, 0)), F.pad(mask, (width - new, 0))])
        self.positions = torch.cat([self.positions, positions])
        self.pending = torch.cat([self.pending, mask.new_zeros((len(slots), 1))])
        self.slots += slots

    def can_merge(self) -> bool:
        """True when new rows can join this batch's cache (plain full-attention layers only)."""
        return self.cache is None or self._plain_layers(self.cache)

    def _plain_layers(self, cache: Any = None) -> bool:
        from transformers.cache_utils import DynamicLayer

        from .kv_cache import GrowingLayer

        layers = (cache if cache is not None else self.new_cache()).layers
        return bool(layers) and all(type(layer) in (DynamicLayer, GrowingLayer) for layer in layers)

    def _choose(self, logits: Any, start: int) -> None:
        """Pick tokens for the rows from ``start`` on (``logits`` holds theirs), hand them out, drop the finished."""
        import torch

        chosen, records = [], []
        b = start
        while b < self.rows:  # a request's rows are contiguous
            request = self.slots[b][0]
            end = b
            while end < self.rows and self.slots[end][0] is request:
                end += 1
            rows = [i for _, i in self.slots[b:end]]
            sampler = self.samplers[id(request)]
            chosen.append(sampler.pick(logits[b - start:end - start], rows))
            records += sampler.recorded or [None] * (end - b)
            b = end
        self.pending[start:] = torch.cat(chosen)
        self._hand_out(self.pending[start:, 0].tolist(), start, records)

    def _hand_out(self, tokens: list[int], start: int, records: list[Any]) -> None:
        items: dict[int, list[list[int]]] = {}
        for token, record, (request, i) in zip(tokens, records, self.slots[start:]):
            self.chosen.setdefault((id(request), i), []).append(token)
            item = items.setdefault(id(request), [[] for _ in request.rows])
            if request.done[i] or request.cancel.is_set():
                continue
            if token in self.eos:
                request.done[i] = True
                continue
            request.generated[i] += 1
            item[i].append(token)
            if record is not None:
                request.logprobs[i].append(record)
            if request.generated[i] >= request.params.max_new_tokens:
                request.done[i] = request.hit_length[i] = True
        for request in {id(r): r for r, _ in self.slots[start:]}.values():
            request.usage.completion_tokens = sum(request.generated)
            item = items[id(request)]
            if any(item):
                request.sink.put(item)
        self._drop_finished()

    def _keep_prefix(self, b: int) -> None:
        """Hand row ``b``'s keys and values (its prompt and every token fed after it) to the prefix cache."""
        request, i = self.slots[b]
        chosen = self.chosen.pop((id(request), i), [])
        if self.prefixes is None or len(request.rows) != 1:
            return
        tokens = request.rows[i] + chosen[:-1]  # the last token chosen was never fed
        if int(self.mask[b].sum()) != len(tokens):  # cannot happen; never keep a mismatched cache
            return
        n = len(tokens)
        self.prefixes.store(tokens, [(layer.keys[b:b + 1, :, -n:].clone(), layer.values[b:b + 1, :, -n:].clone())
                                     for layer in self.cache.layers])

    def _drop_finished(self) -> None:
        import torch

        keep = [b for b, (request, i) in enumerate(self.slots) if not (request.done[i] or request.cancel.is_set())]
        if len(keep) == self.rows:
            return
        for b in set(range(self.rows)) - set(keep):
            self._keep_prefix(b)
        leaving = {id(r): r for r, _ in self.slots}
        self.slots = [self.slots[b] for b in keep]
        for request in {id(r): r for r, _ in self.slots}.values():
            leaving.pop(id(request))
        for request in leaving.values():
            self.samplers.pop(id(request), None)
            request.finish()
        if not keep:
            self.cache = self.mask = self.positions = self.pending = None
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.pending = self.mask[index], self.positions[index], self.pending[index]
        # Columns that are padding in every remaining row (a long prompt that finished) cost attention for nothing.
        first = int(self.mask.any(0).int().argmax())
        if first and self.can_merge():
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]


class Prefill:
    """Prompts being read into a KV cache of their own, ``MODELDECK_PREFILL_CHUNK`` tokens a forward pass.

    Between two chunks the batch's running rows take a decode step (``Batcher.step``), so a long prompt
    slows the chats already streaming instead of halting them, and Stop takes effect between chunks. The
    chunks feed the model's own cache path, as a prompt after kept tokens does: the same numbers as one
    pass, up to float rounding in attention.
    """

    def __init__(self, batch: DecodeBatch, requests: list[Request], shared: int, kept: list[tuple[Any, Any]]) -> None:
        import torch

        from transformers import DynamicCache

        from .kv_cache import growing

        self.batch, self.requests = batch, requests
        self.slots = [(request, i) for request in requests for i in range(len(request.rows))]
        width = max(len(request.rows[i]) for request, i in self.slots)
        ids = torch.full((len(self.slots), width), batch.pad, dtype=torch.long)
        mask = torch.zeros((len(self.slots), width), dtype=torch.long)
        for b, (request, i) in enumerate(self.slots):  # left padding: each row's next token follows its own end
            row = request.rows[i]
            ids[b, width - len(row):] = torch.tensor(row)
            mask[b, width - len(row):] = 1
        self.ids, self.mask = ids.to(batch.device), mask.to(batch.device)
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        if kept:  # one row whose first ``shared`` tokens are already computed
            self.cache = growing(DynamicCache(kept, config=getattr(batch.model, "config", None)))
        else:
            self.cache = batch.new_cache()
        self.done = shared  # prompt columns in the cache so far
        self.logits: Any = None  # each row's logits after its last prompt token, once finished
        self.seconds = 0.0  # spent in forward passes so far

    @property
    def finished(self) -> bool:
        return self.done >= self.ids.shape[1]

    @property
    def left(self) -> int:
        """Prompt columns still to read."""
        return self.ids.shape[1] - self.done

    def advance(self) -> None:
        """Feed the next chunk of the prompts."""
        chunk = prefill_chunk(self.batch.device) or self.ids.shape[1]
        end = min(self.ids.shape[1], self.done + chunk)
        began = time.perf_counter()
        self.logits = self.batch.forward(self.ids[:, self.done:end], self.mask[:, :end],
                                         self.positions[:, self.done:end], self.cache, prompt=True)
        self.seconds += time.perf_counter() - began
        self.done = end
        if not self.finished:  # how far each request's prompt is read (its rows end in the last column)
            width = self.ids.shape[1]
            for request in self.requests:
                total = request.usage.prompt_tokens
                request.sink.put(Reading(max(0, self.done - (width - total)), total))
