"""A chat's earlier turns are not prefilled again: kept keys and values, and what they must not change."""

from __future__ import annotations

import pytest
import torch

import pipelines as p
from pipelines import registry
from pipelines.batching import batcher_for
from pipelines.errors import ConfigError
from pipelines.prefix_cache import MIN_SHARED_TOKENS, PrefixCache, budget
from pipelines.sampling import SamplingParams

from gates import PassGate, wait_until


def _kv(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, 2, n, 4), torch.zeros(1, 2, n, 4))]


def test_the_longest_shared_start_wins_and_one_token_is_always_left_to_prefill():
    cache = PrefixCache(1000)
    a, b = list(range(100)), list(range(60)) + [999] * 40
    cache.store(a, _kv(100))
    cache.store(b, _kv(100))
    shared, entry = cache.match(list(range(80)) + [5, 6])
    assert shared == 80 and entry.tokens == a
    shared, entry = cache.match(list(range(100)))
    assert shared == 99, "the prompt's last token must still go through the model for its logits"
    assert cache.match(list(range(MIN_SHARED_TOKENS - 1)) + [777]) == (0, None)


def test_the_budget_holds_and_the_least_recently_used_go_first():
    cache = PrefixCache(250)
    first, second, third = ([k] * 100 for k in (1, 2, 3))
    cache.store(first, _kv(100))
    cache.store(second, _kv(100))
    assert cache.match(first + [0])[1] is not None  # first is now the most recently used
    cache.store(third, _kv(100))
    assert cache.tokens <= 250
    assert cache.match(second + [0]) == (0, None)
    assert cache.match(first + [0])[1] is not None and cache.match(third + [0])[1] is not None


def test_a_continuation_replaces_its_own_start():
    cache = PrefixCache(1000)
    cache.store(list(range(50)), _kv(50))
    cache.store(list(range(80)), _kv(80))
    assert cache.tokens == 80 and len(cache.entries) == 1


def test_the_budget_setting(monkeypatch):
    monkeypatch.setenv("MODELDECK_PREFIX_CACHE_TOKENS", "0")
    assert budget() == 0
    cache = PrefixCache(budget())
    cache.store(list(range(100)), _kv(100))
    assert not cache.entries
    monkeypatch.setenv("MODELDECK_PREFIX_CACHE_TOKENS", "lots")
    with pytest.raises(ConfigError, match="MODELDECK_PREFIX_CACHE_TOKENS"):
        budget()


def _generate(prompt: list[int], new: int = 10) -> tuple[str, list[int]]:
    loaded = registry.get_model("chat")
    sizes: list[int] = []
    hook = loaded.model.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        text = batcher_for(loaded).submit(prompt, SamplingParams(max_new_tokens=new, temperature=0), []).collect()
    finally:
        hook.remove()
    return text, sizes


@pytest.mark.parametrize("setting", ["none", "int8"])
def test_a_follow_up_prompt_is_prefilled_from_where_it_parts_with_the_same_reply(
        monkeypatch, fresh_registry, setting):
    monkeypatch.setenv("MODELDECK_QUANTIZE", setting)
    tokenizer = registry.get_model("chat").processor
    first = tokenizer("你好，请给我讲一个关于猫和狗的故事。" * 4, add_special_tokens=False)["input_ids"]
    follow = first + tokenizer("然后呢？", add_special_tokens=False)["input_ids"]
    assert len(first) > MIN_SHARED_TOKENS
    _generate(first)
    reused, sizes = _generate(follow)
    assert sizes[0] < len(follow) - len(first) + 12, "only the new part (and the first reply) should be prefilled"
    assert batcher_for(registry.get_model("chat")).batch.prefixes.hits == 1
    registry.clear()
    monkeypatch.setenv("MODELDECK_PREFIX_CACHE_TOKENS", "0")
    cold, sizes = _generate(follow)
    assert sizes[0] == len(follow)
    assert reused == cold


def test_a_chats_second_turn_reuses_the_first(fresh_registry):
    history = []
    message = "请详细介绍一下你自己，以及你能做的所有事情。" * 3
    first = p.chat(message, history, max_new_tokens=12)
    reply = first.collect()
    history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
    p.chat("谢谢！", history, max_new_tokens=6).collect()
    assert batcher_for(registry.get_model("chat")).batch.prefixes.hits >= 1


def test_a_reused_prefix_joins_a_running_batch_with_the_same_reply(monkeypatch, fresh_registry):
    monkeypatch.setenv("MODELDECK_QUANTIZE", "none")  # exact equality in company needs float weights
    loaded = registry.get_model("chat")
    tokenizer = loaded.processor
    first = tokenizer("从前有一座山，山里有一座庙，庙里有个老和尚。" * 3, add_special_tokens=False)["input_ids"]
    follow = first + tokenizer("后来呢？", add_special_tokens=False)["input_ids"]
    _generate(first)
    alone, _ = _generate(follow)  # reuses the first prompt's keys and values, alone
    _generate(first)  # keep the first prompt's keys and values for the next reuse
    batcher = batcher_for(loaded)
    joined_before = batcher.joined_running
    with PassGate(loaded, permits=2) as gate:  # the other request's prefill and first step, then it waits
        other = batcher.submit(tokenizer("Hello", add_special_tokens=False)["input_ids"],
                               SamplingParams(max_new_tokens=40, temperature=0), [])
        wait_until(lambda: gate.passes == 2, "the other request to be generating")
        joining = batcher.submit(follow, SamplingParams(max_new_tokens=10, temperature=0), [])
        gate.open()
        joined = joining.collect()
        other.collect()
    assert batcher.joined_running == joined_before + 1 and batcher.batch.prefixes.hits >= 2
    assert joined == alone
