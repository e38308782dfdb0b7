"""Every tab driven in real headless Chromium; each test saves the README's screenshot of its tab."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("MODELDECK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:  # for modules that use this fixture without this module's skipif
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@contextmanager
def opened(browser, url: str, *, timeout_ms: int = 60_000) -> Iterator:
    """A fresh zh-CN page on ``url`` once the app has rendered; its context is closed afterwards."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        page.get_by_text("小模型游乐场").first.wait_for()
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser, url):
    with opened(browser, url) as page:
        yield page


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label).click()


def wait_filled(page, elem_id: str) -> None:
    """Wait until the text box ``#elem_id`` holds text (``?.``: gradio may re-render it meanwhile)."""
    page.wait_for_function("id => document.querySelector(`#${id} textarea`)?.value.length > 0", arg=elem_id)


def upload_picture(page) -> None:
    """Open the picture-story tab and upload example_images/cat.jpg; return once the picture shows."""
    open_tab(page, "🖼️ 看图讲故事")
    page.locator("#story-image input[type=file]").set_input_files(str(ROOT / "example_images" / "cat.jpg"))
    page.locator("#story-image img").first.wait_for()


def test_interface_speaks_chinese_first(page):
    for label in ["💬 对话", "✍️ 文本生成", "🏷️ 文本分类", "🖼️ 看图讲故事"]:
        page.get_by_role("tab", name=label).wait_for(state="visible")  # waits for the render, fails after 60 s


def test_chat_streams_a_reply_and_shows_token_usage(page):
    page.locator("#chat-input textarea").fill("你好，介绍一下你自己")
    page.locator("#chat-input textarea").press("Enter")
    page.locator("#chatbot .message-row, #chatbot [data-testid='bot']").nth(1).wait_for()
    page.locator("#chat-status").get_by_text("total_tokens").wait_for()
    assert page.locator("#chat-input textarea").input_value() == ""
    shot(page, "chat")
    page.locator("#chat-undo").click()
    wait_filled(page, "chat-input")
    assert page.locator("#chat-input textarea").input_value() == "你好，介绍一下你自己"


def test_chat_shows_how_far_a_long_prompt_is_read_then_the_reply(page, monkeypatch):
    from gates import PassGate
    from pipelines import registry

    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "8")  # the app runs in this process: 8 prompt tokens a pass
    status = page.locator("#chat-status")
    with PassGate(registry.get_model("chat"), permits=2) as gate:  # two chunks, then the model waits
        page.locator("#chat-input textarea").fill("请把这一段话读完再回答：" + "小模型也能讲故事，" * 12)
        page.locator("#chat-input textarea").press("Enter")
        status.get_by_text("正在读入提示").wait_for()
        read, total = (int(n) for n in re.search(r"(\d+) / (\d+)", status.inner_text()).groups())
        assert 0 < read < total and gate.arrived == 3, "two chunks read, the third waiting"
        shot(page, "chat_reading")
        gate.open()
        status.get_by_text("total_tokens").wait_for()
    assert "正在读入提示" not in status.inner_text(), "the reading note gives way to the usage"
    assert page.locator("#chatbot .message-row, #chatbot [data-testid='bot']").count() >= 2


