"""Concurrent chat requests share one batched generate, each keeping its own settings and Stop."""

from __future__ import annotations

import pytest

import pipelines as p
from pipelines import registry
from pipelines.batching import batcher_for
from pipelines.decoding import Prefill
from pipelines.devices import quantization
from pipelines.sampling import SamplingParams

from gates import HeldEngine, PassGate, wait_until


def _prompt(text: str) -> list[int]:
    return registry.get_model("chat").processor(text, add_special_tokens=False)["input_ids"]


def _run_together(jobs):
    """Submit every (prompt, params) while the engine is held, so all are admitted as one batch; return the
    finished streams."""
    batcher = batcher_for(registry.get_model("chat"))
    with HeldEngine():
        streams = [batcher.submit(_prompt(prompt), params, []) for prompt, params in jobs]
    for stream in streams:
        stream.collect()
    return batcher, streams


# The default (int8 on the CPU: per-token scales), float, and int8 packed for two kernels (one reads prompts).
@pytest.mark.parametrize("quantize", ["", "none", "paired"])
def test_simultaneous_requests_share_a_batch_and_keep_their_own_results(monkeypatch, fresh_registry, quantize):
    if quantize == "paired":
        monkeypatch.setenv("MODELDECK_INT8_KERNEL", "fbgemm")
        monkeypatch.setenv("MODELDECK_INT8_PROMPT_KERNEL", "onednn_packed")
    monkeypatch.setenv("MODELDECK_QUANTIZE", "" if quantize == "paired" else quantize)
    jobs = [("你好", SamplingParams(max_new_tokens=12, temperature=0.9, seed=1)),
            ("Hello, how are you?", SamplingParams(max_new_tokens=20, temperature=0)),
            ("我是一个模型", SamplingParams(max_new_tokens=6, temperature=1.3, top_k=10, seed=2)),
            ("Hello", SamplingParams(max_new_tokens=16, temperature=0.7, top_p=0.5, repetition_penalty=1.3, seed=3))]
    alone = []
    for prompt, params in jobs:
        stream = batcher_for(registry.get_model("chat")).submit(_prompt(prompt), params, [])
        alone.append((stream.collect(), stream.usage.completion_tokens))
    before = batcher_for(registry.get_model("chat")).batches_run
    batcher, together = _run_together(jobs)
    assert batcher.batches_run - before == 1, "the requests should have shared a batch"
    assert batcher.largest_batch == len(jobs)
    for (text, tokens), stream, (_, params) in zip(alone, together, jobs):
        assert stream.text == text and stream.usage.completion_tokens == tokens  # seeds hold inside a batch
        assert stream.usage.completion_tokens <= params.max_new_tokens


def test_int8_requests_in_a_batch_each_get_their_own_reply(fresh_registry):
    if "int8" not in registry.get_model("chat").dtype:
        pytest.skip(f"int8 runs on the CPU only; the chat model here is {registry.get_model('chat').dtype}")
    jobs = [(text, SamplingParams(max_new_tokens=8, temperature=0.8, seed=i)) for i, text in
            enumerate(["你好", "Hello", "我是", "how are you"])]
    batcher, streams = _run_together(jobs)
    assert batcher.largest_batch >= 2
    assert all(s.usage.completion_tokens <= 8 and s.usage.finish_reason in ("eos", "length") for s in streams)


def test_stopping_one_request_leaves_the_others_running():
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    params = SamplingParams(max_new_tokens=60, temperature=0)
    with PassGate(loaded, permits=2) as gate:  # the joint prefill and one step, then the stop
        with HeldEngine():
            stopped = batcher.submit(_prompt("你好"), params, [])
            kept = batcher.submit(_prompt("Hello"), params, [])
        wait_until(lambda: gate.passes == 2, "the joint prefill and first step")
        stopped.cancel()
        gate.open()
        stopped.collect()
        kept.collect()
    assert gate.sizes[:2] == [2, 2], "both requests should have started in one batch"
    assert stopped.usage.finish_reason == "cancelled" and stopped.usage.completion_tokens <= 3
    assert kept.usage.finish_reason in ("length", "eos")
    assert kept.usage.completion_tokens > stopped.usage.completion_tokens
    assert gate.sizes[3:] and set(gate.sizes[3:]) == {1}, "the stopped row should have left the batch"


def test_chat_goes_through_the_batcher():
    batcher = batcher_for(registry.get_model("chat"))
    before = batcher.batches_run
    p.chat("hi", max_new_tokens=4).collect()
    assert batcher.batches_run == before + 1


