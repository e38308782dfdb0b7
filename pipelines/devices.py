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
import os
import platform
import sys
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


# The vector extensions that decide int8 and bfloat16 speed here, as /proc/cpuinfo names them, and as shown.
CPU_FEATURES = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
                ("avx512_bf16", "AVX-512 bf16"), ("amx_int8", "AMX int8"))


def _cpuinfo(key: str) -> str | None:
    """The first value of ``key`` in /proc/cpuinfo (None where there is none: not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


@lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The processor's feature flags from /proc/cpuinfo (empty where there is none: not Linux)."""
    return frozenset((_cpuinfo("flags") or "").split())


@lru_cache(maxsize=None)
def cpu_name() -> str:
    """The processor's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."), or the architecture where unknown."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


def processor() -> dict[str, object]:
    """The processor as the int8 path sees it: name, CPUs, which of ``CPU_FEATURES`` it has, activation width."""
    flags = cpu_flags()
    torch = sys.modules.get("torch")  # the thread count only once torch is in use: never imported for this
    return {"name": cpu_name(), "cpus": os.cpu_count() or 1,
            "threads": torch.get_num_threads() if torch is not None else None,
            "has": [shown for flag, shown in CPU_FEATURES if flag in flags],
            "lacks": [shown for flag, shown in CPU_FEATURES if flag not in flags],
            "activation_bits": 8 if int8_activation_levels() == 127 else 7}


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
