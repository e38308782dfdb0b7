"""Tokens as people can read them, and the per-token log-probabilities the decode loop records.

A token is a piece of bytes. Byte-level vocabularies (GPT-2, Qwen) spell bytes with printable stand-ins
(``Ġ`` for a space); WordPiece marks word continuations with ``##``; SentencePiece writes ``▁`` for a
space and ``<0xE4>`` for a raw byte. ``token_bytes`` undoes each spelling; ``readable`` shows the text
the bytes make, with spaces and line breaks visible, and bytes that are only part of a character
(a Chinese character takes three in UTF-8) as ``<0xE4>``.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass, field
from typing import Any

BYTES_NOTE = ("<0x..> 是一个字符（例如汉字，UTF-8 编码占 3 个字节）被拆到几个词元里时的单个字节，和相邻词元拼起来才是完整的字。 / "
              "<0x..> is one byte of a character (a Chinese character takes 3 bytes in UTF-8) that is split "
              "across tokens; with its neighbours it makes the whole character.")
SPACE_NOTE = "␣ = 空格 space · ↵ = 换行 line break · ⇥ = 制表符 tab"

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
codecs.register_error("modeldeck-hex", lambda e: ("".join(f"<0x{b:02X}>" for b in e.object[e.start:e.end]), e.end))


@functools.lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte, reversed (stand-in -> byte)."""
    kept = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in kept:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _spelling(tokenizer: Any) -> str:
    """"byte-level", "wordpiece" or "other": how the tokenizer writes its pieces."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = repr(getattr(backend, "decoder", "")) if backend is not None else ""
    if "ByteLevel" in decoder:
        return "byte-level"
    if "WordPiece" in decoder or type(tokenizer).__name__.startswith("Bert"):
        return "wordpiece"
    return "other"


def token_bytes(tokenizer: Any, token_id: int) -> bytes:
    """Return the UTF-8 bytes token ``token_id`` stands for (WordPiece's ``##`` dropped)."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return b""
    spelling = _spelling(tokenizer)
    if spelling == "byte-level":
        alphabet = _byte_level_alphabet()
        if all(c in alphabet for c in piece):
            return bytes(alphabet[c] for c in piece)
        return piece.encode()  # an added token (<|im_end|>) is spelled as itself
    if spelling == "wordpiece":
        return piece.removeprefix("##").encode()
    byte = _BYTE_PIECE.match(piece)
    if byte:
        return bytes([int(byte.group(1), 16)])
    return piece.replace("▁", " ").encode()


def readable(tokenizer: Any, token_id: int) -> str:
    """Return token ``token_id`` as text: spaces as ␣, line breaks as ↵, partial characters as <0xE4>."""
    return readable_bytes(token_bytes(tokenizer, token_id))


def readable_bytes(raw: bytes) -> str:
    """Return a token's bytes as text: spaces as ␣, line breaks as ↵, partial characters as <0xE4>."""
    text = raw.decode("utf-8", errors="modeldeck-hex")
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "") or "∅"


def has_byte_pieces(labels: list[str]) -> bool:
    """True when some readable token shows raw bytes (so the ``BYTES_NOTE`` applies)."""
    return any("<0x" in label for label in labels)


@dataclass(frozen=True)
class TokenLogprob:
    """One token and its log-probability under the model (temperature 1, before any filter).

    ``top`` holds the most likely tokens at that step (most likely first), each a ``TokenLogprob``.
    ``to_openai()`` gives OpenAI's shape: ``{"token", "logprob", "bytes", "top_logprobs"}``.
    """

    id: int
    token: str
    bytes: list[int]
    logprob: float
    top: tuple["TokenLogprob", ...] = field(default=())

    def to_openai(self) -> dict[str, Any]:
        """This token as one entry of an OpenAI ``logprobs.content`` list."""
        return {"token": self.token, "logprob": self.logprob, "bytes": self.bytes,
                "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in self.top]}


def token_logprob(tokenizer: Any, token_id: int, logprob: float,
                  top: list[tuple[int, float]] | None = None) -> TokenLogprob:
    """Build a ``TokenLogprob`` for ``token_id`` (and its alternatives ``top``: (id, logprob) pairs)."""
    raw = token_bytes(tokenizer, token_id)
    return TokenLogprob(int(token_id), raw.decode("utf-8", errors="replace"), list(raw), float(logprob),
                        tuple(token_logprob(tokenizer, i, lp) for i, lp in (top or [])))
