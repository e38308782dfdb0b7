"""The integer products behind ``int8.py``, and the short self-test that picks them for this processor.

Three kernels multiply int8 activations (one scale per token) by int8 weights (one scale per output row),
each summing the products exactly in 32-bit integers:

- ``fbgemm``: torch's quantized linear kernel (``quantized::linear_with_input_q_dq_qweight_dq_output_fp32``),
  AVX2 / AVX-512 VNNI code written for small batches.
- ``onednn``: ``torch._int_mm``, oneDNN's int8 matrix product on a plain weight matrix.
- ``onednn_packed``: oneDNN's int8 linear primitive (``onednn::qlinear_pointwise``) on a weight packed once
  in its own layout, which uses AMX tiles where the CPU has them.

Which is faster depends on the processor and on the number of rows, not on the machine the code was tuned
on: on a 2-vCPU AMD EPYC (VNNI, no AMX) fbgemm was fastest for both decode steps and prompts; on a 2-vCPU
Intel Xeon with AMX fbgemm is fastest for a decode step's few rows and oneDNN's packed primitive reads a
200-token prompt's products ~3x faster. So ``kernel()`` measures: at the first quantisation in a process it
packs one layer of the model's own shape with each kernel, checks that each gives the exact integer sums at
the chosen activation width (products at the extremes of both ranges, where a saturating 16-bit sum would
fail), and times them, interleaved, on decode steps' rows (``STEP_ROWS``) and on a prompt's
(``PROMPT_ROWS``). The fastest exact kernel for steps packs every weight; when another is fastest for
prompts, the weights are packed for it too (``PairedWeights``: more memory, faster prompts), and
``int8.product`` uses it for prompt reading. ``MODELDECK_INT8_KERNEL`` and ``MODELDECK_INT8_PROMPT_KERNEL``
skip the test.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache

import torch

from . import settings

log = logging.getLogger(__name__)

_FBGEMM = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32
STEP_ROWS = (1, 4)  # decode steps: one chat's next token, four chats' (the step kernel's time is their sum)
PROMPT_ROWS = 128  # a prompt's rows (the prompt kernel's time)
SELF_TEST_ROUNDS = 5  # interleaved rounds; each kernel's fastest counts (a busy machine slows all alike)
SLOW = 4.0  # after the first round, a kernel this many times slower than the best is not timed again


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


class _Single:
    """What every kernel's weights share: one packing, used for every number of rows."""

    packings = 1

    def for_prompt(self, prompt: bool) -> "_Single":
        return self


class FbgemmWeights(_Single):
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


class OneDnnWeights(_Single):
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


class OneDnnPackedWeights(_Single):
    """A weight packed once in oneDNN's own blocked layout, for its int8 linear primitive (AMX tiles where the
    CPU has them): ``torch._int_mm`` takes a plain matrix and lays it out again at every call."""

    name = "onednn_packed"

    def __init__(self, weight: torch.Tensor, per_channel: bool) -> None:
        quantized = quantized_weight(weight, per_channel)
        rows = quantized.shape[0]
        scales = (quantized.q_per_channel_scales() if per_channel
                  else torch.full((rows,), quantized.q_scale(), dtype=torch.float64))
        self.scales, self.per_channel = scales.float(), per_channel
        self.ones, self.zero_points = torch.ones(rows), torch.zeros(rows, dtype=torch.long)
        self.packed = torch.ops.onednn.qlinear_prepack(quantized.int_repr(), None)
        self.scaled: dict[int, torch.Tensor] = {}  # the row scales over each activation width used

    def times(self, unit: torch.Tensor, levels: int) -> torch.Tensor:
        # Unit scales: the primitive returns the integer sums themselves, and the scales are applied here.
        # oneDNN's own scaling rounds differently for one row than for many (seen on an Intel Xeon), which
        # would make a token's numbers depend on its company.
        q = unit.mul(levels).round_()
        if levels < 127:  # 7 bits (no VNNI): uint8 around levels + 1, as fbgemm's, keeps 16-bit pair sums exact
            q, zero_point = q.add_(levels + 1).to(torch.uint8), levels + 1
        else:  # with VNNI every product is summed in 32 bits: int8 activations, the faster path measured
            q, zero_point = q.to(torch.int8), 0
        scaled = self.scaled.get(levels)
        if scaled is None:
            scaled = self.scaled[levels] = self.scales / levels
        sums = torch.ops.onednn.qlinear_pointwise(q, 1.0, zero_point, self.packed, self.ones, self.zero_points, None,
                                                  1.0, 0, torch.float32, "none", [], "")
        return sums.mul_(scaled)

    def unpacked(self) -> torch.Tensor:
        # The packed layout is oneDNN's own: the integers are read back as products with the unit rows.
        columns = self.packed.shape[0]
        values = self.times(torch.eye(columns), 1).T  # each weight times its row's scale, exactly
        int8 = (values / self.scales[:, None]).round_().to(torch.int8)
        if not self.per_channel:
            return torch._make_per_tensor_quantized_tensor(int8, float(self.scales[0]), 0)
        scales = self.scales.double()
        return torch._make_per_channel_quantized_tensor(int8, scales, self.zero_points, 0)


