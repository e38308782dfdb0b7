"""A crowd on the app: each model group waits in its own bounded line; a full line refuses at once, in both
languages; the app keeps answering other visitors; a visitor who leaves costs nobody else their answer.

Timing is controlled by gates (a task function held until the test opens it), never by sleeps.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable

import pytest

from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import Status

import pipelines
from ui import admission

from gates import DEADLINE, wait_until

class Gate:
    """Wraps a task function: calls wait at the gate until the test opens it; counts who arrived."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.opened = threading.Event()
        self.arrived = 0
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.arrived += 1
        if not self.opened.wait(DEADLINE):
            raise RuntimeError("the test never opened the gate")
        return self.fn(*args, **kwargs)


@pytest.fixture
def crowded(app_module, monkeypatch):
    """Start a second ModelDeck with short lines; returns a function taking the line lengths."""
    launched = []

    def start(**lengths: str) -> tuple[str, Any]:
        for name, value in lengths.items():
            monkeypatch.setenv(name, value)
        demo = app_module.build_demo()
        app_module.configure_queue(demo)
        settings = {**app_module.launch_settings(), "server_name": "127.0.0.1", "server_port": None}
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **settings)
        launched.append(demo)
        return url, demo

    yield start
    for demo in launched:
        demo.close()


def gate(monkeypatch, name: str) -> Gate:
    """Hold every call of ``pipelines.<name>`` (as the endpoints call it) until the test opens the gate."""
    held = Gate(getattr(pipelines, name))
    monkeypatch.setattr(pipelines, name, held)
    return held


def visitor(url: str) -> Client:
    return Client(url, verbose=False)


def in_line(job: Any) -> bool:
    return job.status().code == Status.IN_QUEUE


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_a_burst_beyond_the_line_gets_a_bilingual_refusal_at_once(crowded, monkeypatch):
    url, _ = crowded(MODELDECK_QUEUE_CLASSIFY="2")
    held = gate(monkeypatch, "classify_text")
    try:
        running = visitor(url).submit("第一位", None, api_name="/classify")
        wait_until(lambda: held.arrived == 1, "the first classification to start")
        waiting = [visitor(url).submit(f"排队 {i}", None, api_name="/classify") for i in range(2)]
        wait_until(lambda: all(in_line(job) for job in waiting), "two classifications in line")
        assert waiting[-1].status().rank == 1  # gradio tells the client its place
        turned_away = [visitor(url).submit(f"多余 {i}", None, api_name="/classify") for i in range(3)]
        for job in turned_away:  # answered while the gate is still closed: nobody waited for them
            with pytest.raises(AppError) as refused:
                job.result(timeout=DEADLINE)
            message = str(refused.value)
            assert has_chinese(message) and message.index("排队已满") < message.index("The line for classification")
            assert "2 requests are waiting" in message and "try again" in message
    finally:
        held.opened.set()
    assert all(set(job.result(timeout=DEADLINE)) == {"正面 positive", "负面 negative"}
               for job in [running, *waiting])
    assert held.arrived == 3  # the refused requests never reached the model


def test_the_total_bound_refuses_in_both_languages_too(crowded, monkeypatch):
    url, demo = crowded(MODELDECK_QUEUE_CLASSIFY="50", MODELDECK_QUEUE_SIZE="1", MODELDECK_QUEUE_POLL_MS="30")
    queue = demo._queue
    # Nobody waiting: the queue looks for work every MODELDECK_QUEUE_POLL_MS, not gradio's 1 ms (10 % of a core).
    assert queue.sleep_when_free == 0.03 and queue.progress_update_sleep_when_free == admission.PROGRESS_EVERY_S
    held = gate(monkeypatch, "classify_text")
    try:
        running = visitor(url).submit("一", None, api_name="/classify")
        wait_until(lambda: held.arrived == 1, "the first classification to start")
        waiting = visitor(url).submit("二", None, api_name="/classify")
        wait_until(lambda: in_line(waiting), "one classification in line")
        assert queue.sleep_when_free == admission.BUSY_POLL_S  # one waits for a free slot: as often as gradio does
        with pytest.raises(AppError) as refused:
            visitor(url).predict("三", None, api_name="/classify")
        assert has_chinese(str(refused.value)) and "The Space is very busy: 1 request is waiting" in str(refused.value)
    finally:
        held.opened.set()
    assert running.result(timeout=DEADLINE) and waiting.result(timeout=DEADLINE)
    assert queue.sleep_when_free == 0.03  # nobody waiting again


