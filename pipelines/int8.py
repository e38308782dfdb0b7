"""The int8 linear layer: int8 weights (a scale per output row) and int8 activations with a scale per token.

Each row of the input (one token of one request) is scaled on its own so that its largest value maps to
the top of the int8 range, then multiplied in integers by fbgemm's kernel, which returns float32; the
token's scale is applied afterwards. So a token's result depends on that token alone: a token with huge
activations (the "massive activations" of first tokens and delimiters in real LLMs) no longer coarsens
every other token's grid, and a request gets the same numbers alone and inside a batch.

The kernel is ``quantized::linear_with_input_q_dq_qweight_dq_output_fp32``: it quantises its input with
the scale and zero point it is given, which here are 1 and the middle of the uint8 range because the
rows arrive already scaled. On CPUs without AVX-512 VNNI, fbgemm adds pairs of uint8 × int8 products in
saturating 16-bit integers, so activations use 7 bits there (as torch's own ``reduce_range`` does); with
VNNI every product is accumulated in 32 bits and 8 bits are exact (``devices.int8_activation_levels``).
This module imports torch: ``quantize`` imports it only when a model is quantised.
"""

from __future__ import annotations

import warnings

import torch

_KERNEL = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32


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
        self.zero_point = levels + 1  # scaled rows span [-levels, levels]: uint8 [1, 2 * levels + 1]
        self._packed = torch.ops.quantized.linear_prepack(_quantized_weight(linear.weight, per_channel), None)
        bias = linear.bias
        # The bias is added after the token's scale is applied, so it is kept apart from the kernel.
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-30).div_(self.levels)
        out = _KERNEL(rows / scale, 1.0, self.zero_point, self._packed)
        out = out.mul_(scale) if self.bias is None else torch.addcmul(self.bias, out, scale)
        return out.reshape(*x.shape[:-1], self.out_features)

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
