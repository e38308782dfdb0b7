"""Concurrent chat requests share one batched generate, each keeping its own settings and Stop."""

from __future__ import annotations

import threading
import time

import pytest

import pipelines as p
from pipelines import registry
from pipelines.batching import batcher_for
from pipelines.streaming import SamplingParams


def _prompt(text: str) -> list[int]:
    return registry.get_model("chat").processor(text, add_special_tokens=False)["input_ids"]


def _run_together(jobs):
    """Submit every (prompt, params) at the same moment; return the finished streams."""
    batcher = batcher_for(registry.get_model("chat"))
    barrier = threading.Barrier(len(jobs))
    streams = [None] * len(jobs)

    def go(i, prompt, params):
        barrier.wait()
        streams[i] = batcher.submit(_prompt(prompt), params, [])
        streams[i].collect()

    threads = [threading.Thread(target=go, args=(i, *job)) for i, job in enumerate(jobs)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return batcher, streams


@pytest.mark.parametrize("quantize", ["", "none"])  # the default (int8 on the CPU: per-token scales) and float
def test_simultaneous_requests_share_a_batch_and_keep_their_own_results(monkeypatch, fresh_registry, quantize):
    monkeypatch.setenv("MODELDECK_QUANTIZE", quantize)
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
    assert batcher.batches_run - before < len(jobs), "the requests should have shared a batch"
    assert batcher.largest_batch >= 2
    for (text, tokens), stream, (_, params) in zip(alone, together, jobs):
        assert stream.text == text and stream.usage.completion_tokens == tokens  # seeds hold inside a batch
        assert stream.usage.completion_tokens <= params.max_new_tokens


def test_int8_requests_in_a_batch_each_get_their_own_reply(fresh_registry):
    assert "int8" in registry.get_model("chat").dtype
    jobs = [(text, SamplingParams(max_new_tokens=8, temperature=0.8, seed=i)) for i, text in
            enumerate(["你好", "Hello", "我是", "how are you"])]
    batcher, streams = _run_together(jobs)
    assert batcher.largest_batch >= 2
    assert all(s.usage.completion_tokens <= 8 and s.usage.finish_reason in ("eos", "length") for s in streams)


def test_stopping_one_request_leaves_the_others_running():
    loaded = registry.get_model("chat")
    hook = loaded.model.register_forward_pre_hook(lambda *_: time.sleep(0.01) or None)
    batcher = batcher_for(loaded)
    try:
        barrier = threading.Barrier(2)
        results = {}

        def stopped():
            barrier.wait()
            stream = batcher.submit(_prompt("你好"), SamplingParams(max_new_tokens=60, temperature=0), [])
            for _ in stream:
                stream.cancel()
            results["stopped"] = stream.usage

        def kept():
            barrier.wait()
            stream = batcher.submit(_prompt("Hello"), SamplingParams(max_new_tokens=60, temperature=0), [])
            stream.collect()
            results["kept"] = stream.usage

        threads = [threading.Thread(target=stopped), threading.Thread(target=kept)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        hook.remove()
    assert results["stopped"].finish_reason == "cancelled" and results["stopped"].completion_tokens < 10
    assert results["kept"].finish_reason in ("length", "eos")
    assert results["kept"].completion_tokens > results["stopped"].completion_tokens


def test_chat_goes_through_the_batcher():
    batcher = batcher_for(registry.get_model("chat"))
    before = batcher.batches_run
    p.chat("hi", max_new_tokens=4).collect()
    assert batcher.batches_run == before + 1


@pytest.mark.parametrize("n", [1, 3])
def test_a_request_cancelled_while_waiting_costs_nothing(n):
    batcher = batcher_for(registry.get_model("chat"))
    streams = [batcher.submit(_prompt("你好"), SamplingParams(max_new_tokens=8, temperature=0), [])
               for _ in range(n)]
    for stream in streams:
        stream.cancel()
    for stream in streams:
        stream.collect()
        assert stream.usage.finish_reason == "cancelled"


def _slow(loaded, seconds=0.01):
    """Slow every forward pass down to a realistic pace, and record each one's batch size."""
    sizes: list[int] = []

    def hook(module, args, kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        time.sleep(seconds)

    return sizes, loaded.model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("quantize", ["", "none"])
def test_a_request_arriving_mid_generation_joins_the_running_batch(monkeypatch, fresh_registry, quantize):
    monkeypatch.setenv("MODELDECK_QUANTIZE", quantize)
    loaded = registry.get_model("chat")
    assert ("int8" in loaded.dtype) == (quantize == "")
    batcher = batcher_for(loaded)
    late = ("我是一个模型", SamplingParams(max_new_tokens=10, temperature=0.9, seed=5))
    alone = batcher.submit(_prompt(late[0]), late[1], []).collect()
    sizes, hook = _slow(loaded)
    try:
        early = batcher.submit(_prompt("Hello, how are you?"), SamplingParams(max_new_tokens=40, temperature=0), [])
        first = iter(early)
        next(first)  # the early request is generating
        joined = batcher.submit(_prompt(late[0]), late[1], [])
        assert joined.collect() == alone, "a seed gives the same text inside a running batch"
        for _ in first:
            pass
    finally:
        hook.remove()
    assert batcher.joined_running == 1
    assert 2 in sizes, "both requests should have shared forward passes"
    assert early.usage.completion_tokens == 40 or early.usage.finish_reason == "eos"


def test_finished_rows_leave_the_batch(fresh_registry):
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    sizes, hook = _slow(loaded, 0.005)
    try:
        _run_together([("你好", SamplingParams(max_new_tokens=2, temperature=0)),
                       ("Hello", SamplingParams(max_new_tokens=30, temperature=0))])
    finally:
        hook.remove()
    assert batcher.largest_batch == 2
    assert sizes.count(2) <= 3, "the short request's row should stop costing after its last token"
    assert sizes[-1] == 1


def test_a_failing_prefill_fails_only_the_newcomer(monkeypatch):
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    sizes, hook = _slow(loaded)
    real_admit = batcher.batch.admit

    def admit(requests):
        if any(r.params.max_new_tokens == 7 for r in requests):
            raise RuntimeError("simulated failure")
        return real_admit(requests)

    monkeypatch.setattr(batcher.batch, "admit", admit)
    try:
        running = batcher.submit(_prompt("Hello"), SamplingParams(max_new_tokens=30, temperature=0), [])
        first = iter(running)
        next(first)
        doomed = batcher.submit(_prompt("你好"), SamplingParams(max_new_tokens=7, temperature=0), [])
        with pytest.raises(p.PipelineError, match="Generation failed"):
            doomed.collect()
        for _ in first:
            pass
    finally:
        hook.remove()
    assert running.usage.finish_reason in ("length", "eos")
    assert running.usage.completion_tokens > 1


def test_requests_with_the_same_settings_share_filtering_but_not_their_draws(monkeypatch, fresh_registry):
    monkeypatch.setenv("MODELDECK_QUANTIZE", "none")  # exact equality in company needs float weights
    jobs = [(text, SamplingParams(max_new_tokens=12, temperature=1.1, top_p=0.8, seed=seed))
            for text, seed in (("你好", 1), ("Hello there", 2), ("我是一个模型", 3))]
    alone = [batcher_for(registry.get_model("chat")).submit(_prompt(t), params, []).collect() for t, params in jobs]
    batcher, together = _run_together(jobs)
    assert batcher.largest_batch >= 2
    assert [s.text for s in together] == alone
