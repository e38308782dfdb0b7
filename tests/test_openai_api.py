"""The /v1 API of the launched app, through the official ``openai`` client and huggingface_hub's InferenceClient."""

from __future__ import annotations

import json
import socket
import threading
from importlib.util import find_spec

import httpx
import openai
import pytest
from gradio_client import Client
from huggingface_hub import InferenceClient

from pipelines import registry
from pipelines.batching import Batcher, batcher_for
from pipelines.engine import engine
from pipelines.next_token import CHAT_SUFFIX
from server.limits import gate

from gates import HeldEngine, wait_until

CHAT = "Tiny Qwen2"
HI = [{"role": "user", "content": "你好"}]


@pytest.fixture(scope="module")
def base(url):
    return url.rstrip("/") + "/v1"


@pytest.fixture
def client(base):
    return openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=120)


@pytest.fixture
def no_eos(monkeypatch):
    """The tiny random chat model may end a reply at any token: let it run to max_tokens. Prefix reuse is off:
    a repeated prompt prefilled from a kept prefix gets int8 activations scaled differently, so a sampled
    token may differ, and these tests compare texts of the same prompt."""
    batch = batcher_for(registry.get_model("chat")).batch
    monkeypatch.setattr(batch, "eos", set())
    monkeypatch.setattr(batch, "prefixes", None)
    return batch


@pytest.fixture
def submitted(monkeypatch):
    """Every stream the chat batcher hands out during the test."""
    streams = []
    submit = Batcher.submit

    def spy(self, *args, **kwargs):
        stream = submit(self, *args, **kwargs)
        streams.append(stream)
        return stream

    monkeypatch.setattr(Batcher, "submit", spy)
    return streams


def wait_for(condition, what):
    """``wait_until`` that says, on a hang, where the chat batcher's requests were."""
    def state():
        batcher = batcher_for(registry.get_model("chat"))
        return (f"{what}: pending {len(batcher.pending)}, running {len(batcher.batch.requests)}, "
                f"decoders {engine.decoders()}")

    wait_until(condition, state)


def test_models_lists_the_chat_and_text_generation_models(client):
    names = [m.id for m in client.models.list().data]
    assert names == [CHAT, "Tiny Qwen2 B", "Tiny GPT-2 中文", "Tiny GPT-2 B"]


def test_chat_completion_whole(client, no_eos):
    reply = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=6, temperature=0, seed=1)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 6 and reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 6
    again = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=6, temperature=0, seed=1)
    assert again.choices[0].message.content == choice.message.content


def test_chat_completion_streamed_matches_the_whole_reply(client, no_eos):
    kwargs = dict(model=CHAT, messages=HI, max_tokens=8, temperature=0.9, seed=42)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 8 and not chunks[-1].choices


def test_same_reply_as_the_ui_endpoint(client, url, no_eos):
    ui = Client(url, verbose=False).predict("你好", [], "You are helpful.", 0, 0.9, 6, api_name="/chat")
    api = client.chat.completions.create(model=CHAT, max_tokens=6, temperature=0, messages=[
        {"role": "system", "content": "You are helpful."}, {"role": "user", "content": "你好"}])
    assert api.choices[0].message.content == ui


