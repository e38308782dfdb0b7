"""Dynamic int8 quantisation of a model's linear layers, for CPU inference.

Decoding on a CPU is bound by reading the weights; int8 weights are a quarter of float32's bytes and
the activations are quantised on the fly, row by row, so no calibration data is needed. The kernels
(fbgemm / x86) are CPU-only, so ``devices.quantization`` says "none" on CUDA and MPS. torch is
imported inside the functions: importing ``pipelines`` stays torch-free.

torch 2.13 still ships ``torch.ao.quantization.quantize_dynamic`` but announces its removal
(DeprecationWarning, plus a UserWarning for quantised-tensor creation); its successor is torchao's
``quantize_``, which is not a dependency here. The one in-torch alternative, the weight-only
``torch._weight_int8pack_mm``, has no fast float32 path on x86 (measured 10-60× slower than float32),
so the deprecated API is what works: its warnings are filtered by message, here only.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_DEPRECATION_MESSAGES = (r"torch\.ao\.quantization is deprecated", r"torch\.quantize_per_tensor, torch\.quantize_per")


def _untie_output_layer(model: Any) -> bool:
    """Mark a tied output layer as untied; return True when it was tied to the input embedding."""
    get_in, get_out = getattr(model, "get_input_embeddings", None), getattr(model, "get_output_embeddings", None)
    if get_in is None or get_out is None:
        return False
    embedding, head = get_in(), get_out()
    tied = (embedding is not None and head is not None and getattr(head, "weight", None) is not None
            and head.weight is embedding.weight)
    if tied:
        # The int8 head gets its own packed copy while the embedding keeps the float weight (lookups need
        # it). Left marked as tied, transformers' tie_weights() (called by resize_token_embeddings and
        # some loaders) would try to set ``weight`` on the quantised head and fail with KeyError.
        for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
            config.tie_word_embeddings = False
    return tied


def quantize_int8(model: "torch.nn.Module", *, per_channel: bool = True,
                  include_lm_head: bool = True) -> "torch.nn.Module":
    """Return ``model`` with its ``nn.Linear`` layers replaced, in place, by dynamic int8 ones.

    ``per_channel`` gives each output row its own weight scale (per-tensor: one scale per layer).
    ``include_lm_head=False`` keeps the output layer (``get_output_embeddings()``) in float32. The float
    weights of replaced layers are dropped, not copied; the model is switched to eval mode.
    """
    import torch

    with warnings.catch_warnings():
        for message in _DEPRECATION_MESSAGES:
            warnings.filterwarnings("ignore", message=message)
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
        get_out = getattr(model, "get_output_embeddings", None)
        head = get_out() if get_out is not None else None
        names = [name for name, module in model.named_modules()
                 if type(module) is torch.nn.Linear and (include_lm_head or module is not head)]
        if not names:
            return model
        tied = include_lm_head and _untie_output_layer(model)
        # Layers by name, not by type, so that a kept-float output layer is simply left out.
        quantize_dynamic(model.eval(), {name: qconfig for name in names}, dtype=torch.qint8, inplace=True)
    log.info("int8 (%s) quantised %d linear layers%s%s", "per-channel" if per_channel else "per-tensor", len(names),
             "" if include_lm_head or head is None else "; output layer kept in float32",
             "; output layer untied from the embedding" if tied else "")
    return model


def compact_input_embedding(model: "torch.nn.Module") -> bool:
    """Store the input embedding in bfloat16 when that changes no value; return True when it did.

    Checkpoints saved in bfloat16 (Qwen2.5's) hold nothing that float32 adds, so their embedding table,
    the largest float tensor left after int8 (Qwen2.5-0.5B: 519 MiB), takes half the memory with the
    same lookups: the rows read are widened back to float32. An embedding still shared with a float
    output layer is left alone.
    """
    import torch

    embedding = model.get_input_embeddings()
    weight = getattr(embedding, "weight", None)
    head = model.get_output_embeddings()
    if (not isinstance(embedding, torch.nn.Embedding) or weight is None or weight.dtype != torch.float32
            or (head is not None and getattr(head, "weight", None) is weight)):
        return False
    compact = weight.detach().to(torch.bfloat16)
    if not torch.equal(compact.float(), weight):
        return False
    embedding.weight = torch.nn.Parameter(compact, requires_grad=False)
    embedding.register_forward_hook(lambda module, args, output: output.float())
    log.info("input embedding kept in bfloat16 (exact: the checkpoint holds bfloat16 values)")
    return True


def _packed_bytes(module: Any) -> int:
    """Bytes of one dynamic-quantised linear layer, from its shape (unpacking the 152k-row head takes ~2 s)."""
    import torch

    packed = module._packed_params
    itemsize = torch.empty((), dtype=packed.dtype).element_size()
    rows, cols = int(module.out_features), int(module.in_features)
    # Per-row scale (float64) and zero point (int64), and a float32 bias: the packed form does not tell
    # whether a bias exists without unpacking, so this counts one (an upper bound of 4 bytes a row).
    return rows * cols * itemsize + rows * (8 + 8 + 4)


def weight_bytes(model: "torch.nn.Module") -> int:
    """Return the bytes held by ``model``'s parameters, buffers and int8-packed linear weights."""
    seen: set[int] = set()
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) not in seen:  # a tied weight is one tensor
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    for module in model.modules():
        if hasattr(module, "_packed_params") and hasattr(module, "in_features"):
            total += _packed_bytes(module)
    return total
