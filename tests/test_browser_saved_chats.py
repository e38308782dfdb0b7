"""The chat tab's lasting work, used in headless Chromium the way a person would: edit an earlier message,
flip through regenerated answers, reload and find the chat again, reopen and delete past chats, export and
import."""

from __future__ import annotations

import json

import pytest

from gates import wait_until
from pipelines.decoding import Usage
from test_browser import CHROMIUM, browser, page, shot  # noqa: F401  (fixtures)
from ui import chat_saved, chat_tab

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]

USER = "#chatbot .message-row.user-row"
BOT = "#chatbot .message-row.bot-row"


def texts(page, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def send(page, message: str, title: str | None = None) -> None:
    """Send a message, wait for its finished reply and for the chat to be saved with it (listed by ``title``)."""
    replies = page.locator(BOT).count() + 1
    page.locator("#chat-input textarea").fill(message)
    page.locator("#chat-input textarea").press("Enter")
    page.wait_for_function("([bot, n]) => document.querySelectorAll(bot).length === n && "
                           "!document.querySelector('#chat-status .generating')", arg=[BOT, replies])
    wait_saved(page, title or message)
    # The question is kept as it is sent, the reply by a save after the reply's end: a reload in between (a
    # loaded machine) brought the question back without its reply.
    wait_until(lambda: kept_replies(page) >= replies, "the reply kept")


def kept_replies(page) -> int:
    """The answers of the chat the browser keeps as the open one, decrypted."""
    from ui.browser_store import decrypt

    stored = page.evaluate("() => localStorage.getItem('modeldeck-chats')")
    store = decrypt(stored, chat_saved.STORE_SECRET) if stored else {}
    current = [c for c in store.get("chats", []) if c.get("id") == store.get("current")]
    return sum(m.get("role") == "assistant" for c in current for m in c.get("messages", []))


def wait_saved(page, title: str) -> None:
    page.wait_for_function("t => document.querySelector('#chat-saved input')?.value.startsWith(t)", arg=title)


@pytest.fixture(autouse=True)
def short_replies(page):
    use_short_replies(page)


def use_short_replies(page) -> None:
    """The chat tab with short replies (16 tokens) and patient waits: the machine running the tests may be busy."""
    page.set_default_timeout(180_000)
    page.get_by_text("⚙️ 生成参数").click()
    box = page.locator("#chat-max-new input[type=number]")
    box.fill("16")
    box.press("Enter")
    page.get_by_text("⚙️ 生成参数").click()


def import_file(page, path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator("#chat-import").click()
    chooser.value.set_files(str(path))


def test_edit_an_earlier_message_and_the_answer_is_regenerated_from_there(page):
    send(page, "第一个问题")
    send(page, "第二个问题", title="第一个问题")
    assert texts(page, USER) == ["第一个问题", "第二个问题"]
    page.locator(USER).first.hover()
    page.locator("#chatbot button[aria-label='编辑']").first.click()
    page.locator("#chatbot textarea.edit-textarea").fill("改过的问题")
    page.locator("#chatbot button[aria-label='发送']").click()
    wait_saved(page, "改过的问题")  # saved as soon as it is sent
    page.wait_for_function("b => document.querySelectorAll(b).length === 1 && "
                           "!document.querySelector('#chat-send').disabled", arg=BOT)  # and answered
    assert texts(page, USER) == ["改过的问题"]  # the later turns are gone, the edit is the question now
    assert len(texts(page, BOT)) == 1 and texts(page, BOT)[0]
    page.locator("#chat-status").get_by_text("total_tokens").wait_for()


def folded(page, selector: str) -> list[str]:
    """The texts as the page shows them, whitespace folded."""
    return [" ".join(t.split()) for t in texts(page, selector)]


class Written:
    """A reply as ``adapters.chat`` streams it, from given text: what a model with odd output would write."""

    def __init__(self, text: str) -> None:
        self.text, self.notices, self.pieces = text, [], []
        self.usage = Usage(prompt_tokens=3, completion_tokens=len(text), finish_reason="eos")

    def __iter__(self):
        for end in range(1, len(self.text) + 1):
            yield self.text[:end]


def test_a_reply_looks_the_same_while_it_streams_once_kept_and_after_a_reload(page, monkeypatch):
    """Control characters (a random model writes some) are not kept in a chat, and a backslash before one is a
    plain backslash in Markdown but an escape once it is gone: the chat shows a reply as it keeps it."""
    monkeypatch.setattr(chat_tab.adapters, "chat", lambda *args, **kwargs: Written("回答 a\\\x01# b\x07c \\\u200b*d*"))
    send(page, "奇怪的字符")
    streamed = folded(page, BOT)
    assert streamed == ["回答 a# bc *d*"]  # escapes as Markdown reads them without the control characters
    page.reload()
    page.locator(BOT).first.wait_for()
    assert folded(page, BOT) == streamed


def stored(page) -> str:
    return page.evaluate("() => localStorage.getItem('modeldeck-chats') || ''")


def regenerate(page) -> None:
    """Press Regenerate and wait until the new answer is saved."""
    before = stored(page)
    page.locator("#chat-regenerate").click()
    page.wait_for_function("old => (localStorage.getItem('modeldeck-chats') || '') !== old", arg=before)


def with_text(page) -> None:
    """Regenerate the last answer until it has text: a random tiny model sometimes ends its answer at once
    (MODELDECK_SEED must be unset, or every try gives the same answer)."""
    for _ in range(8):
        if folded(page, BOT)[-1]:
            return
        regenerate(page)
    raise AssertionError("eight answers in a row were empty")


def test_regenerated_answers_are_kept_and_can_be_flipped_through(page, monkeypatch):
    monkeypatch.delenv("MODELDECK_SEED")  # the test app fixes the seed; a visitor's regenerated answers vary
    version = page.locator("#chat-version")
    send(page, "给我两个版本")
    with_text(page)
    first = folded(page, BOT)
    assert not version.is_visible()  # one answer: nothing to flip
    regenerate(page)
    with_text(page)
    version.get_by_text("2/2").wait_for()  # the new answer is shown, the first one kept
    second = folded(page, BOT)
    assert len(second) == 1 and second != first
    before = stored(page)
    page.locator("#chat-version-prev").click()
    version.get_by_text("1/2").wait_for()
    assert folded(page, BOT) == first and texts(page, USER) == ["给我两个版本"]
    page.wait_for_function("old => (localStorage.getItem('modeldeck-chats') || '') !== old", arg=before)
    shot(page, "chat_versions")
    page.reload()
    version.get_by_text("1/2").wait_for()  # the chosen version is the one kept
    assert folded(page, BOT) == first
    page.locator("#chat-version-next").click()
    version.get_by_text("2/2").wait_for()
    assert folded(page, BOT) == second
    send(page, "继续", title="给我两个版本")  # the chat goes on from the version shown
    assert folded(page, BOT)[0] == second[0] and not version.is_visible()


def test_a_reload_keeps_the_chat_and_past_chats_can_be_reopened_and_deleted(page):
    send(page, "记住这段对话")
    page.reload()
    page.locator(USER, has_text="记住这段对话").wait_for()  # the open chat is back after the reload
    assert len(texts(page, BOT)) == 1
    page.locator("#chat-clear").click()
    page.wait_for_function(f"document.querySelectorAll('{USER}').length === 0")
    send(page, "另一个话题")
    page.reload()
    page.locator(USER, has_text="另一个话题").wait_for()
    page.locator("#chat-saved input").click()
    page.get_by_role("option", name="记住这段对话").wait_for()
    assert page.get_by_role("option").count() == 2  # both chats are listed
    page.get_by_role("option", name="记住这段对话").click()
    page.locator("#chat-open").click()
    page.locator(USER, has_text="记住这段对话").wait_for()
    assert texts(page, USER) == ["记住这段对话"]
    shot(page, "chat_saved")
    page.locator("#chat-delete").click()  # delete the open one: the view clears, the list keeps the other
    page.wait_for_function(f"document.querySelectorAll('{USER}').length === 0")
    page.reload()
    page.locator("#chat-saved input").click()
    page.get_by_role("option", name="另一个话题").wait_for()
    assert page.get_by_role("option").count() == 1  # the deleted chat is gone for good


def test_undoing_the_only_exchange_is_not_undone_by_a_reload(page):
    send(page, "撤销这一问")
    page.locator("#chat-undo").click()
    page.wait_for_function(f"document.querySelectorAll('{USER}').length === 0")
    # No chat open any more (the list's choice empties): before, the kept chat stayed the one a reload opens.
    page.wait_for_function("() => document.querySelector('#chat-saved input')?.value === ''")
    page.reload()
    page.locator("#chat-saved input").click()
    page.get_by_role("option", name="撤销这一问").wait_for()  # listed (the load's restore has run), as kept
    assert page.locator(USER).count() == 0  # before, the reload brought the undone exchange back
    page.get_by_role("option", name="撤销这一问").click()
    page.locator("#chat-open").click()  # and it can still be opened: nothing was lost
    page.locator(USER, has_text="撤销这一问").wait_for()


def pick_model(page, name: str) -> None:
    page.locator("#chat-model input").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_function("n => document.querySelector('#chat-model input')?.value === n", arg=name)


def test_the_chosen_chat_model_answers_and_is_kept_with_the_chat(page, monkeypatch):
    import pipelines
    from pipelines import registry

    asked = []
    real = pipelines.chat
    monkeypatch.setattr(pipelines, "chat", lambda *a, **kw: asked.append(kw.get("model")) or real(*a, **kw))
    assert page.locator("#chat-model input").input_value() == "Tiny Qwen2"  # the first one by default
    pick_model(page, "Tiny Qwen2 B")
    send(page, "换个模型")
    assert asked == ["Tiny Qwen2 B"]
    page.locator("#chat-export-json").click()
    link = page.locator("#chat-exported a[href*='/gradio_api/file=']")
    link.wait_for()
    assert json.loads(page.request.get(link.get_attribute("href")).body())["model"] == registry.resolve(
        "chat", "Tiny Qwen2 B").source
    page.reload()  # the chat comes back with the model that wrote it
    page.locator(USER, has_text="换个模型").wait_for()
    page.wait_for_function("() => document.querySelector('#chat-model input')?.value === 'Tiny Qwen2 B'")
    page.locator("#chat-clear").click()
    page.wait_for_function(f"document.querySelectorAll('{USER}').length === 0")
    pick_model(page, "Tiny Qwen2")
    page.locator("#chat-saved input").click()
    page.get_by_role("option", name="换个模型").click()
    page.locator("#chat-open").click()  # reopening it picks its model again
    page.locator(USER, has_text="换个模型").wait_for()
    page.wait_for_function("() => document.querySelector('#chat-model input')?.value === 'Tiny Qwen2 B'")
    page.locator("#chat-regenerate").click()  # and a regenerated answer comes from it
    wait_until(lambda: len(asked) == 2, "the regenerated answer")
    assert asked == ["Tiny Qwen2 B", "Tiny Qwen2 B"]


def test_a_failed_reply_leaves_the_chat_usable_and_its_question_kept(page, monkeypatch):
    """gradio 6.31's page runs ``.then`` steps only after a success: a reply that failed (a chat model that cannot
    load) left Send greyed out and Regenerate refusing until a reload, and the question was not kept."""
    import pipelines
    from pipelines import ModelUnavailableError

    real = pipelines.chat

    def unavailable(*args, **kwargs):
        raise ModelUnavailableError("Tiny Qwen2 B", "MODELDECK_CHAT_MODEL", "offline")

    monkeypatch.setattr(pipelines, "chat", unavailable)
    page.locator("#chat-input textarea").fill("会失败的问题")
    page.locator("#chat-input textarea").press("Enter")
    page.locator(".toast-body", has_text="MODELDECK_CHAT_MODEL").wait_for()
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled", timeout=60_000)  # usable again
    wait_saved(page, "会失败的问题")  # and the question is kept
    monkeypatch.setattr(pipelines, "chat", real)
    page.reload()
    page.locator(USER, has_text="会失败的问题").wait_for()
    page.locator("#chat-regenerate").click()  # the model is back: the kept question gets its answer
    page.wait_for_function("n => document.querySelectorAll(n).length === 1", arg=BOT)


def test_export_then_import_gives_the_same_chat(page, tmp_path, monkeypatch):
    monkeypatch.delenv("MODELDECK_SEED")  # with the test app's fixed seed, this question's answer may be empty
    send(page, "导出我")
    with_text(page)
    shown_max_new = int(page.locator("#chat-max-new input[type=number]").input_value())
    page.locator("#chat-export-json").click()
    link = page.locator("#chat-exported a[href*='/gradio_api/file=']")
    link.wait_for()
    exported = json.loads(page.request.get(link.get_attribute("href")).body())
    assert [m["role"] for m in exported["messages"]] == ["system", "user", "assistant"]
    assert exported["messages"][1]["content"] == "导出我" and exported["settings"]["max_new_tokens"] == shown_max_new
    assert exported["model"]
    page.locator("#chat-export-md").click()
    page.wait_for_function("document.querySelector('#chat-exported a')?.href.includes('.md')")
    markdown = page.request.get(page.locator("#chat-exported a").first.get_attribute("href")).text()
    assert "### 🧑 用户 User" in markdown and "导出我" in markdown

    exported["messages"][1]["content"] = "  导入的问题\n    缩进的一行\n"  # whitespace around it and inside it
    exported["messages"][2]["content"] = " " + exported["messages"][2]["content"] + "\n\n"
    good = tmp_path / "chat.json"
    good.write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")
    page.locator("#chat-clear").click()
    page.wait_for_function(f"document.querySelectorAll('{USER}').length === 0")
    import_file(page, good)
    page.locator(USER, has_text="导入的问题").wait_for()
    assert len(texts(page, BOT)) == 1
    wait_saved(page, "导入的问题")
    page.locator("#chat-export-json").click()  # the page renders Markdown, so compare what it exports again
    page.wait_for_function("document.querySelector('#chat-exported a')?.href.includes('.json')")
    again = json.loads(page.request.get(page.locator("#chat-exported a").first.get_attribute("href")).body())
    assert again["messages"] == exported["messages"] and again["settings"] == exported["settings"]  # to the space


def test_a_hostile_import_shows_why_and_changes_nothing(page, tmp_path):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.locator("#chat-open").click()  # nothing chosen yet: the page says what to do
    page.locator(".toast-body", has_text="Choose a conversation in the list first").wait_for()
    send(page, "留着我")
    hostile = tmp_path / "evil.json"
    hostile.write_text(json.dumps({"messages": [{"role": "user", "content": "<img src=x onerror=alert(1)>"},
                                                {"role": "tool", "content": "<img src=x onerror=alert(2)>"}]}))
    import_file(page, hostile)
    toast = page.locator(".toast-body", has_text="only system, user and assistant")
    toast.wait_for()  # the page says why, in both languages
    assert "不受支持" in toast.inner_text() and "Nothing was changed" in toast.inner_text()
    assert texts(page, USER) == ["留着我"]  # the open chat is untouched
    page.screenshot(path="/tmp/s213_hostile.png")
    page.locator("#chat-saved input").click()
    page.get_by_role("option", name="留着我").wait_for()
    assert page.get_by_role("option").count() == 1  # nothing was added to the list
    page.reload()
    page.locator(USER, has_text="留着我").wait_for()
    assert texts(page, USER) == ["留着我"] and not dialogs


def test_a_question_is_kept_through_a_reload_mid_reply_and_a_too_long_one_is_kept_cut(page):
    from gates import PassGate, wait_until
    from pipelines import registry
    from pipelines.inputs import max_input_chars

    box = page.locator("#chat-input textarea")
    with PassGate(registry.get_model("chat"), permits=3) as gate:  # the prompt and two tokens, then the model waits
        box.fill("刷新前的问题")
        box.press("Enter")
        wait_until(lambda: gate.arrived > 3, "the reply is being written")
        page.reload()
        # before, a chat was kept only once its reply had ended: the question was gone after the reload
        page.locator(USER, has_text="刷新前的问题").wait_for(timeout=30_000)
        gate.open()
    page.locator("#chat-regenerate").click()  # it is answered now
    page.locator("#chat-status").get_by_text("total_tokens").wait_for()
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled")
    too_long = "长" * (max_input_chars() + 30)
    send(page, too_long, title="刷新前的问题")
    page.locator(".toast-body", has_text="only its first").wait_for()
    page.reload()  # before, the chat was not kept at all (a message over the cap made the saved chat unreadable)
    page.locator(USER).nth(1).wait_for(timeout=30_000)
    assert texts(page, USER) == ["刷新前的问题", "长" * max_input_chars()]  # what the model read, as it read it
