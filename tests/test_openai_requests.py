"""What the /v1 API makes of unusual requests: null fields, fields of the wrong type, unknown paths and
methods, several system messages, and how each of several choices ends and is counted."""

from __future__ import annotations

import httpx
import openai
import pytest

from pipelines import registry
from server.jobs import Job
from server.protocol import Call

from test_openai_api import CHAT, HI, base, client  # noqa: F401  (fixtures)


def _error(answer: httpx.Response, status: int) -> dict:
    """The OpenAI error object of ``answer``, after checking its status, shape and bilingual message."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"]) and " / " in error["message"]
    return error


def test_a_null_max_completion_tokens_leaves_max_tokens_in_force(base):
    for body in ({"max_tokens": 3, "max_completion_tokens": None}, {"max_completion_tokens": 3, "max_tokens": None}):
        reply = httpx.post(base + "/completions", timeout=120, json={
            "model": "Tiny GPT-2 B", "prompt": "Hello", "temperature": 0, "logprobs": 0, **body}).json()
        assert reply["usage"]["completion_tokens"] <= 3, body
        assert len(reply["choices"][0]["logprobs"]["tokens"]) <= 3
    nulls = {"n": None, "best_of": None, "stop": None, "stream": None, "echo": None, "seed": None, "temperature": None}
    reply = httpx.post(base + "/completions", timeout=120,
                       json={"model": "Tiny GPT-2 B", "prompt": "Hello", "max_tokens": 2, **nulls})
    assert reply.status_code == 200 and len(reply.json()["choices"]) == 1, reply.text
    chat = httpx.post(base + "/chat/completions", timeout=120, json={
        "model": CHAT, "messages": HI, "max_tokens": 2, "n": None, "response_format": None, "logprobs": None})
    assert chat.status_code == 200 and chat.json()["usage"]["completion_tokens"] <= 2, chat.text


@pytest.mark.parametrize("fields,param", [
    ({"response_format": "json"}, "response_format"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"stream_options": "yes"}, "stream_options"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
    ({"messages": ["hi"]}, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages"),
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, "messages"),
    ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages"),
    ({"stop": ["a", 3]}, "stop"),
    ({"stop": {"a": 1}}, "stop"),
    ({"logit_bias": "x"}, "logit_bias"),
    ({"logit_bias": {"100": -100}}, "logit_bias"),
    ({"logprobs": "yes"}, "logprobs"),
    ({"temperature": "abc"}, "temperature"),
    ({"top_p": [1]}, "top_p"),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"max_completion_tokens": "many"}, "max_completion_tokens"),
    ({"seed": "x"}, "seed"),
    ({"temperature": True}, "temperature"),  # JSON's true read as 1 (a 1-token reply for max_tokens: true)
    ({"max_tokens": True}, "max_tokens"),
    ({"seed": False}, "seed"),
    ({"max_tokens": 5.5}, "max_tokens"),  # was rounded to 6 without a word
    ({"seed": 1.5}, "seed"),
])
def test_a_field_of_the_wrong_type_is_a_400_naming_it(base, fields, param):
    answer = httpx.post(base + "/chat/completions", timeout=120, json={"model": CHAT, "messages": HI, **fields})
    error = _error(answer, 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("fields,param", [
    ({"prompt": 5}, "prompt"), ({"echo": "yes"}, "echo"), ({"n": "two"}, "n"), ({"top_k": "x"}, "top_k"),
    ({"repetition_penalty": {}}, "repetition_penalty"), ({"prompt": "  "}, "prompt"),
    ({"n": True}, "n"), ({"top_k": False}, "top_k"), ({"n": 1.5}, "n"), ({"top_k": 2.7}, "top_k"),
])
def test_a_bad_completion_field_is_a_400_naming_it(base, fields, param):
    answer = httpx.post(base + "/completions", timeout=120,
                        json={"model": "Tiny GPT-2 B", "prompt": "Hi", "max_tokens": 2, **fields})
    assert _error(answer, 400)["param"] == param


def test_a_whole_number_written_as_a_decimal_is_taken(base):
    reply = httpx.post(base + "/completions", timeout=120,
                       json={"model": "Tiny GPT-2 B", "prompt": "Hi", "max_tokens": 2.0, "n": 1.0, "seed": 3.0})
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] <= 2, reply.text


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000], ids=["lists", "objects"])
def test_a_body_nested_too_deep_is_a_400_not_a_500(base, body):
    """json.loads raises RecursionError (not ValueError) past Python's recursion limit: that was a 500."""
    answer = httpx.post(base + "/chat/completions", timeout=120, content=body)
    assert "JSON object" in _error(answer, 400)["message"]