def test_stop_string_ends_the_reply_there(client, no_eos, submitted):
    kwargs = dict(model=CHAT, messages=HI, max_tokens=24, temperature=1.0, seed=3)
    text = client.chat.completions.create(**kwargs).choices[0].message.content
    later = [ch for ch in text[len(text) // 2:] if not ch.isspace()]
    assert later, f"the tiny model's reply has nothing to cut at: {text!r}"
    stop = later[0]
    for stream in (False, True):
        reply = client.chat.completions.create(**kwargs, stop=["never there", stop], stream=stream)
        if stream:
            chunks = list(reply)
            cut = "".join(c.choices[0].delta.content or "" for c in chunks)
            reason = chunks[-1].choices[0].finish_reason
        else:
            cut, reason = reply.choices[0].message.content, reply.choices[0].finish_reason
        assert cut == text[:text.find(stop)] and reason == "stop"
        assert submitted[-1].cancel_event.is_set()  # the generation itself stopped


def test_completions_with_n_choices_and_a_seed(client):
    kwargs = dict(model="Tiny GPT-2 B", prompt="你好", max_tokens=5, n=2, seed=7, temperature=0.9)
    first = client.completions.create(**kwargs)
    assert [c.index for c in first.choices] == [0, 1]
    assert first.usage.completion_tokens <= 2 * 5  # all choices count
    assert [c.text for c in client.completions.create(**kwargs).choices] == [c.text for c in first.choices]
    streamed = ["", ""]
    for event in client.completions.create(**kwargs, stream=True):
        for c in event.choices:
            streamed[c.index] += c.text
    assert streamed == [c.text for c in first.choices]
    echoed = client.completions.create(**kwargs, echo=True)
    assert [c.text for c in echoed.choices] == ["你好" + c.text for c in first.choices]


def test_closing_a_stream_stops_its_generation(client, no_eos, submitted):
    forwards = []
    model = registry.get_model("chat").model
    hook = model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        with HeldEngine():
            stream = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=200, stream=True)
            first = next(iter(stream))
            assert first.choices[0].delta.role == "assistant"
            stream.close()
            assert submitted[-1].cancel_event.wait(30), "the server did not notice the client leave"
        wait_for(lambda: batcher_for(registry.get_model("chat")).finished, "the engine to drop the request")
        assert submitted[-1].usage.completion_tokens <= 1 and len(forwards) <= 1
    finally:
        hook.remove()


def test_api_and_ui_chats_share_decode_steps(client, url, no_eos, submitted):
    rows = []
    model = registry.get_model("chat").model
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: rows.append(kwargs["input_ids"].shape[0]),
                                           with_kwargs=True)
    ui = Client(url, verbose=False)
    try:
        with HeldEngine():
            api = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=6, stream=True)
            next(iter(api))  # accepted and waiting in the batcher
            job = ui.submit("你好呀", [], "You are helpful.", 0.7, 0.9, 6, api_name="/chat")
            wait_for(lambda: len(submitted) == 2, "the UI chat to reach the batcher")
        text = "".join(c.choices[0].delta.content or "" for c in api if c.choices)
        assert isinstance(job.result(), str) and isinstance(text, str)
    finally:
        hook.remove()
    assert 2 in rows, f"forward passes' batch sizes: {rows}"
    assert all(s.usage.completion_tokens == 6 for s in submitted)


def test_past_the_limit_a_request_waits_then_is_refused_with_retry_after(client, monkeypatch, no_eos):
    monkeypatch.setenv("MODELDECK_API_CONCURRENCY", "1")
    monkeypatch.setenv("MODELDECK_API_QUEUE", "1")
    answers = {}
    with HeldEngine():
        running = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=4, stream=True)
        next(iter(running))

        def second():
            answers["waited"] = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=4)

        waiter = threading.Thread(target=second)
        waiter.start()
        wait_for(lambda: gate.waiting == 1, "the second request to wait")
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=CHAT, messages=HI, max_tokens=4)
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert "retry" in refused.value.message and "请求太多" in refused.value.message
    running.close()
    waiter.join(60)
    assert answers["waited"].usage.completion_tokens == 4
    assert gate.running == 0 and gate.waiting == 0


def test_a_request_whose_client_leaves_while_it_waits_gives_up_its_place(client, base, monkeypatch, no_eos,
                                                                       submitted):
    """It kept its place in the waiting room until its turn came, then started a generation for nobody."""
    monkeypatch.setenv("MODELDECK_API_CONCURRENCY", "1")
    monkeypatch.setenv("MODELDECK_API_QUEUE", "1")
    address = httpx.URL(base)
    body = json.dumps({"model": CHAT, "messages": HI, "max_tokens": 4, "stream": True}).encode()
    with HeldEngine():
        running = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=4, stream=True)
        next(iter(running))
        with socket.create_connection((address.host, address.port)) as leaving:
            leaving.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: modeldeck\r\nContent-Type: "
                            b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            wait_for(lambda: gate.waiting == 1, "the second request to wait")
        wait_for(lambda: gate.waiting == 0, "the request whose client left to give up its place")
        started = len(submitted)
    running.close()
    wait_for(lambda: gate.running == 0, "the running request to end")
    assert len(submitted) == started == 1  # the one that left never reached the model


