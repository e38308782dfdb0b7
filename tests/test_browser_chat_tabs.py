"""Kept chats with two tabs of one browser open at once (one localStorage), and their times in the browser's
time zone, in headless Chromium."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gates import wait_until
from test_browser import CHROMIUM, browser  # noqa: F401  (fixture)
from test_browser_saved_chats import USER, send, texts, use_short_replies

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]

ZONE = "Asia/Shanghai"


@pytest.fixture
def context(browser, url):
    """A browser context in China's time zone; its pages share one localStorage, like two tabs."""
    context = browser.new_context(locale="zh-CN", timezone_id=ZONE, viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def tab(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.get_by_text("小模型游乐场").first.wait_for(timeout=60_000)
    use_short_replies(page)
    return page


def listed(page) -> list[str]:
    """The Past chats list's entries, once the page shows it (left open)."""
    page.locator("#chat-saved input").click()
    page.get_by_role("option").first.wait_for()
    names = [t.strip().split("\n")[-1] for t in page.get_by_role("option").all_inner_texts()]  # without the ✓
    return names


def test_two_tabs_keep_each_others_chats_and_a_deletion_stays(context, url):
    first, second = tab(context, url), tab(context, url)  # both open before either keeps a chat
    send(first, "甲对话")
    send(second, "乙对话")  # before: the second tab wrote its own copy back whole, without 甲
    first.reload()
    first.locator(USER).first.wait_for()
    assert sorted(name.split(" · ")[0] for name in listed(first)) == ["乙对话", "甲对话"]
    first.get_by_role("option", name="甲对话").click()
    first.locator("#chat-delete").click()  # deleted in the first tab ...
    first.wait_for_function("() => !document.querySelector('#chat-saved input').value.startsWith('甲')")
    send(second, "乙继续", title="乙对话")  # ... and the second tab, whose copy still had it, keeps a chat again
    second.reload()
    second.locator(USER, has_text="乙继续").wait_for()
    assert [name.split(" · ")[0] for name in listed(second)] == ["乙对话"]  # the deleted chat stays deleted
    assert texts(second, USER) == ["乙对话", "乙继续"]


def test_a_chat_kept_or_deleted_in_one_tab_changes_the_other_tabs_list_at_once(context, url):
    first, second = tab(context, url), tab(context, url)
    second.locator("#chat-saved input").click()  # the second tab's Past chats list is open (and empty)
    send(first, "甲对话")  # kept in the first tab ...
    second.get_by_role("option", name=re.compile("^甲对话")).wait_for(timeout=30_000)  # ... listed in the second
    send(second, "乙对话")                                                              # at once, no reload
    first.locator("#chat-saved input").click()
    first.get_by_role("option", name=re.compile("^乙对话")).wait_for(timeout=30_000)  # and the other way
    first.get_by_role("option", name=re.compile("^甲对话")).click()
    first.locator("#chat-delete").click()  # deleted in the first tab ...
    first.wait_for_function("() => !document.querySelector('#chat-saved input').value.startsWith('甲')")

    def reopened() -> list[str]:  # (an open list does not redraw itself: it is closed and opened again)
        second.keyboard.press("Escape")
        second.locator("#chat-saved input").click()
        second.get_by_role("option").first.wait_for()
        return [name.strip().split("\n")[-1].split(" · ")[0] for name in second.get_by_role("option").all_inner_texts()]
    wait_until(lambda: reopened() == ["乙对话"], lambda: f"the other tab still lists {reopened()}")  # ... gone there


def test_past_chats_show_the_time_in_the_browsers_time_zone(context, url, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")  # the server's zone is neither UTC nor the browser's
    time.tzset()
    try:
        page = tab(context, url)
        send(page, "几点了")
        kept = datetime.now(ZoneInfo(ZONE))
        (name,) = listed(page)
    finally:
        monkeypatch.undo()
        time.tzset()
    shown = re.search(r"(\d\d)-(\d\d) (\d\d):(\d\d)$", name)
    assert shown, name
    month, day, hour, minute = map(int, shown.groups())
    at = kept.replace(month=month, day=day, hour=hour, minute=minute, second=0, microsecond=0)
    assert abs(at - kept) <= timedelta(minutes=2), f"{name} is not {kept:%m-%d %H:%M} in {ZONE}"
