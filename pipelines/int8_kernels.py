"""The integer products behind ``int8.py``, and the short self-test that picks one for this processor.

Two kernels multiply int8 activations (one scale per token) by int8 weights (one scale per output row),
both summing the products exactly in 32-bit integers:

- ``fbgemm``: torch's quantized linear kernel (``quantized::linear_with_input_q_dq_qweight_dq_output_fp32``),
  AVX2 / AVX-512 VNNI code written for small batches.
- ``onednn``: ``torch._int_mm``, oneDNN's int8 matrix product, which uses AMX tiles where the CPU has them.

Which is faster depends on the processor, not on the machine the code was tuned on: on a 2-vCPU AMD EPYC
(VNNI, no AMX) fbgemm was 3-5x faster for decoding; an Intel Xeon with AMX ran fbgemm at half the AMD
speed. So ``kernel()`` measures: at the first quantisation in a process it packs one layer of the model's
own shape with each kernel, checks that each gives the exact integer sums at the chosen activation width
(products at the extremes of both ranges, where a saturating 16-bit sum would fail), times them on one
token and on a short prompt, interleaved, and keeps the fastest exact one. ``MODELDECK_INT8_KERNEL``
(fbgemm, onednn) skips the test.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from . import settings

log = logging.getLogger(__name__)

_FBGEMM = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32
SELF_TEST_ROWS = (1, 16)  # a decode step's token and a short prompt: both shapes count towards the choice
SELF_TEST_ROUNDS = 5  # interleaved rounds; each kernel's fastest counts (a busy machine slows both alike)


def quantized_weight(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 weights: one scale per output row (or one for the layer), zero point 0."""
    with warnings.catch_warnings():  # quantised-tensor creation warns of torch.ao's removal (see quantize.py)
        warnings.simplefilter("ignore")
        w = weight.detach().float()
        if per_channel:
            scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
            return torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
        scale = max(float(w.abs().max()) / 127, 1e-12)
        return torch.quantize_per_tensor(w, scale, 0, torch.qint8)


class FbgemmWeights:
    """A weight packed for fbgemm; ``times(unit, levels)`` takes rows already divided by their largest value."""

    name = "fbgemm"

    def __init__(self, weight: torch.Tensor, per_channel: bool) -> None:
        self.packed = torch.ops.quantized.linear_prepack(quantized_weight(weight, per_channel), None)

    def times(self, unit: torch.Tensor, levels: int) -> torch.Tensor:
        # The kernel quantises its input with the scale and zero point it is given: rows in [-1, 1] with
        # scale 1 / levels land on [-levels, levels] around the middle of uint8's range.
        return _FBGEMM(unit, 1.0 / levels, levels + 1, self.packed)

    def unpacked(self) -> torch.Tensor:
        return torch.ops.quantized.linear_unpack(self.packed)[0]


class OneDnnWeights:
    """A weight as a plain int8 matrix and its row scales, for ``torch._int_mm`` (oneDNN)."""

    name = "onednn"

    def __init__(self, weight: torch.Tensor, per_channel: bool) -> None:
        quantized = quantized_weight(weight, per_channel)
        self.int8 = quantized.int_repr()
        self.per_channel = per_channel
        scales = quantized.q_per_channel_scales() if per_channel else torch.tensor([quantized.q_scale()])
        self.scales = scales.float()

    def times(self, unit: torch.Tensor, levels: int) -> torch.Tensor:
        q = unit.mul(levels).round_().to(torch.int8)
        return torch._int_mm(q, self.int8.t()).float().mul_(self.scales / levels)

    def unpacked(self) -> torch.Tensor:
        if not self.per_channel:
            return torch._make_per_tensor_quantized_tensor(self.int8, float(self.scales[0]), 0)
        scales = self.scales.double()
        return torch._make_per_channel_quantized_tensor(self.int8, scales, torch.zeros_like(scales).long(), 0)


KERNELS = {k.name: k for k in (FbgemmWeights, OneDnnWeights)}


