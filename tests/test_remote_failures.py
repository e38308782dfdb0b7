"""Edge cases a real server rarely shows on demand, through a small loopback fake that records what it gets:
429 with Retry-After, 503 then success, a stream that breaks or stalls, an unknown model, trimming through
``/tokenize``, vLLM's ``/classify``, and the key reaching the server but nothing else.

The normal paths are tested against a real server in ``test_remote_serve.py``.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest

import pipelines as p
from pipelines import InvalidInputError, ModelUnavailableError, PipelineError, RemoteBusyError, backends, registry

SECRET = "sk-TopSecretKey987654321"


class Fake:
    """A loopback server whose answers the test sets per path; every request is recorded."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]] = {}
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:  # an uploaded picture
                    body = {"bytes": len(raw)}
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append({"path": self.path, "headers": headers, "body": body})
                route = fake.routes.get(self.path)
                if route is None:
                    return self.reply(404, {"error": {"message": f"no route {self.path}"}})
                route(self, body)

            do_GET = do_POST = handle_any

            def reply(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                for key, value in {"content-type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def sse(self, events: list[Any], *, then: Callable[[], None] | None = None) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                if then:
                    then()
                    return
                self.wfile.write(b"data: [DONE]\n\n")

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


@pytest.fixture
def fake(monkeypatch):
    server = Fake()
    server.routes["/v1/models"] = lambda h, b: h.reply(200, {"data": [{"id": "m", "max_model_len": 256}]})
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Fake=openai:{server.url}/v1#m")
    monkeypatch.setenv("MODELDECK_OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("MODELDECK_REMOTE_RETRIES", "2")
    yield server
    server.close()


def test_429_says_how_long_to_wait_and_the_key_is_sent_but_never_shown(fake, caplog):
    from ui.about_tab import status_markdown

    fake.routes["/v1/chat/completions"] = lambda h, b: h.reply(429, {"error": {"message": "slow down"}},
                                                                {"retry-after": "17"})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RemoteBusyError) as err:
        p.chat("你好", max_new_tokens=4)
    assert err.value.retry_after == 17 and "17" in err.value.zh and "17 s" in err.value.en
    assert all(r["headers"].get("authorization") == f"Bearer {SECRET}" for r in fake.requests)
    assert [r["path"] for r in fake.requests].count("/v1/chat/completions") == 1  # a 429 is not retried
    page = status_markdown()
    for shown in (str(err.value), caplog.text, page, json.dumps([r["body"] for r in fake.requests])):
        assert SECRET not in shown
    assert fake.url in page and "❌" in page  # the last call failed, and says so


def test_retries_happen_before_the_first_token_only(fake):
    answers = iter([503, 200])

    def flaky(h, body):
        if next(answers) == 503:
            return h.reply(503, {"error": "warming up"})
        h.sse([chunk("你"), chunk("好"), {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}])
    fake.routes["/v1/chat/completions"] = flaky
    stream = p.chat("hi", max_new_tokens=4)
    assert stream.collect() == "你好"
    assert stream.usage.prompt_tokens == 9 and stream.usage.completion_tokens == 2
    assert [r["path"] for r in fake.requests].count("/v1/chat/completions") == 2

    def breaks(h, body):  # one token, then the connection drops: never resent
        h.sse([chunk("半")], then=lambda: h.connection.close())
    fake.routes["/v1/chat/completions"] = breaks
    fake.requests.clear()
    stream = p.chat("hi", max_new_tokens=4)
    seen = []
    with pytest.raises(PipelineError):
        for text in stream:
            seen.append(text)
    assert seen == ["半"]
    assert [r["path"] for r in fake.requests].count("/v1/chat/completions") == 1


def test_a_stalled_stream_times_out(fake, monkeypatch):
    monkeypatch.setenv("MODELDECK_REMOTE_TIMEOUT", "2")
    fake.routes["/v1/chat/completions"] = lambda h, b: h.sse([chunk("a")], then=lambda: fake.release.wait(60))
    with pytest.raises(PipelineError) as err:  # the server sends one chunk, then nothing
        p.chat("hi", max_new_tokens=4).collect()
    assert "2 s" in str(err.value) and "MODELDECK_REMOTE_TIMEOUT" in str(err.value)
    fake.release.set()


def test_an_unknown_model_names_the_variable(fake):
    fake.routes["/v1/chat/completions"] = lambda h, b: h.reply(404, {"error": {"message": "The model `m` does not "
                                                                                        "exist."}})
    with pytest.raises(ModelUnavailableError) as err:
        p.chat("hi", max_new_tokens=4)
    assert "MODELDECK_CHAT_MODEL" in str(err.value) and "does not exist" in str(err.value)


def test_a_too_long_answer_becomes_a_clear_message(fake):
    fake.routes["/v1/chat/completions"] = lambda h, b: h.reply(400, {"error": {"message": "This model's maximum "
                                                                                        "context length is 256"}})
    with pytest.raises(InvalidInputError) as err:
        p.chat("hi", max_new_tokens=4)
    assert "clear the chat" in str(err.value) and "256" in str(err.value)


def test_history_is_trimmed_with_the_servers_tokenizer(fake):
    fake.routes["/tokenize"] = lambda h, b: h.reply(200, {"count": sum(len(m["content"]) for m in b["messages"])})
    fake.routes["/v1/chat/completions"] = lambda h, b: h.sse([chunk("ok")])
    history = []
    for i in range(6):
        history += [{"role": "user", "content": f"q{i} " + "x" * 40}, {"role": "assistant", "content": "y" * 40}]
    stream = p.chat("last question", history, max_new_tokens=100, system_prompt="")
    assert stream.collect() == "ok"
    sent = fake.requests[-1]["body"]["messages"]
    assert sent[-1]["content"] == "last question" and len(sent) < len(history) + 1
    assert sum(len(m["content"]) for m in sent) <= 256 - 100  # the window from /v1/models, less the reply
    assert any("oldest" in n for n in stream.notices)


def test_vllm_classify(fake, monkeypatch):
    monkeypatch.setenv("MODELDECK_CLASSIFIER_MODELS", f"Remote cls=openai:{fake.url}/v1#cls")
    fake.routes["/classify"] = lambda h, b: h.reply(200, {"data": [
        {"index": i, "label": "positive", "probs": [0.2, 0.8], "num_classes": 2} for i, _ in enumerate(b["input"])]})
    scores = p.classify_text("很好")
    assert scores == {"正面 positive": 0.8, "类别 0 (class 0)": 0.2}
    assert fake.requests[-1]["body"] == {"model": "cls", "input": ["很好"]}


@pytest.fixture
def online(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)  # the "endpoints" are on loopback


def test_hf_endpoint_tasks_classify_caption_translate(fake, online, monkeypatch):
    """hf: entries naming an endpoint URL: the Inference API's {"inputs", "parameters"} shapes (no TGI here)."""
    monkeypatch.setenv("HF_TOKEN", "hf_NeverShownToken42")
    monkeypatch.setenv("MODELDECK_CLASSIFIER_MODELS", f"HF cls=hf:{fake.url}/cls")
    monkeypatch.setenv("MODELDECK_CAPTION_MODEL", f"HF cap=hf:{fake.url}/cap")
    monkeypatch.setenv("MODELDECK_TRANSLATE_MODEL", f"HF mt=hf:{fake.url}/mt")
    fake.routes["/cls"] = lambda h, b: h.reply(200, [[{"label": "POSITIVE", "score": 0.9},
                                                      {"label": "NEGATIVE", "score": 0.1}]])
    fake.routes["/cap"] = lambda h, b: h.reply(200, [{"generated_text": "a cat on a chair"}])
    fake.routes["/mt"] = lambda h, b: h.reply(200, [{"translation_text": "椅子上的猫"}])
    assert p.classify_text("great") == {"正面 positive": 0.9, "负面 negative": 0.1}
    from pathlib import Path

    caption = p.caption_image(str(Path(__file__).resolve().parent.parent / "example_images" / "cat.jpg"))
    assert (caption.en, caption.zh) == ("a cat on a chair", "椅子上的猫")
    assert fake.requests[-1]["body"]["inputs"] == "a cat on a chair"
    # HF_TOKEN goes to Hugging Face's hosts only: a server on loopback gets none (it got it before), unless the
    # entry names its key; the entry's own variable then goes, and HF_TOKEN does not.
    assert fake.requests and not any(r["headers"].get("authorization") for r in fake.requests)
    monkeypatch.setenv("MODELDECK_CLASSIFIER_MODELS", f"HF cls=hf:{fake.url}/cls#key_env=HF_TOKEN")
    assert p.classify_text("great") == {"正面 positive": 0.9, "负面 negative": 0.1}
    assert fake.requests[-1]["headers"].get("authorization") == "Bearer hf_NeverShownToken42"
    monkeypatch.setenv("MY_TGI_KEY", "tgi-own-key")
    monkeypatch.setenv("MODELDECK_CLASSIFIER_MODELS", f"HF cls=hf:{fake.url}/cls#key_env=MY_TGI_KEY")
    assert p.classify_text("great") == {"正面 positive": 0.9, "负面 negative": 0.1}
    assert fake.requests[-1]["headers"].get("authorization") == "Bearer tgi-own-key"


def test_hf_token_goes_only_to_hugging_face_hosts(monkeypatch):
    from pipelines.backends.hf_inference import HFRemote, hugging_face_host

    for url in ("https://router.huggingface.co", "https://x.endpoints.huggingface.cloud", "https://app.hf.space/v1"):
        assert hugging_face_host(url)
    for url in ("https://huggingface.co.evil.example", "http://127.0.0.1:8080", "https://nothuggingface.co"):
        assert not hugging_face_host(url)
    monkeypatch.setenv("HF_TOKEN", "hf_NeverShownToken42")

    def key(entry: str) -> str:
        monkeypatch.setenv("MODELDECK_CHAT_MODEL", entry)
        return HFRemote(registry.resolve("chat")).api_key()

    assert key("hf:Qwen/Qwen2.5-7B-Instruct") == "hf_NeverShownToken42"  # the router
    assert key("hf:https://abc.us-east-1.aws.endpoints.huggingface.cloud#tgi") == "hf_NeverShownToken42"
    assert key("hf:https://tgi.example.com#tgi") == ""
    assert key("hf:https://tgi.example.com#key_env=HF_TOKEN") == "hf_NeverShownToken42"


def test_hf_text_generation_streams_tgi_tokens(fake, online, monkeypatch):
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"HF gen=hf:{fake.url}/gen")
    # A server decoding a WordPiece vocabulary (GPT-2 Chinese) puts spaces between characters: removed as locally.
    tokens = [{"token": {"id": i, "text": t, "logprob": 0.0, "special": False}, "generated_text": None,
               "details": None} for i, t in enumerate(["你 ", "好 ", "天 ", "气 ", "很 ", "好"])]
    tokens[-1]["details"] = {"finish_reason": "length", "generated_tokens": 6}
    fake.routes["/gen"] = lambda h, b: h.sse(tokens)
    stream = p.generate_text("今天", max_new_tokens=6, num_return_sequences=2, seed=5)
    assert stream.collect() == "今天你好天气很好"
    assert fake.requests[-1]["body"]["parameters"]["seed"] == 5
    assert any("num_return_sequences=2" in n for n in stream.notices)


def test_a_remote_entry_in_a_role_its_scheme_cannot_serve_stops_start_up(monkeypatch):
    from pipelines import ConfigError

    monkeypatch.setenv("MODELDECK_CAPTION_MODEL", "openai:http://127.0.0.1:9/v1#blip")
    with pytest.raises(ConfigError) as err:
        backends.check_roles()
    assert "MODELDECK_CAPTION_MODEL" in str(err.value) and "hf:" in str(err.value)


def test_the_servers_tokenizer_is_probed_once_then_asked_once_per_chat(fake):
    fake.routes["/tokenize"] = lambda h, b: h.reply(200, {"count": 5})
    fake.routes["/v1/chat/completions"] = lambda h, b: h.sse([chunk("ok")])
    p.chat("first", max_new_tokens=4).collect()
    asked = sum(r["path"] == "/tokenize" for r in fake.requests)
    assert p.chat("second", max_new_tokens=4).collect() == "ok"
    assert sum(r["path"] == "/tokenize" for r in fake.requests) == asked + 1  # counting only, no probe: one less round trip


def test_each_remote_sequence_keeps_its_own_finish_reason(fake, monkeypatch, fresh_registry):
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"Far=openai:{fake.url}/v1#m")
    fake.routes["/v1/completions"] = lambda h, b: h.sse([
        {"choices": [{"index": 0, "text": "一二", "finish_reason": None}, {"index": 1, "text": "三", "finish_reason": None}]},
        {"choices": [{"index": 1, "text": "", "finish_reason": "stop"}]},
        {"choices": [{"index": 0, "text": "四", "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 4}}])
    stream = p.generate_text("hi", model="Far", max_new_tokens=3, num_return_sequences=2)
    stream.collect()
    assert [text.removeprefix("hi") for text in stream.texts] == ["一二四", "三"]
    assert stream.usage.finish_reasons == ["length", "eos"] and stream.usage.finish_reason == "length"
    assert stream.usage.completion_tokens == 4


def test_a_continuation_with_no_text_still_shows_the_prompt(fake, monkeypatch, fresh_registry):
    """A server whose model ends at once (its end token first) sends no text: the output is the prompt, as locally,
    not an empty box."""
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"Far=openai:{fake.url}/v1#m")
    fake.routes["/v1/completions"] = lambda h, b: h.sse([
        {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}])
    stream = p.generate_text("今天", model="Far", max_new_tokens=5)
    assert list(stream) == ["今天"] and stream.text == "今天"
    assert stream.usage.finish_reason == "eos"


def test_remote_streams_honour_the_stream_interval(fake, monkeypatch):
    """MODELDECK_STREAM_INTERVAL_MS spaces the updates of a remote stream too: chunks that arrive within it go out
    together, and the last update holds the whole reply."""
    monkeypatch.setenv("MODELDECK_STREAM_INTERVAL_MS", "60000")
    fake.routes["/v1/chat/completions"] = lambda h, b: h.sse([chunk(c) for c in "一二三四五六七八"])
    texts = list(p.chat("hi", max_new_tokens=8))
    assert texts == ["一", "一二三四五六七八"]


def test_a_redirect_is_not_followed_and_a_page_that_is_not_json_names_the_address(fake):
    """A proxy that redirects http:// to https:// (the key would go along) and a web page where the API should be:
    each says what to change, not "not JSON" or "the connection broke"."""
    def redirect(h, body):
        h.send_response(301)
        h.send_header("location", "https://secure.example/v1/models?token=abc")
        h.send_header("content-length", "0")
        h.end_headers()
    fake.routes["/v1/models"] = redirect
    with pytest.raises(ModelUnavailableError) as err:
        p.chat("hi", max_new_tokens=4)
    assert "https://secure.example/v1/models" in str(err.value) and "token=abc" not in str(err.value)
    assert "MODELDECK_CHAT_MODEL" in str(err.value) and "redirect" in str(err.value)
    assert [r["path"] for r in fake.requests] == ["/v1/models"]  # neither followed nor retried

    def page(h, body):
        payload = b"<html><body>Welcome to nginx!</body></html>"
        h.send_response(200)
        h.send_header("content-type", "text/html")
        h.send_header("content-length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
    fake.routes["/v1/models"] = page
    with pytest.raises(PipelineError) as err:
        p.chat("hi", max_new_tokens=4)
    assert "MODELDECK_CHAT_MODEL" in str(err.value) and "/v1" in str(err.value) and fake.url in str(err.value)
