"""Decode-step attention with the query heads packed onto their key/value head gives transformers' numbers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pipelines.attention import NAME, packed_sdpa, use_packed_sdpa


@pytest.fixture
def qwen(tmp_path):
    from transformers import AutoModelForCausalLM

    from tiny_models import qwen2_chat

    qwen2_chat(tmp_path, width=64, heads=8)  # 8 query heads of size 8 on 2 key/value heads: 4 per group
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()


def _decode(model, cache, ids, mask):
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True).logits[:, -1]


@pytest.mark.parametrize("padded", [False, True])
def test_a_decode_step_gives_sdpas_logits_with_one_call_per_key_value_head(qwen, monkeypatch, padded):
    prompt = torch.randint(3, qwen.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    if padded:  # rows of different lengths: the mask sdpa gets is shared by the heads
        mask[0, :4] = mask[2, :2] = 0
    with torch.inference_mode():
        cache = qwen(input_ids=prompt, attention_mask=mask, use_cache=True).past_key_values
    step, mask = prompt[:, -1:], torch.cat([mask, mask.new_ones((3, 1))], 1)
    want = _decode(qwen, copy.deepcopy(cache), step, mask)

    assert use_packed_sdpa(qwen) and qwen.config._attn_implementation == NAME
    shapes = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda q, *a, **k: shapes.append(q.shape) or real(q, *a, **k))
    got = _decode(qwen, cache, step, mask)
    assert shapes and all(s == (3, 2, 4, 8) for s in shapes)  # (rows, key/value heads, their 4 queries, head size)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_row_gets_the_same_numbers_alone_and_in_company(qwen):
    attention = qwen.model.layers[0].self_attn  # 8 query heads on 2 key/value heads
    g = torch.Generator().manual_seed(2)
    query, key, value = torch.randn((3, 8, 1, 8), generator=g), torch.randn((3, 2, 30, 8), generator=g), \
        torch.randn((3, 2, 30, 8), generator=g)
    together = packed_sdpa(attention, query, key, value, None, scaling=0.35)[0]
    alone = packed_sdpa(attention, query[1:2], key[1:2], value[1:2], None, scaling=0.35)[0]
    assert together.shape == (3, 1, 8, 8) and torch.equal(together[1:2], alone)


def test_a_prompt_and_a_model_without_grouped_heads_keep_transformers_sdpa(qwen, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from tiny_models import gpt2_zh

    use_packed_sdpa(qwen)
    shapes = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda q, *a, **k: shapes.append(q.shape) or real(q, *a, **k))
    with torch.inference_mode():
        qwen(input_ids=torch.tensor([[5, 6, 7]]))
    assert shapes[0] == (1, 8, 3, 8)  # a prompt: transformers' own call, every query head
    gpt2_zh(tmp_path / "gpt2")
    gpt2 = AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2")
    assert gpt2.config._attn_implementation == "sdpa"
    use_packed_sdpa(gpt2)
    with torch.inference_mode():
        out = gpt2(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True)
        gpt2(input_ids=torch.tensor([[8]]), cache=out.past_key_values, use_cache=True)
    assert shapes[-1] == (1, 2, 1, 16)  # one query per head: nothing to pack, transformers' call


def test_the_registry_loads_chat_models_with_packed_attention(fresh_registry):
    from pipelines import registry

    assert registry.get_model("chat").model.config._attn_implementation == NAME
