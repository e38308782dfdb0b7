"""End to end: ``python app.py`` with its chat model on a running vLLM server, used through
``gradio_client`` and in headless Chromium the way a person would.

The app runs as its own process, configured only by environment variables
(``MODELDECK_CHAT_MODEL=openai:http://127.0.0.1:PORT/v1#NAME``; the other roles stay on the tiny local
models); every reply is checked against the vLLM server's own generation-token counter, so a reply that
did not come from the server fails the test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from servers import Server, free_port
from test_browser import browser, opened, upload_picture, wait_filled  # noqa: F401  (fixtures)
from test_vllm import CHAT_NAME, generated, post, wait_idle

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def chat_server(vllm_servers):
    server = vllm_servers.ready("chat")
    post(server, "/v1/completions", {"model": CHAT_NAME, "prompt": "hi", "max_tokens": 4})  # warm-up
    return server


@pytest.fixture(scope="module")
def app_url(chat_server, tiny_models, tmp_path_factory):
    """``python app.py`` in its own process group on a free port, its chat model on vLLM."""
    port = free_port()
    env = {**tiny_models, "MODELDECK_CHAT_MODEL": f"vLLM 对话=openai:{chat_server.base}/v1#{CHAT_NAME}",
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "MODELDECK_PRELOAD": ""}
    app = Server("python app.py", [sys.executable, "app.py"], port=port,
                 log_path=tmp_path_factory.mktemp("app") / "app.log", env=env, cwd=ROOT)
    try:
        app.wait_healthy(timeout=300, path="/")
        yield app.base + "/"
    finally:
        app.stop()


def test_gradio_client_chats_and_writes_stories_through_vllm(app_url, chat_server):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    before = generated(chat_server)
    job = client.submit("你好，介绍一下你自己", [], "You are helpful.", 0.0, 0.9, 40, api_name="/chat")
    replies = list(job)
    assert len([r for r in replies if r]) >= 2  # streamed: several growing replies, not one block
    final = job.result()
    assert final and final == replies[-1]
    wait_idle(chat_server)
    assert generated(chat_server) - before == 40  # greedy on this model never ends early: all 40 from vLLM

    before = generated(chat_server)
    job = client.submit("a dog on a red chair", "童话", 50, 5, "en", api_name="/story")
    stories = [s for s in job if s]
    assert stories and job.result().strip()
    wait_idle(chat_server)
    assert generated(chat_server) > before


@pytest.fixture
def page(browser, app_url):
    with opened(browser, app_url, timeout_ms=300_000) as page:  # generous: eight people share 2 cores here
        yield page


# Records every distinct text the last bot message shows, as the page renders it.
WATCH_BOT = """() => {
  window.__botTexts = [];
  const record = () => {
    const bots = document.querySelectorAll('#chatbot [data-testid="bot"]');
    const text = bots.length ? bots[bots.length - 1].innerText.trim() : '';
    if (text && window.__botTexts[window.__botTexts.length - 1] !== text) window.__botTexts.push(text);
  };
  new MutationObserver(record).observe(document.querySelector('#chatbot'),
                                       {subtree: true, childList: true, characterData: true});
}"""


@pytest.mark.browser
def test_browser_chat_streams_a_reply_from_vllm(page, chat_server):
    before = generated(chat_server)
    page.evaluate(WATCH_BOT)
    page.locator("#chat-input textarea").fill("你好，介绍一下你自己")
    page.locator("#chat-input textarea").press("Enter")
    page.locator("#chat-status").get_by_text("total_tokens").wait_for()  # the reply finished
    texts = page.evaluate("window.__botTexts")
    assert len(texts) >= 2, texts  # the reply grew on screen while it streamed
    assert all(later.startswith(earlier[:-1]) for earlier, later in zip(texts, texts[1:]))
    wait_idle(chat_server)
    assert generated(chat_server) > before  # vLLM wrote it


@pytest.mark.browser
def test_browser_picture_story_is_written_by_vllm(page, chat_server):
    before = generated(chat_server)
    upload_picture(page)
    page.locator("#story-run").click()
    wait_filled(page, "story-caption")
    wait_filled(page, "story-text")
    page.locator("#story-audio a[href*='/gradio_api/file=']").wait_for()  # the whole run finished
    wait_idle(chat_server)
    assert generated(chat_server) > before