def test_a_key_when_set_is_required(base, monkeypatch):
    monkeypatch.setenv("MODELDECK_API_KEY", "s3cret-key")
    with pytest.raises(openai.AuthenticationError) as denied:
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
    assert "MODELDECK_API_KEY" in denied.value.message
    assert httpx.get(base + "/models").status_code == 401
    assert httpx.post(base + "/chat/completions", json={"messages": HI}).status_code == 401
    assert openai.OpenAI(base_url=base, api_key="s3cret-key", max_retries=0).models.list().data


@pytest.mark.parametrize("kwargs,words", [
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"seed": -3}, "seed must be between"),
    ({"messages": []}, "messages must be a non-empty list"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "unknown role"),
    ({"messages": [{"role": "user", "content": "   "}]}, "Enter the message first"),
    ({"messages": [{"role": "user", "content": "\u200b\u200c\ufeff"}]}, "Enter the message first"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
     "last message must come from the user"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop must be"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs must be a whole number from 0 to 20"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs must be a whole number from 0 to 20"),
    ({"top_logprobs": 3}, "needs logprobs: true"),
    ({"n": 2}, "one choice per request"),
    ({"model": "Tiny GPT-2 B"}, "use /v1/completions"),
])
def test_a_bad_parameter_is_a_400_with_the_bilingual_message(client, kwargs, words):
    arguments = {"model": CHAT, "messages": HI, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**arguments)
    message = err.value.message
    assert words in message and any("\u4e00" <= ch <= "\u9fff" for ch in message)
    assert err.value.body["type"] == "invalid_request_error"


def test_an_unknown_model_is_a_404_and_a_broken_body_a_400(client, base):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert "no model called 'gpt-4o'" in err.value.message and CHAT in err.value.message
    broken = httpx.post(base + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "JSON object" in broken.json()["error"]["message"]


def test_clamped_values_are_used_and_said(client, no_eos):
    reply = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=4, temperature=9)
    assert reply.usage.completion_tokens == 4
    assert any("temperature" in notice for notice in reply.model_extra["notices"])


def test_no_cors_headers_for_other_sites(base):
    answer = httpx.get(base + "/models", headers={"Origin": "https://elsewhere.example"})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
    preflight = httpx.options(base + "/chat/completions", headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert preflight.headers.get("access-control-allow-origin") != "https://elsewhere.example"


def test_inference_client_streams_and_answers(base, no_eos, monkeypatch):
    from huggingface_hub import constants

    # Offline mode blocks every request huggingface_hub makes, loopback included; this one goes to the test app.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hf = InferenceClient(base_url=base)
    reply = hf.chat_completion(HI, model=CHAT, max_tokens=5, temperature=0)
    assert reply.choices[0].message.content is not None and reply.usage.completion_tokens == 5
    chunks = list(hf.chat_completion(HI, model=CHAT, max_tokens=5, temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply.choices[0].message.content


def test_a_client_leaving_a_whole_reply_request_stops_it(url, no_eos, submitted):
    import json
    import socket
    from urllib.parse import urlparse

    address = urlparse(url)
    body = json.dumps({"model": CHAT, "messages": HI, "max_tokens": 200}).encode()
    with HeldEngine():
        connection = socket.create_connection((address.hostname, address.port))
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_for(lambda: submitted, "the request to reach the batcher")
        connection.close()
        assert submitted[-1].cancel_event.wait(30), "the server did not notice the client leave"
    wait_for(lambda: batcher_for(registry.get_model("chat")).finished, "the engine to drop the request")
    assert submitted[-1].usage.completion_tokens <= 1
    wait_for(lambda: gate.running == 0, "the slot to be freed")


def test_launch_settings_add_the_routes_and_mcp_switch(app_module, monkeypatch):
    paths = {route.path for route in app_module.launch_settings()["app_kwargs"]["routes"]}
    assert paths == {"/v1/models", "/v1/models/{name:path}", "/v1/chat/completions", "/v1/completions",
                     "/v1/{path:path}"}
    assert app_module.launch_settings()["mcp_server"] is True
    monkeypatch.setenv("MODELDECK_MCP", "0")
    assert app_module.launch_settings()["mcp_server"] is False
    monkeypatch.setenv("MODELDECK_MCP", "1")
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "mcp" else find_spec(name, *a))
    assert app_module.launch_settings()["mcp_server"] is False  # gradio would refuse to launch without it


def _check_chat_tokens(tokens, top_n):
    """Every token's logprob is <= 0, its top list is sorted, and the token's own entry in it (if any) agrees."""
    assert tokens
    for token in tokens:
        assert token.logprob <= 0 and len(token.top_logprobs) == top_n
        values = [t.logprob for t in token.top_logprobs]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        mine = [t.logprob for t in token.top_logprobs if t.bytes == token.bytes]
        assert not mine or mine[0] == pytest.approx(token.logprob, abs=1e-5)
        assert bytes(token.bytes).decode("utf-8", "replace") == token.token


def test_chat_logprobs_whole_and_streamed(client, no_eos):
    kwargs = dict(model=CHAT, messages=HI, max_tokens=8, temperature=0, logprobs=True, top_logprobs=5)
    reply = client.chat.completions.create(**kwargs)
    tokens = reply.choices[0].logprobs.content
    assert len(tokens) == 8 == reply.usage.completion_tokens
    _check_chat_tokens(tokens, 5)
    for token in tokens:  # temperature 0: the chosen token is the most likely one
        assert token.top_logprobs[0].bytes == token.bytes
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob, abs=1e-5)
    assert b"".join(bytes(t.bytes) for t in tokens).decode("utf-8", "replace") == reply.choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, pytest.approx(t.logprob, abs=1e-5)) for t in tokens]
    for c in chunks:  # each event's tokens write exactly the text it carries
        if c.choices and c.choices[0].logprobs:
            written = b"".join(bytes(t.bytes) for t in c.choices[0].logprobs.content)
            assert written.decode("utf-8", "replace") == c.choices[0].delta.content
    plain = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=3)
    assert plain.choices[0].logprobs is None


