"""The int8 linear layer: int8 weights (a scale per output row) and int8 activations with a scale per token.

Each row of the input (one token of one request) is scaled on its own so that its largest value maps to
the top of the int8 range, then multiplied in integers by fbgemm's kernel, which returns float32; the
token's scale is applied afterwards. So a token's result depends on that token alone: a token with huge
activations (the "massive activations" of first tokens and delimiters in real LLMs) no longer coarsens
every other token's grid, and a request gets the same numbers alone and inside a batch.

The kernel is ``quantized::linear_with_input_q_dq_qweight_dq_output_fp32``: it quantises its input with
the scale and zero point it is given: the rows arrive divided by their largest value, so the scale is
1 / levels and the zero point the middle of the uint8 range. On CPUs without AVX-512 VNNI, fbgemm adds pairs of uint8 × int8 products in
saturating 16-bit integers, so activations use 7 bits there (as torch's own ``reduce_range`` does); with
VNNI every product is accumulated in 32 bits and 8 bits are exact (``devices.int8_activation_levels``).
Products that read the same input (an attention block's q/k/v, an MLP's gate/up) can share one packed
weight (``Int8Fused``): the first of them computes all its siblings' outputs in one call, and the others
take theirs, checked by the identity of the input tensor (a different input is computed afresh, so the
result never depends on the call order). Fewer, larger products save per-call work in every decode step;
the integer sums are exact, so the numbers are those of separate layers, bit for bit.
This module imports torch: ``quantize`` imports it only when a model is quantised.
"""

from __future__ import annotations

import warnings

import torch

_KERNEL = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32


def product(x: torch.Tensor, packed: object, bias: torch.Tensor | None, levels: int, out_features: int) -> torch.Tensor:
    """``x`` times a packed int8 weight: each token's activations scaled to ``levels`` on their own, then exact."""
    rows = x.reshape(-1, x.shape[-1])
    peak = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-30)  # each row's largest |value| maps to `levels`
    out = _KERNEL(rows / peak, 1.0 / levels, levels + 1, packed)  # rows in [-1, 1]: the kernel's scale spreads them
    out = out.mul_(peak) if bias is None else torch.addcmul(bias, out, peak)
    return out.reshape(*x.shape[:-1], out_features)


def _quantized_weight(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 weights: one scale per output row (or one for the layer), zero point 0."""
    with warnings.catch_warnings():  # quantised-tensor creation warns of torch.ao's removal (see quantize.py)
        warnings.simplefilter("ignore")
        w = weight.detach().float()
        if per_channel:
            scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
            return torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
        scale = max(float(w.abs().max()) / 127, 1e-12)
        return torch.quantize_per_tensor(w, scale, 0, torch.qint8)


class Int8Linear(torch.nn.Module):
    """A drop-in for ``nn.Linear`` (float32 in, float32 out) with int8 weights and per-token int8 activations."""

    def __init__(self, linear: torch.nn.Linear, *, levels: int, per_channel: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.levels, self.per_channel = levels, per_channel
        self._packed = torch.ops.quantized.linear_prepack(_quantized_weight(linear.weight, per_channel), None)
        bias = linear.bias
        # The bias is added after the token's scale is applied, so it is kept apart from the kernel.
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return product(x, self._packed, self.bias, self.levels, self.out_features)

    def weight(self) -> torch.Tensor:
        """The quantised weight (unpacked: a copy; for inspection, not for inference)."""
        return torch.ops.quantized.linear_unpack(self._packed)[0]

    def packed_bytes(self) -> int:
        """Bytes of the packed weight and its scales, from the shape (unpacking a 152k-row head takes seconds)."""
        scales = self.out_features if self.per_channel else 1
        return self.out_features * self.in_features + scales * (8 + 8)  # float64 scale, int64 zero point

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"weights=int8 per-{'channel' if self.per_channel else 'tensor'}, "
                f"activations=int8 per-token ({self.levels} levels each side)")


class Int8Fused:
    """One packed weight for sibling products that read the same input; ``parts()`` are their modules.

    The first part called with an input computes every part's output in one kernel call and keeps them
    until each sibling has taken its own; a part called with any other input computes afresh.
    """

    def __init__(self, linears: list[torch.nn.Linear], *, levels: int) -> None:
        self.levels = levels
        self.sizes = [linear.out_features for linear in linears]
        weight = torch.cat([linear.weight.detach().float() for linear in linears])
        self.packed = torch.ops.quantized.linear_prepack(_quantized_weight(weight, True), None)
        del weight
        biases = [linear.bias for linear in linears]
        self.bias = None if all(b is None for b in biases) else torch.cat(
            [torch.zeros(n) if b is None else b.detach().float() for b, n in zip(biases, self.sizes)])
        self.in_features = linears[0].in_features
        self.kept: tuple[torch.Tensor, tuple[torch.Tensor, ...], set[int]] | None = None

    def output(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """Part ``part``'s product with ``x``: taken from the last call when ``x`` is the same tensor."""
        kept = self.kept  # one read: another thread's call can only replace it, never change it
        if kept is not None and kept[0] is x and part not in kept[2]:
            kept[2].add(part)
            if len(kept[2]) == len(self.sizes):
                self.kept = None  # every sibling served: hold no activations between calls
            return kept[1][part]
        outs = torch.split(product(x, self.packed, self.bias, self.levels, sum(self.sizes)), self.sizes, dim=-1)
        self.kept = (x, outs, {part})
        return outs[part]

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
        return torch.ops.quantized.linear_unpack(self.fused.packed)[0][start:start + self.out_features]

    def packed_bytes(self) -> int:
        """Bytes of the shared packed weight and its scales, counted by the first part only."""
        rows = sum(self.fused.sizes)
        return rows * (self.in_features + 8 + 8) if self.part == 0 else 0

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, part {self.part} of "
                f"{len(self.fused.sizes)} sharing one int8 product (per-channel weights, per-token activations)")
