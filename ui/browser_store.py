"""A ``gr.BrowserState`` read afresh from the browser at each event, and the page's time zone.

A BrowserState is read from ``localStorage`` once, when the page loads, and each event sends the page's copy.
Two tabs of one browser each held their own copy and wrote it back whole: a chat kept in one tab was gone once
the other (opened before it) kept one. The events that change a store therefore send what ``localStorage``
holds at that moment (the ``fresh_js`` hook), and the server reads it (``read``) and changes that. gradio's
page encrypts what it stores (CryptoJS AES with a passphrase, the key being sent to the page too), so the
server decrypts it with the store's secret. The same hook sends the browser's time zone, for the times shown.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)
MARK = "modeldeck_fresh"  # the key that tells ``read`` a value is the hook's, not the page's copy


def fresh_js(storage_key: str, at: int) -> str:
    """An event's ``js=``: the input at index ``at`` (the BrowserState) becomes what ``localStorage`` holds now,
    with the browser's time zone."""
    return f"""(...args) => {{
        let zone = ""; try {{ zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; }} catch (e) {{}}
        args[{at}] = {{{MARK}: true, stored: localStorage.getItem({json.dumps(storage_key)}), zone: zone,
                       offset: new Date().getTimezoneOffset()}};
        return args;
    }}"""


@dataclass
class Fresh:
    """What the browser's storage holds now (decrypted), and the time zone its times are shown in."""

    value: Any
    zone: tzinfo | None  # None: the server's own


def read(sent: Any, secret: str, default: Any) -> Fresh:
    """The store ``sent`` by an event: the hook's fresh read (decrypted; ``default`` when there is nothing, or
    nothing readable), else the page's copy as it is (a script or test calling the function directly)."""
    if not (isinstance(sent, dict) and sent.get(MARK) is True):
        return Fresh(sent, None)
    stored = sent.get("stored")
    value = default
    if isinstance(stored, str) and stored:
        try:
            value = decrypt(stored, secret)
        except (ValueError, KeyError, UnicodeDecodeError):  # damaged: the page itself would read the default
            log.warning("a browser store could not be read; it starts again empty")
    return Fresh(value, _zone(sent.get("zone"), sent.get("offset")))


def _zone(name: Any, offset: Any) -> tzinfo | None:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ValueError, OSError, KeyError):  # unknown here (no tz database entry): the offset still says
            pass
    if isinstance(offset, (int, float)) and not isinstance(offset, bool) and abs(offset) <= 24 * 60:
        return timezone(timedelta(minutes=-offset))  # getTimezoneOffset() is UTC minus local time
    return None


def local_time(timestamp: float, zone: tzinfo | None, form: str = "%m-%d %H:%M") -> str:
    """``timestamp`` (seconds since the epoch) as a time in ``zone`` (the server's own for None)."""
    return datetime.fromtimestamp(timestamp, zone).strftime(form)


def encrypt(value: Any, secret: str) -> str:
    """``value`` as gradio's page stores it (for tests: a store another tab wrote)."""
    import os

    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    salt = os.urandom(8)
    key, iv = _key_iv(secret, salt)
    padder = padding.PKCS7(128).padder()
    data = padder.update(json.dumps(value).encode("utf-8")) + padder.finalize()
    coder = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = b"Salted__" + salt + coder.update(data) + coder.finalize()
    return base64.b64encode(os.urandom(16)).decode() + ":" + base64.b64encode(body).decode()


def decrypt(stored: str, secret: str) -> Any:
    """The value gradio's page stored as ``stored`` ("iv:ciphertext", CryptoJS's OpenSSL format) with ``secret``."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    _, _, body = stored.partition(":")
    data = base64.b64decode(body, validate=True)
    if data[:8] != b"Salted__" or len(data) < 32 or len(data) % 16:
        raise ValueError("not a CryptoJS ciphertext")
    key, iv = _key_iv(secret, data[8:16])
    coder = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    text = unpadder.update(coder.update(data[16:]) + coder.finalize()) + unpadder.finalize()
    return json.loads(text.decode("utf-8"))


def _key_iv(secret: str, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey (MD5, one round), as CryptoJS derives an AES-256 key and IV from a passphrase;
    gradio's passphrase is the hex SHA-256 of the secret."""
    passphrase = hashlib.sha256(secret.encode("utf-8")).hexdigest().encode("ascii")
    derived, block = b"", b""
    while len(derived) < 48:
        block = hashlib.md5(block + passphrase + salt).digest()
        derived += block
    return derived[:32], derived[32:48]
