"""Which key goes to which ``openai:`` server: never one server's key to another.

An entry with ``#key_env=NAME`` sends the key held in the environment variable ``NAME`` (a Space secret) and
no other. Once any entry has ``#key_env=``, entries without it send no key. Without any ``#key_env=`` (the
set-up of one server), ``MODELDECK_OPENAI_API_KEY`` goes to every ``openai:`` entry, as it always did, but
only while they all point at one host: entries on two hosts with that one key stop with a ``ConfigError`` that
asks for a ``#key_env=`` on each entry that needs a key (at start-up, and on any request). Ports do not count:
one host's servers are one owner's (vLLM's chat and ``--runner pooling`` servers side by side). A key is never
shown, only the name of its variable.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from .. import registry, settings
from ..errors import ConfigError
from ..settings import ModelEntry

SHARED_KEY = "MODELDECK_OPENAI_API_KEY"
log = logging.getLogger(__name__)


def key_variable(entry: ModelEntry) -> str:
    """The variable holding ``entry``'s key: its ``#key_env=``, else the shared ``MODELDECK_OPENAI_API_KEY``."""
    return entry.option("key_env") or SHARED_KEY


def _openai_entries() -> list[tuple[str, ModelEntry]]:
    """(variable, entry) of every configured ``openai:`` entry."""
    out = []
    for role in registry.ROLES:
        for spec in registry._safe_specs(role):
            if spec.is_remote and spec.entry is not None and spec.entry.scheme == "openai":
                out.append((spec.variable, spec.entry))
    return out


def check_shared_key() -> None:
    """Raise ``ConfigError`` when ``MODELDECK_OPENAI_API_KEY`` would go to ``openai:`` entries on more than one
    host (no entry says which key is its own with ``#key_env=``)."""
    entries = _openai_entries()
    if not settings.get(SHARED_KEY) or any(entry.option("key_env") for _, entry in entries):
        return
    hosts: dict[str, tuple[str, ModelEntry]] = {}
    for variable, entry in entries:
        hosts.setdefault(urlsplit(entry.source).hostname or "", (variable, entry))
    if len(hosts) < 2:
        return
    names = ", ".join(hosts)
    variable, entry = list(hosts.values())[1]
    raise ConfigError(
        variable, settings.redact(f"{entry.name}=openai:{entry.source}#{entry.model}"),
        f"{SHARED_KEY} 只有一个密钥，openai: 条目却指向 {len(hosts)} 台服务器（{names}），"
        "密钥会发给不该收到它的服务器："
        f"请在每个需要密钥的条目后写 #key_env=存放它的密钥的变量名（仍用这个密钥就写 #key_env={SHARED_KEY}）；"
        "只要有条目写了 #key_env=，没写的条目就不发送任何密钥",
        f"{SHARED_KEY} holds one key but the openai: entries point at {len(hosts)} servers ({names}), so it would "
        f"reach a server it is not meant for: add #key_env=<the variable holding its key> to each entry that needs "
        f"a key (#key_env={SHARED_KEY} to keep using this one); once any entry has #key_env=, entries without it "
        "are sent no key",
        f"{entry.name}=openai:{entry.source}#{entry.model}#key_env=MY_SERVER_KEY")


def check_keys() -> None:
    """Start-up check: the shared key reaches one host at most, and each ``#key_env=`` names a variable that is
    set."""
    check_shared_key()
    unused = unused_shared_key()
    if unused:
        log.warning("%s", unused)
    for variable, entry in _openai_entries():
        name = entry.option("key_env")
        if name and not settings.secret(name):
            raise ConfigError(variable, f"{entry.name}=openai:{entry.source}#{entry.model}#key_env={name}",
                              f"#key_env={name} 指向的环境变量 {name} 没有设置（请把密钥设为这个名字的 Secret）",
                              f"#key_env={name} names the environment variable {name}, which is not set "
                              "(add the key as a secret of that name)",
                              f"{entry.name}=openai:{entry.source}#{entry.model}#key_env={name}")


def unused_shared_key() -> str:
    """Why ``MODELDECK_OPENAI_API_KEY`` is set but sent to no server ('' when it is sent, or not set): no
    ``openai:`` entry, or entries that all say whose key they send with ``#key_env=`` and none names it."""
    if not settings.get(SHARED_KEY):
        return ""
    entries = _openai_entries()
    if not entries:
        return f"{SHARED_KEY} is set but no model entry is openai:, so it is sent to no server"
    named = {entry.option("key_env") for _, entry in entries}
    if any(named) and SHARED_KEY not in named:
        return (f"{SHARED_KEY} is set but sent to no server: once an entry has #key_env=, entries without it send "
                f"no key (add #key_env={SHARED_KEY} to the entries that should send it)")
    return ""


def api_key(entry: ModelEntry) -> str:
    """The key to send to ``entry``'s server ('' for none)."""
    name = entry.option("key_env")
    if name:
        return settings.secret(name)
    if any(other.option("key_env") for _, other in _openai_entries()):
        return ""
    check_shared_key()
    return settings.get(SHARED_KEY)