def test_stop_while_a_long_prompt_is_read_ends_it_between_chunks(page, monkeypatch):
    from gates import PassGate, wait_until
    from pipelines import registry
    from pipelines.batching import batcher_for

    monkeypatch.setenv("MODELDECK_PREFILL_CHUNK", "8")
    status = page.locator("#chat-status")
    loaded = registry.get_model("chat")
    filling = batcher_for(loaded).batch.filling
    with PassGate(loaded, permits=1) as gate:  # one chunk, then the model waits for the test's permits
        page.locator("#chat-input textarea").fill("停一下：" + "这是一段很长的提示，" * 12)
        page.locator("#chat-input textarea").press("Enter")
        status.get_by_text("正在读入提示").wait_for()
        page.locator("#chat-stop").click()
        status.get_by_text("已停止").wait_for()  # the reading note gives way at once

        def cancel_reached():
            return not filling or all(r.cancel.is_set() for prefill in filling for r in prefill.requests)

        while not cancel_reached():  # a chunk at a time until the Stop reaches the request (a yield later)
            before = gate.passes
            gate.allow(1)
            wait_until(lambda: gate.passes > before or cancel_reached(), "the prompt stalled")
        at_stop = gate.passes
        gate.allow(100)  # only the Stop can keep these from running
        wait_until(lambda: not filling, "the stopped prompt never left")
        assert gate.passes <= at_stop + 1, f"{gate.passes - at_stop} chunks were read after the Stop"
        assert at_stop < 10, f"the Stop took {at_stop} chunks to arrive: {gate.shapes}"
    assert "正在读入提示" not in status.inner_text() and "total_tokens" not in status.inner_text()


def test_text_generation_shows_output_and_the_seed(page):
    open_tab(page, "✍️ 文本生成")
    page.locator("#textgen-prompt textarea").fill("今天天气很好，我们一起去")
    page.locator("#textgen-seed input, #textgen-seed textarea").first.fill("1234")
    page.locator("#textgen-run").click()
    page.locator("#textgen-status").get_by_text("total_tokens").wait_for()  # the seed alone shows from the start
    assert "1234" in page.locator("#textgen-status").inner_text()
    assert page.locator("#textgen-output textarea").input_value().startswith("今天天气很好")
    shot(page, "textgen")


def test_text_generation_colours_each_token_by_probability(page):
    open_tab(page, "✍️ 文本生成")
    page.locator("#textgen-prompt textarea").fill("今天天气很好")
    page.locator("#textgen-run").click()
    token = page.locator("#textgen-colors .md-tok").first
    token.wait_for()
    assert "alternatives" in token.get_attribute("title")  # the hover text lists the alternatives
    assert 0 < float(token.get_attribute("data-p")) <= 1


def test_chat_colours_the_reply_only_when_asked(page):
    page.locator("#chat-input textarea").fill("你好")
    page.locator("#chat-input textarea").press("Enter")
    page.locator("#chat-status").get_by_text("total_tokens").wait_for()
    assert page.locator("#chat-colors .md-tok").count() == 0
    page.get_by_text("⚙️ 生成参数").click()
    page.locator("#chat-color input").check()
    page.locator("#chat-regenerate").click()
    page.locator("#chat-colors .md-tok").first.wait_for()


AFTER_BARS = "[...document.querySelectorAll('#nt-chart .nt-after')].map(e => e.getAttribute('style')).join(';')"


def test_next_token_sliders_reshape_the_after_bars_and_steps_append(page):
    open_tab(page, "🔍 下一个词 · Next token")
    page.locator("#nt-prompt textarea").fill("今天天气很好，我们一起去")
    page.locator("#nt-run").click()
    page.locator("#nt-chart .nt-after").first.wait_for()
    assert page.locator("#nt-chart tr.nt-row").count() == 20 and page.locator("#nt-chart tr.nt-removed").count() == 0
    before = page.evaluate(AFTER_BARS)
    page.locator("#nt-temperature input[type=range]").fill("0.3")  # drag the slider
    page.wait_for_function(f"({AFTER_BARS}) != {before!r}")
    page.locator("#nt-top-k input[type=range]").fill("3")
    page.wait_for_function("document.querySelectorAll('#nt-chart tr.nt-removed').length == 17")
    assert page.locator("#nt-chart tr.nt-kept").count() == 3  # removed tokens stay visible, greyed
    assert "kept mass" in page.locator("#nt-chart").inner_text()
    page.locator("#nt-seed textarea, #nt-seed input").fill("42")
    page.locator("#nt-sample").click()
    page.locator("#nt-status").get_by_text("42").wait_for()
    assert "rank" in page.locator("#nt-status").inner_text() and "🎲" in page.locator("#nt-text").inner_text()
    over = "() => !document.querySelector('#nt-sample').disabled"  # one step at a time: the next waits for this
    page.wait_for_function(over)
    for clicks in (1, 2):  # click a bar: its token is appended once, and the chart shows the next distribution
        added = page.locator("#nt-text .nt-added").count()
        chart = page.locator("#nt-chart table").inner_html()
        row = page.locator("#nt-chart tr.nt-click").nth(1)
        token = row.locator("code").inner_text()
        row.locator(".nt-before").click()
        page.wait_for_function(f"document.querySelectorAll('#nt-text sup.nt-mark').length == {added + 1}")
        assert page.locator("#nt-text sup", has_text="👆").count() == clicks  # once: the listener outlives redraws
        assert page.locator("#nt-text .nt-added").last.inner_text() == token
        page.wait_for_function(f"(t => !!t && t.innerHTML != {chart!r})(document.querySelector('#nt-chart table'))")
        page.wait_for_function(over)
    shot(page, "next_token")
    page.reload()
    open_tab(page, "🔍 下一个词 · Next token")
    assert page.locator("#nt-chart .nt-after").count() == 0  # a fresh page starts from nothing


