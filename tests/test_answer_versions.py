"""Versions of the latest answer: regenerating keeps them, flipping shows one and the chat goes on from it,
saved chats and exports keep them, and imports check them like the rest of the file."""

from __future__ import annotations

import json

import pytest

from pipelines import answer_versions as av
from pipelines import conversations as conv
from pipelines.errors import InvalidInputError

Q = {"role": "user", "content": "讲个笑话"}


def answer(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def browser_shape(messages: list[dict]) -> list[dict]:
    """The chat as gradio's page sends it back: content parts, metadata and options."""
    return [{"role": m["role"], "metadata": None, "options": None,
             "content": [{"type": "text", "text": m["content"]}]} for m in messages]


def regenerated(*texts: str) -> tuple[dict, list[dict]]:
    """The versions after answering Q with each text in turn (regenerate between them), and the chat shown."""
    versions = None
    for text in texts:
        history = browser_shape([Q, answer(text)])
        versions = av.record(versions, history)
    return versions, history


def test_regenerating_keeps_every_answer_and_shows_the_newest():
    versions, history = regenerated("一", "二", "三")
    assert versions["texts"] == ["一", "二", "三"] and av.position(versions, history) == (3, 3)
    assert av.position(av.record(None, [Q, answer("一")]), [Q, answer("一")]) is None  # one version: no ◀ ▶


def test_flipping_shows_an_earlier_version_and_the_chat_goes_on_from_it():
    versions, history = regenerated("一", "二")
    chat, versions = av.flip(versions, history, -1)
    assert chat == [Q, answer("一")] and av.position(versions, chat) == (1, 2)
    chat, versions = av.flip(versions, chat, -1)  # already the first: stays
    assert chat[-1]["content"] == "一" and av.position(versions, chat) == (1, 2)
    again = av.record(versions, browser_shape(chat))  # saving what is shown adds nothing
    assert again["texts"] == ["一", "二"] and av.position(again, chat) == (1, 2)
    chat, versions = av.flip(again, chat, +1)
    assert chat[-1]["content"] == "二" and av.position(versions, chat) == (2, 2)
    assert av.record(versions, [Q, answer("三")])["texts"] == ["一", "二", "三"]  # regenerating from there


def test_an_identical_answer_is_shown_not_added_twice():
    versions, history = regenerated("一", "二", "一")
    assert versions["texts"] == ["一", "二"] and av.position(versions, history) == (1, 2)


def test_a_new_question_an_edit_or_an_undo_starts_afresh():
    versions, _ = regenerated("一", "二")
    going_on = [Q, answer("二"), {"role": "user", "content": "再来"}, answer("好")]
    assert av.record(versions, going_on)["texts"] == ["好"]
    edited = [{"role": "user", "content": "讲个故事"}, answer("一")]  # same answer, other question
    assert av.record(versions, edited)["texts"] == ["一"]
    assert av.position(versions, edited) is None  # versions of another question never show
    assert av.record(None, []) is None


def test_a_regeneration_stopped_before_its_first_word_keeps_the_versions():
    versions, _ = regenerated("一", "二")
    kept = av.record(versions, browser_shape([Q]) + [{"role": "assistant", "content": ""}])
    assert kept == versions and av.position(kept, [Q]) is None
    assert av.record(kept, [Q, answer("三")])["texts"] == ["一", "二", "三"]


def test_the_oldest_version_goes_first_beyond_the_cap():
    versions, history = regenerated(*[str(i) for i in range(av.MAX_VERSIONS + 3)])
    assert len(versions["texts"]) == av.MAX_VERSIONS and versions["texts"][0] == "3"
    assert av.position(versions, history) == (av.MAX_VERSIONS, av.MAX_VERSIONS)


def test_flipping_versions_that_do_not_belong_to_the_chat_says_what_to_do():
    versions, _ = regenerated("一", "二")
    with pytest.raises(InvalidInputError, match="Press Regenerate") as caught:
        av.flip(versions, [Q, answer("别的")], -1)
    assert "重新生成" in str(caught.value)
    with pytest.raises(InvalidInputError):
        av.flip({"key": "x", "texts": "oops", "shown": 9}, [Q, answer("一")], 1)


def test_exports_carry_the_versions_and_imports_restore_them():
    versions, history = regenerated("一", "二")
    chat, versions = av.flip(versions, history, -1)
    conversation = conv.Conversation(chat, versions=av.saved_form(versions, chat))
    doc = json.loads(conv.to_json(conversation))
    assert doc["messages"][-1] == answer("一")  # OpenAI messages hold the version shown
    assert doc["answer_versions"] == {"texts": ["一", "二"], "shown": 0}
    back = conv.parse_export(json.dumps(doc).encode())
    assert av.position(av.restored(back.versions, back.messages), back.messages) == (1, 2)
    del doc["answer_versions"]  # an export made before versions existed
    assert conv.parse_export(json.dumps(doc).encode()).versions is None
    single = conv.Conversation([Q, answer("一")], versions=av.saved_form(av.record(None, [Q, answer("一")]),
                                                                          [Q, answer("一")]))
    assert "answer_versions" not in json.loads(conv.to_json(single))


@pytest.mark.parametrize("versions, says", [
    ("both", "answer_versions must hold"),
    ({"texts": ["一"], "shown": 0}, "answer_versions must hold"),
    ({"texts": ["一", "二"], "shown": "0"}, "answer_versions must hold"),
    ({"texts": ["一", "二"] * av.MAX_VERSIONS, "shown": 0}, "answer_versions must hold"),
    ({"texts": ["一", {"type": "image"}], "shown": 0}, "not text"),
    ({"texts": ["一", "二"], "shown": 5}, "is not the last answer"),
    ({"texts": ["二", "三"], "shown": 0}, "is not the last answer"),
])
def test_bad_versions_in_an_import_are_refused_whole(versions, says):
    data = json.dumps({"messages": [Q, answer("一")], "answer_versions": versions}).encode()
    with pytest.raises(InvalidInputError, match=says) as caught:
        conv.parse_export(data)
    assert "Nothing was changed" in str(caught.value) and "没有做任何改动" in str(caught.value)


def test_saved_chats_keep_the_versions_and_drop_only_damaged_ones():
    versions, history = regenerated("一", "二")
    chat = [Q, answer("二")]
    conversation = conv.Conversation(chat, versions=av.saved_form(versions, chat))
    store = conv.remember(None, conversation)
    assert conv.find(store, conversation.id).versions == {"texts": ["一", "二"], "shown": 1}
    store["chats"][0]["versions"] = {"texts": ["x", "y"], "shown": 0}  # no longer the answer shown
    kept = conv.find(store, conversation.id)
    assert kept.messages == chat and kept.versions is None


def test_the_chat_tab_records_restores_and_flips_versions(tiny_models):
    """The tab's own handlers, as the page calls them: save records, reopening shows n/m, flipping saves."""
    from ui import chat_saved, chat_versions

    settings = ("", 0.7, 0.9, 64, "Tiny Qwen2 B")  # system prompt, temperature, top_p, max_new_tokens, model
    versions, store = None, None
    for text in ("一", "二"):
        current, store, _, versions, row, label = chat_saved.save(
            None if store is None else store["current"], browser_shape([Q, answer(text)]), *settings, versions, store)
    assert label == "**2/2**" and row.visible
    chat, versions, row, label = chat_versions.flip(versions, browser_shape([Q, answer("二")]), -1)
    assert chat[-1]["content"] == "一" and label == "**1/2**"
    current, store, *_ = chat_saved.save(current, browser_shape(chat), *settings, versions, store)
    shown = chat_saved.open_saved(current, store)
    assert shown[0][-1]["content"] == "一" and shown[4] == "**1/2**"  # reopened on the version chosen
    assert shown[9] == "Tiny Qwen2 B"  # and with the model that wrote it
    with pytest.raises(Exception, match="Press Regenerate"):  # gradio's Error, with the pipeline's message
        chat_versions.flip(versions, browser_shape([Q, answer("别的")]), 1)
