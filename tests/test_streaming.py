"""The shared streaming mechanism: decoding, cancelling, seeds, batches."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch

from pipelines import registry
from pipelines.batching import Batcher, stream_generate
from pipelines.engine import engine
from pipelines.sampling import SamplingParams
from pipelines.streaming import remove_cjk_spaces, spaces_between_cjk

from gates import PassGate, wait_until


class ScriptedModel(torch.nn.Module):
    """A causal LM (the real forward interface) whose next token follows a fixed script, then its end token."""

    def __init__(self, tokens: list[int], vocab_size: int) -> None:
        super().__init__()
        self.tokens, self.vocab_size, self.calls = tokens, vocab_size, 0
        self.generation_config = SimpleNamespace(eos_token_id=vocab_size - 1)

    def forward(self, input_ids, logits_to_keep=0, **kwargs):
        token = self.tokens[self.calls] if self.calls < len(self.tokens) else self.vocab_size - 1
        self.calls += 1
        logits = torch.zeros((input_ids.shape[0], 1, self.vocab_size))
        logits[..., token] = 1.0
        return SimpleNamespace(logits=logits)


def test_byte_level_character_split_across_tokens_never_yields_replacement_char():
    tokenizer = registry.get_model("chat").processor
    ids = tokenizer("猫狗，好", add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in p for p in pieces), "the tiny tokenizer should split a character into bytes"
    loaded = registry.LoadedModel(registry.resolve("chat"), ScriptedModel(ids, len(tokenizer)), tokenizer, "cpu",
                                  "float32", 0)
    prompt = torch.tensor([[ids[0]]])
    seen = list(stream_generate(loaded, prompt, torch.ones_like(prompt), SamplingParams(temperature=0)))
    assert seen and all("\ufffd" not in text for text in seen)
    assert seen[-1] == "猫狗，好"
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:]))


def test_wordpiece_spaces_between_chinese_characters_are_removed():
    tokenizer = registry.get_model("textgen").processor
    ids = tokenizer("我是猫，你好", add_special_tokens=False)["input_ids"]
    assert spaces_between_cjk(tokenizer)
    assert tokenizer.decode(ids) != "我是猫，你好"
    loaded = registry.LoadedModel(registry.resolve("textgen"), ScriptedModel(ids, len(tokenizer)), tokenizer, "cpu",
                                  "float32", 0)
    prompt = torch.tensor([[ids[0]]])
    assert list(stream_generate(loaded, prompt, torch.ones_like(prompt), SamplingParams(temperature=0)))[-1] \
        == "我是猫，你好"


def test_remove_cjk_spaces_keeps_spaces_between_latin_words():
    assert remove_cjk_spaces("今 天 是 2024 年 ， hello world 。") == "今天是2024年，hello world。"


def _prompt(role="chat", text="你好"):
    loaded = registry.get_model(role)
    enc = loaded.processor(text, add_special_tokens=False, return_tensors="pt")
    return loaded, enc["input_ids"], enc["attention_mask"]


def test_stream_yields_growing_text_and_counts_tokens():
    loaded, ids, mask = _prompt()
    stream = stream_generate(loaded, ids, mask, SamplingParams(max_new_tokens=12, temperature=0.9, seed=1))
    texts = list(stream)
    assert texts and all(isinstance(t, str) for t in texts)
    assert 1 <= stream.usage.completion_tokens <= 12
    assert stream.usage.prompt_tokens == ids.shape[1]
    assert stream.usage.finish_reason in ("eos", "length")


def test_same_seed_same_text_even_with_concurrent_sampling():
    loaded, ids, mask = _prompt("textgen", "天气")
    params = SamplingParams(max_new_tokens=20, temperature=1.2, top_k=0, top_p=1.0, seed=1234)
    first = stream_generate(loaded, ids, mask, params).collect()
    noise = threading.Thread(target=lambda: [stream_generate(loaded, ids, mask, SamplingParams(
        max_new_tokens=30, temperature=1.5)).collect() for _ in range(3)])
    noise.start()
    second = stream_generate(loaded, ids, mask, params).collect()
    noise.join()
    assert first == second
    others = {stream_generate(loaded, ids, mask, SamplingParams(max_new_tokens=20, temperature=1.2, seed=s)).collect()
              for s in range(5)}
    assert len(others) > 1


def test_temperature_zero_is_greedy_and_deterministic():
    loaded, ids, mask = _prompt("textgen", "天气")
    a = stream_generate(loaded, ids, mask, SamplingParams(max_new_tokens=15, temperature=0))
    b = stream_generate(loaded, ids, mask, SamplingParams(max_new_tokens=15, temperature=0))
    assert a.collect() == b.collect()
    assert a.seed is None


@pytest.fixture
def gated_textgen():
    """The tiny GPT-2 behind a gate that counts and permits each forward pass."""
    loaded = registry.get_model("textgen")
    with PassGate(loaded, permits=0) as gate:
        yield loaded, gate


def solo_decoder_gone() -> None:
    """Return once no text-generation decoder is left on the engine (its request finished)."""
    wait_until(lambda: not [d for d in engine.decoders() if not isinstance(d, Batcher)],
               "the decoder never left the engine")


SAMPLED = SamplingParams(max_new_tokens=60, temperature=1.0, seed=0)  # seeded: visible text from the first steps


ALLOWED_BEFORE_STOP = 6  # the prefill and a few steps; the stop must leave the other permits unused


def test_cancel_halts_the_computation_not_only_the_display(gated_textgen):
    loaded, gate = gated_textgen
    _, ids, mask = _prompt("textgen", "天气")
    stream = stream_generate(loaded, ids, mask, SAMPLED)
    gate.allow(ALLOWED_BEFORE_STOP)
    wait_until(lambda: gate.passes == ALLOWED_BEFORE_STOP, "the first passes never ran")
    stream.cancel()
    gate.allow(100)  # plenty for all 60 tokens: only the cancel can keep them from running
    stream.collect()
    solo_decoder_gone()
    assert stream.usage.finish_reason == "cancelled"
    assert gate.passes <= ALLOWED_BEFORE_STOP + 1, f"{gate.passes} forward passes ran despite the cancel"


def test_an_uncancelled_request_uses_every_permit(gated_textgen):
    loaded, gate = gated_textgen
    _, ids, mask = _prompt("textgen", "天气")
    stream = stream_generate(loaded, ids, mask, SAMPLED)
    gate.allow(100)
    stream.collect()
    assert gate.passes >= stream.usage.completion_tokens  # a forward pass per token (and one for the end token)
    assert gate.passes > 2 * ALLOWED_BEFORE_STOP  # the same seeded request, uncancelled, runs far past the stop


def test_closing_a_stream_early_stops_its_computation(gated_textgen):
    loaded, gate = gated_textgen
    _, ids, mask = _prompt("textgen", "天气")
    stream = stream_generate(loaded, ids, mask, SAMPLED)
    gate.allow(ALLOWED_BEFORE_STOP)
    iterator = iter(stream)
    next(iterator)
    iterator.close()  # what gradio does when the user presses Stop or leaves (GeneratorExit)
    gate.allow(100)
    solo_decoder_gone()
    assert stream.usage.finish_reason == "cancelled"
    assert gate.passes <= ALLOWED_BEFORE_STOP + 1, f"{gate.passes} forward passes ran after the close"


def test_batch_rows_sample_independently():
    loaded, ids, mask = _prompt("textgen", "天气")
    stream = stream_generate(loaded, ids.repeat(3, 1), mask.repeat(3, 1),
                             SamplingParams(max_new_tokens=15, temperature=1.5, seed=7))
    stream.collect()
    assert len(stream.texts) == 3
    assert len(set(stream.texts)) > 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_generation_on_cuda_uses_half_precision(monkeypatch, fresh_registry):
    monkeypatch.setenv("MODELDECK_DEVICE", "cuda")
    from pipelines.devices import device_and_dtype_names

    device, dtype = device_and_dtype_names()
    assert dtype in ("bfloat16", "float16")
    loaded, ids, mask = _prompt()
    assert next(loaded.model.parameters()).is_cuda
    stream = stream_generate(loaded, ids, mask, SamplingParams(max_new_tokens=10, temperature=0.8, seed=3))
    assert isinstance(stream.collect(), str)
    assert stream_generate(loaded, ids, mask, SamplingParams(max_new_tokens=10, temperature=0.8, seed=3)).collect() \
        == stream.text


def test_a_stream_interval_sends_the_tokens_that_arrive_meanwhile_together(monkeypatch):
    import time

    tokenizer = registry.get_model("chat").processor
    ids = tokenizer(" one two three four five six seven eight nine ten" * 3, add_special_tokens=False)["input_ids"]

    def run() -> tuple[list[str], float]:
        loaded = registry.LoadedModel(registry.resolve("chat"), ScriptedModel(ids, len(tokenizer)), tokenizer,
                                      "cpu", "float32", 0)
        prompt = torch.tensor([[ids[0]]])
        began = time.monotonic()
        seen = list(stream_generate(loaded, prompt, torch.ones_like(prompt), SamplingParams(temperature=0)))
        return seen, time.monotonic() - began

    every_token, _ = run()
    monkeypatch.setenv("MODELDECK_STREAM_INTERVAL_MS", "1000")
    paced, seconds = run()
    # The same text, sent in fewer updates, each a prefix of it. (Not "a subset of the unpaced updates": which
    # tokens share an update depends on timing in both runs, so either can show a text the other skipped.)
    assert paced[-1] == every_token[-1] and all(every_token[-1].startswith(text) for text in paced)
    assert len(paced) <= seconds / 1.0 + 2 < len(every_token)  # at most one update a second (and the last)
