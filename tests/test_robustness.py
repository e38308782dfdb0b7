"""Bad input, faults, load and attacks, each through gradio_client against the launched app."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import pipelines
from pipelines.story import MAX_LENGTH, MIN_LENGTH, story_settings
from test_images import bomb_png

from gates import DEADLINE, PassGate, wait_until

ROOT = Path(__file__).resolve().parent.parent
CAT = str(ROOT / "example_images" / "cat.jpg")
HUGE = "你好，世界！Hello 🌍 " * 7000  # about 100 000 characters


@pytest.fixture(scope="module")
def client(url, tmp_path_factory):
    return Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.mark.parametrize("args,api_name", [
    ((HUGE, [], "", 0.7, 0.9, 8), "/chat"),
    ((HUGE, None, 8, 0.8, 50, 0.9, 1.1, 1, None), "/generate"),
    ((HUGE, None), "/classify"),
    ((HUGE, "童话", 60, 5, "zh"), "/story"),
    (("控制\x00字符\x1b[31m 😀 emoji mixed 中英 العربية", None), "/classify"),
])
def test_huge_and_odd_text_is_cut_not_crashed(client, args, api_name):
    result = client.predict(*args, api_name=api_name)
    text = result[0] if api_name == "/generate" else result
    assert text and (api_name != "/generate" or len(text) < len(HUGE))  # an answer (a cut prompt), not an error


@pytest.mark.parametrize("make", [lambda: pipelines.chat(HUGE, max_new_tokens=8),
                                  lambda: pipelines.generate_text(HUGE, max_new_tokens=8),
                                  lambda: pipelines.write_story(HUGE, "童话", 60, 5, "zh")])
def test_huge_text_is_cut_with_a_notice(make):
    stream = make()
    stream.close()
    assert any("too long" in n for n in stream.notices), stream.notices


def test_out_of_range_numbers_are_clamped_with_notices():
    high = story_settings("冒险", 10**6, 99, "en")
    low = story_settings("冒险", -4, -3, "zh")
    assert (high.length, high.creativity, low.length, low.creativity) == (MAX_LENGTH, 10, MIN_LENGTH, 0)
    assert len(high.notices) == 2 and len(low.notices) == 2 and all("outside" in n for n in high.notices)
    stream = pipelines.chat("hi", [], system_prompt="", temperature=99, top_p=5, max_new_tokens=-7)
    stream.close()
    assert len([n for n in stream.notices if "outside" in n]) == 3


def test_out_of_range_numbers_are_clamped(client):
    text, seed = client.predict("你好", None, 10**9, -5, -1, 0, 0.1, 100, None, api_name="/generate")
    assert text.count("你好") == 8 and seed is None  # 8 sequences at most; temperature < 0 → greedy
    text, _ = client.predict("你好", None, 0, 99, 10**6, 7, 99, 0, 3, api_name="/generate")
    assert text.startswith("你好")
    assert isinstance(client.predict("a cat", "冒险", 10**6, 99, "en", api_name="/story"), str)
    assert isinstance(client.predict("a cat", "冒险", -4, -3, "zh", api_name="/story"), str)
    assert isinstance(client.predict("hi", [], "", 99, 5, -7, api_name="/chat"), str)


def test_a_story_setting_left_out_takes_the_tabs_default_for_every_setting():
    # Before, a missing length or creativity took its default but a missing style or language was "unsupported ''".
    assert story_settings(None, None, None, None) == story_settings("", " ", "", "") == story_settings()
    assert (story_settings().style, story_settings().language) == ("温馨", "zh")


def test_the_story_endpoints_accept_null_settings_and_name_a_bad_one(client):
    assert isinstance(client.predict("a cat", None, 50, None, None, api_name="/story"), str)
    caption, story, _ = client.predict(handle_file(CAT), None, 50, None, None, api_name="/picture_story")
    assert caption and isinstance(story, str)
    assert client.predict("Hello, 你好.", None, api_name="/speak")
    with pytest.raises(AppError, match="Unsupported story style: 'cyberpunk'. Choose one of"):
        client.predict("a cat", "cyberpunk", 50, 5, "en", api_name="/story")
    with pytest.raises(AppError, match="Unsupported language: 'fr'"):
        client.predict(handle_file(CAT), "温馨", 50, 5, "fr", api_name="/picture_story")


@pytest.mark.parametrize("args,words", [
    (("你好", None, "many", 0.8, 50, 0.9, 1.1, 1, None), "must be a number"),
    (("你好", None, 10, 0.8, 50, 0.9, 1.1, 1, 2**40), "seed"),
    (("你好", None, 10, 0.8, 50, 0.9, 1.1, 1, "1.5"), "seed"),
])
def test_unusable_numbers_are_rejected_clearly(client, args, words):
    with pytest.raises(AppError, match=words):
        client.predict(*args, api_name="/generate")


@pytest.mark.parametrize("history", [
    [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
     {"role": "assistant", "content": [{"type": "text", "text": "hello"}], "metadata": None, "options": None}],
    [["hi", "hello"], ["how are you", "fine"]],
    [{"role": "user", "content": "Hello, how are you? " * 50}, {"role": "assistant", "content": "ok"}] * 40,
])
def test_history_shapes_from_scripts_are_accepted(client, history):
    assert isinstance(client.predict("next", history, "", 0.7, 0.9, 8, api_name="/chat"), str)


@pytest.mark.parametrize("history,words", [
    ({"role": "user"}, "must be a list"),
    ([{"content": "no role"}], "role"),
    ([{"role": "wizard", "content": "x"}], "unknown role"),
    ([42], "entry 1"),
])
def test_malformed_history_is_rejected_clearly(client, history, words):
    with pytest.raises(AppError, match=words):
        client.predict("hi", history, "", 0.7, 0.9, 8, api_name="/chat")


def test_pictures_that_cannot_be_used_are_refused_clearly(client, tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("not a picture")
    with pytest.raises(AppError, match="cannot be read"):
        client.predict(handle_file(str(fake)), api_name="/caption")
    with pytest.raises(AppError, match="too large"):
        client.predict(handle_file(bomb_png(tmp_path / "bomb.png", 20000, 20000)), api_name="/caption")
    with pytest.raises(AppError, match="Upload a picture"):
        client.predict(None, api_name="/caption")
    tiny = tmp_path / "one.png"
    Image.new("RGB", (1, 1), "red").save(tiny)
    assert len(client.predict(handle_file(str(tiny)), api_name="/caption")) == 2


def test_a_missing_model_breaks_only_its_tab_and_is_retried(client, monkeypatch):
    from pipelines import registry

    good = os.environ["MODELDECK_CAPTION_MODEL"]
    registry.clear()
    monkeypatch.setenv("MODELDECK_CAPTION_MODEL", "Salesforce/blip-image-captioning-base")
    with pytest.raises(AppError) as err:
        client.predict(handle_file(CAT), api_name="/caption")
    assert "Salesforce/blip-image-captioning-base" in str(err.value) and "MODELDECK_CAPTION_MODEL" in str(err.value)
    assert client.predict("很好", None, api_name="/classify")  # other tabs keep working
    monkeypatch.setenv("MODELDECK_CAPTION_MODEL", good)
    assert len(client.predict(handle_file(CAT), api_name="/caption")) == 2  # retried, not cached


def test_picture_story_without_any_voice_still_returns_the_story(client, monkeypatch):
    monkeypatch.setenv("MODELDECK_TTS", "off")
    caption, story, audio = client.predict(handle_file(CAT), "搞笑", 50, 5, "zh", api_name="/picture_story")
    assert caption and story and audio is None


def test_eight_mixed_scripts_at_once_all_complete_and_load_each_model_once(url):
    from pipelines import registry

    calls = [("你好", [], "", 0.7, 0.9, 8, "/chat"), ("天气", None, 8, 0.8, 50, 0.9, 1.1, 2, 5, "/generate"),
             ("很好", None, "/classify"), (handle_file(CAT), "温馨", 50, 5, "zh", "/picture_story")] * 2

    def run(call):
        *args, api_name = call
        return api_name, Client(url, verbose=False).predict(*args, api_name=api_name)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, calls))
    assert len(results) == 8 and all(result is not None for _, result in results)
    assert all(count == 1 for count in registry.load_count.values())


def test_the_queue_is_bounded_and_says_busy(app_module):
    from pipelines import registry

    busy_demo = app_module.build_demo()
    busy_demo.queue(default_concurrency_limit=1, max_size=2)
    _, busy_url, _ = busy_demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    loaded = registry.get_model("textgen")

    def generate():
        return Client(busy_url, verbose=False).submit("你好", None, 40, 0, 0, 1.0, 1.0, 1, None, api_name="/generate")

    def outcome(job):
        try:
            job.result(timeout=DEADLINE)
            return "done"
        except Exception as exc:  # gradio_client raises for a full queue
            return str(exc)

    try:
        with PassGate(loaded, permits=0) as gate:  # the first generation holds the one slot until the gate opens
            first = generate()
            wait_until(lambda: gate.arrived >= 1, "the first generation to start")
            others = [generate() for _ in range(5)]
            wait_until(lambda: sum(job.done() for job in others) == 3, "three requests to be turned away")
        outcomes = [outcome(job) for job in [first, *others]]
    finally:
        busy_demo.close()
    assert outcomes.count("done") == 3  # the one running and the two that fit in line
    refused = [o for o in outcomes if o != "done"]
    assert refused and all("full" in o.lower() or "try again" in o.lower() for o in refused)


@pytest.mark.parametrize("path", ["/gradio_api/file=/etc/passwd", "/gradio_api/file=../../../../etc/passwd",
                                  "/gradio_api/file=%2e%2e/%2e%2e/etc/passwd", "/file=/etc/passwd",
                                  f"/gradio_api/file={ROOT / 'app.py'}", "/gradio_api/file=app.py",
                                  "/gradio_api/file=.git/config"])
def test_only_the_apps_own_files_are_served(url, path):
    response = httpx.get(url.rstrip("/") + path)
    assert response.status_code in (403, 404), response.status_code
    assert "root:" not in response.text and "def build_demo" not in response.text


def test_uploads_over_the_size_limit_are_refused(url, client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + os.urandom(11 * 2**20))
    with pytest.raises(ValueError, match="(?i)file size|exceeds|too large"):
        client.predict(handle_file(str(big)), api_name="/caption")
    with open(big, "rb") as f:
        response = httpx.post(url.rstrip("/") + "/gradio_api/upload", files={"files": ("big.png", f)}, timeout=60)
    assert response.status_code == 413


def test_remote_code_runs_only_when_allowed(monkeypatch, fresh_registry):
    seen = []

    def fake(source, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        raise OSError("stop here")

    monkeypatch.setattr(fresh_registry, "_load_classes", lambda task: (fake, fake))
    for setting, expected in [(None, False), ("1", True)]:
        if setting is None:
            monkeypatch.delenv("MODELDECK_TRUST_REMOTE_CODE", raising=False)
        else:
            monkeypatch.setenv("MODELDECK_TRUST_REMOTE_CODE", setting)
        with pytest.raises(Exception):
            fresh_registry.get_model("classifier")
        assert seen[-1] is expected


def test_the_hf_token_never_reaches_logs_or_pages(client, monkeypatch, caplog, fresh_registry):
    secret = "hf_TopSecretToken1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("MODELDECK_CAPTION_MODEL", "someone/gated-model")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(CAT), api_name="/caption")
    from ui.about_tab import status_markdown

    assert secret not in str(err.value) and secret not in caplog.text and secret not in status_markdown()
