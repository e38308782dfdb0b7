"""How each request picks its tokens: repetition penalty, temperature, top-k, top-p, and its own generator.

``processed()`` is the one place where settings turn a model's logits into the distribution a token
is drawn from; the decode loop samples from it and the next-token explorer draws it, so what a
learner sees is what samples. Every request samples from a ``torch.Generator`` of its own, seeded
with the request's seed, so a seed reproduces a text whatever else shares the batch.

Top-p needs the tokens sorted by probability, and a full sort of 152k tokens costs 12-15 ms a row on two
cores, a third of a decode step. So with top-p alone, ``top_p.nucleus()`` finds the same set without
sorting, and ``top_p.draw_top_p()`` draws from it. With top-k, top-p sees only the k tokens left.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import settings
from .settings import MAX_SEED
from .top_p import draw_top_p, nucleus

if TYPE_CHECKING:
    from .decoding import Request

TEMPERATURE_RANGE = (0.0, 2.0)  # 0 = greedy; above 2 a small model's text is noise
TOP_P_RANGE = (0.01, 1.0)  # 0 would keep no token at all; 1 = no limit
TOP_K_RANGE = (0, 200)  # 0 = no limit; beyond 200 top-k no longer removes anything a small model would pick
REPETITION_PENALTY_RANGE = (1.0, 2.0)  # below 1 rewards repeating; above 2 bans ordinary words
MAX_TOP_LOGPROBS = 20  # the most alternatives recorded per token (OpenAI's limit)
MIN_NEW_TOKENS = 1


def max_new_tokens_range() -> tuple[int, int]:
    """Return the fewest and most new tokens a request may ask for (the most is ``MODELDECK_MAX_NEW_TOKENS``;
    a model with a short window allows fewer, see ``backends.max_new_tokens_cap``)."""
    return MIN_NEW_TOKENS, settings.get("MODELDECK_MAX_NEW_TOKENS")


def checked_settings(temperature: Any, top_k: Any, top_p: Any, repetition_penalty: Any, notices: list[str], *,
                     defaults: tuple[float, int, float, float]) -> dict[str, Any]:
    """Return the four sampling settings clamped to the ranges above (each clamp noted in ``notices``)."""
    from .inputs import number  # imported here: inputs needs nothing from sampling, sampling stays import-light

    return {
        "temperature": number(temperature, name="temperature", lo=TEMPERATURE_RANGE[0], hi=TEMPERATURE_RANGE[1],
                              notices=notices, default=defaults[0]),
        "top_k": number(top_k, name="top_k", lo=TOP_K_RANGE[0], hi=TOP_K_RANGE[1], notices=notices, integer=True,
                        default=defaults[1]),
        "top_p": number(top_p, name="top_p", lo=TOP_P_RANGE[0], hi=TOP_P_RANGE[1], notices=notices,
                        default=defaults[2]),
        "repetition_penalty": number(repetition_penalty, name="repetition_penalty", lo=REPETITION_PENALTY_RANGE[0],
                                     hi=REPETITION_PENALTY_RANGE[1], notices=notices, default=defaults[3]),
    }


@dataclass
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` means greedy decoding.

    ``top_logprobs``: None records nothing; n >= 0 records each chosen token's log-probability under
    the model (temperature 1, no filter) and its n most likely alternatives (``TextStream.logprobs``).
    """

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    top_logprobs: int | None = None


def resolve_seed(seed: int | None) -> int:
    """The seed a sampled request uses: its own, else ``MODELDECK_SEED``, else a random one."""
    if seed is not None:
        return int(seed)
    fixed = settings.get("MODELDECK_SEED")
    return fixed if fixed is not None else secrets.randbelow(MAX_SEED)


def penalize(logits: Any, seen: Any, penalty: float) -> Any:
    """Return ``logits`` with each row's ``seen`` token ids made less likely (CTRL's rule: divide or multiply)."""
    import torch

    prior = logits.gather(1, seen)
    prior = torch.where(prior < 0, prior * penalty, prior / penalty)
    return logits.scatter(1, seen, prior)


def scaled(logits: Any, p: SamplingParams, seen: Any = None) -> Any:
    """``logits`` in float32 after the repetition penalty over ``seen`` and the temperature (none when greedy)."""
    logits = logits.float()
    if seen is not None and p.repetition_penalty != 1.0:
        logits = penalize(logits, seen, p.repetition_penalty)
    return logits / p.temperature if p.temperature > 0 else logits


def processed(logits: Any, p: SamplingParams, seen: Any = None) -> tuple[Any, Any]:
    """Return ``(values, ids)``: each row's candidate logits after ``p``'s settings.

    Removed candidates are ``-inf``; ``ids`` holds each column's token id (the candidates, most likely
    first), or is None when the columns are the whole vocabulary in order. Greedy (temperature 0) keeps only
    the most likely token. ``seen`` (token ids per row) is what the repetition penalty applies to.
    """
    import torch

    logits = scaled(logits, p, seen)
    if p.temperature <= 0:
        ids = logits.argmax(-1, keepdim=True)
        return logits.gather(1, ids), ids
    if not (p.top_k or p.top_p < 1.0):
        return logits, None
    if not p.top_k:  # top-p alone: over the whole vocabulary, without a sort
        return logits.masked_fill(~nucleus(logits, p.top_p), float("-inf")), None
    values, ids = torch.topk(logits, min(logits.shape[-1], p.top_k), dim=-1)
    if p.top_p < 1.0:  # after top-k, top-p sees only the k tokens left (as in transformers); values are sorted
        probs = values.softmax(-1)
        values = values.masked_fill(probs.cumsum(-1) - probs > p.top_p, float("-inf"))  # keeps the top one
    return values, ids


