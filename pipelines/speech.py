"""Text to speech: gTTS first, espeak-ng offline when gTTS fails, files cached and cleaned up.

Files live in ``MODELDECK_AUDIO_DIR`` (default: ``modeldeck-audio`` in the system temp folder,
which gradio may serve). Each is named ``modeldeck-speech-<hash of (language, text)>``, so an identical
request is served from the cache (one espeak voiced while gTTS was down tries gTTS again first); files older
than ``MODELDECK_AUDIO_MAX_AGE_DAYS`` (3) and the oldest beyond ``MODELDECK_AUDIO_MAX_MB`` (500) are removed.
A file appears only once it is complete.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
import os
import shutil
import sys
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from .errors import InvalidInputError, SpeechUnavailableError, StorageError
from . import settings
from .inputs import clean_text, language as parse_language
from .streaming import has_cjk
from .voicing import VoicingError, join_audio, script_runs, spoken_cut

log = logging.getLogger(__name__)

GTTS_LANG = {"zh": "zh-CN", "en": "en"}
# espeak-ng 1.51 (Debian 12, the Spaces image) reads Chinese with "cmn" as pinyin spelled out in English,
# tone digits included ("xiao three mao one"); "cmn-latn-pinyin" reads it in Mandarin. "cmn" is kept for builds
# without that voice. Neither reads English: Latin-script runs get the English voice (see ``script_runs``).
ESPEAK_VOICES = {"zh": ("cmn-latn-pinyin", "cmn"), "en": ("en",)}
CACHE_VERSION = "2"  # in each file's name hash: audio made by an older voice choice is not served again
ENGINES = ("auto", "gtts", "espeak", "off")


@dataclass
class Speech:
    """A finished audio file and the engine that made it ("gtts", "espeak" or "cache")."""

    path: str
    engine: str
    notices: list[str] = field(default_factory=list)


def audio_dir() -> str:
    """The folder generated audio is kept in."""
    return os.path.abspath(settings.get("MODELDECK_AUDIO_DIR")
                           or os.path.join(tempfile.gettempdir(), "modeldeck-audio"))


def _engine_setting() -> str:
    return settings.get("MODELDECK_TTS")


def _deadline() -> float:
    return settings.get("MODELDECK_TTS_TIMEOUT")


class _Failed(Exception):
    """One engine failed; the message says why (for logs and the final notice)."""


def _gtts_bytes(text: str, language: str) -> bytes:
    try:
        from gtts import gTTS
    except ImportError as exc:
        raise _Failed("gTTS is not installed") from exc
    kwargs = {"text": text, "lang": GTTS_LANG[language]}
    if "timeout" in inspect.signature(gTTS.__init__).parameters:  # gTTS >= 2.5
        kwargs["timeout"] = _deadline()
    result: dict[str, object] = {}

    def run() -> None:
        try:
            buffer = io.BytesIO()
            gTTS(**kwargs).write_to_fp(buffer)  # into memory: a failure leaves no half-written file
            result["data"] = buffer.getvalue()
        except Exception as exc:  # gTTSError, AssertionError, requests' errors
            result["error"] = exc

    # gTTS < 2.5 sends requests without a timeout; a daemon thread keeps a hung request from blocking us.
    worker = threading.Thread(target=run, name="modeldeck-gtts", daemon=True)
    worker.start()
    worker.join(_deadline())
    if worker.is_alive():
        raise _Failed(f"gTTS gave no answer within {_deadline():.0f} s")
    if "error" in result:
        raise _Failed(f"gTTS failed: {result['error']}")
    data = result.get("data")
    if not data:
        raise _Failed("gTTS returned no audio")
    return data  # type: ignore[return-value]


def espeak_binary() -> str | None:
    """Path of espeak-ng (or espeak), or None when neither is installed."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def engines_markdown() -> str:
    """One line for the status page: the speech setting, and which engines this machine has."""
    binary = espeak_binary()
    try:
        from importlib.metadata import version

        gtts = f"gTTS {version('gTTS')}"
    except Exception:  # PackageNotFoundError: not installed
        gtts = "gTTS ❌ 未安装 not installed"
    if binary is None:
        offline = "espeak-ng ❌ 未安装，离线时没有语音 not installed: no speech without the network (packages.txt)"
    else:
        try:
            shown = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5).stdout.split()
            offline = f"espeak-ng {shown[3] if len(shown) > 3 else ''} ✅".replace("  ", " ")
        except (OSError, subprocess.TimeoutExpired):
            offline = "espeak-ng ✅"
    return (f"**语音 Speech:** `MODELDECK_TTS={_engine_setting()}` · 在线 online: {gtts}（需要网络 needs the network）"
            f" · 离线 offline: {offline}")


def _espeak_voice_bytes(binary: str, text: str, voice: str) -> bytes | None:
    """One espeak-ng run; None when this build has no such voice."""
    try:
        done = subprocess.run([binary, "-v", voice, "--stdout", "--stdin"], input=text.encode(),
                              capture_output=True, timeout=_deadline() * 2, check=False)
    except subprocess.TimeoutExpired as exc:
        raise _Failed("espeak-ng timed out") from exc
    if done.returncode != 0 or not done.stdout.startswith(b"RIFF"):
        message = done.stderr.decode(errors="replace").strip()
        if "does not exist" in message:
            return None
        raise _Failed(f"espeak-ng failed: {message[:200]}")
    return done.stdout


