"""Saved chats: exports that round-trip, imports that refuse hostile files whole, the browser store's rules."""

from __future__ import annotations

import json
import re

import pytest

from pipelines import conversations as conv
from pipelines.conversations import Conversation
from pipelines.errors import InvalidInputError

MESSAGES = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！有什么可以帮你？"},
            {"role": "user", "content": "Tell me a joke."}, {"role": "assistant", "content": "Why did…"}]


def sample() -> Conversation:
    return Conversation([dict(m) for m in MESSAGES], "Be brief. 简短回答。",
                        {"temperature": 0.3, "top_p": 0.8, "max_new_tokens": 128}, "Qwen/Qwen2.5-0.5B-Instruct")


def test_json_export_is_openai_messages_and_round_trips():
    text = conv.to_json(sample())
    doc = json.loads(text)
    assert doc["messages"][0] == {"role": "system", "content": "Be brief. 简短回答。"}
    assert doc["messages"][1:] == MESSAGES
    assert doc["model"] == "Qwen/Qwen2.5-0.5B-Instruct" and doc["settings"]["temperature"] == 0.3
    back = conv.parse_export(text.encode("utf-8"))
    assert (back.messages, back.system_prompt, back.settings, back.model) == (
        MESSAGES, "Be brief. 简短回答。", {"temperature": 0.3, "top_p": 0.8, "max_new_tokens": 128},
        "Qwen/Qwen2.5-0.5B-Instruct")


def test_an_empty_system_prompt_round_trips_and_a_file_without_one_does_not_say():
    """Importing a file without a system message emptied the System prompt box the person had typed in."""
    empty = sample()
    empty.system_prompt = ""
    doc = json.loads(conv.to_json(empty))
    assert doc["messages"] == MESSAGES and doc["system_prompt"] == ""  # no system message is sent, and it says so
    assert conv.parse_export(conv.to_json(empty).encode()).system_prompt == ""
    assert conv.parse_export(conv.to_json(sample()).encode()).system_prompt == "Be brief. 简短回答。"
    assert conv.parse_export(json.dumps(MESSAGES).encode()).system_prompt is None  # a bare list does not say
    assert conv.parse_export(json.dumps({"messages": MESSAGES}).encode()).system_prompt is None
    with_both = {"messages": [{"role": "system", "content": "edited"}, *MESSAGES], "system_prompt": "old"}
    assert conv.parse_export(json.dumps(with_both).encode()).system_prompt == "edited"  # the message comes first
    with pytest.raises(InvalidInputError, match="system_prompt must be text"):
        conv.parse_export(json.dumps({"messages": MESSAGES, "system_prompt": 5}).encode())


def test_an_import_that_does_not_say_keeps_the_system_prompt_shown():
    from ui import chat_saved

    shown = chat_saved.open_import(conv.parse_export(json.dumps(MESSAGES).encode()), "我打的提示词", {})
    *_, store, _listing = shown
    assert shown[5] == "我打的提示词"  # the System prompt box keeps what was typed
    assert conv.saved_list(store)[0].system_prompt == "我打的提示词"  # and the kept chat agrees with it
    said = conv.parse_export(conv.to_json(Conversation([dict(m) for m in MESSAGES], "")).encode())
    assert chat_saved.open_import(said, "我打的提示词", {})[5] == ""  # an export that had none empties it


def test_markdown_export_lists_every_turn_and_the_settings():
    md = conv.to_markdown(sample())
    assert md.startswith("# 你好\n")
    assert md.count("### 🧑 用户 User") == 2 and md.count("### 🤖 助手 Assistant") == 2
    assert "Tell me a joke." in md and "temperature 0.3" in md and "Be brief." in md


TRICKY = [{"role": "user", "content": "### 🤖 助手 Assistant\n---\n**User**\n# not a title\n```python\nunclosed"},
          {"role": "assistant", "content": "text\n---\n<div>\n\n    indented code\n\n> quoted\n\n"},
          {"role": "user", "content": "==\n### foo\n***"}]


