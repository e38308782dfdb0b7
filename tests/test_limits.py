"""Each MODELDECK_* limit changes what the app does, not only what it parses.

(``MODELDECK_CLASSIFY_BATCH``: test_batch_classify; ``MODELDECK_QUEUE_SIZE`` and the per-task lines:
test_admission; ``MODELDECK_MAX_INPUT_CHARS`` on an imported chat: test_conversations.)
"""

from __future__ import annotations

import pytest

import pipelines as p
from pipelines import registry
from pipelines.batching import batcher_for
from pipelines.sampling import MIN_NEW_TOKENS, SamplingParams
from ui.common import LLM, concurrency_limit

from gates import HeldEngine, PassGate
from tiny_models import marian

LONG = "你好，我是一个模型。" * 40


def _component(demo, elem_id: str):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def _ids(text: str) -> list[int]:
    return registry.get_model("chat").processor(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("most", [24, 40])
def test_max_new_tokens_bounds_the_sliders_and_every_request(app_module, monkeypatch, most):
    monkeypatch.setenv("MODELDECK_MAX_NEW_TOKENS", str(most))
    demo = app_module.build_demo()
    for elem_id in ("chat-max-new", "textgen-max-new"):  # the sliders offer what the pipeline clamps to
        slider = _component(demo, elem_id)
        assert (slider.minimum, slider.maximum) == (MIN_NEW_TOKENS, most) and slider.value <= most
    chat = p.chat("你好", max_new_tokens=most + 100)
    text = p.generate_text("你好", max_new_tokens=most + 100, temperature=0)
    for stream in (chat, text):
        stream.collect()
        assert stream.usage.completion_tokens <= most
        assert f"max_new_tokens={most + 100} is outside [1, {most}]; used {most}" in " ".join(stream.notices)


@pytest.mark.parametrize("context, chat_cut, textgen_kept", [(48, True, 48 - 8), (4096, False, 128 - 8)])
def test_max_context_tokens_caps_chat_and_text_generation(monkeypatch, context, chat_cut, textgen_kept):
    monkeypatch.setenv("MODELDECK_MAX_CONTEXT_TOKENS", str(context))
    chat = p.chat(LONG, system_prompt="", max_new_tokens=8)
    chat.collect()
    assert ("The message was too long" in " ".join(chat.notices)) == chat_cut
    assert chat.usage.prompt_tokens <= min(context, 512) - 8  # the tiny chat model's own window is 512
    text = p.generate_text(LONG, max_new_tokens=8, temperature=0)  # the tiny GPT-2's window is 128
    text.collect()
    assert text.usage.prompt_tokens == textgen_kept
    assert f"only its last {textgen_kept} tokens were used" in " ".join(text.notices)


def test_max_input_chars_cuts_a_chat_message(monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_INPUT_CHARS", "30")
    stream = p.chat("一二三四五六七八九十" * 5, max_new_tokens=2)
    stream.collect()
    assert "only its first 30 characters were used" in " ".join(stream.notices)
    monkeypatch.setenv("MODELDECK_MAX_INPUT_CHARS", "50")
    stream = p.chat("一二三四五六七八九十" * 5, max_new_tokens=2)
    stream.collect()
    assert not stream.notices


@pytest.mark.parametrize("most", [2, 3])
def test_max_batch_bounds_the_requests_decoded_together(monkeypatch, most):
    monkeypatch.setenv("MODELDECK_MAX_BATCH", str(most))
    assert concurrency_limit(LLM) == most  # the chat line lets as many run as the batch holds
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    with PassGate(loaded) as gate:
        with HeldEngine():  # all four wait together: only the limit splits them
            streams = [batcher.submit(_ids(text), SamplingParams(max_new_tokens=3, temperature=0), [])
                       for text in ("你好", "Hello", "我是", "how are you")]
        for stream in streams:
            stream.collect()
    assert max(gate.sizes) == most and gate.sizes[0] == most


def test_a_long_batch_window_holds_a_lone_request_until_company_comes(monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_BATCH", "2")
    monkeypatch.setenv("MODELDECK_BATCH_WINDOW_MS", "600000")  # ten minutes: only company can start it
    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    before = batcher.batches_run
    params = SamplingParams(max_new_tokens=3, temperature=0)
    with PassGate(loaded) as gate:
        first = batcher.submit(_ids("你好"), params, [])
        second = batcher.submit(_ids("Hello"), params, [])  # a batch is full: both start now, together
        first.collect()
        second.collect()
    assert batcher.batches_run - before == 1 and gate.sizes[0] == 2


@pytest.mark.parametrize("window_ms", [0, 30, 2000])
def test_the_batch_window_is_how_long_a_lone_request_waits(monkeypatch, window_ms):
    monkeypatch.setenv("MODELDECK_BATCH_WINDOW_MS", str(window_ms))
    batcher = batcher_for(registry.get_model("chat"))
    with HeldEngine():
        stream = batcher.submit(_ids("你好"), SamplingParams(max_new_tokens=2, temperature=0), [])
        arrived = batcher.pending[0][0]
        assert batcher.ready_in(arrived) == pytest.approx(window_ms / 1000)
        stream.cancel()
    stream.collect()


def test_unset_the_wait_for_company_is_short_where_a_prefill_is_quick(monkeypatch):
    """30 ms at most, and at most a quarter of the model's latest prefill per request (a GPU's 25 ms prefill
    waited 30 ms more for company before), measured by the batcher itself."""
    from pipelines.batching import Batcher

    monkeypatch.delenv("MODELDECK_BATCH_WINDOW_MS", raising=False)
    loaded = registry.get_model("chat")
    fresh = Batcher(loaded)
    assert fresh.window() == pytest.approx(0.030)  # nothing measured yet
    for prefill, wait in ((0.020, 0.005), (0.100, 0.025), (2.0, 0.030)):
        fresh.prefill_seconds = prefill
        assert fresh.window() == pytest.approx(wait)
    monkeypatch.setenv("MODELDECK_BATCH_WINDOW_MS", "2000")  # a chosen window is kept as it is
    assert fresh.window() == pytest.approx(2.0)
    monkeypatch.delenv("MODELDECK_BATCH_WINDOW_MS")

    batcher = batcher_for(loaded)
    batcher.submit(_ids("你好"), SamplingParams(max_new_tokens=2, temperature=0), []).collect()
    measured = batcher.prefill_seconds
    assert measured is not None and 0 < measured < 0.1  # a tiny model's prefill: milliseconds
    with HeldEngine():
        stream = batcher.submit(_ids("Hello"), SamplingParams(max_new_tokens=2, temperature=0), [])
        arrived = batcher.pending[0][0]
        assert batcher.ready_in(arrived) == pytest.approx(min(0.030, measured / 4))
        stream.cancel()
    stream.collect()


def test_max_speech_chars_cuts_the_text_read_aloud(tmp_path, monkeypatch):
    spoken = []

    class RecordingGTTS:  # gTTS without the network: records what it was asked to read
        def __init__(self, text, **kwargs):
            spoken.append(text)

        def write_to_fp(self, fp):
            fp.write(b"ID3" + b"\x00" * 64)

    monkeypatch.setattr("gtts.gTTS", RecordingGTTS)
    monkeypatch.setenv("MODELDECK_AUDIO_DIR", str(tmp_path))
    monkeypatch.setenv("MODELDECK_TTS", "gtts")
    text = "今天天气很好。" * 10
    for most, read in ((20, 14), (35, 35)):  # 20 would end mid-sentence: the sentences before are read
        monkeypatch.setenv("MODELDECK_MAX_SPEECH_CHARS", str(most))
        speech = p.synthesize_speech(text, "zh")
        assert spoken[-1] == text[:read]
        assert f"only its first {read} characters were read" in " ".join(speech.notices)


def test_the_translate_prefix_is_prepended_only_when_the_model_knows_it(tmp_path, monkeypatch, fresh_registry):
    codes = (">>cmn_Hans<<", ">>yue_Hant<<")
    marian(tmp_path, language_codes=codes)
    monkeypatch.setenv("MODELDECK_TRANSLATE_MODEL", f"Tiny Marian with codes={tmp_path}")
    loaded = fresh_registry.get_model("translator")
    first_tokens = []
    generate = loaded.model.generate
    monkeypatch.setattr(loaded.model, "generate",
                        lambda **kw: first_tokens.append(int(kw["input_ids"][0, 0])) or generate(**kw))
    vocab = loaded.processor.get_vocab()
    plain = loaded.processor("the dog")["input_ids"][0]
    for prefix, first in [(None, vocab[">>cmn_Hans<<"]), (">>yue_Hant<<", vocab[">>yue_Hant<<"]),
                          (">>jpn<<", plain)]:  # a code the model lacks is left out, not sent as <unk>
        if prefix is None:
            monkeypatch.delenv("MODELDECK_TRANSLATE_PREFIX", raising=False)  # the default, >>cmn_Hans<<
        else:
            monkeypatch.setenv("MODELDECK_TRANSLATE_PREFIX", prefix)
        p.translate_to_chinese("the dog")
        assert first_tokens[-1] == first, prefix
