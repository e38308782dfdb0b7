"""The int8 linear layer: int8 weights (a scale per output row) and int8 activations with a scale per token.

Each row of the input (one token of one request) is scaled on its own so that its largest value maps to
the top of the int8 range, then multiplied in integers by fbgemm's kernel, which returns float32; the
token's scale is applied afterwards. So a token's result depends on that token alone: a token with huge
activations (the "massive activations" of first tokens and delimiters in real LLMs) no longer coarsens
every other token's grid, and a request gets the same numbers alone and inside a batch.

The integer product is fbgemm's or oneDNN's, whichever a short self-test finds faster on this processor
(``int8_kernels.py``); where one kernel is faster for decode steps and another for prompts, weights are
packed for both, and ``reading(prompt=...)`` says which a pass is: the batcher marks its prompt chunks and
its decode steps, so a request's prompt and its tokens take the same kernel whatever it shares a pass with
(each kernel's integer sums are exact and per token; the two may differ in the last bit of the float
scaling). Elsewhere a pass of ``PROMPT_ROWS`` rows or more counts as a prompt.

On CPUs without AVX-512 VNNI, fbgemm adds pairs of uint8 × int8 products in saturating 16-bit integers,
so activations use 7 bits there (as torch's own ``reduce_range`` does); with VNNI every product is
accumulated in 32 bits and 8 bits are exact (``devices.int8_activation_levels``).
Products that read the same input (an attention block's q/k/v, an MLP's gate/up) can share one packed
weight (``Int8Fused``): the first of them computes all its siblings' outputs in one call, and the others
take theirs, checked by the identity of the input tensor (a different input is computed afresh, so the
result never depends on the call order). Fewer, larger products save per-call work in every decode step;
the integer sums are exact, so the numbers are those of separate layers, bit for bit.
This module imports torch: ``quantize`` imports it only when a model is quantised.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

import torch

from .int8_kernels import FbgemmWeights

PROMPT_ROWS = 32  # outside ``reading()``: a pass with this many rows or more is read as a prompt
_READING_PROMPT: ContextVar[bool | None] = ContextVar("modeldeck_int8_reading_prompt", default=None)


@contextmanager
def reading(prompt: bool) -> Iterator[None]:
    """Mark the passes inside as a prompt's (``prompt``) or as decode steps: which packed kernel they use."""
    token = _READING_PROMPT.set(prompt)
    try:
        yield
    finally:
        _READING_PROMPT.reset(token)


def product(x: torch.Tensor, weights: Any, bias: torch.Tensor | None, levels: int, out_features: int) -> torch.Tensor:
    """``x`` times packed int8 ``weights``: each token's activations scaled to ``levels`` on their own, then exact."""
    rows = x.reshape(-1, x.shape[-1])
    prompt = _READING_PROMPT.get()
    peak = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-30)  # each row's largest |value| maps to `levels`
    out = weights.for_prompt(rows.shape[0] >= PROMPT_ROWS if prompt is None else prompt).times(rows / peak, levels)
    out = out.mul_(peak) if bias is None else torch.addcmul(bias, out, peak)
    return out.reshape(*x.shape[:-1], out_features)


def _packed_bytes(rows: int, columns: int, scales: int, weights: Any) -> int:
    """Bytes of an int8 weight and its scales (a float64 scale and an int64 zero point each), per packing."""
    return (rows * columns + scales * (8 + 8)) * getattr(weights, "packings", 1)


def _float_bias(bias: torch.Tensor | None) -> torch.nn.Parameter | None:
    # The bias is added after the token's scale is applied, so it is kept apart from the kernel.
    return None if bias is None else torch.nn.Parameter(bias.detach().float().clone(), requires_grad=False)


