"""Chat, text generation, classification, caption and story through the real loading path."""

from __future__ import annotations

import pytest
from PIL import Image

import pipelines as p
from pipelines.story import story_size, trim_to_sentence


def test_chat_streams_a_reply_and_reports_usage():
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]
    stream = p.chat("你好", history, max_new_tokens=12, temperature=0.7, top_p=0.9, seed=1)
    texts = list(stream)
    assert texts and isinstance(texts[-1], str)
    assert stream.usage.prompt_tokens > 0 and 1 <= stream.usage.completion_tokens <= 12
    assert stream.usage.total_tokens == stream.usage.prompt_tokens + stream.usage.completion_tokens
    assert not stream.notices


def test_chat_trims_the_oldest_turns_to_fit_the_window():
    history = []
    for i in range(60):
        history += [{"role": "user", "content": f"Hello, how are you? {i}"},
                    {"role": "assistant", "content": "你好，我是一个模型。"}]
    stream = p.chat("last question", history, max_new_tokens=64)
    stream.collect()
    assert any("oldest" in n for n in stream.notices)
    assert stream.usage.prompt_tokens <= 512 - 64


def test_a_long_history_is_counted_a_few_times_not_once_per_dropped_turn():
    """Each count renders and tokenizes the whole conversation: 20 000 short messages through /v1 took minutes
    of CPU (the request outlived its client), one count per dropped turn."""
    from pipelines.backends.base import fit_messages, trimmed_notice

    turns = [{"role": role, "content": role[0] * 10} for _ in range(500) for role in ("user", "assistant")]
    turns.append({"role": "user", "content": "q" * 10})
    counted = []

    def count(messages):
        counted.append(len(messages))
        return sum(len(m["content"]) for m in messages)

    notices = []
    kept = fit_messages([{"role": "system", "content": "s" * 5}] + turns, 105, count, lambda c, _: c, 999, notices)
    assert kept[0]["role"] == "system" and kept[1:] == turns[-9:]  # 5 + 10 + 4 × 20 = 95; one more pair is 115
    assert len(counted) <= 10 and max(counted) < 3 * len(kept), counted  # never the whole 1001 messages
    assert notices == [trimmed_notice(len(turns) - 9, 999)]  # the messages left out, not the rounds of dropping


def test_chat_cuts_a_single_huge_message_with_a_notice():
    stream = p.chat("Hello, how are you? " * 5000, max_new_tokens=8)
    stream.collect()
    assert stream.notices and stream.usage.prompt_tokens <= 512 - 8


@pytest.mark.parametrize("history", [{"role": "user"}, [{"role": "user"}], [{"role": "robot", "content": "x"}], "hi"])
def test_chat_rejects_malformed_history(history):
    with pytest.raises(p.InvalidInputError):
        p.chat("hi", history)


INVISIBLE = ["   \n ", "\u200b", "\u200b\u200c\ufeff", "\xa0\xa0", "\u2060\u200d\u200e\u00ad", "\u3164 \u2800"]


@pytest.mark.parametrize("message", INVISIBLE)
def test_chat_rejects_an_empty_or_invisible_message(message):
    """Zero-width characters alone passed the check and were sent to the model."""
    with pytest.raises(p.InvalidInputError) as err:
        p.chat(message)
    assert "Enter the message" in str(err.value)


@pytest.mark.parametrize("text", INVISIBLE[1:])
def test_text_generation_and_classification_reject_an_invisible_text(text):
    with pytest.raises(p.InvalidInputError, match="Enter the prompt"):
        p.generate_text(text, max_new_tokens=2)
    with pytest.raises(p.InvalidInputError, match="Enter the text"):
        p.classify_text(text)


def test_a_visible_character_among_invisible_ones_is_a_message():
    assert not p.inputs.blank("\u200ba") and not p.inputs.blank("😀\u200d😀") and p.inputs.blank("")


def test_textgen_multiple_sequences_reproduce_with_the_seed():
    run = lambda seed: p.generate_text("我是猫", "Tiny GPT-2 B", max_new_tokens=10, temperature=1.0, top_k=20,
                                       top_p=0.9, num_return_sequences=3, seed=seed)
    a, b = run(42), run(42)
    assert a.collect() == b.collect() and a.seed == 42
    assert len(a.texts) == 3 and a.text.count("我是猫") == 3  # texts: continuations; text: prompt + each
    assert "【3】" in a.text


def test_textgen_greedy_and_random_seed_is_reported():
    greedy = p.generate_text("你好", temperature=0, max_new_tokens=5)
    greedy.collect()
    assert greedy.seed is None
    sampled = p.generate_text("你好", temperature=0.9, max_new_tokens=5)
    sampled.collect()
    assert isinstance(sampled.seed, int)


