"""The edge: an unexpected error in a task is a clear bilingual message (and a log entry), never a crash or a
leaked detail; running out of memory says what to do, wherever it happens. And the story tab's re-run buttons
and the chat's regenerate, driven through the same functions the buttons call, without a browser."""

from __future__ import annotations

import logging
import os

import gradio as gr
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

import pipelines
from pipelines import registry
from pipelines.errors import OutOfMemoryError
from ui import chat_tab, story_tab

OUT_OF_MEMORY = [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                 RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                              "you tried to allocate 4294967296 bytes."),
                 MemoryError()]
SAYS_OUT_OF_MEMORY = ("内存不足", "Out of memory: shorten the input")


def raising(error: BaseException):
    def task(*args, **kwargs):
        raise error
    return task


def chinese_then_english(message: str, zh: str, en: str) -> bool:
    return zh in message and en in message and message.index(zh) < message.index(en)


def test_an_unexpected_error_is_a_bilingual_message_that_hides_the_detail(url, monkeypatch, caplog):
    client = Client(url, verbose=False)
    monkeypatch.setattr(pipelines, "classify_text", raising(KeyError("internal detail 42")))
    with caplog.at_level(logging.ERROR, logger="modeldeck.ui"), pytest.raises(AppError) as failed:
        client.predict("这家店很好", None, api_name="/classify")
    message = str(failed.value)
    assert chinese_then_english(message, "出现意外错误", "Something unexpected went wrong and was logged")
    assert "internal detail 42" not in message
    assert any(r.exc_info and "internal detail 42" in str(r.exc_info[1]) for r in caplog.records)  # logged, with it
    monkeypatch.undo()
    assert set(client.predict("这家店很好", None, api_name="/classify")) == {"正面 positive", "负面 negative"}


def test_an_unexpected_error_while_streaming_a_reply_keeps_the_conversation_in_the_box(monkeypatch):
    history = [{"role": "user", "content": "你好"}]
    monkeypatch.setattr(chat_tab.adapters, "chat", raising(ZeroDivisionError("deep inside")))
    with pytest.raises(gr.Error) as failed:
        list(chat_tab.reply(history, "", 0.7, 0.9, 8))
    assert chinese_then_english(str(failed.value), "出现意外错误", "Something unexpected went wrong")
    assert history == [{"role": "user", "content": "你好"}]  # the question is still there to send again


@pytest.mark.parametrize("error", OUT_OF_MEMORY, ids=type)
def test_out_of_memory_in_a_one_shot_task_is_a_clear_message(url, monkeypatch, error):
    monkeypatch.setattr(pipelines, "classify_text", raising(error))
    with pytest.raises(AppError) as failed:
        Client(url, verbose=False).predict("这家店很好", None, api_name="/classify")
    assert chinese_then_english(str(failed.value), *SAYS_OUT_OF_MEMORY)


@pytest.mark.parametrize("error", OUT_OF_MEMORY, ids=type)
def test_out_of_memory_while_generating_is_a_clear_message(error):
    handle = registry.get_model("chat").model.register_forward_pre_hook(raising(error))
    try:
        with pytest.raises(OutOfMemoryError) as failed:
            pipelines.chat("你好", max_new_tokens=4).collect()
    finally:
        handle.remove()
    assert chinese_then_english(str(failed.value), *SAYS_OUT_OF_MEMORY)
    assert pipelines.chat("你好", max_new_tokens=2).collect() is not None  # the engine goes on


def test_out_of_memory_in_the_story_step_keeps_the_caption_and_says_why(monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_NEW_TOKENS", "16")
    handle = registry.get_model("story").model.register_forward_pre_hook(raising(MemoryError()))
    try:
        final = list(pipelines.picture_story(Image.new("RGB", (48, 48), "orange"), "童话", 50, 5, "zh",
                                             speak=False))[-1]
    finally:
        handle.remove()
    assert final.caption.best and final.story == ""
    assert any("The story could not be written" in n and "Out of memory" in n for n in final.notices)


@pytest.mark.parametrize("message", ["", "  ", "\u200b", "\u200b\u200c\ufeff", "\xa0"])
def test_the_chat_box_refuses_an_empty_or_invisible_message(message):
    """Zero-width characters alone passed the box's check and went to the model."""
    with pytest.raises(gr.Error, match="Enter a message first"):
        chat_tab.need_message(message)
    chat_tab.need_message("\u200bhi")  # a visible character is a message


def test_regenerate_answers_the_last_question_again():
    history = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "旧的回答 old answer"}]
    kept = chat_tab.drop_last_reply(history)  # what 🔄 does first, then it answers again
    assert kept == history[:1]
    *_, (shown, status, _) = chat_tab.reply(kept, "", 0.7, 0.9, 8)
    assert shown[0] == history[0] and [m["role"] for m in shown] == ["user", "assistant"]
    assert "旧的回答" not in shown[-1]["content"] and "completion_tokens" in status


def test_rewrite_writes_a_new_story_from_the_edited_caption(monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_NEW_TOKENS", "16")
    asked = []
    write_story = pipelines.write_story
    monkeypatch.setattr(pipelines, "write_story", lambda caption, *args: asked.append(caption) or write_story(
        caption, *args))
    *_, (story, status, made) = story_tab.rewrite("一只橘猫在窗台上晒太阳", "an orange cat", "温馨", 50, 5, "zh")
    assert asked == ["一只橘猫在窗台上晒太阳"]  # the caption as the person edited it
    assert isinstance(story, str) and story and isinstance(made["seed"], int)
    assert {k: made[k] for k in ("style", "length", "caption")} == {"style": "温馨", "length": 50,
                                                                   "caption": "一只橘猫在窗台上晒太阳"}
    with pytest.raises(gr.Error, match="Enter"):
        list(story_tab.rewrite("   ", "", "温馨", 50, 5, "zh"))


@pytest.mark.skipif(pipelines.speech.espeak_binary() is None, reason="espeak-ng is not installed")
def test_revoice_reads_the_edited_story_aloud(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELDECK_AUDIO_DIR", str(tmp_path))
    monkeypatch.setenv("MODELDECK_TTS", "espeak")
    first, _ = story_tab.revoice("从前有一只猫。", "zh")
    edited, notes = story_tab.revoice("从前有一只猫，它很爱睡觉。", "zh")
    assert os.path.getsize(first) > 0 and os.path.getsize(edited) > 0 and edited != first
    assert open(edited, "rb").read(4) == b"RIFF" and notes == ""