def test_a_crowd_of_chats_leaves_the_app_responsive_to_a_new_visitor(crowded, monkeypatch):
    url, _ = crowded(MODELDECK_QUEUE_CHAT="2")
    held = gate(monkeypatch, "chat")
    running_at_once = 4  # MODELDECK_MAX_BATCH
    try:
        chats = [visitor(url).submit(f"你好 {i}", [], "", 0.7, 0.9, 8, api_name="/chat")
                 for i in range(running_at_once)]
        wait_until(lambda: held.arrived == running_at_once, "four chats to start")
        chats += [visitor(url).submit(f"排队 {i}", [], "", 0.7, 0.9, 8, api_name="/chat") for i in range(2)]
        wait_until(lambda: all(in_line(job) for job in chats[running_at_once:]), "two chats in line")
        for i in range(3):
            with pytest.raises(AppError) as refused:
                visitor(url).predict(f"多余 {i}", [], "", 0.7, 0.9, 8, api_name="/chat")
            assert "chat and stories" in str(refused.value) and has_chinese(str(refused.value))
        # A new visitor meanwhile: the page loads and a classification answers (its own line is empty).
        with urllib.request.urlopen(url, timeout=DEADLINE) as page:
            assert page.status == 200 and "ModelDeck" in page.read().decode()
        newcomer = visitor(url).predict("这家店很好", None, api_name="/classify")
        assert set(newcomer) == {"正面 positive", "负面 negative"}
        assert not any(job.done() for job in chats)  # the crowd was still there while the newcomer was served
    finally:
        held.opened.set()
    replies = [job.result(timeout=DEADLINE) for job in chats]
    assert len(replies) == 6 and all(isinstance(r, str) for r in replies)


LEAVER = """
import sys, time
from gradio_client import Client
from gradio_client.utils import Status
job = Client(sys.argv[1], verbose=False).submit("我先走了", None, api_name="/classify")
while job.status().code != Status.IN_QUEUE:
    time.sleep(0.02)
print("in line", flush=True)
job.result()
"""


def test_a_visitor_who_leaves_costs_the_others_nothing(crowded, monkeypatch):
    url, demo = crowded(MODELDECK_QUEUE_CLASSIFY="2")
    held = gate(monkeypatch, "classify_text")
    line = demo._queue.event_queue_per_concurrency_id
    leaver = None
    try:
        running = visitor(url).submit("一", None, api_name="/classify")
        wait_until(lambda: held.arrived == 1, "the first classification to start")
        leaver = subprocess.Popen([sys.executable, "-c", LEAVER, url], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ})
        assert leaver.stdout.readline().strip() == "in line"
        behind = visitor(url).submit("二", None, api_name="/classify")
        wait_until(lambda: in_line(behind), "a visitor behind the one who leaves")
        leaver.kill()  # the browser tab closes: its connection drops without a word
        leaver.wait(timeout=DEADLINE)
        wait_until(lambda: len(line["classifier"].queue) == 1, "the server to notice the visitor left")
        newcomer = visitor(url).submit("三", None, api_name="/classify")  # the freed place is given again
        wait_until(lambda: in_line(newcomer), "the newcomer in line")
    finally:
        held.opened.set()
        if leaver is not None and leaver.poll() is None:
            leaver.kill()
    for job in (running, behind, newcomer):
        assert set(job.result(timeout=DEADLINE)) == {"正面 positive", "负面 negative"}
    assert held.arrived == 3  # the leaver's request was never computed


def test_line_lengths_and_waits_follow_the_settings(monkeypatch):
    monkeypatch.setenv("MODELDECK_QUEUE_CHAT", "7")
    monkeypatch.delenv("MODELDECK_QUEUE_CLASSIFY", raising=False)
    lengths = admission.line_lengths()
    assert lengths["llm"] == 7 and lengths["classifier"] == 200
    assert lengths["classifier"] > lengths["llm"]  # fast tasks may queue far more than long generations
    assert admission.wait_text(0.3) == ("约 5 秒", "about 5 s")
    assert admission.wait_text(41) == ("约 45 秒", "about 45 s")
    assert admission.wait_text(200) == ("约 4 分钟", "about 4 min")
    error = admission.busy_error("speech", 12, 30)
    assert isinstance(error, pipelines.BusyError) and error.zh.startswith("「语音合成」") and "12 requests" in error.en


@pytest.mark.browser
def test_the_page_shows_the_place_in_line_and_a_full_line_in_both_languages(crowded, monkeypatch):
    from test_browser import CHROMIUM, FLAGS, SHOTS

    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    url, _ = crowded(MODELDECK_QUEUE_CLASSIFY="1")
    held = gate(monkeypatch, "classify_text")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            def classify(text: str) -> Any:
                page = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900}).new_page()
                page.set_default_timeout(DEADLINE * 1000)
                page.goto(url)
                page.get_by_role("tab", name="🏷️ 文本分类").click()
                page.locator("#classify-text textarea").fill(text)
                page.locator("#classify-run").click()
                return page

            classify("第一位访客")
            wait_until(lambda: held.arrived == 1, "the first classification to start")
            second = classify("第二位访客")
            status = second.locator("#classify-labels").get_by_text("queue: 1/1")
            status.wait_for()  # gradio's own display: place in line | seconds waited/expected wait
            assert re.fullmatch(r"queue: 1/1 \| [\d.]+/[\d.]+s", status.inner_text().strip()), status.inner_text()
            SHOTS.mkdir(parents=True, exist_ok=True)
            second.screenshot(path=str(SHOTS / "queue.png"))
            third = classify("第三位访客")
            third.get_by_text("「文本分类」的排队已满").wait_for()
            assert third.get_by_text("The line for classification is full").count() == 1
            third.screenshot(path=str(SHOTS / "queue-full.png"))
            held.opened.set()
            second.locator("#classify-labels").get_by_text("正面 positive").first.wait_for()
        finally:
            held.opened.set()
            browser.close()
