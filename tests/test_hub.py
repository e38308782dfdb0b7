"""An unreachable Hub fails at once, without retries, and is remembered so other tabs answer at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines import hub

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh process: huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import.
SCRIPT = """
import json
import httpx2

attempts = []
real = httpx2.HTTPTransport.handle_request

def counting(self, request):
    attempts.append(str(request.url))
    return real(self, request)

httpx2.HTTPTransport.handle_request = counting  # every real connection attempt passes here
from pipelines import ModelUnavailableError, registry

results = []
for role in ("chat", "classifier", "chat"):
    before = len(attempts)
    try:
        registry.get_model(role)
        results.append(["loaded", 0])
    except ModelUnavailableError as exc:
        results.append([exc.reason, len(attempts) - before])
print(json.dumps(results))
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: connections to it are refused


def test_a_refusing_hub_fails_without_retries_and_is_remembered(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp_path / "hf"),
                "MODELDECK_CHAT_MODEL": "Qwen/Qwen2.5-0.5B-Instruct",
                "MODELDECK_CLASSIFIER_MODELS": "distilbert/distilbert-base-uncased-finetuned-sst-2-english"})
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert all("no network access" in reason for reason, _ in results), results
    first, other_tab, again = (attempts for _, attempts in results)
    assert first == 1  # one refused connection, no retries with back-off
    assert other_tab == 0 and again == 0  # remembered: nothing more is tried for a while


class Refusing:
    """A transport whose connections are refused, counting attempts."""

    def __init__(self) -> None:
        self.attempts = 0

    def handle_request(self, request):
        import httpx2

        self.attempts += 1
        raise httpx2.ConnectError("[Errno -2] Name or service not known", request=request)


def test_an_unknown_host_is_remembered_for_a_minute_then_tried_again():
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    hub.forget()
    now = [1000.0]
    inner = Refusing()
    transport = hub.FastFailTransport(inner, clock=lambda: now[0])
    request = httpx2.Request("HEAD", "https://hub.invalid/x/resolve/main/config.json")
    for _ in range(3):
        with pytest.raises(OfflineModeIsEnabled):
            transport.handle_request(request)
    assert inner.attempts == 1
    assert request.extensions["timeout"]["connect"] <= hub.CONNECT_SECONDS
    now[0] += hub.REMEMBER_SECONDS
    with pytest.raises(OfflineModeIsEnabled):
        transport.handle_request(request)
    assert inner.attempts == 2  # after the minute, the Hub is tried again
    hub.forget()


LEAK_SCRIPT = """
import logging
logging.basicConfig(level=logging.DEBUG)
from pipelines import ModelUnavailableError, registry
from ui.about_tab import status_markdown

try:
    registry.get_model("captioner")
except ModelUnavailableError as exc:
    print("ERROR:", exc)
print("STATUS:", status_markdown())
"""


class Recorder(BaseHTTPRequestHandler):
    """A Hub stand-in that records every request's path and Authorization header, and has no models."""

    seen: list[tuple[str, str]] = []

    def _answer(self) -> None:
        Recorder.seen.append((self.path, self.headers.get("Authorization", "")))
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", "RepoNotFound")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b'{"error": "Repository not found"}')

    do_GET = do_HEAD = _answer

    def log_message(self, *_):  # keep the test output clean
        pass


def test_the_token_is_sent_to_the_hub_but_never_shown_or_logged(tmp_path):
    secret = "hf_TopSecretToken1234567890"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(tmp_path / "hf"),
                "HF_TOKEN": secret, "MODELDECK_CAPTION_MODEL": "someone/gated-model"})
    try:
        done = subprocess.run([sys.executable, "-c", LEAK_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=240)
    finally:
        server.shutdown()
    assert "ERROR:" in done.stdout and "someone/gated-model" in done.stdout, done.stderr[-3000:]
    assert any(auth == f"Bearer {secret}" for _, auth in Recorder.seen)  # the token really was used
    assert secret not in done.stdout and secret not in done.stderr  # not in the message, the page or the logs
