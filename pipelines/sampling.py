"""How each request picks its tokens: repetition penalty, temperature, top-k, top-p, and its own generator.

Every request samples from a ``torch.Generator`` of its own, seeded with the request's seed, so a seed
reproduces a text whatever else shares the batch or samples at the same time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import settings
from .settings import MAX_SEED

if TYPE_CHECKING:
    from .decoding import Request

TOP_P_CANDIDATES = 1024  # top-p looks at this many most likely tokens: a full sort of 152k costs 15 ms a row


@dataclass
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None


def resolve_seed(seed: int | None) -> int:
    """The seed a sampled request uses: its own, else ``MODELDECK_SEED``, else a random one."""
    if seed is not None:
        return int(seed)
    fixed = settings.get("MODELDECK_SEED")
    return fixed if fixed is not None else secrets.randbelow(MAX_SEED)


class Sampler:
    """One request's token picker: penalty over its rows' tokens so far, then greedy or its own generator."""

    def __init__(self, request: Request, device: Any) -> None:
        import torch

        self.params = request.params
        self.generator = None
        if self.params.temperature > 0:
            self.generator = torch.Generator(device="cpu" if str(device) == "mps" else device)
            self.generator.manual_seed(int(self.params.seed or 0))
        self.history: Any = None
        if self.params.repetition_penalty != 1.0:  # prompt + room for every new token, filled as they come
            width = max(len(r) for r in request.rows)
            self.history = torch.tensor([r + r[-1:] * (width - len(r) + self.params.max_new_tokens)
                                         for r in request.rows], device=device)
            self.filled = width

    def pick(self, logits: Any, rows: list[int]) -> Any:
        """Return the next token of each of the request's ``rows`` (``logits``: one line each) as a column."""
        import torch

        p = self.params
        logits = logits.float()
        if self.history is not None:
            seen = self.history[rows, :self.filled]
            prior = logits.gather(1, seen)
            prior = torch.where(prior < 0, prior * p.repetition_penalty, prior / p.repetition_penalty)
            logits = logits.scatter(1, seen, prior)
        chosen = logits.argmax(-1, keepdim=True) if self.generator is None else sample(logits, p, self.generator)
        if self.history is not None:  # rows that left the batch keep stale columns: they are never read again
            self.history[rows, self.filled] = chosen[:, 0]
            self.filled += 1
        return chosen


def sample(logits: Any, p: SamplingParams, generator: Any) -> Any:
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