KERNELS = {k.name: k for k in (FbgemmWeights, OneDnnWeights, OneDnnPackedWeights)}


def pair_name(step: str, prompt: str) -> str:
    """What weights packed for ``step`` (decode steps) and ``prompt`` (prompts) are called: one name if the same."""
    return step if not prompt or prompt == step else f"{step} + {prompt} (prompts)"


class PairedWeights:
    """A weight packed for two kernels: one for decode steps, one for reading prompts (``for_prompt``)."""

    packings = 2

    def __init__(self, step: type, prompt: type, weight: torch.Tensor, per_channel: bool) -> None:
        self.step, self.prompt = step(weight, per_channel), prompt(weight, per_channel)
        self.name = pair_name(step.name, prompt.name)

    def for_prompt(self, prompt: bool) -> _Single:
        return self.prompt if prompt else self.step

    def times(self, unit: torch.Tensor, levels: int) -> torch.Tensor:
        return self.step.times(unit, levels)

    def unpacked(self) -> torch.Tensor:
        return self.step.unpacked()


@dataclass(frozen=True)
class Kernels:
    """What packs a weight: ``step`` for decode steps and ``prompt`` for prompts (often the same kernel)."""

    step: type
    prompt: type

    @property
    def name(self) -> str:
        return pair_name(self.step.name, self.prompt.name)

    def steps_only(self) -> "Kernels":
        """The step kernel alone (for a product that never reads more than one row per request)."""
        return Kernels(self.step, self.step)

    def __call__(self, weight: torch.Tensor, per_channel: bool) -> _Single | PairedWeights:
        if self.prompt is self.step:
            return self.step(weight, per_channel)
        return PairedWeights(self.step, self.prompt, weight, per_channel)


def _exact(kind: type, levels: int, in_features: int) -> bool:
    """True when ``kind`` returns the exact integer sums of extreme products (every product at ±levels × ±127)."""
    signs = torch.where(torch.rand(16, in_features) > 0.5, 1.0, -1.0)
    unit = torch.stack([signs[0], -signs[1], torch.ones(in_features)])
    out = kind(signs, True).times(unit, levels)  # weight rows of ±1: scale 1/127, products of ±127 × ±levels
    # Float rounding of the scales leaves ~1e-7; a saturated 16-bit sum would be off by a large part of it.
    return torch.allclose(out, unit @ signs.T, rtol=1e-5, atol=1e-4)