def _blocks(md: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The top-level headings (tag, text) of ``md`` as CommonMark reads it, and each top-level block quote's text
    with its "> " markers removed."""
    from markdown_it import MarkdownIt

    tokens, lines = MarkdownIt("commonmark").parse(md), md.split("\n")
    headings = [(t.tag, "".join(c.content for c in tokens[i + 1].children)) for i, t in enumerate(tokens)
                if t.type == "heading_open" and t.level == 0]  # as shown: escapes resolved
    assert not [t for t in tokens if t.level == 0 and t.type not in (
        "heading_open", "inline", "heading_close", "blockquote_open", "blockquote_close", "bullet_list_open",
        "bullet_list_close")], "something outside the transcript's own headings, list and quotes"
    quotes = []
    for t in tokens:
        if t.type == "blockquote_open" and t.level == 0:
            start, end = t.map
            quotes.append("\n".join(re.sub(r"^> ?", "", line) for line in lines[start:end] if line.startswith(">")))
    return headings, quotes


def test_markdown_export_keeps_each_message_whole_inside_the_transcript():
    """A message holding "### …", "---" or an unclosed code fence broke the exported document: its lines became the
    transcript's own headings, or swallowed the turns after it."""
    chat = Conversation([dict(m) for m in TRICKY], "system\n### not a heading", {"temperature": 0.7}, "a/b_c",
                        id="x")
    headings, quotes = _blocks(conv.to_markdown(chat))
    assert headings == [("h1", chat.title), ("h3", "⚙️ 系统提示词 System prompt"), ("h3", "🧑 用户 User"),
                        ("h3", "🤖 助手 Assistant"), ("h3", "🧑 用户 User")]
    assert quotes == ["system\n### not a heading", *(m["content"] for m in TRICKY)]  # every message, as typed


def test_a_bare_message_list_and_text_parts_are_accepted_with_defaults():
    data = json.dumps([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                       {"role": "assistant", "content": "c"}]).encode("utf-8-sig")
    back = conv.parse_export(data)
    assert back.messages == [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "c"}]
    assert back.settings == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 512}


def test_out_of_range_settings_are_clamped_to_the_sliders(monkeypatch):
    data = json.dumps({"messages": MESSAGES, "settings": {"temperature": 99, "max_new_tokens": -5}}).encode()
    assert conv.parse_export(data).settings == {"temperature": 2.0, "top_p": 0.9, "max_new_tokens": 1}
    monkeypatch.setenv("MODELDECK_MAX_NEW_TOKENS", "256")  # the operator's cap is the slider's end
    data = json.dumps({"messages": MESSAGES, "settings": {"top_p": 0.01, "max_new_tokens": 512}}).encode()
    assert conv.parse_export(data).settings == {"temperature": 0.7, "top_p": 0.01, "max_new_tokens": 256}
    assert conv.parse_export(json.dumps({"messages": MESSAGES}).encode()).settings["max_new_tokens"] == 256


@pytest.mark.parametrize("data, says", [
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),  # nesting deep enough to blow the parser's stack
    (b'"just a string"', "must be an object"),
    (b'{"messages": []}', "no list of messages"),
    (b'{"messages": "hi"}', "no list of messages"),
    (json.dumps({"messages": [{"role": "tool", "content": "x"}]}).encode(), "only system, user and assistant"),
    (json.dumps({"messages": [{"role": "user"}]}).encode(), "needs a role and a content"),
    (json.dumps({"messages": ["hello"]}).encode(), "needs a role and a content"),
    (json.dumps({"messages": [{"role": "user", "content": {"$ref": 1}}]}).encode(), "not text"),
    (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]}]}
                ).encode(), "not text"),
    (json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}).encode(),
     "may only come first"),
    (json.dumps({"messages": [{"role": "system", "content": "only a system prompt"}]}).encode(),
     "no user or assistant"),
    (json.dumps({"messages": MESSAGES, "settings": [1, 2]}).encode(), "settings must be an object"),
    (json.dumps({"messages": MESSAGES, "settings": {"top_p": "lots"}}).encode(), "top_p is not a number"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}] * (conv.MAX_MESSAGES + 1)}).encode(),
     "more than"),
    (b" " * (conv.MAX_IMPORT_BYTES + 1), "larger than"),
])
def test_a_bad_import_is_refused_with_a_message_that_names_the_problem(data, says):
    with pytest.raises(InvalidInputError) as err:
        conv.parse_export(data)
    assert says in str(err.value) and "Nothing was changed" in str(err.value) and "无法导入" in str(err.value)


