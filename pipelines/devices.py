"""Device and dtype choice, in one place.

CUDA → bfloat16 where the GPU supports it, else float16; Apple MPS → float16; CPU → float32, with the
language models' and classifiers' linear layers quantised to int8 (dynamic, per-channel weights):
decoding on a CPU is bound by reading the weights, and int8 reads a quarter of the bytes.
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


def device_and_dtype_names() -> tuple[str, str]:
    """Return the (device, dtype) names models are placed with, honouring the environment."""
    return _resolve(settings.get("MODELDECK_DEVICE"), settings.get("MODELDECK_DTYPE"))


def device_and_dtype() -> tuple[str, "torch.dtype"]:
    """Return the device string and the torch dtype models are placed with."""
    import torch

    device, dtype = device_and_dtype_names()
    return device, getattr(torch, dtype)


def quantization(device: str, dtype: str = "float32") -> str:
    """"int8" or "none": ``MODELDECK_QUANTIZE``, else int8 for float32 models on the CPU and none elsewhere.

    The dynamic int8 kernels run on the CPU only and take float32 activations, so a model placed on a GPU
    or in half precision is never quantised (an explicit ``int8`` is then ignored with a warning).
    """
    value = settings.get("MODELDECK_QUANTIZE")
    possible = device == "cpu" and dtype == "float32"
    if value == "int8" and not possible:
        log.warning("MODELDECK_QUANTIZE=int8 ignored: int8 needs float32 weights on the CPU (here %s on %s)",
                    dtype, device)
    return "int8" if possible and value != "none" else "none"