def test_chat_logprobs_without_alternatives_and_sampled(client, no_eos):
    reply = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=6, temperature=1.5, seed=5,
                                           logprobs=True)
    tokens = reply.choices[0].logprobs.content
    assert len(tokens) == 6 and all(t.logprob <= 0 and t.top_logprobs == [] for t in tokens)


def test_completion_logprobs_whole_and_streamed(client):
    kwargs = dict(model="Tiny GPT-2 B", prompt="Hello", max_tokens=6, temperature=0, logprobs=3)
    reply = client.completions.create(**kwargs)
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) > 0
    assert all(v <= 0 for v in lp.token_logprobs) and lp.text_offset[0] == 0
    assert lp.text_offset == sorted(lp.text_offset)
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 0 < len(top) <= 3 and all(v <= 0 for v in top.values())
        values = list(top.values())
        assert values == sorted(values, reverse=True)
        best = max(top, key=top.get)  # temperature 0: the chosen token is the top-1
        assert best == token and top[token] == pytest.approx(logprob, abs=1e-5)
    streamed = []
    for event in client.completions.create(**kwargs, stream=True):
        for c in event.choices:
            if c.logprobs:
                streamed += list(zip(c.logprobs.tokens, c.logprobs.token_logprobs, c.logprobs.text_offset))
    assert [(t, pytest.approx(v, abs=1e-5), o) for t, v, o in streamed] == list(
        zip(lp.tokens, lp.token_logprobs, lp.text_offset))


def oracle_logprobs(model_name, text):
    """Each token of ``text`` (a text, or token ids) after the ones before it, straight from the model's forward
    pass (not the API's code): (token id, log-probability), the first token without one."""
    import torch

    loaded = registry.get_model("textgen", model_name)
    ids = text if isinstance(text, list) else loaded.processor(text, add_special_tokens=False)["input_ids"]

    def run():
        with torch.inference_mode():
            logits = loaded.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
        rows = logits.log_softmax(-1)
        return [(ids[0], None)] + [(ids[i], float(rows[i - 1, ids[i]])) for i in range(1, len(ids))]

    return engine.call(run)