def test_classification_shows_every_label(page):
    open_tab(page, "🏷️ 文本分类")
    page.locator("#classify-text textarea").fill("这家店的服务太好了，下次还来！")
    page.locator("#classify-run").click()
    labels = page.locator("#classify-labels")
    labels.get_by_text("正面 positive").first.wait_for()
    assert labels.get_by_text("负面 negative").count() >= 1
    shot(page, "classify")


def test_picture_story_shows_caption_story_and_audio(page):
    upload_picture(page)
    page.locator("#story-run").click()
    wait_filled(page, "story-caption")
    wait_filled(page, "story-text")
    link = page.locator("#story-audio a[href*='/gradio_api/file=']")
    link.wait_for()
    assert page.locator("#story-audio audio").count() >= 1  # the player is there
    response = page.request.get(link.get_attribute("href"))
    assert response.ok and response.body()[:4] == b"RIFF"  # a real WAV from the offline voice
    shot(page, "story")


def test_about_panel_lists_device_and_models(page):
    open_tab(page, "ℹ️ 关于 / 状态")
    status = page.locator("#about-status")
    status.get_by_text("Device").first.wait_for()
    assert "Tiny Qwen2" in status.inner_text()


def test_about_panel_names_the_processor_and_the_int8_kernel_a_chat_loaded(page):
    from pipelines.devices import cpu_name
    from pipelines.int8_kernels import KERNELS

    open_tab(page, "ℹ️ 关于 / 状态")
    status = page.locator("#about-status")
    status.get_by_text("Processor").first.wait_for()
    assert cpu_name() in status.inner_text()
    open_tab(page, "💬 对话")
    page.locator("#chat-input textarea").fill("这台机器用的是哪个 int8 内核？")
    page.locator("#chat-input textarea").press("Enter")
    page.locator("#chat-status").get_by_text("total_tokens").wait_for()
    open_tab(page, "ℹ️ 关于 / 状态")
    page.locator("#about-refresh").click()
    used = [f"float32 + int8 ({name}" for name in KERNELS]  # then ")" or " + <prompt kernel> (prompts))"
    page.wait_for_function("used => used.some(u => document.querySelector('#about-status').innerText.includes(u))",
                           arg=used)
    row = status.locator("tr").filter(has_text="Tiny Qwen2").filter(has_text="int8").inner_text()  # loaded table
    assert any(u in row for u in used) and "modeldeck_sdpa" in row  # the chat model: int8 kernel, attention
    assert "lean decode" in row  # and its decode steps take pipelines/lean_decode.py
    shot(page, "about")


def test_a_file_that_is_not_a_picture_gets_a_clear_message(page, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("just some text, not a picture")
    open_tab(page, "🖼️ 看图讲故事")
    page.locator("#story-image input[type=file]").set_input_files(str(fake))
    page.locator("#story-run").click()
    page.get_by_text("cannot be read as a picture").first.wait_for()