@pytest.mark.parametrize("chunked", [False, True], ids=["sized", "chunked"])
def test_a_body_too_large_is_a_413_and_the_api_still_answers(base, chunked):
    from server.openai_api import MAX_BODY_BYTES

    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * MAX_BODY_BYTES + b'"}]}'
    content = iter([huge[i:i + 2**20] for i in range(0, len(huge), 2**20)]) if chunked else huge
    answer = httpx.post(base + "/chat/completions", timeout=120, content=content)
    assert "MiB" in _error(answer, 413)["message"]
    reply = httpx.post(base + "/chat/completions", timeout=120, json={"model": CHAT, "messages": HI, "max_tokens": 1})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "  "}],
    [{"role": "user", "content": [{"type": "text", "text": ""}]}],
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}, {"role": "user", "content": ""}],
    [{"role": "user", "content": "Hello"}, {"role": "user", "content": "\u200b"}],
])
def test_a_blank_last_message_is_the_ui_s_enter_a_message_error(base, messages):
    """It was dropped like a blank history turn: the reply answered an earlier message, or the error said
    the last message was not the user's."""
    answer = httpx.post(base + "/chat/completions", timeout=120,
                        json={"model": CHAT, "messages": messages, "max_tokens": 2})
    error = _error(answer, 400)
    assert "Enter the message" in error["message"] and error["param"] == "messages"


def test_chat_says_which_fields_it_ignores(client):
    reply = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=2, extra_body={"top_k": 5})
    assert any("top_k" in notice for notice in reply.model_extra["notices"])


def test_models_can_be_retrieved_one_by_one(client, base):
    for listed in client.models.list().data:
        model = client.models.retrieve(listed.id)
        assert model.id == listed.id and model.model_extra["modeldeck_endpoint"] == listed.model_extra[
            "modeldeck_endpoint"]
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert "no model called 'gpt-4o'" in err.value.message and err.value.body["code"] == "model_not_found"
    assert _error(httpx.get(base + "/models/gpt-4o"), 404)["param"] == "model"