def _espeak_bytes(text: str, language: str) -> bytes:
    binary = espeak_binary()
    if binary is None:
        raise _Failed("espeak-ng is not installed")
    for voice in ESPEAK_VOICES[language]:
        data = _espeak_voice_bytes(binary, text, voice)
        if data is not None:
            return data
    raise _Failed(f"espeak-ng has no voice for {language} ({', '.join(ESPEAK_VOICES[language])})")


ENGINE_FUNCS: dict[str, tuple[str, Callable[[str, str], bytes]]] = {
    "gtts": (".mp3", _gtts_bytes), "espeak": (".wav", _espeak_bytes)}


def cleanup(folder: str | None = None, *, now: float | None = None) -> int:
    """Remove audio older than the age limit, then the oldest beyond the size cap; return how many."""
    folder = folder or audio_dir()
    now = time.time() if now is None else now
    max_age = settings.get("MODELDECK_AUDIO_MAX_AGE_DAYS") * 86400
    cap = settings.get("MODELDECK_AUDIO_MAX_MB") * 2**20
    try:
        entries = [e for e in os.scandir(folder) if e.is_file()]
    except FileNotFoundError:
        return 0
    removed = 0
    kept = []
    for entry in entries:
        stat = entry.stat()
        stale_tmp = entry.name.startswith(".tmp-") and now - stat.st_mtime > 3600
        if now - stat.st_mtime > max_age or stale_tmp:
            removed += remove_file(entry.path)
        elif not entry.name.startswith(".tmp-"):
            kept.append((stat.st_mtime, stat.st_size, entry.path))
    total = sum(size for _, size, _ in kept)
    for _, size, path in sorted(kept):
        if total <= cap:
            break
        removed += remove_file(path)
        total -= size
    return removed


def remove_file(path: str) -> int:
    """Delete ``path``; return 1 if it was removed, 0 if it was already gone or cannot be removed."""
    try:
        os.remove(path)
        return 1
    except OSError:
        return 0


def _storage_error(exc: OSError) -> StorageError:
    return StorageError(f"无法保存音频文件（{exc.strerror or exc}）。请检查 MODELDECK_AUDIO_DIR 是否可写、磁盘是否已满。",
                        f"The audio file could not be saved ({exc.strerror or exc}). Check that "
                        "MODELDECK_AUDIO_DIR is writable and the disk is not full.")


def synthesize_speech(text: str, language: str = "auto") -> Speech:
    """Return a finished audio file of ``text`` read in ``language`` ("zh", "en" or "auto")."""
    notices: list[str] = []
    lang = parse_language(language, allow_auto=True, default="auto")
    limit = settings.get("MODELDECK_MAX_SPEECH_CHARS")
    spoken = clean_text(text, field_zh="要朗读的文本", field_en="text to read", notices=[], max_chars=sys.maxsize).strip()
    if len(spoken) > limit:
        spoken = spoken_cut(spoken, limit)
        notices.append(f"要朗读的文本过长，只朗读了前 {len(spoken)} 个字符（到句末为止，上限 {limit}）。 / The text to read "
                       f"was too long; only its first {len(spoken)} characters were read (up to a sentence end; the "
                       f"limit is {limit}).")
    spoken = spoken.strip()
    if not any(ch.isalnum() for ch in spoken):
        raise InvalidInputError("文本里没有可以朗读的文字。", "The text has nothing that can be read aloud.")
    if lang == "auto":
        lang = "zh" if has_cjk(spoken) else "en"
    setting = _engine_setting()
    if setting == "off":
        raise SpeechUnavailableError("语音合成已关闭（MODELDECK_TTS=off）。", "Speech is turned off (MODELDECK_TTS=off).")
    folder = audio_dir()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise _storage_error(exc) from exc
    # The name is what a browser saves the file as (the audio player's download button): say what it is.
    stem = "modeldeck-speech-" + hashlib.sha256(f"{CACHE_VERSION}\n{lang}\n{spoken}".encode()).hexdigest()[:32]
    order = ["gtts", "espeak"] if setting == "auto" else [setting]
    fallback = ("在线语音（gTTS）不可用，已改用离线语音 espeak-ng。 / Online speech (gTTS) was unavailable; the "
                "offline voice espeak-ng was used instead.")
    reasons = []
    # Engine by engine, a file the engine made before comes from the cache: a text espeak voiced while gTTS was
    # down is tried with gTTS again (and said to be espeak's when it comes from the cache after all).
    for engine in order:
        ext, make = ENGINE_FUNCS[engine]
        cached = os.path.join(folder, stem + ext)
        if os.path.isfile(cached) and os.path.getsize(cached) > 0:
            os.utime(cached)
            return Speech(cached, "cache", notices + ([fallback] if engine != order[0] else []))
        if engine == order[0]:  # not for a file from the cache (this is the first engine without one)
            cleanup(folder)
        try:
            data = join_audio([make(part, part_lang) for part_lang, part in script_runs(spoken, lang)], ext)
        except (_Failed, VoicingError) as exc:
            log.warning("speech engine %s failed: %s", engine, exc)
            reasons.append(str(exc))
            continue
        path = os.path.join(folder, stem + ext)
        temp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}{ext}")
        try:
            with open(temp, "wb") as f:
                f.write(data)
            os.replace(temp, path)  # the final name appears only when the file is complete
        except OSError as exc:
            remove_file(temp)
            raise _storage_error(exc) from exc
        return Speech(path, engine, notices + ([fallback] if engine != order[0] else []))
    raise SpeechUnavailableError(
        "无法生成语音：" + "；".join(reasons) + "。在线语音需要网络；离线语音需要安装 espeak-ng。",
        "No audio could be made: " + "; ".join(reasons) + ". Online speech needs network access; "
        "offline speech needs espeak-ng installed.")

