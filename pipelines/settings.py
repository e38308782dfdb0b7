"""Every ``MODELDECK_*`` setting in one table, parsed by one set of rules.

A value is read from the environment each time it is asked for (``get``), never at import, so tests and
restarts with other variables see the new value at once. An empty or unset variable means the default;
anything else must parse, or ``ConfigError`` names the variable and shows a correct example (nothing is
silently clamped or ignored). ``check_all()`` parses every setting once: ``app.py`` calls it at start-up.

Adding a setting is one ``_add(...)`` line below plus a row in the README's configuration table.
Model lists are parsed here too (``parse_model_entry``); which models are the defaults stays in the registry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from .errors import ConfigError

MAX_SEED = 2**31 - 1


class Bad(ValueError):
    """A parser's complaint, in both languages."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], Any]  # the stripped, non-empty text -> value; raises Bad
    default: Any
    example: str
    secret: bool = False


SETTINGS: dict[str, Setting] = {}


def _add(name: str, parse: Callable[[str], Any], default: Any, example: str, *, secret: bool = False) -> None:
    SETTINGS[name] = Setting(name, parse, default, example, secret)


def get(name: str) -> Any:
    """Return the parsed value of setting ``name`` (its default when unset or empty)."""
    setting = SETTINGS[name]
    raw = os.environ.get(name, "").strip()
    if not raw:
        return setting.default
    try:
        return setting.parse(raw)
    except Bad as exc:
        raise ConfigError(name, "***" if setting.secret else redact(raw), exc.zh, exc.en, setting.example) from None


def redact(text: str) -> str:
    """``text`` with any password in a URL and any key-like query value replaced by ``***``."""
    text = re.sub(r"://[^/@\s#]*@", "://***@", text)
    # ``#key_env=`` names a variable; anything that is not a variable name there may be a key written by mistake.
    text = re.sub(r"(?i)\b(key_env=)(?![A-Za-z_]\w*(?:[#&,\s]|$))[^&#,\s]*", r"\1***", text)
    return re.sub(r"(?i)\b((?:api[_-]?key|key|token|access[_-]?token|password)=)[^&#,\s]*", r"\1***", text)


def secret(name: str) -> str:
    """The value of the environment variable ``name`` (one an entry's ``#key_env=`` names); '' when unset."""
    return os.environ.get(name, "").strip()


def check_all() -> None:
    """Parse every setting once; raise ``ConfigError`` for the first malformed one."""
    for name in SETTINGS:
        get(name)


# ---- parsers ---------------------------------------------------------------------------------------------

def integer(lo: int = 1, hi: int | None = None) -> Callable[[str], int]:
    """A whole number in [lo, hi]."""
    def parse(raw: str) -> int:
        if not re.fullmatch(r"[+-]?\d+", raw.replace("_", "")):
            raise Bad("应为整数", "it must be a whole number")
        value = int(raw.replace("_", ""))
        if value < lo or (hi is not None and value > hi):
            if hi is None:
                raise Bad(f"应不小于 {lo}", f"it must be ≥ {lo}")
            raise Bad(f"应在 {lo}–{hi} 之间", f"it must be {lo}–{hi}")
        return value
    return parse