def test_textgen_clamps_out_of_range_numbers_with_notices():
    stream = p.generate_text("你好", max_new_tokens=10**6, temperature=50, top_p=0, top_k=-3,
                             num_return_sequences=100, repetition_penalty=0.1)
    stream.collect()
    assert len(stream.texts) == 8
    assert len(stream.notices) == 6
    assert "is outside [1, 64]; used 64" in " ".join(stream.notices)  # half the tiny GPT-2's 128 positions
    assert stream.usage.completion_tokens <= 8 * 64  # the tokens of all 8 sequences


@pytest.mark.parametrize("seed", [-1, 2**40, 1.5, "abc"])
def test_textgen_rejects_bad_seeds(seed):
    with pytest.raises(p.InvalidInputError):
        p.generate_text("你好", seed=seed)


def test_classification_labels_are_readable_and_batched():
    results = p.classify_texts(["好", "this is a long text " * 500, "我", "猫狗"], batch_size=2)
    assert len(results) == 4
    for scores in results:
        assert set(scores) == {"正面 positive", "负面 negative"}
        assert abs(sum(scores.values()) - 1) < 1e-5
        assert list(scores.values()) == sorted(scores.values(), reverse=True)
    single = p.classify_text("猫狗")
    assert single == pytest.approx(results[3], rel=1e-3)  # int8 activation scales follow the batch


@pytest.mark.parametrize("raw,readable", [("LABEL_1", "类别 1 (class 1)"), ("negative (stars 1, 2 and 3)", "负面 negative"),
                                          ("POSITIVE", "正面 positive"), ("joy", "joy")])
def test_readable_label(raw, readable):
    assert p.readable_label(raw) == readable


def test_caption_gives_english_and_chinese():
    caption = p.caption_image(Image.new("RGB", (80, 60), "red"))
    assert caption.en and caption.zh and caption.best == caption.zh  # both made: translation did not fail
    assert not caption.notices


@pytest.mark.parametrize("target,language", [(60, "zh"), (50, "en")])
def test_story_ends_near_the_requested_length(target, language):
    stream = p.write_story("a dog on a red chair", "武侠", target, 6, language, seed=3)
    texts = list(stream)
    assert texts
    assert story_size(stream.text, language) <= target * 1.2 + 1


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_story_that_runs_out_of_tokens_ends_on_a_whole_sentence(monkeypatch, language):
    # 1000 English words need ~1300 tokens, past MODELDECK_MAX_NEW_TOKENS' default 1024: the story stopped mid-sentence.
    monkeypatch.setenv("MODELDECK_MAX_NEW_TOKENS", "24")
    stream = p.write_story("a dog on a red chair", "温馨", 300, 5, language, seed=1)
    list(stream)
    assert stream.usage.finish_reason == "length" and stream.text
    assert stream.text[-1] in "。！？!?….”」』\"')）"


def test_a_story_longer_than_the_token_limit_allows_is_announced_before_it_is_written(monkeypatch):
    # Before, a story of 1000 (characters or words) ended at ~660 characters or ~580 words, at the token limit,
    # and nothing said why it was shorter than asked.
    short = p.write_story("a dog on a red chair", "温馨", 50, 5, "zh", seed=1)  # ~107 tokens: within the tiny 256
    short.close()
    assert not any("MODELDECK_MAX_NEW_TOKENS" in n for n in short.notices)
    monkeypatch.setenv("MODELDECK_MAX_NEW_TOKENS", "64")
    for language, unit in (("zh", "个汉字"), ("en", "words")):
        long = p.write_story("a dog on a red chair", "温馨", 300, 5, language, seed=1)
        long.close()
        said = [n for n in long.notices if "MODELDECK_MAX_NEW_TOKENS" in n]
        assert len(said) == 1 and "300" in said[0] and "64" in said[0] and unit in said[0]
        assert said[0].index("词元") < said[0].index("tokens")  # Chinese first, as every notice


def test_trim_to_sentence_prefers_a_sentence_end():
    text = "从前有一只猫。" * 30
    cut = trim_to_sentence(text, 50, "zh")
    assert cut.endswith("。") and 25 <= story_size(cut, "zh") <= 60
    assert trim_to_sentence("没有句号" * 40, 50, "zh").endswith("……")
    english = trim_to_sentence("The cat sat on the mat. " * 40, 30, "en")
    assert english.endswith(".") and story_size(english, "en") <= 36


@pytest.mark.parametrize("kwargs", [{"style": "赛博朋克"}, {"language": "fr"}, {"caption": ""}])
def test_story_rejects_unknown_style_language_and_empty_caption(kwargs):
    args = {"caption": "a cat", "style": "温馨", "language": "zh", **kwargs}
    with pytest.raises(p.InvalidInputError):
        p.write_story(**args)