def test_a_model_is_found_by_its_configured_id_as_requests_find_it(client, base):
    """A request may name a model by the Hub id or folder it was configured with; so may GET /v1/models/{id}."""
    for role, endpoint in (("chat", "/v1/chat/completions"), ("textgen", "/v1/completions")):
        spec = registry.specs(role)[0]
        answer = httpx.get(f"{base}/models/{spec.source}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == spec.name and answer.json()["modeldeck_endpoint"] == endpoint
    chat = registry.specs("chat")[0]
    reply = client.chat.completions.create(model=chat.source, messages=HI, max_tokens=1)
    assert reply.model == chat.name


def test_every_configured_chat_model_is_served(client):
    from gates import PassGate

    with PassGate(registry.get_model("chat", "Tiny Qwen2 B")) as passes:
        reply = client.chat.completions.create(model="Tiny Qwen2 B", messages=HI, max_tokens=2)
    assert reply.model == "Tiny Qwen2 B" and passes.passes > 0
    assert client.models.retrieve("Tiny Qwen2 B").model_extra["modeldeck_endpoint"] == "/v1/chat/completions"


def test_notices_and_errors_name_the_field_the_request_sent(base):
    """A clamped or malformed max_tokens is called max_tokens (the request's word), not max_new_tokens."""
    for field in ("max_tokens", "max_completion_tokens"):
        reply = httpx.post(base + "/completions", timeout=120, json={
            "model": "Tiny GPT-2 B", "prompt": "Hello", "temperature": 0, field: 10 ** 6}).json()
        notices = " ".join(reply["notices"])
        assert f"{field}=1000000" in notices and "max_new_tokens" not in notices, notices
        error = _error(httpx.post(base + "/chat/completions", json={"messages": HI, field: "many"}), 400)
        assert error["param"] == field and f"The parameter {field} must be" in error["message"], error
        assert "max_new_tokens" not in error["message"]


def test_other_paths_and_methods_answer_in_openai_shape(base):
    assert "/v1/embeddings" in _error(httpx.post(base + "/embeddings", json={"input": "hi"}), 404)["message"]
    assert _error(httpx.get(base + "/files/abc"), 404)["type"] == "invalid_request_error"
    wrong = httpx.get(base + "/chat/completions")
    assert _error(wrong, 405) and wrong.headers["allow"] == "POST"
    assert "GET" in _error(httpx.delete(base + "/models"), 405)["message"]
    assert httpx.get(base + "/models").status_code == 200  # the real routes still answer


def test_every_system_message_is_used_in_order(client):
    def prompt_tokens(*systems):
        messages = [{"role": "system", "content": s} for s in systems] + HI
        reply = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=1, temperature=0)
        return reply.usage.prompt_tokens

    both = prompt_tokens("Answer briefly.", "Always answer in English.")
    assert both == prompt_tokens("Answer briefly.\n\nAlways answer in English.")
    assert both > prompt_tokens("Always answer in English.")  # the first one is not dropped
    developer = client.chat.completions.create(model=CHAT, max_tokens=1, temperature=0, messages=[
        {"role": "developer", "content": "Answer briefly."}, *HI])
    assert developer.usage.prompt_tokens == prompt_tokens("Answer briefly.")


def _choices(client, stream=False, **kwargs):
    """Each choice's (text, finish reason, tokens) and the usage, whole or gathered from a stream."""
    if not stream:
        reply = client.completions.create(**kwargs)
        return [(c.text, c.finish_reason, len(c.logprobs.tokens)) for c in reply.choices], reply.usage
    texts, reasons, tokens, usage = {}, {}, {}, None
    for event in client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):
        usage = event.usage or usage
        for c in event.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            reasons[c.index] = c.finish_reason or reasons.get(c.index)
            tokens[c.index] = tokens.get(c.index, 0) + len(c.logprobs.tokens if c.logprobs else [])
    return [(texts[i], reasons[i], tokens[i]) for i in sorted(texts)], usage


def test_each_of_n_choices_has_its_own_finish_reason_and_usage_counts_them_all(client):
    kwargs = dict(model="Tiny GPT-2 中文", prompt="你好", max_tokens=6, n=4, temperature=1, logprobs=0)
    for seed in range(20):  # the tiny model's first seed where some choices end early and some run to the limit
        choices, usage = _choices(client, seed=seed, **kwargs)
        if {n == 6 for _, _, n in choices} == {True, False}:
            break
    assert {n == 6 for _, _, n in choices} == {True, False}, choices
    assert [reason for _, reason, _ in choices] == ["length" if n == 6 else "stop" for _, _, n in choices]
    assert usage.completion_tokens == sum(n for _, _, n in choices) > max(n for _, _, n in choices)
    assert _choices(client, stream=True, seed=seed, **kwargs) == (choices, usage)


def test_a_chat_reply_that_ends_before_the_limit_is_stop(client):
    for seed in range(20):
        reply = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=8, temperature=1.2, seed=seed)
        if reply.usage.completion_tokens < 8:
            break
    assert reply.usage.completion_tokens < 8, "the tiny chat model never ended a reply early"
    assert reply.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model=CHAT, messages=HI, max_tokens=8, temperature=1.2, seed=seed,
                                                 stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_a_stream_whose_sent_text_decoding_changes_still_adds_up():
    job = Job(Call("complete", "Tiny GPT-2 B", {}))
    job.texts = ["he '"]
    sent = [text for _, text in job.news()]
    job.texts = ["he's here"]  # a tokenizer's clean-up dropped the space already sent
    sent += [text for _, text in job.news(final=True)]
    assert "".join(sent) == "he 's here"
    assert job.news(final=True) == []
