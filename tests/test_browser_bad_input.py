"""Bad input and failures in headless Chromium: the page says why, and the work already on it stays shown.

Gradio veils every output of an event that raised ``gr.Error`` with its red "错误 / Error" badge, hiding what
the output showed until the visitor dismisses it. So the tabs check their inputs in a first step without
outputs (``ui.common.checked``) and the chat marks a failed reply on its status line only.
"""

from __future__ import annotations

import pytest

from test_browser import CHROMIUM, ROOT, browser, open_tab, page, upload_picture, wait_filled  # noqa: F401  (fixtures)
from test_browser_saved_chats import BOT, USER, send, texts, use_short_replies, wait_saved
from ui import chat_tab

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]


def veiled(page, elem_id: str) -> bool:
    """Whether gradio's error badge covers the component ``#elem_id`` within a second (it may follow the toast)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("id => [...document.querySelectorAll(`#${id} .error`)].some(e => e.offsetParent)",
                               arg=elem_id, timeout=1_000)
    except PlaywrightTimeout:
        return False
    return True


def told(page, words: str) -> None:
    """Wait for the toast that says ``words``, then close every toast."""
    page.locator(".toast-body", has_text=words).first.wait_for()
    page.evaluate("() => document.querySelectorAll('.toast-close').forEach(x => x.click())")
    page.wait_for_function("() => !document.querySelector('.toast-body')")  # gone: the next toast is a new one


def run_once(page, tab: str, box: str, text: str, button: str, ready: str) -> None:
    """Open ``tab``, type ``text`` into ``box``, press ``button`` and wait until ``ready`` (text) shows."""
    open_tab(page, tab)
    page.locator(f"{box} textarea").fill(text)
    page.locator(button).click()
    page.get_by_text(ready).first.wait_for()


def emptied(page, box: str, button: str, words: str) -> None:
    """Empty ``box``, press ``button`` (``Enter``: the key, in the box) and wait for the toast saying ``words``."""
    page.locator(f"{box} textarea").fill("")
    if button == "Enter":
        page.locator(f"{box} textarea").press("Enter")
    else:
        page.locator(button).click()
    told(page, words)


@pytest.fixture
def short_chat(page):
    use_short_replies(page)
    return page


def test_an_empty_message_or_edit_leaves_the_conversation_shown(short_chat):
    page = short_chat
    send(page, "你好")
    answer = texts(page, BOT)
    page.locator("#chat-send").click()  # nothing typed
    told(page, "Enter a message first")
    assert not veiled(page, "chatbot") and texts(page, USER) == ["你好"] and texts(page, BOT) == answer
    page.locator(USER).first.hover()
    page.locator("#chatbot button[aria-label='编辑']").first.click()
    page.locator("#chatbot textarea.edit-textarea").fill("   ")  # the message emptied
    page.locator("#chatbot button[aria-label='发送']").click()
    told(page, "its earlier text is back")
    page.wait_for_function("u => document.querySelector(u)?.innerText.trim() === '你好'", arg=USER, timeout=30_000)
    page.locator("#chat-status").get_by_text("total_tokens").wait_for()  # the last reply's usage stays too
    assert not veiled(page, "chatbot") and texts(page, BOT) == answer
    send(page, "再见", title="你好")  # once the refused edit's events are done, the conversation goes on from where it was
    assert texts(page, USER) == ["你好", "再见"] and texts(page, BOT)[0] == answer[0]


def test_a_failed_reply_marks_the_status_line_not_the_chat(short_chat, monkeypatch):
    page = short_chat
    send(page, "你好")

    def fails(*args, **kwargs):
        raise RuntimeError("the model went away")

    monkeypatch.setattr(chat_tab.adapters, "chat", fails)  # the app runs in this process
    page.locator("#chat-input textarea").fill("还在吗？")
    page.locator("#chat-input textarea").press("Enter")
    told(page, "unexpected")
    assert texts(page, USER) == ["你好", "还在吗？"] and len(texts(page, BOT)) == 1  # nothing lost, nothing hidden
    assert not veiled(page, "chatbot")
    # before, Send stayed greyed out and every message said a reply was still being written, until a reload
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled", timeout=10_000)


def test_text_generation_without_a_prompt_or_with_a_bad_seed_keeps_the_output(page):
    run_once(page, "✍️ 文本生成", "#textgen-prompt", "你好", "#textgen-run", "total_tokens")
    output = page.locator("#textgen-output textarea").input_value()
    emptied(page, "#textgen-prompt", "#textgen-run", "Enter the prompt first")
    page.locator("#textgen-prompt textarea").fill("你好")
    page.locator("#textgen-seed textarea, #textgen-seed input").first.fill("abc")
    page.locator("#textgen-run").click()
    told(page, "The seed must be a whole number")
    assert page.locator("#textgen-output textarea").input_value() == output
    assert not veiled(page, "textgen-output") and "total_tokens" in page.locator("#textgen-status").inner_text()


def test_rewriting_without_a_caption_keeps_the_story(page):
    open_tab(page, "🖼️ 看图讲故事")
    page.locator("#story-caption-only").click()  # no picture yet
    told(page, "Upload a picture first")
    upload_picture(page)
    page.locator("#story-caption-only").click()
    wait_filled(page, "story-caption")
    page.locator("#story-rewrite").click()
    wait_filled(page, "story-text")
    page.wait_for_function("() => !document.querySelector('#story-status .generating')")
    story = page.locator("#story-text textarea").input_value()
    page.locator("#story-caption-en textarea").fill("")  # with one caption left the story is written from it
    emptied(page, "#story-caption", "#story-rewrite", "Enter the caption first")
    assert page.locator("#story-text textarea").input_value() == story
    assert not any(veiled(page, elem) for elem in ("story-text", "story-caption", "story-audio"))
    emptied(page, "#story-text", "#story-revoice", "Enter the text to read first")
    assert not veiled(page, "story-audio")


def test_classifying_or_sampling_nothing_keeps_the_last_result(page):
    run_once(page, "🏷️ 文本分类", "#classify-text", "这家店的服务太好了", "#classify-run", "正面 positive")
    labels = page.locator("#classify-labels").inner_text()
    emptied(page, "#classify-text", "Enter", "Enter the text first")
    assert page.locator("#classify-labels").inner_text() == labels and not veiled(page, "classify-labels")
    run_once(page, "🔍 下一个词 · Next token", "#nt-prompt", "今天天气很好", "#nt-run", "熵 entropy")
    page.locator("#nt-chart .nt-after").first.wait_for()
    chart = page.locator("#nt-chart").inner_text()
    emptied(page, "#nt-prompt", "#nt-sample", "Enter the prompt first")
    assert page.locator("#nt-chart").inner_text() == chart and not veiled(page, "nt-chart")


def test_a_file_that_is_not_a_picture_is_named_when_uploaded(page, tmp_path):
    fake = tmp_path / "cat.jpg"
    fake.write_text("not a picture")
    open_tab(page, "🖼️ 看图讲故事")
    page.locator("#story-image input[type=file]").set_input_files(str(fake))
    told(page, "cannot be read as a picture")  # at once, before Run is pressed
    page.locator("#story-run").click()
    told(page, "cannot be read as a picture")  # and again if Run is pressed anyway
    assert not any(veiled(page, elem) for elem in ("story-text", "story-caption", "story-audio"))


def test_a_picture_over_the_size_limit_is_named_and_nothing_is_veiled(page, monkeypatch):
    upload_picture(page)
    page.locator("#story-caption-only").click()
    wait_filled(page, "story-caption")
    caption = page.locator("#story-caption textarea").input_value()
    monkeypatch.setenv("MODELDECK_MAX_IMAGE_PIXELS", "10000")  # the app runs in this process; cat.jpg is 384×255
    page.locator("#story-image input[type=file]").set_input_files(str(ROOT / "example_images" / "cat.jpg"))
    told(page, "The picture is too large")  # at once, when it is uploaded
    for button in ("#story-caption-only", "#story-run"):
        page.locator(button).click()
        told(page, "The picture is too large")  # before, from the work: a red badge over both captions and the status
        assert not any(veiled(page, elem) for elem in ("story-caption", "story-caption-en", "story-status"))
    assert page.locator("#story-caption textarea").input_value() == caption


def test_a_step_that_fails_leaves_every_button_usable(page, monkeypatch):
    from ui import story_tab

    upload_picture(page)

    def fails(*args, **kwargs):
        raise RuntimeError("the captioner went away")

    monkeypatch.setattr(story_tab.adapters, "caption", fails)  # the app runs in this process
    page.locator("#story-caption-only").click()
    told(page, "unexpected")
    monkeypatch.undo()
    page.locator("#story-caption-only").click()  # before: "the last step is still running", on every button, until a reload
    page.wait_for_function("() => document.querySelector('#story-caption textarea')?.value.length > 0", timeout=20_000)


def test_an_unreadable_file_keeps_the_last_batch_results(page, tmp_path):
    open_tab(page, "🏷️ 文本分类")
    page.locator("#classify-batch-text textarea").fill("很好\n很差")
    page.locator("#classify-batch-run").click()
    page.wait_for_function("document.querySelector('#classify-batch-table')?.innerText.includes('很差')")
    table = page.locator("#classify-batch-table").inner_text()
    upload = tmp_path / "binary.csv"
    upload.write_bytes(b"id,text\n1,\xff\xfe\xff\n")  # neither UTF-8 nor GBK
    page.locator("#classify-batch-file input[type=file]").set_input_files(str(upload))
    told(page, "encoding is not recognised")  # on upload
    page.locator("#classify-batch-run").click()
    told(page, "encoding is not recognised")  # and at Run
    assert page.locator("#classify-batch-table").inner_text() == table and not veiled(page, "classify-batch-table")


def test_a_message_sent_while_a_reply_is_written_waits_in_the_box(short_chat):
    from gates import PassGate, wait_until
    from pipelines import registry

    page = short_chat
    box = page.locator("#chat-input textarea")
    with PassGate(registry.get_model("chat"), permits=3) as gate:  # the prompt and two tokens, then the model waits
        box.fill("第一个问题")
        box.press("Enter")
        wait_until(lambda: gate.arrived > 3, "the reply is being written")
        box.fill("第二个问题")
        box.press("Enter")  # before, this message vanished: the first reply's next token overwrote the chat
        told(page, "A reply is still being written")
        assert page.locator("#chat-send").is_disabled()  # greyed out meanwhile
        page.locator("#chat-regenerate").click()
        told(page, "A reply is still being written")
        assert box.input_value() == "第二个问题" and texts(page, USER) == ["第一个问题"]
        gate.open()
        page.locator("#chat-status").get_by_text("total_tokens").wait_for()
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled")  # the reply is complete
    box.press("Enter")  # and the message in the box goes
    page.locator(BOT).nth(1).wait_for()  # its reply has started (Send was greyed out before that)
    assert texts(page, USER) == ["第一个问题", "第二个问题"] and box.input_value() == ""
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled")
    with PassGate(registry.get_model("chat"), permits=2) as gate:  # Stop ends the wait too
        send_now = gate.arrived
        box.fill("第三个问题")
        box.press("Enter")
        wait_until(lambda: gate.arrived > send_now + 2, "the third reply is being written")
        page.locator("#chat-stop").click()
        page.wait_for_function("() => !document.querySelector('#chat-status .generating')")
        gate.open()
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled")  # Stop ended the reply
    send(page, "第四个问题", title="第一个问题")
    assert texts(page, USER) == ["第一个问题", "第二个问题", "第三个问题", "第四个问题"]


def test_an_edit_made_while_a_reply_is_written_replaces_that_reply(short_chat):
    from gates import PassGate, wait_until
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from pipelines import registry

    page = short_chat
    send(page, "第一个问题")
    with PassGate(registry.get_model("chat"), permits=3) as gate:  # the prompt and two tokens, then the model waits
        page.locator("#chat-input textarea").fill("第二个问题")
        page.locator("#chat-input textarea").press("Enter")
        wait_until(lambda: gate.arrived > 3, "the second reply is being written")
        page.locator(USER).first.hover()
        page.locator("#chatbot button[aria-label='编辑']").first.click()
        page.locator("#chatbot textarea.edit-textarea").fill("改过的问题")
        page.locator("#chatbot button[aria-label='发送']").click()
        page.wait_for_function("u => [...document.querySelectorAll(u)].map(m => m.innerText.trim()).join('|') === "
                               "'改过的问题'", arg=USER)  # the edit is in (while it is sent, the old chat shows)
        held = gate.arrived
        gate.allow(1)  # the held step: then the engine reads the edited chat, and waits again
        wait_until(lambda: gate.arrived > held, "the edited chat is being answered")
        assert texts(page, USER) == ["改过的问题"]
        page.evaluate("""u => { window.oldTurnBack = false;  // whether the replaced turn shows again from now on
            new MutationObserver(() => { window.oldTurnBack ||= [...document.querySelectorAll(u)].some(
                m => m.innerText.includes('第二个问题')); }).observe(document.querySelector('#chatbot'),
                {subtree: true, childList: true, characterData: true}); }""", USER)
        with pytest.raises(PlaywrightTimeout):  # Send stays greyed out while the edit's reply is written
            page.wait_for_function("() => !document.querySelector('#chat-send').disabled", timeout=1_000)
        gate.open()
        page.locator("#chat-status").get_by_text("total_tokens").wait_for()
    wait_saved(page, "改过的问题")
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled")  # the edit's reply is complete
    # Before, both replies went on: the replaced one kept writing its turn back over the edited chat.
    assert not page.evaluate("() => window.oldTurnBack")
    assert texts(page, USER) == ["改过的问题"] and len(texts(page, BOT)) == 1
    send(page, "第三个问题", title="改过的问题")
    assert texts(page, USER) == ["改过的问题", "第三个问题"]


def test_past_chats_wait_while_a_reply_is_written(short_chat, tmp_path):
    import json

    from gates import PassGate, wait_until
    from pipelines import registry
    from test_browser_saved_chats import import_file

    page = short_chat
    send(page, "甲的问题")
    page.locator("#chat-clear").click()
    page.wait_for_function(f"document.querySelectorAll('{USER}').length === 0")
    send(page, "乙的问题")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"messages": [{"role": "user", "content": "丙的问题"},
                                              {"role": "assistant", "content": "丙的回答"}]}), encoding="utf-8")
    with PassGate(registry.get_model("chat"), permits=3) as gate:  # the prompt and two tokens, then the model waits
        page.locator("#chat-input textarea").fill("乙的第二个问题")
        page.locator("#chat-input textarea").press("Enter")
        wait_until(lambda: gate.arrived > 3, "the reply is being written")
        page.locator("#chat-saved input").click()
        page.get_by_role("option", name="甲的问题").click()
        page.locator("#chat-open").click()  # before, 乙's reply went on over 甲 and was saved as 甲
        told(page, "A reply is still being written")
        page.locator("#chat-delete").click()
        told(page, "A reply is still being written")
        import_file(page, other)
        told(page, "A reply is still being written")
        assert texts(page, USER) == ["乙的问题", "乙的第二个问题"]
        gate.open()
        page.locator("#chat-status").get_by_text("total_tokens").wait_for()
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled")  # the reply is complete
    assert texts(page, USER) == ["乙的问题", "乙的第二个问题"]
    page.locator("#chat-saved input").click()
    assert page.get_by_role("option").count() == 2  # nothing deleted, nothing imported
    page.get_by_role("option", name="甲的问题").click()
    page.locator("#chat-open").click()  # once it is written, the past chat opens, as it was kept
    page.wait_for_function(f"u => document.querySelector(u)?.innerText.trim() === '甲的问题'", arg=USER)
    assert texts(page, USER) == ["甲的问题"] and len(texts(page, BOT)) == 1
    import_file(page, other)
    page.locator(USER, has_text="丙的问题").wait_for()


def test_one_picture_story_step_at_a_time(page):
    from gates import PassGate, wait_until
    from pipelines import registry

    upload_picture(page)
    with PassGate(registry.get_model("chat"), permits=3) as gate:  # the prompt and two tokens, then the model waits
        page.locator("#story-run").click()
        wait_until(lambda: gate.arrived > 3, "the story is being written")
        # The caption shows the English one first, then the translation: wait for the page to show the latter.
        page.wait_for_function("""() => {
            const [zh, en] = ['#story-caption', '#story-caption-en'].map(id => document.querySelector(`${id} textarea`)?.value);
            return zh && en && zh !== en;
        }""")
        caption = page.locator("#story-caption textarea").input_value()
        for button in ("#story-rewrite", "#story-caption-only", "#story-revoice"):
            page.locator(button).click()  # before, each wrote over the running step's caption, story or audio
            told(page, "The last step is still running")
        assert page.locator("#story-caption textarea").input_value() == caption
        gate.open()
    page.locator("#story-audio a[href*='/gradio_api/file=']").wait_for()  # the run went on to its audio
    page.wait_for_function("() => !document.querySelector('#story-status .generating')")
    page.locator("#story-text textarea").fill("")
    page.locator("#story-rewrite").click()  # once it is over, the next step runs
    wait_filled(page, "story-text")