def test_picture_story_yields_caption_then_story_then_audio():
    updates = list(p.picture_story(Image.new("RGB", (64, 64), "blue"), "童话", 50, 5, "zh"))
    stages = [u.stage for u in updates]
    assert stages[0] == "caption" and stages[-1] == "done"
    assert stages.index("audio") > max(i for i, s in enumerate(stages) if s == "story")
    assert updates[0].caption is not None and updates[0].story == ""
    assert updates[0].caption.en and not updates[0].caption.zh  # shown before the translation exists
    assert updates[1].stage == "caption" and updates[1].caption.zh
    final = updates[-1]
    assert final.story and final.audio and final.audio.endswith(".wav")


def test_a_story_model_of_its_own_writes_the_stories_and_the_chat_model_the_chats(tmp_path, monkeypatch,
                                                                                   fresh_registry):
    from gates import PassGate
    from tiny_models import qwen2_chat

    qwen2_chat(tmp_path / "story", width=16)
    monkeypatch.setenv("MODELDECK_STORY_MODEL", f"Tiny story={tmp_path / 'story'}")
    monkeypatch.setenv("MODELDECK_MAX_NEW_TOKENS", "8")
    chat_model, story_model = fresh_registry.get_model("chat"), fresh_registry.get_model("story")
    assert story_model.spec.name == "Tiny story" and story_model.model is not chat_model.model
    with PassGate(chat_model) as chat_passes, PassGate(story_model) as story_passes:
        p.write_story("一只猫", "温馨", 50, 5, "zh").collect()
        assert story_passes.passes > 0 and chat_passes.passes == 0
        p.chat("你好", max_new_tokens=4).collect()
        assert chat_passes.passes > 0


def test_each_configured_chat_model_answers_when_named(fresh_registry):
    """MODELDECK_CHAT_MODEL may list several chat models (the tests configure two): a chat names the one that
    answers, the first by default; an unknown name is refused, listing the choices."""
    from gates import PassGate

    first, second = (fresh_registry.get_model("chat", name) for name in fresh_registry.model_names("chat"))
    assert second.spec.name == "Tiny Qwen2 B" and second.model is not first.model
    with PassGate(first) as first_passes, PassGate(second) as second_passes:
        p.chat("你好", max_new_tokens=4, model="Tiny Qwen2 B").collect()
        assert second_passes.passes > 0 and first_passes.passes == 0
        p.chat("你好", max_new_tokens=4).collect()
        assert first_passes.passes > 0
    with pytest.raises(p.InvalidInputError, match="Tiny Qwen2 B"):
        p.chat("你好", model="gpt-4o")


def test_a_chat_model_without_a_chat_template_gets_the_plain_fallback(monkeypatch, fresh_registry):
    import os

    from pipelines.backends import chat_backend

    gpt2 = os.environ["MODELDECK_TEXTGEN_MODELS"].split(",")[0].split("=", 1)[1]  # a BERT-style tokenizer
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Tiny GPT-2 as chat={gpt2}")
    backend = chat_backend("chat")
    assert not getattr(backend.tokenizer, "chat_template", None)
    messages = [{"role": "system", "content": "简短"}, {"role": "user", "content": "你好"}]
    assert backend.render(messages) == "system: 简短\nuser: 你好\nassistant:"
    stream = p.chat("你好", system_prompt="简短", max_new_tokens=4)
    stream.collect()
    assert stream.usage.prompt_tokens == backend.count(backend.render(messages))
    assert 1 <= stream.usage.completion_tokens <= 4


def test_textgen_usage_counts_the_tokens_of_every_sequence():
    from ui.common import usage_md

    stream = p.generate_text("你好", max_new_tokens=6, temperature=1.0, seed=3, num_return_sequences=3,
                             top_logprobs=0)
    stream.collect()
    each = [len(row) for row in stream.logprobs]
    assert stream.usage.completion_tokens == sum(each) > max(each)
    assert f"completion_tokens **{sum(each)}**" in usage_md(stream.usage)  # the tab's token line
    assert len(stream.usage.finish_reasons) == 3


def test_a_cut_prompt_is_shown_as_written_not_as_the_tokenizer_spells_it():
    prompt = "你好，我是一个模型。🦜" * 40  # longer than the tiny Chinese GPT-2's window; 🦜 is not in its vocabulary
    stream = p.generate_text(prompt, max_new_tokens=8, temperature=0)
    stream.collect()
    assert any("tokens were used" in n for n in stream.notices)
    shown = stream.text[:len(stream.text) - len(stream.texts[0])]  # what precedes the continuation
    assert 20 < len(shown) < len(prompt) and prompt.endswith(shown)  # no space between characters, 🦜 kept


def test_greedy_decoding_of_several_sequences_says_they_are_the_same():
    stream = p.generate_text("你好", max_new_tokens=5, temperature=0, num_return_sequences=3)
    stream.collect()
    assert len(set(stream.texts)) == 1
    assert any("3 sequences are the same" in n for n in stream.notices)
    sampled = p.generate_text("你好", max_new_tokens=5, temperature=0.9, num_return_sequences=3, seed=1)
    sampled.collect()
    assert not any("sequences are the same" in n for n in sampled.notices)