def _exact(kind: type, levels: int, in_features: int) -> bool:
    """True when ``kind`` returns the exact integer sums of extreme products (every product at ±levels × ±127)."""
    signs = torch.where(torch.rand(16, in_features) > 0.5, 1.0, -1.0)
    unit = torch.stack([signs[0], -signs[1], torch.ones(in_features)])
    out = kind(signs, True).times(unit, levels)  # weight rows of ±1: scale 1/127, products of ±127 × ±levels
    # Float rounding of the scales leaves ~1e-7; a saturated 16-bit sum would be off by a large part of it.
    return torch.allclose(out, unit @ signs.T, rtol=1e-5, atol=1e-4)


def _fastest(kinds: list[type], in_features: int, out_features: int, levels: int) -> dict[str, float]:
    """Each kind's least time per product of this shape (µs) over interleaved rounds, by name."""
    weight = torch.randn(out_features, in_features)
    packed = [kind(weight, True) for kind in kinds]
    inputs = [torch.randn(rows, in_features).clamp_(-1, 1) for rows in SELF_TEST_ROWS]
    best = [float("inf")] * len(kinds)
    with torch.inference_mode():
        for _ in range(SELF_TEST_ROUNDS):
            for i, weights in enumerate(packed):
                start = time.perf_counter()
                for unit in inputs:
                    weights.times(unit, levels)
                best[i] = min(best[i], time.perf_counter() - start)
    log.info("int8 self-test, %dx%d product: %s", out_features, in_features,
             ", ".join(f"{k.name} {t * 1e6:.0f} us" for k, t in zip(kinds, best)))
    return {kind.name: seconds * 1e6 for kind, seconds in zip(kinds, best)}


@dataclass(frozen=True)
class KernelChoice:
    """Which kernel packs the weights of one product shape, and why (shown on the status tab)."""

    in_features: int
    out_features: int
    levels: int
    name: str
    reason: str  # "self-test", "setting" (MODELDECK_INT8_KERNEL) or "only exact" (one kernel passed the check)
    micros: dict[str, float] = field(default_factory=dict)  # the self-test's time per kernel, µs
    rejected: dict[str, str] = field(default_factory=dict)  # kernels left out, and why


_choices: dict[tuple[int, int, int], KernelChoice] = {}


@lru_cache(maxsize=None)
def _measured(in_features: int, out_features: int, levels: int) -> KernelChoice:
    kinds, rejected = [], {}
    for kind in KERNELS.values():
        try:
            if _exact(kind, levels, in_features):
                kinds.append(kind)
            else:
                log.warning("int8 kernel %s is not exact at %d activation levels on this CPU: not used", kind.name,
                            levels)
                rejected[kind.name] = f"not exact at {levels} activation levels"
        except RuntimeError as error:  # not built into this torch, or not for this CPU
            log.warning("int8 kernel %s unavailable: %s", kind.name, error)
            rejected[kind.name] = f"unavailable: {str(error)[:120]}"
    if len(kinds) < 2:
        return KernelChoice(in_features, out_features, levels, (kinds or [FbgemmWeights])[0].name, "only exact",
                            rejected=rejected)
    micros = _fastest(kinds, in_features, out_features, levels)
    return KernelChoice(in_features, out_features, levels, min(micros, key=micros.__getitem__), "self-test",
                        micros, rejected)


def kernel(in_features: int, out_features: int, levels: int) -> type:
    """The weights class to pack with: ``MODELDECK_INT8_KERNEL``, else the self-test's pick (once per process)."""
    chosen = settings.get("MODELDECK_INT8_KERNEL")
    choice = (KernelChoice(in_features, out_features, levels, chosen, "setting") if chosen != "auto"
              else _measured(in_features, out_features, levels))
    _choices[(in_features, out_features, levels)] = choice
    return KERNELS[choice.name]


def choices() -> list[KernelChoice]:
    """Every kernel choice made in this process, one per product shape (the latest), in order."""
    return list(_choices.values())
