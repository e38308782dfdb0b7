"""A remote server that goes down mid-answer (its connection reset after a few tokens): what arrived is kept and
a clear message says what happened, in the Chat and Text generation tabs and in ``/v1`` streams."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading

import gradio as gr
import httpx
import pytest

import pipelines as p
from pipelines import PipelineError
from ui import chat_tab, textgen_tab

from test_remote_failures import Fake, chunk


def reset(h, read: threading.Event) -> None:
    """Once the client has ``read`` the tokens, drop the connection the way a crashed server does: a TCP reset, no
    end of the reply (a reset that comes first takes the unread tokens with it, in the kernel)."""
    h.wfile.flush()
    read.wait(30)
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
    h.wfile = io.BytesIO()  # the handler's own last flush goes nowhere


def text_chunk(text: str) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": None}]}


@pytest.fixture
def dies(monkeypatch):
    """A server that streams 你, 好 (chat) or 天, 气 (completions), then, once the test sets its ``read``, resets
    the connection."""
    server = Fake()
    server.read = threading.Event()
    server.routes["/v1/models"] = lambda h, b: h.reply(200, {"data": [{"id": "m", "max_model_len": 256}]})
    server.routes["/v1/chat/completions"] = lambda h, b: h.sse([chunk("你"), chunk("好")],
                                                              then=lambda: reset(h, server.read))
    server.routes["/v1/completions"] = lambda h, b: h.sse([text_chunk("天"), text_chunk("气")],
                                                         then=lambda: reset(h, server.read))
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Far=openai:{server.url}/v1#m")
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"Far=openai:{server.url}/v1#m")
    monkeypatch.setenv("MODELDECK_REMOTE_RETRIES", "0")
    yield server
    server.close()


def says_it_broke(message: str) -> bool:
    return "Far" in message and "broke" in message and "kept" in message and "中断" in message


@pytest.mark.parametrize("interval", ["0", "60000"])
def test_the_pipeline_keeps_what_arrived(dies, monkeypatch, interval):
    """Also when MODELDECK_STREAM_INTERVAL_MS holds text back: what arrived goes out before the error."""
    monkeypatch.setenv("MODELDECK_STREAM_INTERVAL_MS", interval)
    seen = []
    with pytest.raises(PipelineError) as err:
        stream = p.chat("hi", max_new_tokens=8)
        threading.Timer(1.0, dies.read.set).start()  # the interval holds 好 back: nothing to wait for
        for text in stream:
            seen.append(text)
            if text == "你好":
                dies.read.set()
    assert seen[-1] == "你好"
    assert says_it_broke(str(err.value)), str(err.value)


def test_the_chat_tab_keeps_the_partial_answer(dies):
    seen = []
    with pytest.raises(gr.Error) as err:
        for history, _status, _colors in chat_tab.reply([{"role": "user", "content": "hi"}], "", 0.7, 0.9, 8,
                                                        model="Far"):
            seen.append(history)
            if history[-1]["content"] == "你好":
                dies.read.set()
    assert seen[-1][-1] == {"role": "assistant", "content": "你好"}
    assert says_it_broke(err.value.message), err.value.message


def test_the_text_generation_tab_keeps_the_partial_continuation(dies):
    seen = []
    with pytest.raises(gr.Error) as err:
        for text, *_ in textgen_tab.run("今天", "Far", 8, 0.8, 50, 0.95, 1.1, 1, None):
            seen.append(text)
            if text == "今天天气":
                dies.read.set()
    assert [t for t in seen if isinstance(t, str)][-1] == "今天天气"
    assert says_it_broke(err.value.message), err.value.message


def test_a_v1_stream_sends_what_arrived_then_an_error_event(dies, url):
    base = url.rstrip("/") + "/v1"
    body = {"model": "Far", "stream": True, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    events = []
    with httpx.stream("POST", base + "/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if "好" in line:
                    dies.read.set()
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    said = "".join((c.get("delta") or {}).get("content") or "" for e in parsed for c in e.get("choices") or [])
    assert said == "你好"
    assert "error" in parsed[-1] and says_it_broke(parsed[-1]["error"]["message"]), parsed[-1]