def _uniform(total: Any, generator: Any) -> Any:
    """One uniform number in [0, 1) per row of ``total`` (a column), from ``generator`` (drawn in float32)."""
    import torch

    return torch.rand(total.shape, generator=generator, device=total.device).to(total.dtype)


def distribution(logits: Any, p: SamplingParams, seen: Any = None) -> tuple[Any, Any]:
    """Return ``(probs, kept)`` over the whole vocabulary for one row of ``logits``: what a token is drawn from."""
    import torch

    values, ids = processed(logits.reshape(1, -1), p, None if seen is None else seen.reshape(1, -1))
    probs, kept = values.softmax(-1), values > float("-inf")
    if ids is not None:
        width = logits.shape[-1]
        probs = torch.zeros((1, width), dtype=probs.dtype, device=probs.device).scatter(1, ids, probs)
        kept = torch.zeros((1, width), dtype=torch.bool, device=kept.device).scatter(1, ids, kept)
    return probs[0], kept[0]


def draw(values: Any, ids: Any, generator: Any) -> Any:
    """Draw one token id per row from ``processed()``'s output with ``generator``; return them as a column.

    Inverse-CDF sampling: one uniform number per row, placed on the running sum of the probabilities.
    ``torch.multinomial`` does the same job ~10x slower over a 152k-token vocabulary (3 ms against 0.25 ms
    per row on 2 cores), a large share of a decode step when top-p keeps most of a flat distribution.
    A token with probability 0 (removed by top-k or top-p) can never be drawn: the running sum does not
    rise across it, and the uniform number stays strictly below the total.
    """
    import torch

    probs = values.softmax(-1)
    if generator.device != probs.device:
        probs = probs.to(generator.device)
        ids = ids if ids is None else ids.to(generator.device)
    running = probs.cumsum(-1)
    total = running[:, -1:]
    u = _uniform(total, generator) * total
    drawn = torch.searchsorted(running, u, right=True)
    if bool((drawn >= probs.shape[-1]).any()):  # u rounded up to the total: take the last possible token
        last = probs.shape[-1] - 1 - (probs.flip(-1) > 0).int().argmax(-1, keepdim=True)
        drawn = torch.minimum(drawn, last)
    return (drawn if ids is None else ids.gather(-1, drawn)).to(values.device)


def sample(logits: Any, p: SamplingParams, generator: Any) -> Any:
    """Draw one token per row after temperature, top-k and top-p, from ``generator``."""
    return draw(*processed(logits, p), generator)


def choose(logits: Any, p: SamplingParams, generator: Any, seen: Any = None) -> Any:
    """Return each row's next token as a column: greedy when ``p.temperature`` is 0, else drawn."""
    if p.temperature > 0 and not p.top_k and p.top_p < 1.0:  # top-p alone: the same draw in fewer passes
        return draw_top_p(scaled(logits, p, seen), p.top_p, generator)
    values, ids = processed(logits, p, seen)
    return ids if p.temperature <= 0 else draw(values, ids, generator)


def new_generator(seed: int, device: Any = "cpu") -> Any:
    """A ``torch.Generator`` on ``device`` (the CPU for Apple's mps) seeded with ``seed``."""
    import torch

    generator = torch.Generator(device="cpu" if str(device) == "mps" else device)
    generator.manual_seed(int(seed))
    return generator


def top_logprobs(logits: Any, chosen: Any, n: int) -> list[tuple[float, list[tuple[int, float]]]]:
    """Per row: the chosen token's log-probability under ``logits`` and the ``n`` most likely (id, logprob)."""
    import torch

    logprobs = torch.log_softmax(logits.float(), -1)
    mine = logprobs.gather(1, chosen.reshape(-1, 1))[:, 0].tolist()
    n = max(0, min(int(n), MAX_TOP_LOGPROBS, logprobs.shape[-1]))
    if not n:
        return [(m, []) for m in mine]
    values, ids = torch.topk(logprobs, n, dim=-1)
    return [(m, list(zip(i, v))) for m, i, v in zip(mine, ids.tolist(), values.tolist())]


class Sampler:
    """One request's token picker: penalty over its rows' tokens so far, then greedy or its own generator."""

    def __init__(self, request: Request, device: Any) -> None:
        import torch

        self.params = request.params
        self.generator = None
        if self.params.temperature > 0:
            self.generator = new_generator(self.params.seed or 0, device)
        self.history: Any = None
        if self.params.repetition_penalty != 1.0:  # prompt + room for every new token, filled as they come
            width = max(len(r) for r in request.rows)
            self.history = torch.tensor([r + r[-1:] * (width - len(r) + self.params.max_new_tokens)
                                         for r in request.rows], device=device)
            self.filled = width
        self.recorded: list[tuple[float, list[tuple[int, float]]]] | None = None

    def pick(self, logits: Any, rows: list[int]) -> Any:
        """Return the next token of each of the request's ``rows`` (``logits``: one line each) as a column.

        With ``top_logprobs`` set, ``recorded`` then holds each row's chosen log-probability and alternatives.
        """
        seen = None if self.history is None else self.history[rows, :self.filled]
        chosen = choose(logits, self.params, self.generator, seen)
        if self.params.top_logprobs is not None:
            self.recorded = top_logprobs(logits, chosen, self.params.top_logprobs)
        if self.history is not None:  # rows that left the batch keep stale columns: they are never read again
            self.history[rows, self.filled] = chosen[:, 0]
            self.filled += 1
        return chosen
