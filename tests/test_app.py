"""The launched app, driven through gradio_client exactly as scripts use it."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from pipelines.batching import Batcher
from pipelines.engine import engine

from gates import PassGate, wait_until

ROOT = Path(__file__).resolve().parent.parent
CAT = str(ROOT / "example_images" / "cat.jpg")


@pytest.fixture(scope="module")
def client(url, tmp_path_factory):
    return Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def test_importing_app_loads_no_model():
    code = "import sys, app, pipelines; print('torch' in sys.modules, len(pipelines.registry._cache))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["False", "0"]


def test_endpoints_have_stable_names_and_parameters(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {name: [p["parameter_name"] for p in spec["parameters"]] for name, spec in named.items()}
    assert params == {
        "/chat": ["message", "history", "system_prompt", "temperature", "top_p", "max_new_tokens", "model"],
        "/generate": ["prompt", "model", "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty",
                      "num_return_sequences", "seed"],
        "/classify": ["text", "model"],
        "/classify_batch": ["texts", "model"],
        "/caption": ["image"],
        "/story": ["caption", "style", "length", "creativity", "language"],
        "/speak": ["text", "language"],
        "/picture_story": ["image", "style", "length", "creativity", "language"],
        "/next_token": ["prompt", "model", "temperature", "top_k", "top_p", "repetition_penalty", "top_n"],
    }


def test_chat_by_script_names_its_model(client):
    from gates import PassGate
    from pipelines import registry

    with PassGate(registry.get_model("chat", "Tiny Qwen2 B")) as passes:
        reply = client.predict("你好", [], "", 0.0, 0.9, 4, "Tiny Qwen2 B", api_name="/chat")
    assert isinstance(reply, str) and passes.passes > 0
    with pytest.raises(AppError, match="Tiny Qwen2 B"):  # an unknown name lists the models there are
        client.predict("你好", [], "", 0.0, 0.9, 4, "gpt-4o", api_name="/chat")


def test_multi_turn_chat_by_passing_the_history_back(client):
    history = []
    for message in ["你好", "Hello, how are you?", "再说一次"]:
        outputs = list(client.submit(message, history, "You are helpful.", 0.7, 0.9, 16, api_name="/chat"))
        assert outputs and all(isinstance(o, str) for o in outputs)
        reply = outputs[-1]
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
    assert len(history) == 6


def test_generate_streams_text_and_reports_the_seed(client):
    outputs = list(client.submit("你好", "Tiny GPT-2 B", 12, 0.9, 40, 0.9, 1.1, 2, 77, api_name="/generate"))
    assert len(outputs) >= 2
    text, seed = outputs[-1]
    assert seed == 77 and text.count("你好") == 2
    again = client.predict("你好", "Tiny GPT-2 B", 12, 0.9, 40, 0.9, 1.1, 2, 77, api_name="/generate")
    assert tuple(again) == (text, 77)


def test_cancelled_generation_stops_computing_and_frees_the_slot(client, app_module):
    from pipelines import registry

    loaded = registry.get_model("textgen")

    def solo_requests():
        return [d.request for d in engine.decoders() if not isinstance(d, Batcher)]

    with PassGate(loaded, permits=0) as gate:  # each forward pass waits for the test's permit, and is counted
        job = client.submit("你好", None, 64, 0, 0, 1.0, 1.0, 1, None, api_name="/generate")
        gate.allow(3)
        wait_until(lambda: gate.passes == 3, lambda: f"generation did not start: {job.status()}")
        canceller = threading.Thread(target=job.cancel)  # it returns once the server has stopped the job
        canceller.start()

        def cancel_reached():
            return all(r.cancel.is_set() for r in solo_requests())

        while not cancel_reached():  # one step at a time until the cancel reaches the request
            before = gate.passes
            gate.allow(1)
            wait_until(lambda: gate.passes > before or cancel_reached(), "the generation stalled")
        at_cancel = gate.passes
        gate.allow(100)  # every permit it could want: only the cancel can keep them from running
        wait_until(lambda: not solo_requests(), "the decoder never left the engine")
        canceller.join(60)
        assert gate.passes <= at_cancel + 1, f"{gate.passes - at_cancel} forward passes ran after the cancel"
        assert at_cancel < 64
    assert not canceller.is_alive(), "the cancel never returned"

    def follow_up() -> str:  # the slot is free: a new generation runs to its end
        return client.predict("猫", None, 4, 0, 0, 1.0, 1.0, 1, None, api_name="/generate")[0]

    try:
        text = follow_up()
    except concurrent.futures.CancelledError:  # gradio_client once handed the cancel on to this next job (CI)
        text = follow_up()
    assert text.startswith("猫")


def test_next_token_lists_candidates_by_raw_probability(client):
    tokens = client.predict("今天天气很好", None, 0.7, 5, 1.0, 1.0, 12, api_name="/next_token")
    assert len(tokens) == 12 and all(set(t) == {"token", "id", "raw_p", "p", "kept"} for t in tokens)
    assert [t["raw_p"] for t in tokens] == sorted((t["raw_p"] for t in tokens), reverse=True)
    assert sum(t["kept"] for t in tokens) == 5 and all(t["p"] == 0 for t in tokens if not t["kept"])
    assert abs(sum(t["p"] for t in tokens) - 1) < 1e-5  # the five kept tokens hold all the probability
    flat = client.predict("今天天气很好", None, 1.0, 0, 1.0, 1.0, 12, api_name="/next_token")
    assert [t["id"] for t in flat] == [t["id"] for t in tokens] and all(t["p"] == t["raw_p"] for t in flat)


def test_classify_returns_every_label(client):
    result = client.predict("这家店很好", "Tiny English sentiment", api_name="/classify")
    assert set(result) == {"正面 positive", "负面 negative"}
    assert abs(sum(result.values()) - 1) < 1e-5


def test_caption_story_and_speak(client):
    zh, en = client.predict(handle_file(CAT), api_name="/caption")
    assert isinstance(zh, str) and isinstance(en, str) and (zh or en)
    stories = list(client.submit(zh or en, "科幻", 60, 5, "zh", api_name="/story"))
    assert stories and stories[-1]
    audio = client.predict("你好，世界。", "zh", api_name="/speak")
    assert Path(audio).read_bytes()[:4] == b"RIFF"


def test_picture_story_end_to_end_shows_caption_first(client):
    outputs = list(client.submit(handle_file(CAT), "童话", 60, 5, "zh", api_name="/picture_story"))
    first_caption, first_story, first_audio = outputs[0]
    assert first_caption and first_story == "" and first_audio is None  # the captioner's text, at once
    caption, story, audio = outputs[-1]
    zh, en = client.predict(handle_file(CAT), api_name="/caption")
    assert first_caption == en and caption == (zh or en) and story  # then its translation, then the story
    assert Path(audio).read_bytes()[:4] == b"RIFF"


@pytest.mark.parametrize("args,api_name,words", [
    (("", [], "", 0.7, 0.9, 16), "/chat", "Enter the message"),
    (("\u200b\u200c\ufeff", [], "", 0.7, 0.9, 16), "/chat", "Enter the message"),  # zero-width characters alone
    (("\u2060\xa0", None, 10, 0.8, 50, 0.9, 1.1, 1, None), "/generate", "Enter the prompt"),
    (("hi", "not a list", "", 0.7, 0.9, 16), "/chat", "history"),
    (("你好", "../../etc/passwd", 10, 0.8, 50, 0.9, 1.1, 1, None), "/generate", "no model called"),
    (("你好", None, 10, 0.8, 50, 0.9, 1.1, 1, -5), "/generate", "seed"),
    (("a cat", "赛博朋克", 100, 5, "zh"), "/story", "style"),
    (("a cat", "童话", 100, 5, "fr"), "/story", "language"),
    (("", "zh"), "/speak", "Enter the text"),
    (("text", "/etc/passwd"), "/classify", "no model called"),
    (("", None, 1.0, 0, 1.0, 1.0, 20), "/next_token", "Enter the prompt"),
    (("你好", "no such model", 1.0, 0, 1.0, 1.0, 20), "/next_token", "no model called"),
    (("你好", None, "hot", 0, 1.0, 1.0, 20), "/next_token", "must be a number"),
])
def test_bad_input_is_a_clear_bilingual_error(client, args, api_name, words):
    with pytest.raises(AppError) as err:
        client.predict(*args, api_name=api_name)
    assert words in str(err.value)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in str(err.value))


def test_the_app_still_answers_after_errors(client):
    assert client.predict("hello", None, api_name="/classify")


def test_preload_loads_the_named_roles_in_the_background(app_module, monkeypatch, fresh_registry):
    monkeypatch.setenv("MODELDECK_PRELOAD", "classifier, captioner")
    assert app_module.preload_roles() == ["classifier", "captioner"]
    thread = app_module.start_preload(app_module.preload_roles())
    thread.join(timeout=120)
    assert fresh_registry.is_loaded("classifier") and fresh_registry.is_loaded("captioner")
    assert not fresh_registry.is_loaded("chat")
    monkeypatch.setenv("MODELDECK_PRELOAD", "")
    assert app_module.start_preload(app_module.preload_roles()) is None
    monkeypatch.setenv("MODELDECK_PRELOAD", "all")
    assert app_module.preload_roles() == ["all"]


def test_launch_settings_follow_the_environment(app_module, monkeypatch):
    monkeypatch.setenv("PORT", "9999")
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    monkeypatch.setenv("MODELDECK_MAX_UPLOAD_MB", "3")
    settings = app_module.launch_settings()
    assert settings["server_port"] == 9999 and settings["server_name"] == "0.0.0.0"
    assert settings["max_file_size"] == "3mb" and settings["show_error"] is False
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7000")
    assert app_module.launch_settings()["server_port"] == 7000


def test_the_chat_shows_text_as_given_also_after_gradio_rebuilds_the_component():
    """gradio's Chatbot dedents and strips text (``inspect.cleandoc``); ours keeps it, and so does the copy gradio
    makes from the constructor arguments when an event updates the component's properties."""
    from ui.exact_chatbot import ExactChatbot

    text = "  first line\n    indented\n\n"
    chatbot = ExactChatbot(render=False)
    for shown in (chatbot, type(chatbot)(**{**chatbot.constructor_args, "render": False})):
        assert shown.postprocess([{"role": "assistant", "content": text}]).root[0].content[0].text == text
        assert shown.get_block_name() == "chatbot"  # the page draws it as gradio's Chatbot
