"""A decode step for Qwen2- and Llama-style decoders that makes fewer Python calls: the same numbers.

In a decode step each row feeds one token, and on two CPU cores a 0.5B model's step spends a few
milliseconds outside the products: transformers' wrappers (output capturing, keyword deprecation, mask
building), a module call, view and transpose for each of q, k and v, and slow module attribute lookups.
``LeanDecoder.step()`` runs the same layers with the same weights in the same order: the embedding, the
rotary embedding, each layer's norms, products, attention and MLP, the final norm and the output layer on
the last position. Its logits equal the model's own bit for bit on the CPU measured (``F.rms_norm``
computes the module's numbers); the tests hold every pass to them within 1e-5. What it saves:

- transformers' per-call wrappers, and the causal mask (a decode step's query may see every cached
  position: the mask is the rows' padding, or none);
- the q/k/v and gate/up products that share one int8 product (``int8.Int8Fused``) are called once and
  split, and q and k get their rotary embedding together, as one tensor;
- each RMSNorm is one ``F.rms_norm`` call (float32) instead of six element-wise operations;
- what a step needs of each layer is looked up once, when the ``LeanDecoder`` is built.

Only models whose layers are exactly of that shape take it (``supports``): the classes in ``SUPPORTED``,
ModelDeck's packed attention (the CPU), full attention in every layer, RMSNorm layers of the two families.
Anything else, every prompt (more than one token per row), and any model with a forward hook on a module
whose forward ``step()`` skips (instrumentation, a debugger, a test's gate: ``bypassed``) goes through the
model's own forward, so hooks see every pass. ``MODELDECK_LEAN_DECODE=0`` turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .attention import NAME as PACKED_ATTENTION, packed_attention

SUPPORTED = ("Qwen2ForCausalLM", "LlamaForCausalLM")
NORMS = ("Qwen2RMSNorm", "LlamaRMSNorm")
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling", "num_key_value_groups")
_MLP = ("gate_proj", "up_proj", "down_proj", "act_fn")
_DECODER = ("embed_tokens", "rotary_emb", "layers", "norm")


def supports(model: Any) -> bool:
    """True when ``model``'s decode steps can run through a ``LeanDecoder`` (the same numbers, fewer calls)."""
    config = getattr(model, "config", None)
    decoder = getattr(model, "model", None)
    if type(model).__name__ not in SUPPORTED or config is None or decoder is None:
        return False
    sliced = (getattr(config, "pretraining_tp", 1) or 1) > 1  # Llama's products split in slices
    if getattr(config, "_attn_implementation", None) != PACKED_ATTENTION or sliced:
        return False
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return False
    if not hasattr(model, "lm_head") or not all(hasattr(decoder, name) for name in _DECODER):
        return False
    return type(decoder.norm).__name__ in NORMS and all(_plain_layer(layer) for layer in decoder.layers)


def _plain_layer(layer: Any) -> bool:
    """True when a decoder layer has the parts ``step()`` calls: RMSNorms, q/k/v/o products, a gated MLP."""
    norms = (getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None))
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    return (all(type(n).__name__ in NORMS for n in norms) and all(hasattr(attention, a) for a in _ATTENTION)
            and all(hasattr(mlp, m) for m in _MLP))


def bypassed(model: Any) -> list[Any]:
    """The modules whose own forward ``step()`` does not call: a hook on one of them needs the model's forward.

    The modules ``step()`` does call (the embedding, the rotary embedding, the o and down products, the
    output layer) run their hooks as usual: ModelDeck's own hook that widens a bfloat16 embedding's rows is one.
    """
    decoder = model.model
    modules = [model, decoder, decoder.norm]
    for layer in decoder.layers:
        attention, mlp = layer.self_attn, layer.mlp
        modules += [layer, layer.input_layernorm, layer.post_attention_layernorm, attention, attention.q_proj,
                    attention.k_proj, attention.v_proj, mlp, mlp.gate_proj, mlp.up_proj]
    return modules


def _product(modules: list[Any]) -> Callable[[Any], Any]:
    """A function giving ``modules``' outputs on one input side by side: one int8 product when they share one."""
    import torch

    from .int8 import Int8Part

    fused = getattr(modules[0], "fused", None)
    if (fused is None or not all(isinstance(m, Int8Part) and m.fused is fused for m in modules)
            or [m.part for m in modules] != list(range(len(fused.sizes)))):
        return lambda x: torch.cat([m(x) for m in modules], dim=-1)
    return fused.joined


