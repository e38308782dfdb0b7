"""Checks for values that arrive from browsers and from scripts that bypass the sliders.

Policy (documented in the README's "Limits"): numbers outside their range are clamped and a notice
says so; values that cannot be numbers, negative seeds and empty text are rejected with a message.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from . import settings
from .errors import InvalidInputError
from .settings import MAX_SEED

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
# Characters that print nothing but are not format, control or space characters: combining joiners and
# variation selectors, and the fillers that look blank (Hangul fillers, the blank braille pattern, …).
_UNSEEN = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0"
                    + "".join(map(chr, range(0xFE00, 0xFE10))))


def max_input_chars() -> int:
    return settings.get("MODELDECK_MAX_INPUT_CHARS")


def printable(text: str) -> str:
    """``text`` without control characters: as a conversation keeps it (``normalize_messages`` drops them)."""
    return _CONTROL.sub("", text)


def blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only spaces, control and format characters (zero-width spaces and joiners,
    direction marks, soft hyphens, the byte-order mark) and blank-looking fillers. Such a message is empty."""
    return all(c.isspace() or c in _UNSEEN or unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp")
               or 0xE0100 <= ord(c) <= 0xE01EF for c in text)


def clean_text(value: Any, *, field_zh: str, field_en: str, notices: list[str],
               max_chars: int | None = None, required: bool = True) -> str:
    """Return ``value`` as text without control characters, cut to ``max_chars`` with a notice."""
    param = field_en.replace(" ", "_")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field_zh}必须是文本。", f"The {field_en} must be text.", param)
    text = _CONTROL.sub("", value).replace("\r\n", "\n")
    if required and blank(text):
        raise InvalidInputError(f"请先输入{field_zh}。", f"Enter the {field_en} first.", param)
    limit = max_chars or max_input_chars()
    if len(text) > limit:
        text = text[:limit]
        notices.append(f"{field_zh}过长，只使用了前 {limit} 个字符。 / "
                       f"The {field_en} was too long; only its first {limit} characters were used.")
    return text


def number(value: Any, *, name: str, lo: float, hi: float, notices: list[str], integer: bool = False,
           default: float | None = None) -> float:
    """Return ``value`` as a number clamped to [lo, hi]; a notice names any clamping."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise InvalidInputError(f"缺少参数 {name}。", f"The parameter {name} is missing.", name)
        value = default
    try:
        number_ = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"参数 {name} 必须是数字，收到 {value!r}。",
                                f"The parameter {name} must be a number, got {value!r}.", name) from None
    if math.isnan(number_):
        raise InvalidInputError(f"参数 {name} 不能是 NaN。", f"The parameter {name} cannot be NaN.", name)
    clamped = min(max(number_, lo), hi)
    if integer:
        clamped = float(round(clamped))
    if not lo <= number_ <= hi:
        shown = int(clamped) if integer else round(clamped, 4)
        notices.append(f"参数 {name}={value} 超出范围 [{_fmt(lo)}, {_fmt(hi)}]，已改为 {shown}。 / "
                       f"{name}={value} is outside [{_fmt(lo)}, {_fmt(hi)}]; used {shown}.")
    return int(clamped) if integer else clamped


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def seed(value: Any) -> int | None:
    """Return the seed as an int in [0, 2**31-1], or None (random) for an empty value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number_ = float(value)
        if not number_.is_integer():
            raise ValueError
        seed_ = int(number_)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"随机种子必须是整数，收到 {value!r}。",
                                f"The seed must be a whole number, got {value!r}.", "seed") from None
    if not 0 <= seed_ <= MAX_SEED:
        raise InvalidInputError(f"随机种子必须在 0 到 {MAX_SEED} 之间。",
                                f"The seed must be between 0 and {MAX_SEED}.", "seed")
    return seed_


def logprobs_count(value: Any, notices: list[str]) -> int | None:
    """How many alternatives to record per token (0–20), or None when log-probabilities are not wanted."""
    if value is None or value is False or (isinstance(value, str) and not value.strip()):
        return None
    return int(number(value, name="top_logprobs", lo=0, hi=20, notices=notices, integer=True))


def choice(value: Any, options: dict[str, str], *, name_zh: str, name_en: str, default: str | None = None) -> str:
    """Return the canonical option for ``value`` (keys and aliases in ``options``), ``default``'s for a missing
    (None or blank) value, or reject it."""
    key = str(value).strip() if value is not None else ""
    if not key and default is not None:  # missing, as a number's default: not a wrong choice
        return options[default]
    if key in options:
        return options[key]
    if key.lower() in options:
        return options[key.lower()]
    shown = "、".join(dict.fromkeys(options.values()))
    raise InvalidInputError(f"不支持的{name_zh}：{key!r}。可选：{shown}",
                            f"Unsupported {name_en}: {key!r}. Choose one of: {', '.join(dict.fromkeys(options.values()))}")


# The one language table: story, speech and picture story accept the same names for the same language.
LANGUAGES = {"zh": "zh", "中文": "zh", "chinese": "zh", "zh-cn": "zh", "zh-hans": "zh", "en": "en", "english": "en"}


def language(value: Any, *, allow_auto: bool = False, default: str | None = None) -> str:
    """Return "zh" or "en" for any accepted name of the language (or "auto" where ``allow_auto``); ``default``
    for a missing one."""
    options = {**LANGUAGES, "auto": "auto"} if allow_auto else LANGUAGES
    return choice(value, options, name_zh="语言", name_en="language", default=default)


_ROLES = {"user", "assistant", "system"}


def normalize_messages(history: Any) -> list[dict[str, str]]:
    """Return role/content text messages from gradio's, OpenAI's or the old pair format."""
    if history is None or history == "":
        return []
    if not isinstance(history, list):
        raise InvalidInputError("对话历史必须是消息列表，例如 [{\"role\": \"user\", \"content\": \"你好\"}]。",
                                'The history must be a list of messages like [{"role": "user", "content": "hi"}].')
    out: list[dict[str, str]] = []
    for i, item in enumerate(history):
        if isinstance(item, (list, tuple)) and len(item) == 2:  # [user, assistant] pairs (gradio 4)
            for role, content in zip(("user", "assistant"), item):
                if isinstance(content, str) and content:
                    out.append({"role": role, "content": content})
            continue
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            raise InvalidInputError(f"对话历史第 {i + 1} 条缺少 role 或 content。",
                                    f"History entry {i + 1} needs both a role and a content.")
        role = str(item["role"]).strip().lower()
        if role not in _ROLES:
            raise InvalidInputError(f"对话历史第 {i + 1} 条的角色 {item['role']!r} 无效，可用 user、assistant、system。",
                                    f"History entry {i + 1} has an unknown role {item['role']!r}; "
                                    "use user, assistant or system.")
        content = item["content"]
        if isinstance(content, list):  # gradio 6's content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        elif isinstance(content, dict):
            content = content.get("text", "") if content.get("type") == "text" else ""
        if isinstance(content, str) and not blank(content):
            out.append({"role": role, "content": printable(content)})
    return out
