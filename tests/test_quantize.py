"""int8 dynamic quantisation: what it replaces, what it keeps, and what it costs in accuracy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from pipelines import registry
from pipelines.quantize import quantize_int8, weight_bytes


@pytest.fixture
def qwen():
    source = registry.resolve("chat").source
    return lambda: AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()


def _linears(model):
    return [m for m in model.modules() if type(m) is torch.nn.Linear]


def test_every_linear_layer_becomes_int8_and_the_embedding_stays_float(qwen):
    model = quantize_int8(qwen())
    assert not _linears(model)
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert model.get_output_embeddings().weight().dtype == torch.qint8
    model.tie_weights()  # raised KeyError while the quantised head was still marked as tied


def test_int8_keeps_the_float_models_predictions_close(qwen):
    ids = torch.arange(3, 40)[None]
    with torch.inference_mode():
        reference = qwen()(ids).logits
        quantized = quantize_int8(qwen())(ids).logits
    assert ((quantized - reference).norm() / reference.norm()).item() < 0.1
    assert (quantized.argmax(-1) == reference.argmax(-1)).float().mean().item() > 0.8


def test_the_output_layer_can_stay_float_and_weights_can_share_one_scale(qwen):
    model = quantize_int8(qwen(), per_channel=False, include_lm_head=False)
    assert _linears(model) == [model.get_output_embeddings()]
    layer = model.model.layers[0].mlp.down_proj
    assert layer.weight().qscheme() == torch.per_tensor_affine


def test_int8_weights_take_far_fewer_bytes(qwen):
    model = qwen()
    linear_bytes = sum(m.weight.numel() * 4 for m in _linears(model) if m is not model.get_output_embeddings())
    before = weight_bytes(model)
    after = weight_bytes(quantize_int8(model, include_lm_head=False))
    # A quarter of the bytes, plus a scale and zero point per row: a visible share only in a tiny model.
    assert 0.6 * linear_bytes <= before - after <= 0.75 * linear_bytes


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's /proc/self/maps")
@pytest.mark.parametrize("setting, mapped", [("int8", False), ("none", True)])
def test_a_quantised_model_keeps_no_mapping_of_its_float_checkpoint(monkeypatch, fresh_registry, setting, mapped):
    monkeypatch.setenv("MODELDECK_QUANTIZE", setting)
    loaded = registry.get_model("classifier")
    weights = [str(f.resolve()) for f in Path(loaded.spec.source).glob("*.safetensors")]
    assert weights
    with open("/proc/self/maps") as maps:
        held = any(w in line for line in maps for w in weights)
    assert held == mapped


def test_a_bfloat16_checkpoints_embedding_stays_bfloat16_with_the_same_results(qwen, tmp_path):
    from pipelines.quantize import compact_input_embedding

    qwen().to(torch.bfloat16).save_pretrained(tmp_path)  # as the real Qwen2.5 checkpoint is stored
    source = registry.resolve("chat").source
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (Path(source) / name).exists():
            (tmp_path / name).write_bytes((Path(source) / name).read_bytes())

    def load():
        return quantize_int8(AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval())

    ids = torch.arange(3, 40)[None]
    wide, compact = load(), load()
    assert compact_input_embedding(compact)
    assert compact.get_input_embeddings().weight.dtype == torch.bfloat16
    assert weight_bytes(compact) < weight_bytes(wide)
    with torch.inference_mode():
        assert torch.equal(compact(ids).logits, wide(ids).logits)


def test_a_float32_embedding_with_float32_values_is_kept(qwen):
    from pipelines.quantize import compact_input_embedding

    model = quantize_int8(qwen())  # random float32 values: bfloat16 would change them
    assert not compact_input_embedding(model)
    assert model.get_input_embeddings().weight.dtype == torch.float32
    tied = qwen()  # the embedding is still the float output layer's weight
    assert not compact_input_embedding(tied)