def seconds(raw: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(raw)
    except ValueError:
        raise Bad("应为秒数（数字）", "it must be a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise Bad("应为大于 0 的秒数", "it must be a number of seconds above 0")
    return value


def one_of(*choices: str, aliases: dict[str, str] | None = None) -> Callable[[str], str]:
    """One of ``choices`` (case-insensitive), or an alias of one."""
    table = {c.lower(): c for c in choices} | {k.lower(): v for k, v in (aliases or {}).items()}

    def parse(raw: str) -> str:
        if raw.lower() not in table:
            raise Bad(f"可选：{'、'.join(choices)}", f"use one of {', '.join(choices)}")
        return table[raw.lower()]
    return parse


def flag(raw: str) -> bool:
    """On or off."""
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise Bad("应为 1 或 0", "use 1 (on) or 0 (off)")


def text(raw: str) -> str:
    return raw


def device(raw: str) -> str:
    """cpu, cuda, cuda:N or mps."""
    value = raw.lower()
    if value in ("cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise Bad("可选 cpu、cuda、cuda:N、mps", "use cpu, cuda, cuda:N or mps")


ROLE_NAMES = ("chat", "story", "textgen", "classifier", "captioner", "translator")


def roles(raw: str) -> list[str]:
    """``all`` or a comma-separated list of roles."""
    if raw.lower() == "all":
        return ["all"]
    wanted = [r.strip() for r in raw.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROLE_NAMES]
    if unknown:
        raise Bad(f"未知角色 {', '.join(unknown)}；可选 all 或 {'、'.join(ROLE_NAMES)}",
                  f"unknown role(s) {', '.join(unknown)}; use all or some of {', '.join(ROLE_NAMES)}")
    return wanted


# ---- model entries ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelEntry:
    """One ``[Name=]source`` entry of a model list.

    ``scheme`` is "local" (a Hub id or folder, with an optional ``@revision``), "openai" (``source`` is the
    server's base URL and ``model`` the served model name) or "hf" (``source`` is a Hub model id or an
    endpoint URL, ``provider`` an Inference Provider). ``options`` holds ``#key=value`` extras of remote
    entries: ``tokenizer`` (a folder or Hub id used to count tokens), ``context`` (the context window) and
    ``key_env`` (the name of the environment variable holding this server's key).
    """

    name: str
    source: str
    scheme: str = "local"
    revision: str | None = None
    model: str | None = None
    provider: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def remote(self) -> bool:
        return self.scheme != "local"

    def option(self, key: str) -> str | None:
        return dict(self.options).get(key)


MODEL_EXAMPLE = ("Qwen=openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-0.5B-Instruct,"
                 "hf:Qwen/Qwen2.5-7B-Instruct:together,Qwen/Qwen2.5-0.5B-Instruct")
_OPTIONS = {"tokenizer", "context"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SECRET_QUERY = re.compile(r"(?i)(^|&)(api[_-]?key|key|token|access[_-]?token|password)=")


def _split_name(entry: str) -> tuple[str, str]:
    # A display name ends at an "=" that comes before "://" and "#": a URL's query and #options hold "=" too.
    head = entry.split("://", 1)[0].split("#", 1)[0]
    if "=" not in head:
        return "", entry
    cut = head.rfind("=")
    return entry[:cut].strip(), entry[cut + 1:].strip()


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Bad(f"{url!r} 不是 http(s):// 地址", f"{url!r} is not an http(s):// URL")
    if parts.username or parts.password or _SECRET_QUERY.search(parts.query):
        raise Bad("密钥不能写在地址里：放进一个 Secret，用条目的 #key_env=变量名 指向它（hf: 条目用 HF_TOKEN）",
                  "keys never go in the URL: put the key in a secret and name it with the entry's "
                  "#key_env=<variable> (hf: entries use HF_TOKEN)")
    return url.rstrip("/")


def _options(parts: list[str]) -> tuple[tuple[str, str], ...]:
    allowed = _OPTIONS | {"key_env"}
    out = []
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in allowed or not value.strip():
            more = ("、#key_env=存放密钥的变量名", ", #key_env=<variable holding the key>")
            raise Bad(f"未知选项 #{redact(part)}；可用 #tokenizer=文件夹或模型 id、#context=词元数{more[0]}",
                      f"unknown option #{redact(part)}; use #tokenizer=<folder or Hub id>, #context=<tokens>{more[1]}")
        if key.strip() == "context":
            integer(16)(value.strip())
        if key.strip() == "key_env" and not _ENV_NAME.fullmatch(value.strip()):
            # Never echo it: a key written here by mistake must not reach an error message.
            raise Bad("#key_env= 要写存放密钥的环境变量名（字母、数字、下划线），不是密钥本身",
                      "#key_env= takes the name of the environment variable holding the key (letters, digits, _), "
                      "not the key itself")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def parse_model_entry(entry: str) -> ModelEntry:
    """Parse ``[Name=]source``: a Hub id or folder[@revision], ``openai:URL#model`` or ``hf:id[:provider]``."""
    name, rest = _split_name(entry.strip())
    if not rest:
        raise Bad("缺少模型", "the model is missing")
    if rest.startswith("openai:"):
        url, _, fragment = rest[len("openai:"):].partition("#")
        served, *more = fragment.split("#")
        if not served.strip():
            raise Bad("openai: 条目要在 # 后写服务端的模型名", "an openai: entry needs the served model name after #")
        served = served.strip()
        return ModelEntry(name or served.rstrip("/").rsplit("/", 1)[-1], _check_url(url.strip()), "openai",
                          model=served, options=_options(more))
    if rest.startswith("hf:"):
        body, _, fragment = rest[len("hf:"):].partition("#")
        body = body.strip()
        if body.startswith(("http://", "https://")):  # a dedicated endpoint (or any TGI-style server)
            served, *more = fragment.split("#") if fragment else ("",)
            if served.partition("=")[0].strip() in _OPTIONS | {"key_env"}:  # hf:URL#key_env=…: options, no model
                served, more = "", [served, *more]
            return ModelEntry(name or (served.strip() or urlsplit(body).hostname or body).rsplit("/", 1)[-1],
                              _check_url(body), "hf", model=served.strip() or None, options=_options(more))
        model_id, _, provider = body.partition(":")
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model_id):
            raise Bad(f"{model_id!r} 不是模型 id", f"{model_id!r} is not a model id like org/name")
        if provider and not re.fullmatch(r"[a-z0-9-]+", provider):
            raise Bad(f"{provider!r} 不是服务商名", f"{provider!r} is not a provider name like together")
        return ModelEntry(name or model_id.rsplit("/", 1)[-1], model_id, "hf", provider=provider or None,
                          options=_options(fragment.split("#")) if fragment else ())
    source, revision = rest, None
    if "@" in source and not os.path.isdir(source):
        source, _, revision = source.rpartition("@")
    return ModelEntry(name, os.path.expanduser(source.strip()), "local", revision=revision or None)


def model_list(raw: str) -> list[ModelEntry]:
    """A comma-separated list of model entries."""
    entries = [e for e in (part.strip() for part in raw.split(",")) if e]
    if not entries:
        raise Bad("至少写一个模型", "name at least one model")
    return [parse_model_entry(e) for e in entries]


# ---- the settings ----------------------------------------------------------------------------------------

MODEL_VARIABLES = ("MODELDECK_CHAT_MODEL", "MODELDECK_STORY_MODEL", "MODELDECK_TEXTGEN_MODELS",
                   "MODELDECK_CLASSIFIER_MODELS", "MODELDECK_CAPTION_MODEL", "MODELDECK_TRANSLATE_MODEL")
for _name in MODEL_VARIABLES:
    _add(_name, model_list, None, MODEL_EXAMPLE)  # None: the registry's default models

_add("MODELDECK_TRANSLATE_PREFIX", text, ">>cmn_Hans<<", ">>cmn_Hans<<")
_add("MODELDECK_DEVICE", device, None, "cuda")
_add("MODELDECK_DTYPE", one_of("float32", "float16", "bfloat16",
                               aliases={"fp32": "float32", "fp16": "float16", "half": "float16",
                                        "bf16": "bfloat16"}), None, "bfloat16")
_add("MODELDECK_QUANTIZE", one_of("int8", "none"), None, "none")
_add("MODELDECK_INT8_KERNEL", one_of("auto", "fbgemm", "onednn", "onednn_packed"), "auto", "fbgemm")
_add("MODELDECK_INT8_PROMPT_KERNEL", one_of("auto", "same", "fbgemm", "onednn", "onednn_packed"), "auto", "same")
_add("MODELDECK_LEAN_DECODE", flag, True, "0")
_add("MODELDECK_TRUST_REMOTE_CODE", flag, False, "1")
_add("MODELDECK_PRELOAD", roles, [], "chat,captioner")
_add("MODELDECK_TTS", one_of("auto", "gtts", "espeak", "off"), "auto", "espeak")
_add("MODELDECK_TTS_TIMEOUT", seconds, 30.0, "30")
_add("MODELDECK_AUDIO_DIR", text, "", "/tmp/modeldeck-audio")
_add("MODELDECK_AUDIO_MAX_AGE_DAYS", integer(1), 3, "3")
_add("MODELDECK_AUDIO_MAX_MB", integer(1), 500, "500")
_add("MODELDECK_MAX_CONTEXT_TOKENS", integer(16), 4096, "4096")
_add("MODELDECK_MAX_NEW_TOKENS", integer(1), 1024, "1024")
_add("MODELDECK_MAX_INPUT_CHARS", integer(1), 20000, "20000")
_add("MODELDECK_MAX_SPEECH_CHARS", integer(1), 3000, "3000")
_add("MODELDECK_MAX_IMAGE_PIXELS", integer(1), 50_000_000, "50000000")
_add("MODELDECK_MAX_UPLOAD_MB", integer(1), 10, "10")
_add("MODELDECK_QUEUE_SIZE", integer(1), 300, "300")  # all of ui.admission's lines together
_add("MODELDECK_QUEUE_POLL_MS", integer(1, 1000), 20, "20")  # how often an idle queue looks for work (ui.admission)
for _name, _default in (("MODELDECK_QUEUE_CHAT", 12), ("MODELDECK_QUEUE_TEXTGEN", 45),
                        ("MODELDECK_QUEUE_CLASSIFY", 200),
                        ("MODELDECK_QUEUE_CAPTION", 25), ("MODELDECK_QUEUE_SPEECH", 180)):
    _add(_name, integer(1), _default, str(_default))  # one line of ui.admission each
_add("MODELDECK_CLASSIFY_BATCH", integer(1), 32, "32")
_add("MODELDECK_MAX_BATCH_ROWS", integer(1), 1000, "1000")  # rows one file/batch classification may have
_add("MODELDECK_MAX_BATCH", integer(1), 4, "4")
_add("MODELDECK_PREFIX_CACHE_TOKENS", integer(0), 16384, "16384")
_add("MODELDECK_PREFILL_CHUNK", integer(0), None, "256")  # None: decoding.prefill_chunk; 0: whole prompts
_add("MODELDECK_BATCH_WINDOW_MS", integer(0), None, "30")  # None: automatic (batching.Batcher.window)
_add("MODELDECK_STREAM_INTERVAL_MS", integer(0), 0, "100")
_add("MODELDECK_SEED", integer(0, MAX_SEED), None, "42")
_add("MODELDECK_LOG_LEVEL", one_of("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "INFO")
_add("MODELDECK_REMOTE_TIMEOUT", seconds, 60.0, "60")
_add("MODELDECK_REMOTE_RETRIES", integer(0, 10), 2, "2")
_add("MODELDECK_OPENAI_API_KEY", text, "", "sk-…", secret=True)
_add("HF_TOKEN", text, "", "hf_…", secret=True)
_add("MODELDECK_API_KEY", text, "", "a-long-random-string", secret=True)  # the /v1 routes (server/)
_add("MODELDECK_API_CONCURRENCY", integer(1), None, "4")  # None: MODELDECK_MAX_BATCH
_add("MODELDECK_API_QUEUE", integer(0), 16, "16")
_add("MODELDECK_MCP", flag, True, "1")
