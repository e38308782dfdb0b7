"""Long prompts are read a chunk at a time: the chats already streaming go on in between, Stop works in
between, and the numbers are those of one pass."""

from __future__ import annotations

import pytest
import torch

from pipelines import registry
from pipelines.batching import batcher_for, stream_generate
from pipelines.decoding import END_OF_STREAM, DecodeBatch, Reading, Request, prefill_chunk
from pipelines.errors import ConfigError
from pipelines import settings
from pipelines.sampling import SamplingParams

from gates import PassGate, wait_until
from test_lean_decode import _decoder

LONG = [(7 * i + 3) % 50 + 5 for i in range(30)]  # a 30-token prompt: 8 chunks of 4


def _passes(loaded, prompts, chunk, monkeypatch, new=10, reuse=None):
    """Greedy replies to ``prompts`` admitted together with ``MODELDECK_PREFILL_CHUNK=chunk``: every pass's
    (tokens fed, logits), and the replies."""
    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", str(chunk))
    batch = reuse or DecodeBatch(loaded)
    passes, real = [], batch.forward

    def forward(ids, mask, positions, cache, **options):
        logits = real(ids, mask, positions, cache, **options)
        passes.append((ids.shape[1], logits.clone()))
        return logits

    batch.forward = forward
    requests = [Request(rows=[prompt], params=SamplingParams(max_new_tokens=new, temperature=0)) for prompt in prompts]
    batch.admit(requests)
    replies = [[] for _ in prompts]
    while batch.rows:
        batch.step()
    for b, request in enumerate(requests):
        while not request.sink.empty():
            item = request.sink.get()
            if isinstance(item, list):
                replies[b] += item[0]
    batch.forward = real
    return passes, replies


@pytest.mark.parametrize("chunk", [3, 1])
@pytest.mark.parametrize("weights", ["int8", "float32"])
def test_a_prompt_read_in_chunks_gives_the_numbers_of_one_pass(weights, chunk, monkeypatch):
    loaded = _decoder("qwen2", weights)
    prompts = [LONG[:11], LONG[:4], LONG[3:10]]  # left padding to 11 columns: chunks of 3, 3, 3 and 2 (or 1s)
    chunked, replies = _passes(loaded, prompts, chunk, monkeypatch)
    whole, expected = _passes(loaded, prompts, 0, monkeypatch)
    sizes = [3, 3, 3, 2] if chunk == 3 else [1] * 11
    assert [n for n, _ in chunked[:len(sizes)]] == sizes and whole[0][0] == 11
    assert replies == expected and all(replies)
    mine, theirs = chunked[len(sizes) - 1:], whole  # the last chunk's logits, then every decode step's
    assert len(mine) == len(theirs)
    for (_, a), (_, b) in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_a_kept_prefix_is_followed_by_chunks_too(monkeypatch):
    loaded = _decoder("qwen2", "float32")
    first = LONG + LONG[:10]  # 40 tokens, kept when it finishes
    batch = DecodeBatch(loaded, reuse_prefixes=True)
    _passes(loaded, [first], 0, monkeypatch, new=2, reuse=batch)
    follow = first + [9, 8, 7, 6, 5, 4, 3]  # 40 of the kept tokens, then 7 new ones
    chunked, replies = _passes(loaded, [follow], 3, monkeypatch, reuse=batch)
    assert [n for n, _ in chunked[:3]] == [3, 3, 1], "only the tokens after the kept ones, in chunks"
    _, expected = _passes(loaded, [follow], 0, monkeypatch)
    assert replies == expected


def test_running_chats_go_on_between_the_chunks_of_a_long_prompt(monkeypatch):
    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "4")
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    with PassGate(loaded, permits=2) as gate:  # the running chat's prefill and first step, then the newcomer
        running = batcher.submit([5, 6, 7], SamplingParams(max_new_tokens=40, temperature=0), [])
        wait_until(lambda: gate.passes == 2, "the first chat to be generating")
        newcomer = batcher.submit(LONG, SamplingParams(max_new_tokens=5, temperature=0), [])
        gate.open()
        running.collect()
        reply = newcomer.collect()
    shapes = gate.shapes[2:]
    chunks = [i for i, shape in enumerate(shapes) if shape[0] == 1 and shape[1] > 1]
    assert [shapes[i][1] for i in chunks] == [4] * 7 + [2], shapes
    assert all(shapes[i + 1] == (1, 1) for i in chunks[:-1]), f"a decode step between chunks: {shapes}"
    assert (2, 1) in shapes[chunks[-1]:], "the newcomer joined the batch after its last chunk"
    assert newcomer.usage.completion_tokens == 5 and running.usage.finish_reason in ("length", "eos")
    alone = stream_generate(loaded, torch.tensor([LONG]), torch.ones(1, len(LONG), dtype=torch.long),
                            SamplingParams(max_new_tokens=5, temperature=0))
    assert alone.collect() == reply, "read in chunks in company: the reply it gets alone"


