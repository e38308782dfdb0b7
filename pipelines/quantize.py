"""int8 quantisation of a model's linear layers for CPU inference, and giving freed memory back.

Decoding on a CPU is bound by reading the weights; int8 weights are a quarter of float32's bytes. The
activations are quantised on the fly with one scale per token (``pipelines/int8.py``), so no calibration
data is needed, one token's large activations do not coarsen the others', and a request gets the same
numbers alone and inside a batch. (Until this version, torch's dynamic int8 ``Linear`` quantised a whole
input with one scale: in a batch, one request's activations set the grid for the others.) The kernel
(fbgemm) is CPU-only, so ``devices.quantization`` says "none" on CUDA and MPS. torch is imported inside
the functions: importing ``pipelines`` stays torch-free.

Quantising frees the float32 weights, but glibc's allocator keeps freed memory in its heap rather
than returning it to the system (a Qwen2.5-0.5B load: 4.1 GB resident, 1.8 GB after one
``malloc_trim(0)``), so ``give_back_freed_memory`` asks it to after quantising and after a model is dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def give_back_freed_memory() -> bool:
    """Ask the C allocator to return freed heap memory to the system (glibc's ``malloc_trim``); True if it ran."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to ask
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


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


# Sibling layers that read the same input in the architectures ModelDeck quantises (Qwen2/Llama-style
# attention and MLP, BERT-style attention): one shared int8 product each (``int8.Int8Fused``).
SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("query", "key", "value"))


def _sibling_groups(model: Any, names: list[str]) -> list[list[str]]:
    """The full names of each set of ``SIBLINGS`` found under one parent among ``names``, with equal inputs."""
    present = set(names)
    groups = []
    for parent in {name.rpartition(".")[0] for name in names}:
        for siblings in SIBLINGS:
            group = [f"{parent}.{child}" if parent else child for child in siblings]
            if all(name in present for name in group) and len(
                    {model.get_submodule(name).in_features for name in group}) == 1:
                groups.append(group)
    return sorted(groups)


def quantize_int8(model: "torch.nn.Module", *, per_channel: bool = True,
                  include_lm_head: bool = True) -> "torch.nn.Module":
    """Return ``model`` with its ``nn.Linear`` layers replaced, in place, by int8 ones (per-token activations).

    ``per_channel`` gives each output row its own weight scale (per-tensor: one scale per layer).
    ``include_lm_head=False`` keeps the output layer (``get_output_embeddings()``) in float32. With
    per-channel scales, ``SIBLINGS`` (q/k/v, gate/up) share one product each: the same numbers in fewer
    kernel calls. The float
    weights of replaced layers are dropped, not copied, and their memory is given back; the model is
    switched to eval mode.
    """
    import torch

    from .devices import int8_activation_levels
    from .int8 import Int8Fused, Int8Linear
    from .int8_kernels import kernel as int8_kernel

    get_out = getattr(model, "get_output_embeddings", None)
    head = get_out() if get_out is not None else None
    names = [name for name, module in model.named_modules()
             if type(module) is torch.nn.Linear and (include_lm_head or module is not head)]
    if not names:
        return model
    tied = include_lm_head and _untie_output_layer(model)
    levels = int8_activation_levels()
    model.eval()
    groups = _sibling_groups(model, names) if per_channel else []
    # The self-test times the largest product short of the output layer: the MLP's, in a decoder.
    largest = max((model.get_submodule(name) for name in names),
                  key=lambda m: m.in_features * m.out_features * (m is not head))
    kernel = int8_kernel(largest.in_features, largest.out_features, levels)
    for group in groups:  # one group at a time: at most one group's float copy exists twice
        parent_name, _, _ = group[0].rpartition(".")
        parent = model.get_submodule(parent_name)
        fused = Int8Fused([model.get_submodule(name) for name in group], levels=levels, kernel=kernel)
        for name, part in zip(group, fused.parts()):
            setattr(parent, name.rpartition(".")[2], part)
    grouped = {name for group in groups for name in group}
    for name in (name for name in names if name not in grouped):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        # The output layer reads one row per request in a prompt too (the last): one packing is enough.
        setattr(parent, child, Int8Linear(linear, levels=levels, per_channel=per_channel,
                                          kernel=kernel.steps_only() if linear is head else kernel))
    give_back_freed_memory()
    log.info("int8 (%s weights, per-token activations, %d levels, %s kernel) quantised %d linear layers (%d "
             "sharing a product with siblings)%s%s", "per-channel" if per_channel else "per-tensor", levels,
             kernel.name, len(names), len(grouped),
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


def int8_kernels_of(model: "torch.nn.Module") -> list[str]:
    """The names of the int8 kernels ``model``'s quantised layers use (empty when it is not quantised)."""
    names = set()
    for module in model.modules():
        weights = getattr(getattr(module, "fused", module), "weights", None)  # Int8Linear, or Int8Part's Int8Fused
        if callable(getattr(weights, "times", None)):
            names.add(weights.name)
    # "fbgemm" (the output layer's one packing) is part of "fbgemm + onednn_packed (prompts)" (the others').
    return sorted(n for n in names if not any(other.startswith(f"{n} + ") for other in names))


def weight_bytes(model: "torch.nn.Module") -> int:
    """Return the bytes held by ``model``'s parameters, buffers and int8-packed linear weights."""
    seen: set[int] = set()
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) not in seen:  # a tied weight is one tensor
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    for module in model.modules():
        packed_bytes = getattr(module, "packed_bytes", None)
        if callable(packed_bytes):
            total += packed_bytes()
    return total