@pytest.mark.parametrize("model", ["Tiny GPT-2 B", "Tiny GPT-2 中文"])
def test_echo_with_logprobs_scores_the_prompt_tokens_too(client, model, monkeypatch):
    """What evaluation harnesses read for a text's log-likelihood (echo, logprobs, a token or so): the prompt's
    tokens come first, each with its log-probability after the ones before it (the first ``null``)."""
    monkeypatch.setattr("pipelines.scoring.ROWS_AT_A_TIME", 3)  # a few rows at a time, as in a long text
    prompt = "Hello world, 你好世界 again" if model == "Tiny GPT-2 B" else "你好世界，今天天气很好"
    kwargs = dict(model=model, prompt=prompt, max_tokens=3, temperature=0, logprobs=2, echo=True)
    lp = client.completions.create(**kwargs).choices[0].logprobs
    oracle = oracle_logprobs(model, prompt)
    n = len(oracle)
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) > n
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None and lp.text_offset[0] == 0
    assert lp.token_logprobs[1:n] == pytest.approx([v for _, v in oracle[1:]], abs=1e-4)
    assert lp.text_offset[:n] == sorted(lp.text_offset[:n]) and lp.text_offset[n - 1] < len(prompt)
    assert all(offset >= len(prompt) for offset in lp.text_offset[n:])  # then the generated tokens
    for top, value in zip(lp.top_logprobs[1:n], lp.token_logprobs[1:n]):
        assert len(top) == 2 and max(top.values()) >= value - 1e-5
    streamed = []
    for event in client.completions.create(**kwargs, stream=True):
        for c in event.choices:
            if c.logprobs:
                streamed += list(zip(c.logprobs.tokens, c.logprobs.token_logprobs, c.logprobs.text_offset))
    assert [(t, None if v is None else pytest.approx(v, abs=1e-5), o) for t, v, o in streamed] == list(
        zip(lp.tokens, lp.token_logprobs, lp.text_offset))
    plain = client.completions.create(**{**kwargs, "echo": False}).choices[0].logprobs
    assert plain.text_offset[0] == 0 and len(plain.tokens) == len(lp.tokens) - n  # no echo: no prompt tokens


def test_a_prompt_of_token_ids_is_scored_as_sent_as_evaluation_harnesses_send_it(client, monkeypatch):
    """lm-evaluation-harness's ``local-completions`` sends its own tokens, a batch of one, echo, logprobs 1 and
    one new token, and sums ``token_logprobs[ctxlen:-1]``: those must be the sent ids' own."""
    ids = [5, 17, 23, 42, 8, 30, 11]
    reply = client.completions.create(model="Tiny GPT-2 B", prompt=[ids], max_tokens=1, temperature=0,
                                      logprobs=1, echo=True)
    lp, oracle = reply.choices[0].logprobs, oracle_logprobs("Tiny GPT-2 B", ids)
    assert len(lp.token_logprobs) == len(ids) + 1 and lp.token_logprobs[0] is None
    assert lp.token_logprobs[1:-1] == pytest.approx([v for _, v in oracle[1:]], abs=1e-4)
    text = registry.get_model("textgen", "Tiny GPT-2 B").processor.decode(ids)
    assert reply.choices[0].text.startswith(text) and lp.text_offset[-1] >= len(text)
    plain = client.completions.create(model="Tiny GPT-2 B", prompt=ids, max_tokens=2, temperature=0, seed=1)
    assert plain.choices[0].text == client.completions.create(
        model="Tiny GPT-2 B", prompt=text, max_tokens=2, temperature=0, seed=1).choices[0].text
    # A real vocabulary's text does not always read back as the same ids ("ab" sent as "a" + "b"): the ids sent
    # are scored, not the tokens of their text (here a text that reads back as other tokens).
    monkeypatch.setattr("pipelines.prompt_text", lambda sent, model: "的的")
    again = client.completions.create(model="Tiny GPT-2 B", prompt=[ids], max_tokens=1, temperature=0,
                                      logprobs=1, echo=True).choices[0]
    assert again.text.startswith("的的") and again.logprobs.token_logprobs[1:-1] == pytest.approx(
        lp.token_logprobs[1:-1], abs=1e-5)


@pytest.mark.parametrize("prompt, message", [([], "one list of token ids"), ([3, True], "one list of token ids"),
                                             ([[1, 2], [3]], "one list of token ids"), ([3, -1], "between 0 and"),
                                             ([10 ** 9], "between 0 and")])
def test_bad_token_id_prompts_are_a_400(client, prompt, message):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="Tiny GPT-2 B", prompt=prompt, max_tokens=1, echo=True, logprobs=1)
    assert message in err.value.message


