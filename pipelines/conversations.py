"""Saved chats: the list kept in the visitor's browser, JSON and Markdown exports, checked imports.

A conversation is plain data: user/assistant messages, the system prompt, the sampling settings and
the chat model's id, and the kept versions of the last answer (``answer_versions``). The JSON export holds
OpenAI-style ``messages`` (the system prompt first, as a ``system`` message; the last answer as shown), so
it can be sent to any OpenAI-compatible server as is; the other versions of the last answer ride along in
the ModelDeck field ``answer_versions`` (``{"texts": [...], "shown": n}``), which older exports lack. The ModelDeck
field ``system_prompt`` says what the system prompt was even when it was empty (an empty one sends no system
message); a file with neither a system message nor that field does not say, and importing it keeps the
system prompt the page shows (``Conversation.system_prompt`` is None until then). An import is hostile
input: it is size-capped, parsed strictly, and either accepted whole or refused with a message that
names the problem; nothing is half-imported.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from . import answer_versions
from .chat import DEFAULT_MAX_NEW_TOKENS
from .errors import InvalidInputError
from .inputs import blank, max_input_chars, number, printable
from .sampling import TEMPERATURE_RANGE, TOP_P_RANGE, max_new_tokens_range

FORMAT = "modeldeck-chat"
MAX_IMPORT_BYTES = 1024 * 1024
MAX_MESSAGES = 500
MAX_SAVED = 30  # conversations kept in one browser; the least recently used go first
# ... and at most this much JSON (UTF-8) in all: the browser keeps ~4/3 of it (gradio encrypts it to base64), and
# its storage (5–10 MB a site) refuses a larger write silently: every later chat was then lost on reload.
MAX_SAVED_BYTES = 1536 * 1024
ROLES = ("system", "user", "assistant")
# the sampling defaults of the chat tab; the ranges are the pipeline's (``sampling``), which its sliders offer
DEFAULTS = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS}


@dataclass
class Conversation:
    """One chat: its messages (user/assistant only), system prompt, settings and model."""

    messages: list[dict[str, str]]
    system_prompt: str | None = ""  # None: an imported file that does not say (the page's prompt is kept)
    settings: dict[str, float] = field(default_factory=dict)
    model: str = ""
    versions: dict[str, Any] | None = None  # the last answer's versions, as ``answer_versions.saved_form``
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    updated: float = field(default_factory=time.time)

    @property
    def title(self) -> str:
        """The first user message, shortened: how the chat is listed."""
        first = next((m["content"] for m in self.messages if m["role"] == "user"), "")
        line = " ".join(first.split())
        return (line[:40] + "…") if len(line) > 40 else (line or "（空对话 empty chat）")


def _bad(zh: str, en: str) -> InvalidInputError:
    return InvalidInputError(f"无法导入：{zh}没有做任何改动。", f"Cannot import: {en} Nothing was changed.")


def _text(content: Any, where: int) -> str:
    if isinstance(content, list):  # OpenAI content parts: only text parts are allowed
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise _bad(f"第 {where} 条消息含有非文本内容（只支持文字）。", f"message {where} has content that is not text.")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise _bad(f"第 {where} 条消息的 content 不是文本。", f"message {where} has a content that is not text.")
    if len(content) > max_input_chars():
        raise _bad(f"第 {where} 条消息超过 {max_input_chars()} 个字符。",
                   f"message {where} is longer than {max_input_chars()} characters.")
    return printable(content).replace("\r\n", "\n")


def _messages(raw: Any) -> tuple[str | None, list[dict[str, str]]]:
    """The system prompt (None without a system message) and the user/assistant messages of ``raw``."""
    if not isinstance(raw, list) or not raw:
        raise _bad("找不到消息列表 messages。", "there is no list of messages.")
    if len(raw) > MAX_MESSAGES:
        raise _bad(f"消息超过 {MAX_MESSAGES} 条。", f"it has more than {MAX_MESSAGES} messages.")
    system, out = [], []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str) or "content" not in item:
            raise _bad(f"第 {i} 条消息缺少 role 或 content。", f"message {i} needs a role and a content.")
        role = item["role"]
        if role not in ROLES:
            raise _bad(f"第 {i} 条消息的角色 {role[:20]!r} 不受支持（只能是 system、user、assistant）。",
                       f"message {i} has the role {role[:20]!r}; only system, user and assistant are allowed.")
        text = _text(item["content"], i)
        if role == "system":
            if out:
                raise _bad(f"第 {i} 条：系统消息只能放在开头。", f"message {i}: a system message may only come first.")
            system.append(text)
        elif not blank(text):
            out.append({"role": role, "content": text})
    if not out:
        raise _bad("里面没有用户或助手的消息。", "it has no user or assistant messages.")
    return "\n".join(system) if system else None, out


def _settings(raw: Any) -> dict[str, float]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _bad("settings 必须是一个对象。", "settings must be an object.")
    fewest, most = max_new_tokens_range()
    ranges = {"temperature": (*TEMPERATURE_RANGE, False), "top_p": (*TOP_P_RANGE, False),
              "max_new_tokens": (fewest, most, True)}
    out = {}
    for name, (lo, hi, whole) in ranges.items():
        default = min(DEFAULTS[name], hi)
        try:
            out[name] = number(raw.get(name), name=name, lo=lo, hi=hi, notices=[], integer=whole, default=default)
        except InvalidInputError:
            raise _bad(f"参数 {name} 不是数字。", f"the setting {name} is not a number.") from None
    return out


def _versions(raw: Any, messages: list[dict[str, str]]) -> dict[str, Any] | None:
    if raw is None:
        return None
    texts = raw.get("texts") if isinstance(raw, dict) else None
    if not isinstance(texts, list) or not 2 <= len(texts) <= answer_versions.MAX_VERSIONS \
            or type(raw.get("shown")) is not int:
        raise _bad(f"answer_versions 必须含有 2 到 {answer_versions.MAX_VERSIONS} 个文本的列表 texts 和序号 shown。",
                   f"answer_versions must hold a list texts of 2 to {answer_versions.MAX_VERSIONS} texts and a "
                   "number shown.")
    kept = answer_versions.restored({"texts": [_text(t, len(messages)) for t in texts], "shown": raw["shown"]},
                                    messages)
    if kept is None:
        raise _bad("answer_versions 里显示的版本和最后一条回答不一致。",
                   "the version answer_versions shows is not the last answer in messages.")
    return answer_versions.saved_form(kept, messages)


def _system_field(raw: Any) -> str:
    if not isinstance(raw, str):
        raise _bad("system_prompt 必须是文本。", "system_prompt must be text.")
    if len(raw) > max_input_chars():
        raise _bad(f"system_prompt 超过 {max_input_chars()} 个字符。",
                   f"system_prompt is longer than {max_input_chars()} characters.")
    return printable(raw).replace("\r\n", "\n")


def parse_export(data: bytes) -> Conversation:
    """Return the conversation in a JSON export (ours, ``{"messages": [...]}``, or a bare message list)."""
    if len(data) > MAX_IMPORT_BYTES:
        raise _bad(f"文件超过 {MAX_IMPORT_BYTES // 1024} KB。", f"the file is larger than {MAX_IMPORT_BYTES // 1024} KB.")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _bad("文件不是 UTF-8 文本。", "the file is not UTF-8 text.") from None
    except (ValueError, RecursionError):
        raise _bad("文件不是有效的 JSON。", "the file is not valid JSON.") from None
    if isinstance(doc, list):
        doc = {"messages": doc}
    if not isinstance(doc, dict):
        raise _bad("JSON 顶层必须是对象或消息列表。", "the JSON must be an object or a list of messages.")
    system, messages = _messages(doc.get("messages"))
    if system is None and doc.get("system_prompt") is not None:  # ours: the system prompt, even an empty one
        system = _system_field(doc["system_prompt"])
    model = doc.get("model", "")
    return Conversation(messages, system, _settings(doc.get("settings")), model if isinstance(model, str) else "",
                        _versions(doc.get("answer_versions"), messages))


def to_json(conversation: Conversation) -> str:
    """Return the conversation as a JSON export (OpenAI ``messages`` plus settings and model id)."""
    system = [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else []
    doc = {"format": FORMAT, "version": 1, "title": conversation.title, "model": conversation.model,
           "system_prompt": conversation.system_prompt or "", "settings": conversation.settings,
           "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "messages": system + [dict(m) for m in conversation.messages]}
    if conversation.versions:
        doc["answer_versions"] = conversation.versions
    return json.dumps(doc, ensure_ascii=False, indent=2)


def _literal(text: str) -> str:
    """``text`` with each character that means something to Markdown backslash-escaped: it shows as typed."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~&])", r"\\\1", text)