class Int8Linear(torch.nn.Module):
    """A drop-in for ``nn.Linear`` (float32 in, float32 out) with int8 weights and per-token int8 activations."""

    def __init__(self, linear: torch.nn.Linear, *, levels: int, per_channel: bool = True,
                 kernel: type = FbgemmWeights) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.levels, self.per_channel = levels, per_channel
        self.weights = kernel(linear.weight, per_channel)
        self.bias = _float_bias(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return product(x, self.weights, self.bias, self.levels, self.out_features)

    def weight(self) -> torch.Tensor:
        """The quantised weight (unpacked: a copy; for inspection, not for inference)."""
        return self.weights.unpacked()

    def packed_bytes(self) -> int:
        """Bytes of the packed weight and its scales, from the shape (unpacking a 152k-row head takes seconds)."""
        return _packed_bytes(self.out_features, self.in_features, self.out_features if self.per_channel else 1,
                             self.weights)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"weights=int8 per-{'channel' if self.per_channel else 'tensor'}, "
                f"activations=int8 per-token ({self.levels} levels each side), kernel={self.weights.name}")


class Int8Fused:
    """One packed weight for sibling products that read the same input; ``parts()`` are their modules.

    The first part called with an input computes every part's output in one kernel call and keeps them
    until each sibling has taken its own; a part called with any other input computes afresh.
    """

    def __init__(self, linears: list[torch.nn.Linear], *, levels: int, kernel: type = FbgemmWeights) -> None:
        self.levels = levels
        self.sizes = [linear.out_features for linear in linears]
        self.weights = kernel(torch.cat([linear.weight.detach().float() for linear in linears]), True)
        biases = [linear.bias for linear in linears]
        self.bias = None if all(b is None for b in biases) else _float_bias(torch.cat(
            [torch.zeros(n) if b is None else b.detach().float() for b, n in zip(biases, self.sizes)]))
        self.in_features = linears[0].in_features
        self.kept: tuple[torch.Tensor, tuple[torch.Tensor, ...], set[int]] | None = None

    def output(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """Part ``part``'s product with ``x``: taken from the last call when ``x`` is the same tensor."""
        kept = self.kept  # one read: the input it holds is the one its outputs were computed from
        if kept is not None and kept[0] is x and part not in kept[2]:
            kept[2].add(part)
            if len(kept[2]) == len(self.sizes):
                self.kept = None  # every sibling served: hold no activations between calls
            return kept[1][part]
        outs = torch.split(self.joined(x), self.sizes, dim=-1)
        self.kept = (x, outs, {part})
        return outs[part]

    def joined(self, x: torch.Tensor) -> torch.Tensor:
        """Every part's product with ``x``, side by side in the order of ``sizes`` (one kernel call)."""
        return product(x, self.weights, self.bias, self.levels, sum(self.sizes))

    def parts(self) -> list["Int8Part"]:
        """One module per sibling, in the order the linears were given."""
        return [Int8Part(self, i) for i in range(len(self.sizes))]


class Int8Part(torch.nn.Module):
    """A drop-in for one of the ``nn.Linear`` layers an ``Int8Fused`` holds (float32 in, float32 out)."""

    def __init__(self, fused: Int8Fused, part: int) -> None:
        super().__init__()
        self.fused, self.part = fused, part
        self.in_features, self.out_features = fused.in_features, fused.sizes[part]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.output(x, self.part)

    def weight(self) -> torch.Tensor:
        """This part's rows of the quantised weight (unpacked: a copy; for inspection, not for inference)."""
        start = sum(self.fused.sizes[:self.part])
        return self.fused.weights.unpacked()[start:start + self.out_features]

    def packed_bytes(self) -> int:
        """Bytes of the shared packed weight and its scales, counted by the first part only."""
        rows = sum(self.fused.sizes)
        return _packed_bytes(rows, self.in_features, rows, self.fused.weights) if self.part == 0 else 0

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, part {self.part} of "
                f"{len(self.fused.sizes)} sharing one int8 product (per-channel weights, per-token activations, "
                f"kernel={self.fused.weights.name})")