def test_a_prompt_longer_than_the_window_is_scored_from_its_end_with_a_notice(client, monkeypatch):
    import pipelines

    prompt = "Hello world, 你好世界 again"
    whole = pipelines.prompt_logprobs(prompt, "Tiny GPT-2 B", top_logprobs=1)
    monkeypatch.setattr("pipelines.scoring.context_window", lambda loaded: 4)
    notices = []
    cut = pipelines.prompt_logprobs(prompt, "Tiny GPT-2 B", top_logprobs=1, notices=notices)
    assert len(cut) == 4 and cut[0] == (whole[-4][0], None)  # the last 4 tokens, the first of them unscored
    assert [offset for offset, _ in cut] == [offset for offset, _ in whole[-4:]]
    assert any("last 4 tokens" in n and "最后 4 个词元" in n for n in notices)
    with pytest.raises(pipelines.InvalidInputError, match="recognises no character"):
        pipelines.prompt_logprobs("", "Tiny GPT-2 B")
    with pytest.raises(pipelines.InvalidInputError, match="Only a text generation model"):
        pipelines.prompt_logprobs("hi", f"{CHAT} {CHAT_SUFFIX}")


@pytest.mark.parametrize("model", ["Tiny GPT-2 B", "Tiny GPT-2 中文"])
def test_a_long_prompt_of_token_ids_is_placed_at_the_cost_of_its_kept_tokens(model, monkeypatch):
    """Offsets of a prompt sent as ids come from decoding: every start of the prompt was decoded (quadratic: 12 s
    for 4 096 ids, most never scored); now only the kept tail's, with the same offsets as decoding every start."""
    import pipelines

    tokenizer = registry.get_model("textgen", model).processor
    ids = [(7 * i + 3) % 40 + 5 for i in range(300)]
    exact = [len(tokenizer.decode(ids[:i])) for i in range(len(ids))]
    monkeypatch.setattr("pipelines.scoring.context_window", lambda loaded: 16)
    decoded, real = [], type(tokenizer).decode
    monkeypatch.setattr(type(tokenizer), "decode", lambda self, *a, **k: decoded.append(1) or real(self, *a, **k))
    scored = pipelines.prompt_logprobs(ids, model, notices=[])
    assert [offset for offset, _ in scored] == exact[-16:]
    assert len(decoded) <= 16 + 2  # the kept tokens' starts, what comes before them, and the joint


@pytest.mark.parametrize("value", [21, -1, "3", True])
def test_completion_logprobs_out_of_range_is_a_400(client, value):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="Tiny GPT-2 B", prompt="Hello", max_tokens=2, logprobs=value)
    message = err.value.message
    assert "logprobs must be a whole number from 0 to 20" in message and "必须是 0 到 20 之间的整数" in message


def test_a_remote_model_cannot_give_logprobs(monkeypatch, fresh_registry):
    from server.protocol import ApiError
    from server.requests import read_completion

    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", "Far=openai:http://127.0.0.1:9/v1#far-model")
    assert read_completion({"model": "Far", "prompt": "hi"}).logprobs is None
    with pytest.raises(ApiError) as err:
        read_completion({"model": "Far", "prompt": "hi", "logprobs": 2})
    assert err.value.status == 400 and "remote server" in str(err.value) and "远程服务器" in str(err.value)


def test_logprobs_end_with_the_text_at_a_stop_string(client, no_eos):
    def written(part):
        return b"".join(bytes(t.bytes) for t in part).decode("utf-8", "ignore")

    # a stop string that is exactly a later token's text (after a whole character): the answer and its tokens
    # end before that token. The tiny model's replies are random text: the first seed whose reply has one.
    for seed in range(3, 23):
        kwargs = dict(model=CHAT, messages=HI, max_tokens=24, temperature=1.0, seed=seed, logprobs=True, top_logprobs=2)
        whole = client.chat.completions.create(**kwargs)
        text, tokens = whole.choices[0].message.content, whole.choices[0].logprobs.content
        ends = [k for k in range(len(tokens) // 2, len(tokens)) if tokens[k].token.strip() == tokens[k].token != ""
                and "\ufffd" not in tokens[k - 1].token + tokens[k].token
                and text.find(tokens[k].token) == len(written(tokens[:k]))]
        if ends:
            break
    assert ends, f"none of the tiny model's replies has a token to stop at: {text!r}"
    k = ends[0]
    for stream in (False, True):
        reply = client.chat.completions.create(**kwargs, stop=[tokens[k].token], stream=stream)
        if stream:
            got = [t for c in reply if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
        else:
            got = reply.choices[0].logprobs.content
        assert [t.token for t in got] == [t.token for t in tokens[:k]]
