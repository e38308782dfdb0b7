"""Text cut into runs that one voice each can read, and the audio of those runs joined into one file."""

from __future__ import annotations

import io
import re
import wave

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LETTERS = re.compile(rf"[{_HAN}]+|[A-Za-z\u00c0-\u024f]+")
_SENTENCE_END = re.compile(r"[。！？!?…]+[”」』\"')）]*|[.!?]+[\"')”]*(?=\s|$)")


class VoicingError(Exception):
    """Audio parts that cannot be joined (the message says why)."""


def script_runs(text: str, language: str) -> list[tuple[str, str]]:
    """``text`` cut into (language, text) runs: Chinese characters for the Chinese voice, Latin letters for the
    English one; digits, spaces and punctuation stay with the run before them. ``language`` reads a text
    with neither."""
    starts: list[tuple[str, int]] = []
    for match in _LETTERS.finditer(text):
        lang = "zh" if re.match(rf"[{_HAN}]", match.group()) else "en"
        if not starts:
            starts.append((lang, 0))
        elif starts[-1][0] != lang:
            starts.append((lang, match.start()))
    if not starts:
        return [(language, text)]
    bounds = [start for _, start in starts] + [len(text)]
    return [(lang, text[a:b]) for (lang, _), a, b in zip(starts, bounds, bounds[1:]) if text[a:b].strip()]


def _pcm(data: bytes) -> tuple[tuple[int, int, int], bytes]:
    """A WAV's (channels, sample width, rate) and its samples. espeak-ng writing to a pipe cannot go back to
    fill in the sizes: its header claims ~2 GiB (13 hours), so the samples run to the end of the file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise VoicingError("not a WAV file")
    at, params = 12, None
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        if kind == b"fmt ":
            fmt = data[at + 8:at + 24]
            params = (int.from_bytes(fmt[2:4], "little"), int.from_bytes(fmt[14:16], "little") // 8,
                      int.from_bytes(fmt[4:8], "little"))
        elif kind == b"data" and params:
            return params, data[at + 8:at + 8 + size]
        at += 8 + size + (size & 1)
    raise VoicingError("a WAV file without samples")


def join_audio(parts: list[bytes], ext: str) -> bytes:
    """One file of ``parts`` played one after the other: MP3 frames simply follow each other (gTTS joins its own
    requests so); WAV samples go under one header with the right sizes."""
    if ext == ".mp3":
        return b"".join(parts)
    decoded = [_pcm(part) for part in parts]
    if len({params for params, _ in decoded}) != 1:
        raise VoicingError("the voices wrote different sample formats")
    (channels, width, rate), buffer = decoded[0][0], io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"".join(samples for _, samples in decoded))
    return buffer.getvalue()


def spoken_cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at its last sentence end in the second half of that
    (else at a space; a Chinese text at a character)."""
    head = text[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= limit // 2:
        return head[:ends[-1]]
    if text[limit:limit + 1].isalnum() and " " in head[limit // 2:]:
        return head[:head.rindex(" ")]
    return head