def _quoted(text: str) -> list[str]:
    """``text`` as a Markdown block quote, line for line: whatever it holds (a heading, a rule, an unclosed code
    fence, HTML) stays inside the quote, and removing each line's "> " gives the text back."""
    return [f"> {line}" if line else ">" for line in text.split("\n")]


def to_markdown(conversation: Conversation) -> str:
    """Return the conversation as a readable Markdown transcript: each message in its own block quote, shown as
    the chat shows it, so nothing a message holds can pass for the transcript's own headings."""
    settings = " · ".join(f"{k} {v:g}" for k, v in conversation.settings.items())
    lines = [f"# {_literal(conversation.title)}", "", f"- 模型 Model: {_literal(conversation.model) or '—'}"]
    if settings:
        lines.append(f"- 参数 Settings: {settings}")
    lines.append(f"- 导出时间 Exported: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    names = {"system": "⚙️ 系统提示词 System prompt", "user": "🧑 用户 User", "assistant": "🤖 助手 Assistant"}
    system = [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else []
    for message in system + conversation.messages:
        lines += ["", f"### {names[message['role']]}", "", *_quoted(message["content"])]
    return "\n".join(lines) + "\n"


def saved_list(store: Any) -> list[Conversation]:
    """The conversations kept in the browser, most recent first; damaged entries are skipped."""
    entries = store.get("chats") if isinstance(store, dict) else None
    out = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            system, messages = _messages([{"role": "system", "content": entry.get("system_prompt", "")},
                                          *entry["messages"]])
            try:
                versions = _versions(entry.get("versions"), messages)
            except InvalidInputError:  # damaged versions: keep the chat as shown
                versions = None
            out.append(Conversation(messages, system or "", _settings(entry.get("settings")), str(entry.get("model", "")),
                                    versions, str(entry["id"]), float(entry.get("updated", 0))))
        except (InvalidInputError, KeyError, TypeError, AttributeError, ValueError):
            continue
    return sorted(out, key=lambda c: -c.updated)


def remember(store: Any, conversation: Conversation) -> dict[str, Any]:
    """Return the browser store with ``conversation`` saved (replacing its older copy) and made current; the least
    recently used others go beyond ``MAX_SAVED`` chats or ``MAX_SAVED_BYTES``."""
    conversation.updated = time.time()
    others = [c for c in saved_list(store) if c.id != conversation.id]
    chats = [asdict(c) for c in [conversation, *others][:MAX_SAVED]]
    sizes = [len(json.dumps(c, ensure_ascii=False).encode("utf-8")) for c in chats]
    while len(chats) > 1 and sum(sizes) > MAX_SAVED_BYTES:  # the least recently used go first; this one stays
        chats.pop()
        sizes.pop()
    return {"current": conversation.id, "chats": chats}


def forget(store: Any, conversation_id: str | None) -> dict[str, Any]:
    """Return the browser store without the conversation ``conversation_id``."""
    chats = [c for c in saved_list(store) if c.id != conversation_id]
    current = store.get("current") if isinstance(store, dict) else None
    return {"current": None if current == conversation_id else current, "chats": [asdict(c) for c in chats]}


def find(store: Any, conversation_id: str | None) -> Conversation | None:
    """Return the saved conversation with this id, if any."""
    return next((c for c in saved_list(store) if c.id == conversation_id), None)
