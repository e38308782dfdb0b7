"""Device and dtype choice, in one place.

CUDA → bfloat16 where the GPU supports it, else float16; Apple MPS → float16; CPU → float32, with the
language models' and classifiers' linear layers quantised to int8 (per-channel weights, per-token
activations): decoding on a CPU is bound by reading the weights, and int8 reads a quarter of the bytes.
What the int8 kernel may assume about the processor is read from its flags (``cpu_flags``), not from
the machine the code was tuned on.
``MODELDECK_DEVICE`` (cpu, cuda, cuda:1, mps), ``MODELDECK_DTYPE`` (float32, float16, bfloat16) and
``MODELDECK_QUANTIZE`` (int8, none) override the choice. torch is imported only when a model is
about to be placed.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING

from . import settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

def _auto_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@lru_cache(maxsize=None)
def _resolve(device_setting: str | None, dtype_setting: str | None) -> tuple[str, str]:
    device = device_setting or _auto_device()
    if dtype_setting:
        return device, dtype_setting
    if device.startswith("cuda"):
        import torch

        return device, "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return device, "float16"
    return device, "float32"


@lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The processor's feature flags from /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def int8_activation_levels() -> int:
    """127 (8-bit activations) on CPUs with AVX-512 VNNI, else 63 (7 bits), for the int8 kernel.

    fbgemm multiplies uint8 activations by int8 weights. With AVX-512 VNNI (``vpdpbusd``) each product
    is added into 32 bits, exactly. Without it (AVX2), pairs of products are added in saturating 16-bit
    integers (``vpmaddubsw``), which 8-bit activations can overflow; 7 bits cannot, which is why torch's
    dynamic int8 always used 7 (``reduce_range``). An unknown CPU gets the safe 7.
    """
    return 127 if "avx512_vnni" in cpu_flags() else 63


def device_and_dtype_names() -> tuple[str, str]:
    """Return the (device, dtype) names models are placed with, honouring the environment."""
    return _resolve(settings.get("MODELDECK_DEVICE"), settings.get("MODELDECK_DTYPE"))


def device_and_dtype() -> tuple[str, "torch.dtype"]:
    """Return the device string and the torch dtype models are placed with."""
    import torch

    device, dtype = device_and_dtype_names()
    return device, getattr(torch, dtype)


def _has_fbgemm() -> bool:
    import torch

    return "fbgemm" in torch.backends.quantized.supported_engines


def quantization(device: str, dtype: str = "float32") -> str:
    """"int8" or "none": ``MODELDECK_QUANTIZE``, else int8 for float32 models on the CPU and none elsewhere.

    The int8 kernel (fbgemm) runs on x86 CPUs only and takes float32 activations, so a model placed on a
    GPU, in half precision or on a CPU without fbgemm (Arm) is never quantised (an explicit ``int8`` is
    then ignored with a warning).
    """
    value = settings.get("MODELDECK_QUANTIZE")
    possible = device == "cpu" and dtype == "float32" and _has_fbgemm()
    if value == "int8" and not possible:
        log.warning("MODELDECK_QUANTIZE=int8 ignored: int8 needs float32 weights on an x86 CPU (here %s on %s)",
                    dtype, device)
    return "int8" if possible and value != "none" else "none"