def _norm(module: Any) -> Callable[[Any], Any]:
    """``module`` (an RMSNorm) as a function: one fused call for float32 weights, the module itself otherwise."""
    import torch
    import torch.nn.functional as F

    weight, eps = module.weight, module.variance_epsilon
    if weight.dtype != torch.float32:
        return module
    return lambda x: F.rms_norm(x, (x.shape[-1],), weight, eps) if x.dtype == torch.float32 else module(x)


@dataclass(frozen=True)
class _Layer:
    """What a decode step needs of one decoder layer, looked up once (module attribute lookups are slow)."""

    input_norm: Callable[[Any], Any]
    qkv: Callable[[Any], Any]
    heads: int
    pairs: int  # key/value heads
    size: int  # head size
    scaling: float
    o_proj: Any
    post_norm: Callable[[Any], Any]
    gate_up: Callable[[Any], Any]
    split: tuple[int, int]
    act: Any
    down_proj: Any


class LeanDecoder:
    """``model``'s decode step in fewer calls (build it once ``supports(model)``; the modules are read now)."""

    def __init__(self, model: Any) -> None:
        decoder = model.model
        self.embed, self.rotary, self.final_norm, self.head = (decoder.embed_tokens, decoder.rotary_emb,
                                                               _norm(decoder.norm), model.lm_head)
        self.layers = []
        for layer in decoder.layers:
            attention, mlp = layer.self_attn, layer.mlp
            size = attention.head_dim
            self.layers.append(_Layer(
                _norm(layer.input_layernorm), _product([attention.q_proj, attention.k_proj, attention.v_proj]),
                attention.q_proj.out_features // size, attention.k_proj.out_features // size, size,
                attention.scaling, attention.o_proj, _norm(layer.post_attention_layernorm),
                _product([mlp.gate_proj, mlp.up_proj]), (mlp.gate_proj.out_features, mlp.up_proj.out_features),
                mlp.act_fn, mlp.down_proj))
        self.bypassed = bypassed(model)

    def hooked(self) -> bool:
        """True when a forward hook is set on a module ``step()`` skips, or on every module."""
        from torch.nn.modules import module as torch_module

        if torch_module._global_forward_pre_hooks or torch_module._global_forward_hooks:
            return True
        return any(m._forward_pre_hooks or m._forward_hooks for m in self.bypassed)

    def step(self, ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        """Feed one token per row (``ids``: batch × 1) after what ``cache`` holds; return each row's logits.

        ``mask`` is 1 for every real cached position and for the new one, 0 for left padding; ``positions``
        holds each row's position of its new token (batch × 1). ``cache`` grows by one position.
        """
        batch = ids.shape[0]
        hidden = self.embed(ids)
        cos, sin = self.rotary(hidden, positions)  # (batch, 1, head size): one position per row
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
        padded = None if bool(mask.all()) else mask[:, None, None, :].bool()  # the cached positions each row sees
        for layer, kept in zip(self.layers, cache.layers):
            size, heads = layer.size, layer.heads
            qkv = layer.qkv(layer.input_norm(hidden))
            qk = _rotated(qkv[..., :(heads + layer.pairs) * size].view(batch, 1, -1, size), cos, sin)  # q, k at once
            v = qkv[..., (heads + layer.pairs) * size:].view(batch, 1, -1, size)
            keys, values = kept.update(qk[:, :, heads:].transpose(1, 2), v.transpose(1, 2))
            out = packed_attention(qk[:, 0, :heads], keys, values, padded, layer.scaling)
            hidden = hidden + layer.o_proj(out.reshape(batch, 1, heads * size))
            gate, up = layer.gate_up(layer.post_norm(hidden)).split(layer.split, dim=-1)
            hidden = hidden + layer.down_proj(layer.act(gate) * up)
        return self.head(self.final_norm(hidden)[:, -1:, :])[:, -1, :]


def _rotated(x: Any, cos: Any, sin: Any) -> Any:
    """``x`` (batch, 1, heads, head size) with the rotary embedding applied, as transformers applies it."""
    import torch

    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin
