"""Each ``openai:`` server gets its own key and no other: two loopback servers on two hosts (127.0.0.1 and
127.0.0.2) record the ``Authorization`` header of every request ModelDeck sends them."""

from __future__ import annotations

import logging

import pytest

import pipelines as p
from pipelines import ConfigError, ModelUnavailableError, backends

from test_remote_failures import Fake, chunk

SHARED = "sk-SharedKeyOfOneServer111"
PAID = "sk-PaidProviderKey222"


@pytest.fixture
def two_hosts(monkeypatch):
    """A "local" server on 127.0.0.1 and a "paid" one on 127.0.0.2, both serving model m."""
    servers = Fake("127.0.0.1"), Fake("127.0.0.2")
    for server in servers:
        server.routes["/v1/models"] = lambda h, b: h.reply(200, {"data": [{"id": "m", "max_model_len": 256}]})
        server.routes["/v1/chat/completions"] = lambda h, b: h.sse([chunk("ok")])
    for name in ("MODELDECK_OPENAI_API_KEY", "PAID_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELDECK_REMOTE_RETRIES", "0")
    yield servers
    for server in servers:
        server.close()


def sent_keys(server: Fake) -> set[str | None]:
    return {r["headers"].get("authorization") for r in server.requests}


def test_each_server_gets_only_the_key_its_entry_names(two_hosts, monkeypatch, caplog):
    from ui.about_tab import status_markdown

    local, paid = two_hosts
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Local=openai:{local.url}/v1#m,"
                                               f"Paid=openai:{paid.url}/v1#m#key_env=PAID_KEY")
    monkeypatch.setenv("PAID_KEY", PAID)
    monkeypatch.setenv("MODELDECK_OPENAI_API_KEY", SHARED)  # left over from a one-server set-up: sent nowhere now
    caplog.set_level(logging.DEBUG)
    backends.check_keys()
    assert p.chat("hi", model="Local", max_new_tokens=4).collect() == "ok"
    assert p.chat("hi", model="Paid", max_new_tokens=4).collect() == "ok"
    page = status_markdown()  # the status tab probes both servers with their own headers too
    assert local.requests and paid.requests
    assert sent_keys(local) == {None}
    assert sent_keys(paid) == {f"Bearer {PAID}"}
    for shown in (page, caplog.text):
        assert PAID not in shown and SHARED not in shown
    # the left-over key is named at start-up as sent nowhere, with what to write to send it
    assert "MODELDECK_OPENAI_API_KEY is set but sent to no server" in caplog.text
    assert "#key_env=MODELDECK_OPENAI_API_KEY" in caplog.text


def test_a_shared_key_is_named_unused_only_when_no_server_gets_it(monkeypatch, caplog):
    monkeypatch.setenv("MODELDECK_OPENAI_API_KEY", SHARED)
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", "hf:Qwen/Qwen2.5-0.5B-Instruct")
    backends.check_keys()
    assert "no model entry is openai:" in caplog.text and SHARED not in caplog.text
    caplog.clear()
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", "A=openai:http://127.0.0.1:9/v1#m,"
                                               "B=openai:http://127.0.0.2:9/v1#m#key_env=MODELDECK_OPENAI_API_KEY")
    backends.check_keys()  # named by an entry: sent to that server
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", "A=openai:http://127.0.0.1:9/v1#m")
    backends.check_keys()  # the one-server set-up: sent to it
    assert "MODELDECK_OPENAI_API_KEY" not in caplog.text


def test_one_shared_key_for_two_hosts_stops_start_up_and_is_sent_nowhere(two_hosts, monkeypatch):
    import app

    local, paid = two_hosts
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Local=openai:{local.url}/v1#m")
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"Paid=openai:{paid.url}/v1#m")
    monkeypatch.setenv("MODELDECK_OPENAI_API_KEY", PAID)
    with pytest.raises(SystemExit) as stop:
        app.check_settings()
    message = str(stop.value)
    assert "127.0.0.1" in message and "127.0.0.2" in message and "#key_env=" in message
    assert "MODELDECK_OPENAI_API_KEY" in message and PAID not in message
    with pytest.raises(ConfigError) as err:  # a request (no start-up check: a script using pipelines) sends nothing
        p.chat("hi", max_new_tokens=4).collect()
    assert PAID not in str(err.value) and "#key_env=" in str(err.value)
    from ui.about_tab import status_markdown

    assert "❌" in status_markdown()  # the status tab shows the servers, unreachable without a key to send
    assert all(PAID not in str(r["headers"]) for server in two_hosts for r in server.requests)


def test_one_key_for_one_host_keeps_working(two_hosts, monkeypatch):
    """The set-up of one server (several ports, such as vLLM's chat and pooling servers) sends the shared key."""
    local = two_hosts[0]
    other_port = Fake("127.0.0.1")
    other_port.routes.update(local.routes)
    try:
        monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"A=openai:{local.url}/v1#m,B=openai:{other_port.url}/v1#m")
        monkeypatch.setenv("MODELDECK_OPENAI_API_KEY", SHARED)
        backends.check_keys()
        assert p.chat("hi", model="A", max_new_tokens=4).collect() == "ok"
        assert p.chat("hi", model="B", max_new_tokens=4).collect() == "ok"
        assert sent_keys(local) == sent_keys(other_port) == {f"Bearer {SHARED}"}
    finally:
        other_port.close()


def test_key_env_naming_an_unset_variable_stops_start_up(two_hosts, monkeypatch):
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Paid=openai:{two_hosts[1].url}/v1#m#key_env=PAID_KEY")
    with pytest.raises(ConfigError) as err:
        backends.check_keys()
    assert "PAID_KEY" in str(err.value) and "MODELDECK_CHAT_MODEL" in str(err.value)


def test_a_refused_or_missing_key_names_what_to_set(two_hosts, monkeypatch):
    local, paid = two_hosts
    for server in two_hosts:
        server.routes["/v1/models"] = lambda h, b: h.reply(401, {"error": {"message": "bad key"}})
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Local=openai:{local.url}/v1#m,"
                                               f"Paid=openai:{paid.url}/v1#m#key_env=PAID_KEY")
    monkeypatch.setenv("PAID_KEY", PAID)
    with pytest.raises(ModelUnavailableError) as refused:
        p.chat("hi", model="Paid", max_new_tokens=4).collect()
    assert "refused the key" in str(refused.value) and "PAID_KEY" in str(refused.value)
    assert PAID not in str(refused.value)
    with pytest.raises(ModelUnavailableError) as missing:
        p.chat("hi", model="Local", max_new_tokens=4).collect()
    assert "No key was sent" in str(missing.value) and "#key_env=" in str(missing.value)
    assert "MODELDECK_CHAT_MODEL" in str(missing.value)
