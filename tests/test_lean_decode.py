"""The lean decode step gives the model's own numbers, and steps aside whenever it cannot promise that."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pipelines import lean_decode, registry
from pipelines.attention import use_packed_sdpa
from pipelines.decoding import DecodeBatch, Request
from pipelines.quantize import compact_input_embedding, quantize_int8
from pipelines.sampling import SamplingParams


def _decoder(kind: str, weights: str = "int8") -> SimpleNamespace:
    """A small random Qwen2 or Llama decoder on the CPU as ModelDeck prepares one from a bfloat16 checkpoint,
    with the chat tokenizer: packed decode attention, and ``weights`` int8 (the embedding then kept in bfloat16
    with its widening hook, as the registry does), float32 or bfloat16."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = registry.get_model("chat").processor
    shape = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                 num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=256,
                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model_class, config = ((Qwen2ForCausalLM, Qwen2Config(**shape)) if kind == "qwen2"
                           else (LlamaForCausalLM, LlamaConfig(**shape, attention_bias=True)))
    model = model_class(config).eval()
    with torch.no_grad():  # random norms and biases, so that every part of a layer counts
        for name, parameter in model.named_parameters():
            if "norm" in name or "bias" in name:
                parameter.uniform_(0.5, 1.5)
            parameter.copy_(parameter.bfloat16().float())  # the values a bfloat16 checkpoint holds
    assert use_packed_sdpa(model)
    if weights == "int8":
        quantize_int8(model)
        assert compact_input_embedding(model)  # as the registry does: a forward hook on the embedding
    elif weights == "bfloat16":  # MODELDECK_DTYPE=bfloat16 on the CPU: the norms stay modules
        model.to(torch.bfloat16)
    return SimpleNamespace(model=model, processor=tokenizer, device=torch.device("cpu"))


def _run(loaded: SimpleNamespace, lean: bool) -> list[tuple[int, torch.Tensor]]:
    """Greedy replies to three prompts of different lengths (one reply ends early); every pass's logits."""
    batch = DecodeBatch(loaded)
    batch.lean = lean
    passes = []
    real = batch.forward

    def forward(ids, mask, positions, cache, **options):
        logits = real(ids, mask, positions, cache, **options)
        passes.append((ids.shape[1], logits.clone()))
        return logits

    batch.forward = forward
    prompts = [[5, 9, 12, 30, 7, 7, 41], [3, 8, 15], [60, 2, 19, 19, 4]]
    requests = [Request(rows=[prompt], params=SamplingParams(max_new_tokens=n, temperature=0))
                for prompt, n in zip(prompts, (12, 5, 12))]
    batch.admit(requests)
    while batch.rows:
        batch.step()
    return passes


@pytest.mark.parametrize("weights", ["int8", "float32", "bfloat16"])
@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_lean_decode_steps_give_the_model_s_own_logits(kind, weights, monkeypatch):
    loaded = _decoder(kind, weights)
    assert lean_decode.supports(loaded.model)
    calls = []
    real_step = lean_decode.LeanDecoder.step
    monkeypatch.setattr(lean_decode.LeanDecoder, "step", lambda self, ids, *a: calls.append(ids.shape[0])
                        or real_step(self, ids, *a))
    lean, own = _run(loaded, lean=True), _run(loaded, lean=False)
    assert calls[:4] == [3, 3, 3, 3] and 2 in calls  # decode steps took the lean path, before and after a row left
    assert len(lean) == len(own) == len(calls) + 1  # one prefill, then one pass a step on both paths
    for (_, mine), (_, theirs) in zip(lean, own):
        assert mine.shape == theirs.shape
        torch.testing.assert_close(mine.float(), theirs.float(), rtol=1e-5, atol=1e-5 * float(theirs.abs().max()))
        assert torch.equal(mine.argmax(-1), theirs.argmax(-1))


def test_the_setting_turns_it_off_and_other_models_take_their_own_forward(monkeypatch):
    loaded = _decoder("qwen2")
    assert DecodeBatch(loaded).lean
    monkeypatch.setenv("MODELDECK_LEAN_DECODE", "0")
    assert not DecodeBatch(loaded).lean
    assert not lean_decode.supports(registry.get_model("textgen").model)  # GPT-2
    loaded.model.config._attn_implementation = "sdpa"  # not ModelDeck's packed decode attention (a GPU)
    assert not lean_decode.supports(loaded.model)


def test_a_model_with_a_forward_hook_gets_every_pass_through_its_own_forward():
    loaded = _decoder("llama")
    seen = []
    handle = loaded.model.model.layers[1].mlp.register_forward_pre_hook(lambda module, args: seen.append(1))
    try:
        passes = _run(loaded, lean=True)
    finally:
        handle.remove()
    assert len(seen) == len(passes)  # the hook saw the prefill and every decode step
    assert not lean_decode.LeanDecoder(loaded.model).hooked()


def test_the_status_tab_says_which_loaded_models_take_it(fresh_registry, monkeypatch):
    if str(fresh_registry.get_model("chat").device) != "cpu":
        pytest.skip("the lean step is for the CPU's packed decode attention")
    fresh_registry.get_model("textgen")
    taken = {tuple(row["roles"]): row["lean_decode"] for row in fresh_registry.loaded_models()}
    assert taken[("chat", "story")] and not taken[("textgen",)]  # a Qwen2 chat model does, GPT-2 does not
    monkeypatch.setenv("MODELDECK_LEAN_DECODE", "0")
    assert not any(row["lean_decode"] for row in fresh_registry.loaded_models())