def test_stop_during_a_long_prompt_ends_it_between_chunks(monkeypatch):
    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "4")
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    with PassGate(loaded, permits=2) as gate:  # two chunks, then Stop
        stopped = batcher.submit(LONG, SamplingParams(max_new_tokens=5, temperature=0), [])
        wait_until(lambda: gate.arrived == 3, "two chunks done, the third waiting")
        stopped.cancel()
        gate.open()
        assert stopped.collect() == ""
    assert stopped.usage.finish_reason == "cancelled" and stopped.usage.completion_tokens == 0
    assert gate.shapes == [(1, 4)] * 3, "no chunk after the one that was waiting at Stop"
    wait_until(lambda: batcher.finished, "the batcher to be idle")


def test_the_setting_and_the_default_by_device(monkeypatch):
    monkeypatch.delenv("MODELDECK_PREFILL_CHUNK", raising=False)
    assert prefill_chunk(torch.device("cpu")) == 256
    assert prefill_chunk(torch.device("cuda")) == prefill_chunk(torch.device("mps")) == 2048
    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "0")
    assert prefill_chunk(torch.device("cpu")) == prefill_chunk(torch.device("cuda")) == 0
    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "-3")
    with pytest.raises(ConfigError, match="MODELDECK_PREFILL_CHUNK"):
        settings.get("MODELDECK_PREFILL_CHUNK")


def test_each_request_hears_how_far_its_prompt_is_read(monkeypatch):
    loaded = _decoder("qwen2", "float32")
    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "4")
    batch = DecodeBatch(loaded)
    short, long_ = (Request(rows=[prompt], params=SamplingParams(max_new_tokens=1, temperature=0))
                    for prompt in (LONG[:6], LONG[:14]))  # together: 14 columns, the short one's first 8 padding
    batch.admit([short, long_])
    heard = {id(r): [item for item in iter(r.sink.get_nowait, END_OF_STREAM) if isinstance(item, Reading)]
             for r in (short, long_)}
    assert heard[id(long_)] == [Reading(4, 14), Reading(8, 14), Reading(12, 14)]
    assert heard[id(short)] == [Reading(0, 6), Reading(0, 6), Reading(4, 6)], "padding is not its prompt"


def test_a_stream_yields_the_reading_only_to_a_consumer_that_shows_it(monkeypatch):
    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "4")
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    params = SamplingParams(max_new_tokens=3, temperature=0)
    # The stream coalesces what arrived while its consumer was away: each chunk waits until the consumer has
    # taken the last one's reading, or a loaded machine would decide which readings it sees.
    with PassGate(loaded, permits=1) as gate:
        shown = batcher.submit(LONG, params, [])
        shown.progress.wanted = True
        seen = []
        for text in shown:
            seen.append((text, shown.progress.read, shown.progress.reading))
            gate.allow(1) if shown.progress.reading else gate.open()
    assert seen[:7] == [("", read, True) for read in range(4, 29, 4)], seen
    assert all(text and not reading for text, _, reading in seen[7:]) and seen[7:]
    plain = batcher.submit(LONG, params, [])
    assert [text for text in plain] == [text for text, _, _ in seen[7:]], "no extra updates unless wanted"


def test_stop_turns_the_reading_note_into_stopped_and_leaves_other_status_alone():
    from ui.chat_tab import stopped_status

    assert stopped_status("- ⚠️ 消息太长\n\n⏳ 正在读入提示 **8 / 30** 词元") == "- ⚠️ 消息太长\n\n⏹ 已停止 / stopped"
    assert stopped_status("🧮 prompt_tokens **3**") == "🧮 prompt_tokens **3**"
    assert stopped_status("") == ""


def test_a_short_prompt_is_not_kept_waiting_behind_a_long_one(monkeypatch):
    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "4")
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    greedy = SamplingParams(max_new_tokens=3, temperature=0)
    with PassGate(loaded, permits=2) as gate:  # two chunks of the long prompt, then the short one arrives
        long_ = batcher.submit(LONG, greedy, [])
        wait_until(lambda: gate.arrived == 3, "two chunks done, the third waiting")
        short = batcher.submit([5, 6, 7], greedy, [])  # waiting when the engine takes its next step
        gate.open()
        short.collect()
        long_.collect()
    shapes = gate.shapes
    assert (1, 3) in shapes, shapes
    assert shapes.index((1, 3)) < len(shapes) - 1 - shapes[::-1].index((1, 2)), \
        f"the short prompt is read before the long one's last chunk: {shapes}"
    assert short.usage.completion_tokens == 3 and long_.usage.completion_tokens == 3
