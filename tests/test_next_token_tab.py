"""Step mode through the next-token tab's own functions: the state each step writes and what the page is sent."""

from __future__ import annotations

import gradio as gr
import pytest

import pipelines
from pipelines import InvalidInputError
from ui.common import need_prompt_and_seed
from ui.next_token_tab import append, fresh_state, picked, redrawn, sample, undo

MODEL = "Tiny GPT-2 中文"
PROMPT = "今天天气很好"
SETTINGS = dict(temperature=1.3, top_k=0, top_p=1.0, penalty=1.0)


def sampled(state, seed, prompt=PROMPT, **changed):
    """One 🎲 step as the page runs it: the new state and what goes back into the seed box."""
    settings = {**SETTINGS, **changed}
    return sample(prompt, MODEL, settings["temperature"], settings["top_k"], settings["top_p"], settings["penalty"],
                  seed, state)


def written(count: int, seed: int) -> list[int]:
    """The first ``count`` tokens text generation writes after PROMPT with ``seed`` and SETTINGS."""
    stream = pipelines.generate_text(PROMPT, MODEL, max_new_tokens=count, seed=seed, top_logprobs=0,
                                     temperature=SETTINGS["temperature"], top_k=0, top_p=1.0, repetition_penalty=1.0)
    stream.collect()
    return [t.id for t in stream.logprobs[0]]


def test_undo_puts_the_seeded_sampler_back_so_steps_still_write_what_text_generation_writes():
    expected = written(4, 42)
    assert len(expected) == 4
    state = fresh_state()
    for _ in range(3):
        state, shown_seed = sampled(state, "42")  # the seed box is a text box
        assert shown_seed == "42"
    state = undo(undo(state))
    assert state["ids"] == expected[:1]
    for _ in range(3):  # before, the sampler went on from the third draw: other tokens than the undone ones
        state, _ = sampled(state, "42")
    assert state["ids"] == expected[:4]
    clicked = append(PROMPT, MODEL, state, picked(gr.EventData(None, {"token_id": str(expected[0])})))
    assert clicked["ids"] == expected[:4] + [expected[0]] and clicked["marks"][-1] == "👆"
    assert undo(clicked)["rng"] == state["rng"]  # a click draws nothing; undoing it leaves the sampler as it was
    assert undo(fresh_state())["ids"] == []


def test_a_greedy_step_keeps_the_typed_seed_and_the_sampler_where_it_was():
    expected = written(2, 7)
    state, _ = sampled(fresh_state(), "7")
    state, shown_seed = sampled(state, "7", temperature=0)
    assert shown_seed == gr.skip()  # before, None was written back: the box lost the 7 typed there
    assert state["seed"] == 7 and state["marks"][-1] == "🎲1" and "Temperature 0" in state["said"]
    state, shown_seed = sampled(undo(state), "7")
    assert shown_seed == "7" and state["ids"] == expected  # the greedy step took nothing from the sequence


@pytest.mark.parametrize("seed", [-1, 3e9, 1.5, "abc"])
def test_a_bad_seed_is_refused_before_the_step_in_both_languages(seed):
    with pytest.raises(InvalidInputError, match="随机种子") as error:
        need_prompt_and_seed(PROMPT, seed)
    assert "The seed must be" in str(error.value)
    need_prompt_and_seed(PROMPT, 42)
    need_prompt_and_seed(PROMPT, None)  # empty: a random seed


def test_steps_past_the_window_keep_working_and_say_what_was_read():
    prompt = "从前有一座山，山里有一座庙。" * 10  # more than the tiny GPT-2's 128 positions
    state = fresh_state()
    for _ in range(4):  # before, the third step failed with an IndexError ("unexpected error")
        state, _ = sampled(state, 3, prompt=prompt)
        chart, text, status = redrawn(prompt, MODEL, 1.3, 0, 1.0, 1.0, 20, state)
        assert "sampled" in status and "last 127 tokens" in status and text.count("nt-added") == len(state["ids"])