@pytest.mark.parametrize("n", [1, 3])
def test_a_request_cancelled_while_waiting_costs_nothing(n):
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    with PassGate(loaded) as gate:
        with HeldEngine():  # the requests below wait, whatever the batch window
            streams = [batcher.submit(_prompt("你好"), SamplingParams(max_new_tokens=8, temperature=0), [])
                       for _ in range(n)]
            for stream in streams:
                stream.cancel()
        for stream in streams:
            stream.collect()
            assert stream.usage.finish_reason == "cancelled"
    assert gate.passes == 0, f"{gate.passes} forward passes ran for requests stopped while waiting"


@pytest.mark.parametrize("quantize", ["", "none"])
def test_a_request_arriving_mid_generation_joins_the_running_batch(monkeypatch, fresh_registry, quantize):
    monkeypatch.setenv("MODELDECK_QUANTIZE", quantize)
    loaded = registry.get_model("chat")
    assert ("int8" in loaded.dtype) == (quantize == "" and quantization(loaded.device) == "int8")  # CPU default
    batcher = batcher_for(loaded)
    late = ("我是一个模型", SamplingParams(max_new_tokens=10, temperature=0.9, seed=5))
    alone = batcher.submit(_prompt(late[0]), late[1], []).collect()
    with PassGate(loaded, permits=2) as gate:  # the early request's prefill and first step, then it waits
        early = batcher.submit(_prompt("Hello, how are you?"), SamplingParams(max_new_tokens=40, temperature=0), [])
        wait_until(lambda: gate.passes == 2, "the early request to be generating")
        joined = batcher.submit(_prompt(late[0]), late[1], [])
        gate.open()
        assert joined.collect() == alone, "a seed gives the same text inside a running batch"
        early.collect()
    sizes = gate.sizes
    assert batcher.joined_running == 1
    assert 2 in sizes, "both requests should have shared forward passes"
    assert early.usage.completion_tokens == 40 or early.usage.finish_reason == "eos"


def test_finished_rows_leave_the_batch(fresh_registry):
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    with PassGate(loaded) as gate:
        _run_together([("你好", SamplingParams(max_new_tokens=2, temperature=0)),
                       ("Hello", SamplingParams(max_new_tokens=30, temperature=0))])
    sizes = gate.sizes
    assert batcher.largest_batch == 2
    assert sizes.count(2) <= 3, "the short request's row should stop costing after its last token"
    assert sizes[-1] == 1


def test_a_failing_prefill_fails_only_the_newcomer(monkeypatch):
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    real_advance = Prefill.advance

    def advance(self):  # the newcomer's forward pass fails
        if any(r.params.max_new_tokens == 7 for r in self.requests):
            raise RuntimeError("simulated failure")
        return real_advance(self)

    monkeypatch.setattr(Prefill, "advance", advance)
    joined_before = batcher.joined_running
    with PassGate(loaded, permits=2) as gate:  # the running request's prefill and first step, then it waits
        running = batcher.submit(_prompt("Hello"), SamplingParams(max_new_tokens=30, temperature=0), [])
        wait_until(lambda: gate.passes == 2, "the first request to be generating")
        doomed = batcher.submit(_prompt("你好"), SamplingParams(max_new_tokens=7, temperature=0), [])
        gate.open()
        with pytest.raises(p.PipelineError, match="Generation failed"):
            doomed.collect()
        running.collect()
    assert batcher.joined_running == joined_before + 1, "the newcomer should have joined a running batch"
    assert running.usage.finish_reason in ("length", "eos")
    assert running.usage.completion_tokens > 2 or running.usage.finish_reason == "eos"


def test_requests_with_the_same_settings_share_filtering_but_not_their_draws(monkeypatch, fresh_registry):
    monkeypatch.setenv("MODELDECK_QUANTIZE", "none")  # exact equality in company needs float weights
    jobs = [(text, SamplingParams(max_new_tokens=12, temperature=1.1, top_p=0.8, seed=seed))
            for text, seed in (("你好", 1), ("Hello there", 2), ("我是一个模型", 3))]
    alone = [batcher_for(registry.get_model("chat")).submit(_prompt(t), params, []).collect() for t, params in jobs]
    batcher, together = _run_together(jobs)
    assert batcher.largest_batch >= 2
    assert [s.text for s in together] == alone