def _fastest(kinds: list[type], in_features: int, out_features: int,
             levels: int) -> tuple[dict[str, float], dict[str, float]]:
    """Each kind's least time (µs) for decode steps (``STEP_ROWS``) and for a prompt (``PROMPT_ROWS``), by name.

    Rounds interleave the kinds; after the first, a kind ``SLOW`` times slower than the best at one of the two
    is not timed at it again (oneDNN on a CPU without VNNI reads a prompt ~50x slower than fbgemm).
    """
    weight = torch.randn(out_features, in_features)
    packed = [kind(weight, True) for kind in kinds]
    groups = {"step": [torch.randn(rows, in_features).clamp_(-1, 1) for rows in STEP_ROWS],
              "prompt": [torch.randn(PROMPT_ROWS, in_features).clamp_(-1, 1)]}
    best = {group: [float("inf")] * len(kinds) for group in groups}
    with torch.inference_mode():
        for round_ in range(SELF_TEST_ROUNDS):
            for group, inputs in groups.items():
                fastest = min(best[group])
                for i, weights in enumerate(packed):
                    if round_ and best[group][i] > SLOW * fastest:
                        continue
                    start = time.perf_counter()
                    for unit in inputs:
                        weights.times(unit, levels)
                    best[group][i] = min(best[group][i], time.perf_counter() - start)
    for group in groups:
        log.info("int8 self-test, %dx%d product, %s: %s", out_features, in_features, group,
                 ", ".join(f"{k.name} {t * 1e6:.0f} us" for k, t in zip(kinds, best[group])))
    step, prompt = ({kind.name: seconds * 1e6 for kind, seconds in zip(kinds, best[g])} for g in groups)
    return step, prompt


@dataclass(frozen=True)
class KernelChoice:
    """Which kernels pack the weights of one product shape, and why (shown on the status tab)."""

    in_features: int
    out_features: int
    levels: int
    name: str  # the kernel for decode steps (and for prompts, unless ``prompt_name`` differs)
    reason: str  # "self-test", "setting" (MODELDECK_INT8_KERNEL) or "only exact" (one kernel passed the check)
    micros: dict[str, float] = field(default_factory=dict)  # the self-test's time per kernel for steps, µs
    rejected: dict[str, str] = field(default_factory=dict)  # kernels left out, and why
    prompt_name: str = ""  # the kernel for prompts ("" or ``name``: the same)
    prompt_micros: dict[str, float] = field(default_factory=dict)  # the self-test's time per kernel for a prompt
    prompt_reason: str = ""  # why the prompt kernel: "self-test", "setting" (MODELDECK_INT8_PROMPT_KERNEL), ""

    @property
    def label(self) -> str:
        """The kernel's name, or both names when prompts use another: the name the packed weights carry."""
        return pair_name(self.name, self.prompt_name)


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
        except (RuntimeError, AttributeError) as error:  # not built into this torch (no such op), or not this CPU
            log.warning("int8 kernel %s unavailable: %s", kind.name, error)
            rejected[kind.name] = f"unavailable: {str(error)[:120]}"
    if len(kinds) < 2:
        return KernelChoice(in_features, out_features, levels, (kinds or [FbgemmWeights])[0].name, "only exact",
                            rejected=rejected)
    step, prompt = _fastest(kinds, in_features, out_features, levels)
    return KernelChoice(in_features, out_features, levels, min(step, key=step.__getitem__), "self-test", step,
                        rejected, min(prompt, key=prompt.__getitem__), prompt, "self-test")


def _choice(in_features: int, out_features: int, levels: int) -> KernelChoice:
    """The settings' kernels, else the self-test's (which runs once per shape and activation width)."""
    chosen, for_prompts = settings.get("MODELDECK_INT8_KERNEL"), settings.get("MODELDECK_INT8_PROMPT_KERNEL")
    if chosen != "auto":  # a step kernel set by hand reads prompts too, unless the prompt kernel is set as well
        prompt = chosen if for_prompts in ("auto", "same") else for_prompts
        return KernelChoice(in_features, out_features, levels, chosen, "setting", prompt_name=prompt,
                            prompt_reason="setting")
    measured = _measured(in_features, out_features, levels)
    if for_prompts == "auto":
        return measured
    # "same": one packing, less memory; a kernel's name: that kernel for prompts
    return replace(measured, prompt_name=measured.name if for_prompts == "same" else for_prompts,
                   prompt_reason="setting")


def kernel(in_features: int, out_features: int, levels: int) -> Kernels:
    """The kernels to pack with: ``MODELDECK_INT8_KERNEL`` / ``_PROMPT_KERNEL``, else the self-test's picks."""
    choice = _choice(in_features, out_features, levels)
    _choices[(in_features, out_features, levels)] = choice
    return Kernels(KERNELS[choice.name], KERNELS[choice.prompt_name or choice.name])


def choices() -> list[KernelChoice]:
    """Every kernel choice made in this process, one per product shape (the latest), in order."""
    return list(_choices.values())
