"""The next-token explorer: cached logits, KV reuse in step mode, readable tokens, recorded log-probabilities."""

from __future__ import annotations

import math

import pytest
import torch

import pipelines
from pipelines import InvalidInputError, registry
from pipelines.next_token import CHAT_SUFFIX, explorer, model_choices
from pipelines.tokens import readable, token_bytes

CHAT = f"Tiny Qwen2 {CHAT_SUFFIX}"


@pytest.fixture
def forwards(fresh_registry):
    """Every forward pass of the text generation and chat models, as the number of tokens fed."""
    fed: list[int] = []
    hooks = [registry.get_model(role).model.register_forward_pre_hook(
        lambda module, args, kwargs: fed.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
        for role in ("textgen", "chat")]
    yield fed
    for hook in hooks:
        hook.remove()


def test_moving_a_slider_reranks_without_a_forward_pass(forwards):
    prompt = "今天天气很好，我们一起去"
    first = pipelines.next_token(prompt, None, temperature=1.0)
    assert len(forwards) == 1
    changed = [pipelines.next_token(prompt, None, temperature=t, top_k=k, top_p=p, repetition_penalty=r, top_n=n)
               for t, k, p, r, n in [(0.3, 0, 1.0, 1.0, 20), (1.5, 5, 1.0, 1.0, 20), (1.0, 0, 0.5, 1.3, 10)]]
    assert len(forwards) == 1  # re-ranked from the cached logits
    assert [c.raw_p for c in first.candidates] == [c.raw_p for c in changed[0].candidates]
    assert [c.p for c in first.candidates] != [c.p for c in changed[0].candidates]
    assert sum(c.kept for c in changed[1].candidates) == 5
    pipelines.next_token(prompt + "玩", None)
    assert len(forwards) == 2


def test_the_view_is_ordered_by_raw_probability_and_sums_up():
    view = pipelines.next_token("Hello", CHAT, temperature=0.7, top_k=0, top_p=0.6, top_n=30)
    raw = [c.raw_p for c in view.candidates]
    assert raw == sorted(raw, reverse=True) and len(raw) == 30
    assert all(c.p == 0 for c in view.candidates if not c.kept)
    assert 0 < view.kept_mass <= 1 and 0 < view.entropy_after < view.entropy_before <= math.log2(view.vocab_size)
    greedy = pipelines.next_token("Hello", CHAT, temperature=0, top_n=5)
    assert [c.p for c in greedy.candidates][0] == 1.0 and greedy.kept_count == 1 and greedy.entropy_after == 0


@pytest.fixture
def float32(monkeypatch):
    """Unquantised models: int8 scales a whole prefill at once, so a one-token step differs in rounding."""
    monkeypatch.setenv("MODELDECK_QUANTIZE", "none")


def test_a_step_feeds_one_token_through_the_kept_kv_cache(float32, forwards):
    prompt = "Hello, how are you?"
    base = pipelines.next_token(prompt, CHAT)
    token = base.candidates[3].id
    fed = len(forwards)
    grown = pipelines.next_token(prompt, CHAT, appended=[token])
    assert forwards[fed:] == [1]  # one token, after the cached ones
    again = pipelines.next_token(prompt, CHAT, appended=[token, grown.candidates[0].id])
    assert forwards[fed:] == [1, 1]
    explorer(registry.get_model("chat")).entries.clear()  # the same text computed from scratch
    fresh = pipelines.next_token(prompt, CHAT, appended=[token, grown.candidates[0].id])
    assert forwards[-1] > 1
    cached = {c.id: c.raw_p for c in again.candidates}
    assert all(abs(c.raw_p - cached.get(c.id, 0.0)) < 1e-5 for c in fresh.candidates[:10])


@pytest.mark.parametrize("settings", [dict(temperature=0.9, top_k=40, top_p=0.9, repetition_penalty=1.1),
                                      dict(temperature=1.3, top_k=0, top_p=1.0, repetition_penalty=1.0)])
def test_seeded_steps_write_what_text_generation_writes_with_that_seed(settings):
    prompt, seed = "今天天气很好", 4321
    stream = pipelines.generate_text(prompt, "Tiny GPT-2 中文", max_new_tokens=12, seed=seed, top_logprobs=0,
                                     **settings)
    stream.collect()
    written = [t.id for t in stream.logprobs[0]]
    assert len(written) >= 3
    appended, rng = [], None
    for _ in written:
        step = pipelines.sample_step(prompt, "Tiny GPT-2 中文", appended=appended, seed=seed, rng=rng, **settings)
        assert step.seed == seed
        appended.append(step.id)
        rng = step.rng
    assert appended == written


def test_a_sampled_step_names_its_rank_and_why():
    step = pipelines.sample_step("Hello", CHAT, temperature=2.0, seed=7)
    view = pipelines.next_token("Hello", CHAT, top_n=100)
    ranked = [c.id for c in view.candidates]
    assert step.rank == ranked.index(step.id) + 1 if step.id in ranked else step.rank > 100
    assert ("rank" in step.reason) == (step.rank > 1)
    greedy = pipelines.sample_step("Hello", CHAT, temperature=0)
    assert greedy.rank == 1 and greedy.seed is None and "Temperature 0" in greedy.reason


def test_tokens_are_readable():
    chat = registry.get_model("chat").processor
    ids = chat(" 猫 cat", add_special_tokens=False)["input_ids"]
    shown = [readable(chat, i) for i in ids]
    assert shown[0].startswith("␣")  # the leading space is visible
    assert any("<0x" in s for s in shown)  # a piece of 猫's three bytes
    assert b"".join(token_bytes(chat, i) for i in ids).decode() == " 猫 cat"
    wordpiece = registry.get_model("textgen").processor
    assert [readable(wordpiece, i) for i in wordpiece("猫狗", add_special_tokens=False)["input_ids"]] == ["猫", "狗"]
    view = pipelines.next_token("你好", CHAT, top_n=100)
    if any("<0x" in c.token for c in view.candidates):
        assert any("UTF-8" in n for n in view.notices)


def test_recorded_logprobs_are_the_models_and_the_pieces_make_the_text():
    prompt = "Hello"
    view = pipelines.next_token(prompt, CHAT, top_n=5)
    stream = pipelines.chat(prompt, [], temperature=0, max_new_tokens=10, top_logprobs=3)
    reply = stream.collect()
    tokens = stream.logprobs[0]
    assert len(tokens) == stream.usage.completion_tokens
    first = tokens[0]
    assert first.id == view.candidates[0].id  # greedy: the most likely
    assert abs(math.exp(first.logprob) - view.candidates[0].raw_p) < 1e-4
    assert [t.id for t in first.top] == [c.id for c in view.candidates[:3]]
    assert all(t.logprob <= 0 for t in tokens) and len(first.top) == 3
    assert "".join(text for text, _ in stream.pieces[0]) == reply
    openai = first.to_openai()
    assert set(openai) == {"token", "logprob", "bytes", "top_logprobs"} and len(openai["top_logprobs"]) == 3
    plain = pipelines.chat(prompt, [], temperature=0, max_new_tokens=4)
    plain.collect()
    assert plain.logprobs == []  # nothing recorded unless asked


def test_bad_input_gets_a_clear_message():
    with pytest.raises(InvalidInputError, match="Enter the prompt"):
        pipelines.next_token("   ")
    with pytest.raises(InvalidInputError, match="Choose one of") as error:
        pipelines.next_token("hi", "no such model")
    assert all(name in str(error.value) for name in model_choices())
    with pytest.raises(InvalidInputError, match="Token ids"):
        pipelines.next_token("hi", appended=[10**9])
    with pytest.raises(InvalidInputError, match="must be a number"):
        pipelines.next_token("hi", temperature="hot")
    clamped = pipelines.next_token("hi", top_n=0)
    assert len(clamped.candidates) == 1 and any("top_n" in n for n in clamped.notices)


def test_a_remote_model_that_cannot_be_reached_gets_a_clear_message(monkeypatch, fresh_registry):
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", "Far=openai:http://127.0.0.1:9/v1#far-model")
    assert model_choices()[0] == "Far"
    with pytest.raises(pipelines.ModelUnavailableError, match="MODELDECK_TEXTGEN_MODELS"):
        pipelines.next_token("hi", "Far")
    with pytest.raises(InvalidInputError, match="local models only"):
        pipelines.sample_step("hi", "Far")


def test_steps_past_the_window_read_the_last_tokens_of_the_text():
    model = "Tiny GPT-2 中文"  # 128 positions
    prompt = "今天天气很好，我们一起去公园散步。" * 12
    first = pipelines.next_token(prompt, model)
    assert first.prompt_tokens == 127 and any("last 127 tokens" in n for n in first.notices)
    appended, rng = [], None
    for _ in range(4):  # before, the third step's text outgrew the position table (IndexError)
        view = pipelines.next_token(prompt, model, appended=appended)
        assert view.prompt_tokens == 127 and any("last 127 tokens" in n for n in view.notices)
        step = pipelines.sample_step(prompt, model, appended=appended, seed=5, rng=rng)
        appended, rng = appended + [step.id], step.rng
    clicked = pipelines.next_token(prompt, model, appended=appended + [view.candidates[0].id])
    assert clicked.prompt_tokens == 127
    # Only the end is read: the same last 127 tokens give the same distribution, whatever came before them.
    longer = pipelines.next_token("从前有一座山。" + prompt, model, appended=appended)
    assert [(c.id, round(c.raw_p, 5)) for c in longer.candidates] == \
        [(c.id, round(c.raw_p, 5)) for c in pipelines.next_token(prompt, model, appended=appended).candidates]
