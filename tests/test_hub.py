"""An unreachable Hub fails at once, without retries, and is remembered so other tabs answer at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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
