"""Undo and Clear pressed while a reply is being written, in headless Chromium: the reply never writes back."""

from __future__ import annotations

import pytest

from gates import PassGate, wait_until
from test_browser import CHROMIUM, browser, page  # noqa: F401  (fixtures)
from test_browser_saved_chats import BOT, USER

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]


@pytest.mark.parametrize("button", ["#chat-undo", "#chat-clear"])
def test_undo_or_clear_during_a_reply_leaves_the_chat_empty(page, button):
    from pipelines import registry
    from ui import chat_tab

    box = page.locator("#chat-input textarea")
    held = []  # the page's cancel request, held back: the reply goes on meanwhile, as on a busy server
    page.route("**/gradio_api/cancel", lambda route: held.append(route))
    with PassGate(registry.get_model("chat"), permits=3) as gate:  # the prompt and two tokens, then it waits
        box.fill("写到一半")
        box.press("Enter")
        page.locator(BOT).first.wait_for()
        wait_until(lambda: gate.arrived > 3, "the reply never started")
        page.locator(button).click()
        page.wait_for_function("u => document.querySelectorAll(u).length === 0", arg=USER)  # Undo/Clear shown
        wait_until(lambda: held, "the page never asked to cancel the reply")
        gate.open()  # before: the reply went on writing into the chat it was started from
        wait_until(lambda: not chat_tab._writing, "the reply never ended")
    held[0].continue_()
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled")
    assert page.locator(USER).count() == 0 and page.locator(BOT).count() == 0
    assert box.input_value() == ("写到一半" if button == "#chat-undo" else "")
