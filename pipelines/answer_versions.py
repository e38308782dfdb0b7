"""Versions of the latest answer: regenerating keeps the earlier answers, ◀ ▶ flips between them.

The versions belong to the conversation's last assistant message and to exactly the conversation before
it (a fingerprint of those messages). The version shown is the conversation's last message, so it is the
one the chat continues from, saves and exports. A new question, an edit or an undo changes what came
before, so the versions start afresh with the answer then shown: only the latest answer keeps versions,
and the one shown when the chat goes on is the one kept. An answer identical to one already kept
is shown, not added twice. Plain data only: ``{"key": str, "texts": [str, ...], "shown": int}``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import InvalidInputError
from .inputs import normalize_messages

MAX_VERSIONS = 20  # per answer; beyond it the oldest version not shown goes first


def _chat(history: Any) -> list[dict[str, str]]:
    return [m for m in normalize_messages(history) if m["role"] in ("user", "assistant")]


def key_of(messages: list[dict[str, str]]) -> str:
    """The fingerprint of the conversation before an answer (roles and texts)."""
    data = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]


def current(versions: Any, history: Any) -> dict[str, Any] | None:
    """``versions`` when they belong to the answer ``history`` ends with, else None."""
    chat = _chat(history)
    if not isinstance(versions, dict) or not chat or chat[-1]["role"] != "assistant":
        return None
    texts, shown = versions.get("texts"), versions.get("shown")
    if not isinstance(texts, list) or not isinstance(shown, int) or not 0 <= shown < len(texts):
        return None
    if versions.get("key") != key_of(chat[:-1]) or texts[shown] != chat[-1]["content"]:
        return None
    return versions


def record(versions: Any, history: Any) -> dict[str, Any] | None:
    """The versions after the chat shows ``history``: its last answer kept (and shown) among them.

    Without an answer at the end (a regeneration stopped before its first word) they are kept unchanged.
    """
    chat = _chat(history)
    if not chat or chat[-1]["role"] != "assistant":
        return versions if isinstance(versions, dict) else None
    key, text = key_of(chat[:-1]), chat[-1]["content"]
    if not isinstance(versions, dict) or versions.get("key") != key or not isinstance(versions.get("texts"), list):
        return {"key": key, "texts": [text], "shown": 0}
    texts = list(versions["texts"])
    if text not in texts:
        texts.append(text)
        while len(texts) > MAX_VERSIONS:
            texts.pop(0)
    return {"key": key, "texts": texts, "shown": texts.index(text)}


def flip(versions: Any, history: Any, step: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The chat showing the previous (``step`` -1) or next (+1) version of its last answer, and the versions."""
    kept = current(versions, history)
    if kept is None:
        raise InvalidInputError("这条回答没有其他版本。点“重新生成”可以得到新的版本。",
                                "This answer has no other versions. Press Regenerate to get one.")
    shown = max(0, min(len(kept["texts"]) - 1, kept["shown"] + step))
    chat = _chat(history)
    return chat[:-1] + [{"role": "assistant", "content": kept["texts"][shown]}], {**kept, "shown": shown}


def position(versions: Any, history: Any) -> tuple[int, int] | None:
    """(the version shown, counted from 1; how many) when the last answer has more than one version."""
    kept = current(versions, history)
    if kept is None or len(kept["texts"]) < 2:
        return None
    return kept["shown"] + 1, len(kept["texts"])


def saved_form(versions: Any, messages: list[dict[str, str]]) -> dict[str, Any] | None:
    """What a saved chat or an export keeps: ``{"texts", "shown"}`` when there is more than one version."""
    kept = current(versions, messages)
    if kept is None or len(kept["texts"]) < 2:
        return None
    return {"texts": list(kept["texts"]), "shown": kept["shown"]}


def restored(saved: Any, messages: list[dict[str, str]]) -> dict[str, Any] | None:
    """The versions of a saved chat's last answer (``saved`` as ``saved_form`` wrote it), if they still fit."""
    chat = _chat(messages)
    if not isinstance(saved, dict) or not chat or chat[-1]["role"] != "assistant":
        return None
    return current({"key": key_of(chat[:-1]), "texts": saved.get("texts"), "shown": saved.get("shown")}, chat)