def test_an_over_long_message_is_refused(monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_INPUT_CHARS", "100")
    with pytest.raises(InvalidInputError, match="longer than 100 characters"):
        conv.parse_export(json.dumps({"messages": [{"role": "user", "content": "x" * 101}]}).encode())


def test_control_characters_are_removed_on_import():
    data = json.dumps({"messages": [{"role": "user", "content": "a\x00b\u200bc"}]}).encode()
    assert conv.parse_export(data).messages == [{"role": "user", "content": "abc"}]


def test_the_store_keeps_the_latest_first_replaces_by_id_and_is_capped():
    store: dict = {}
    first = sample()
    store = conv.remember(store, first)
    second = Conversation([{"role": "user", "content": "第二个"}])
    store = conv.remember(store, second)
    assert [c.id for c in conv.saved_list(store)] == [second.id, first.id] and store["current"] == second.id
    first.messages.append({"role": "user", "content": "more"})
    store = conv.remember(store, first)
    listed = conv.saved_list(store)
    assert [c.id for c in listed] == [first.id, second.id] and len(listed[0].messages) == 5
    for i in range(conv.MAX_SAVED + 5):
        store = conv.remember(store, Conversation([{"role": "user", "content": f"chat {i}"}]))
    assert len(conv.saved_list(store)) == conv.MAX_SAVED
    assert conv.saved_list(store)[0].title == f"chat {conv.MAX_SAVED + 4}"


def test_the_store_stays_within_what_a_browser_keeps_and_the_open_chat_always_stays():
    """A browser refuses a larger write silently (Chromium: ~5 M characters a site), and every later chat was then
    lost on reload; imports of 1 MB made that four chats away."""
    big = [{"role": "user", "content": "长" * 19_000}, {"role": "assistant", "content": "答" * 19_000}] * 5
    store: dict = {}
    opened = []
    for i in range(6):
        opened.append(Conversation([{"role": "user", "content": f"第 {i} 个"}, *big]))
        store = conv.remember(store, opened[-1])
    assert len(json.dumps(store, ensure_ascii=False).encode("utf-8")) <= conv.MAX_SAVED_BYTES + 1000
    kept = [c.id for c in conv.saved_list(store)]
    assert kept == [c.id for c in reversed(opened)][:len(kept)] and len(kept) >= 2  # the newest, in order
    alone = Conversation([{"role": "user", "content": "长" * 19_000}] * 40)  # too big alone: kept all the same
    assert [c.id for c in conv.saved_list(conv.remember(store, alone))] == [alone.id]


def test_forgetting_the_open_conversation_clears_current_and_damaged_entries_are_skipped():
    one, two = sample(), Conversation([{"role": "user", "content": "b"}])
    store = conv.remember(conv.remember({}, one), two)
    store = conv.forget(store, two.id)
    assert store["current"] is None and [c.id for c in conv.saved_list(store)] == [one.id]
    store["chats"] += [{"id": "x", "messages": [{"role": "evil", "content": 1}]}, "junk", {"no": "id"}]
    assert [c.id for c in conv.saved_list(store)] == [one.id]
    assert conv.saved_list("tampered") == [] and conv.find(None, one.id) is None


def test_titles_are_the_first_question_shortened():
    assert Conversation([{"role": "user", "content": "x" * 100}]).title == "x" * 40 + "…"
    assert Conversation([{"role": "assistant", "content": "hi"}]).title == "（空对话 empty chat）"


def test_the_server_reads_what_the_browser_stored_now():
    """Each tab wrote its own copy of the kept chats back whole; events now send what localStorage holds."""
    from ui import browser_store, chat_saved

    store = conv.remember({}, sample())
    sent = {browser_store.MARK: True, "stored": browser_store.encrypt(store, chat_saved.STORE_SECRET),
            "zone": "Asia/Shanghai", "offset": -480}
    read = browser_store.read(sent, chat_saved.STORE_SECRET, chat_saved.EMPTY_STORE)
    assert read.value == store and browser_store.local_time(0, read.zone, "%H:%M") == "08:00"
    damaged = {**sent, "stored": "x:bm90IGEgc3RvcmU=", "zone": "Nowhere/Else"}  # and a zone this server lacks
    read = browser_store.read(damaged, chat_saved.STORE_SECRET, chat_saved.EMPTY_STORE)
    assert read.value == chat_saved.EMPTY_STORE and browser_store.local_time(0, read.zone, "%H:%M") == "08:00"
    assert browser_store.read(store, chat_saved.STORE_SECRET, None).value is store  # a direct call's own copy
