"""ModelDeck's own task functions against real vLLM servers (CPU build, tiny models).

Each test goes through ``pipelines`` (chat, story, text generation, classification) with the model
variables pointing at ``openai:<vLLM URL>/v1#<served name>`` entries, and checks what the server saw
through its own ``/metrics``, ``/tokenize`` and ``/v1`` answers. The tiny chat and GPT-2 models never
pick their end token greedily (tests/tiny_models.py), so a greedy reply always runs to ``max_tokens``
unless it is cut.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

import pipelines
from pipelines import InvalidInputError, ModelUnavailableError

from gates import wait_until

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]

CHAT_NAME = "tiny-qwen2-vllm"
GPT2_NAME = "tiny-gpt2-vllm"
LONGEST = 400  # new tokens a chat may ask of the 512-position chat server (its prompt here is far under 112)
CLS_NAME = "tiny-bert-cls-vllm"
CJK = r"\u4e00-\u9fff\u3000-\u303f\uff00-\uffef"


def post(server, path: str, body: dict) -> dict:
    request = urllib.request.Request(server.base + path, json.dumps(body).encode(),
                                     {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def metric(server, name: str, **labels: str) -> float:
    """The value of one ``/metrics`` sample (summed over the samples that match ``labels``)."""
    with urllib.request.urlopen(server.base + "/metrics", timeout=30) as response:
        text = response.read().decode()
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total, found = total + float(match.group(2)), True
    assert found, f"{name} {labels} not in /metrics"
    return total


def generated(server) -> float:
    return metric(server, "vllm:generation_tokens_total")


def wait_idle(server, timeout: float = 120) -> None:
    """Return once the server has no running or waiting request (it polls the server's own gauges)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(server, "vllm:num_requests_running") == 0 and metric(server, "vllm:num_requests_waiting") == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the vLLM server kept generating")


@pytest.fixture(scope="module")
def servers(vllm_servers):
    ready = {kind: vllm_servers.ready(kind) for kind in ("chat", "textgen", "classifier")}
    for kind, name in (("chat", CHAT_NAME), ("textgen", GPT2_NAME)):  # a server's first request is slow (warm-up)
        post(ready[kind], "/v1/completions", {"model": name, "prompt": "hi", "max_tokens": 4})
    return ready


@pytest.fixture
def remote(servers, monkeypatch, fresh_registry):
    """Chat, story, text generation and classification all pointed at the vLLM servers."""
    chat, gpt2, cls = servers["chat"], servers["textgen"], servers["classifier"]
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"vLLM Qwen2=openai:{chat.base}/v1#{CHAT_NAME}")
    monkeypatch.delenv("MODELDECK_STORY_MODEL", raising=False)  # the story role follows chat
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"vLLM GPT-2 中文=openai:{gpt2.base}/v1#{GPT2_NAME}")
    monkeypatch.setenv("MODELDECK_CLASSIFIER_MODELS", f"vLLM BERT=openai:{cls.base}/v1#{CLS_NAME}")
    return servers


def test_chat_streams_from_vllm_with_the_servers_usage(remote):
    server = remote["chat"]
    before = generated(server)
    stream = pipelines.chat("你好，介绍一下你自己", [{"role": "user", "content": "hi"},
                                                  {"role": "assistant", "content": "Hello!"}],
                            temperature=0, max_new_tokens=24)
    texts = list(stream)
    assert len(texts) >= 2 and texts[-1]  # several cumulative updates, not one block
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert "\ufffd" not in texts[-1]
    assert stream.usage.completion_tokens == 24 and stream.usage.finish_reason == "length"
    sent = [{"role": "system", "content": pipelines.DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "你好，介绍一下你自己"}]
    counted = post(server, "/tokenize", {"model": CHAT_NAME, "messages": sent, "add_generation_prompt": True})
    assert stream.usage.prompt_tokens == counted["count"]  # the server's usage chunk, for the whole conversation
    wait_idle(server)
    assert generated(server) - before == 24  # the server generated exactly what ModelDeck showed


def test_story_streams_from_vllm(remote):
    server = remote["chat"]
    before = generated(server)
    stream = pipelines.write_story("a dog on a red chair", "童话", 50, 5, "en", seed=3)
    texts = list(stream)
    assert len(texts) >= 2 and stream.text.strip()
    wait_idle(server)
    assert generated(server) - before == stream.usage.completion_tokens > 0


def test_stop_aborts_generation_on_the_server(remote):
    server = remote["chat"]
    for _ in range(10):  # float32 vLLM on a fast CPU beat the pause 3 times running in 2 of 5 CI runs
        before = generated(server)
        finished = metric(server, "vllm:request_success_total")  # aborted requests are not counted here
        aborted = server.log_tail(10**8).count("Aborted request")
        # As many tokens as the 512-position context leaves (float32 vLLM on a fast CPU wrote 256 before the pause)
        stream = pipelines.chat("Tell me a long story.", temperature=0, max_new_tokens=LONGEST)
        first = next(iter(stream))
        assert first
        # The engine core stands still while ModelDeck leaves, so a fast server cannot finish the reply first;
        # but it may have finished it already, between the first token and the pause (a loaded machine can hold
        # this process back that long): then it was never cut, and the scenario is tried again.
        with server.children_paused():
            stream.close()  # what Stop and a closed browser tab do
            wait_until(lambda: server.log_tail(10**8).count("Aborted request") > aborted
                       or metric(server, "vllm:request_success_total") > finished, "vLLM to abort the request")
        wait_idle(server)
        if metric(server, "vllm:request_success_total") == finished:  # it did not finish: it was aborted
            break
    else:
        raise AssertionError("vLLM finished the reply before it could be stopped, 10 times")
    cut = generated(server) - before
    assert cut < LONGEST  # greedy never ends early on this model: it was cut
    # Nothing keeps generating in the background: one more 1-token request adds exactly one token.
    post(server, "/v1/completions", {"model": CHAT_NAME, "prompt": "hi", "max_tokens": 1})
    wait_idle(server)
    assert generated(server) - before == cut + 1
    assert stream.usage.finish_reason == "cancelled"


def test_per_request_seeds_reproduce(remote):
    def reply(seed: int) -> str:
        return pipelines.chat("hi", temperature=1.0, top_p=1.0, max_new_tokens=16, seed=seed).collect()

    first = reply(1234)
    assert reply(1234) == first
    assert reply(4321) != first
    stream = pipelines.generate_text("今天", max_new_tokens=12, temperature=1.0, top_k=0, top_p=1.0,
                                     repetition_penalty=1.0, num_return_sequences=2, seed=77)
    texts = (stream.collect(), stream.texts)
    again = pipelines.generate_text("今天", max_new_tokens=12, temperature=1.0, top_k=0, top_p=1.0,
                                    repetition_penalty=1.0, num_return_sequences=2, seed=77)
    assert (again.collect(), again.texts) == texts
    assert stream.seed == 77


def test_text_generation_uses_completions_with_n_top_k_and_repetition_penalty(remote):
    server = remote["textgen"]

    def run(**kw):
        settings = {"max_new_tokens": 12, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                    "repetition_penalty": 1.0, "num_return_sequences": 1, "seed": 5, **kw}
        stream = pipelines.generate_text("今天天气", **settings)
        stream.collect()
        return stream

    several = run(num_return_sequences=3)
    assert len(several.texts) == 3 and all(several.texts) and several.text.count("今天天气") == 3
    assert len(set(several.texts)) > 1  # n reached the server: three different draws
    assert not [n for n in several.notices if "ignored" in n]  # vLLM takes every setting
    # top_k=1 reached the server: sampling at temperature 1 becomes the greedy reply.
    greedy = run(temperature=0)
    assert run(top_k=1, seed=6).texts == greedy.texts == run(top_k=1, seed=7).texts
    # repetition_penalty reached the server: the greedy reply changes.
    assert run(temperature=0, repetition_penalty=2.0).texts != greedy.texts
    # GPT-2 中文's WordPiece decoding puts spaces between characters; ModelDeck removes them as locally.
    raw = post(server, "/v1/completions", {"model": GPT2_NAME, "prompt": "今天天气", "max_tokens": 12,
                                           "temperature": 0})["choices"][0]["text"]
    assert re.search(rf"[{CJK}] | [{CJK}]", raw), raw  # the server's text has them
    assert not re.search(rf"[{CJK}] | [{CJK}]", greedy.text), greedy.text
    # The prompt is read as the local backend reads it: without [CLS] … [SEP] around it (its end token last).
    assert greedy.usage.prompt_tokens == len("今天天气")


def test_classification_through_the_pooling_runner(remote):
    scores = pipelines.classify_text("这家店的服务太好了", "vLLM BERT")
    assert set(scores) == {"负面 negative", "正面 positive"}  # the model's id2label, not "class 1"
    assert abs(sum(scores.values()) - 1) < 1e-3
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    server = remote["classifier"]
    answer = post(server, "/classify", {"model": CLS_NAME, "input": ["这家店的服务太好了"]})["data"][0]
    assert max(scores.values()) == pytest.approx(max(answer["probs"]))
    assert pipelines.readable_label(answer["label"]) == next(iter(scores))  # the server's top label is first
    batch = pipelines.classify_texts(["good", "bad", "这家店的服务太好了"], "vLLM BERT")
    assert len(batch) == 3 and batch[2] == scores


def test_an_unknown_served_model_names_the_variable(remote, monkeypatch):
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"openai:{remote['chat'].base}/v1#no-such-model")
    with pytest.raises(ModelUnavailableError) as caught:
        pipelines.chat("hi", max_new_tokens=4).collect()
    assert "MODELDECK_CHAT_MODEL" in str(caught.value) and "no-such-model" in str(caught.value)


def test_history_is_trimmed_to_the_servers_context_with_its_tokenizer(remote):
    server = remote["chat"]
    turn = "This sentence makes the conversation longer and longer. "
    history = []
    for i in range(12):
        history += [{"role": "user", "content": f"{i}: {turn * 2}"}, {"role": "assistant", "content": turn}]
    whole = post(server, "/tokenize", {"model": CHAT_NAME, "messages": history + [{"role": "user", "content": "hi"}],
                                       "add_generation_prompt": True})["count"]
    assert whole > 512  # more than the server's context: sent as is, vLLM would refuse it
    stream = pipelines.chat("hi", history, system_prompt="", temperature=0, max_new_tokens=64)
    stream.collect()
    assert any("context window" in n for n in stream.notices)
    assert 512 - 64 - 2 * 60 < stream.usage.prompt_tokens <= 512 - 64  # trimmed to fit, not far below
    assert stream.usage.completion_tokens == 64


def test_a_message_longer_than_the_context_is_shortened_not_refused(remote):
    stream = pipelines.chat("word " * 1500, [], system_prompt="", temperature=0, max_new_tokens=16)
    try:
        stream.collect()
    except InvalidInputError as exc:  # the server's own "too long" answer, said clearly
        assert "too long" in str(exc).lower() or "长" in str(exc)
    else:
        assert stream.usage.prompt_tokens <= 512 - 16


def test_a_prompt_longer_than_the_context_says_to_shorten_the_prompt(remote):
    """Without ``#tokenizer=`` the whole prompt goes to vLLM, which refuses it: the text-generation advice follows
    (it used to say "clear the chat")."""
    with pytest.raises(InvalidInputError) as err:
        pipelines.generate_text("今天天气很好" * 200, max_new_tokens=16, temperature=0).collect()
    message = str(err.value)
    assert "shorten the prompt" in message and "Max new tokens" in message and "缩短提示文本" in message
    assert "clear the chat" not in message and "512" in message  # the server's own reason, its context


def test_the_next_token_view_shows_the_servers_top_logprobs(remote, vllm_servers):
    """vLLM returns the top 20 log-probabilities: they are the model's own (computed here from the same weights),
    "after" is recomputed from those 20 alone, and moving a slider asks the server nothing."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.next_token import CHAT_SUFFIX
    from pipelines.tokens import readable

    server, model = remote["chat"], f"vLLM Qwen2 {CHAT_SUFFIX}"
    asked = metric(server, "vllm:request_success_total")
    view = pipelines.next_token("Hello, how are you?", model, top_n=30)
    assert len(view.candidates) == view.vocab_size == 20 and any("at most the top 20" in n for n in view.notices)
    raw = [c.raw_p for c in view.candidates]
    assert raw == sorted(raw, reverse=True) and 0 < view.known_mass < 1
    assert abs(view.known_mass - sum(raw)) < 1e-6 and all(c.id == -1 for c in view.candidates)
    folder = vllm_servers.models["qwen2"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template([{"role": "system", "content": pipelines.DEFAULT_SYSTEM_PROMPT},
                                         {"role": "user", "content": "Hello, how are you?"}],
                                        add_generation_prompt=True, return_dict=False)
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)(torch.tensor([ids])).logits[0, -1]
    probs = logits.softmax(-1)
    local: dict[str, float] = {}
    for i in range(len(probs)):
        local[readable(tokenizer, i)] = local.get(readable(tokenizer, i), 0.0) + float(probs[i])
    spelled = [c for c in view.candidates if c.token != "∅" and "\ufffd" not in c.token]
    assert len(spelled) >= 3  # vLLM spells a piece of a character as "" (shown ∅) or "\ufffd": those are skipped
    for c in spelled:  # the server computes in bfloat16 (float32 where the CPU has AMX: servers.vllm_dtype)
        assert abs(local[c.token] - c.raw_p) <= 0.1 * c.raw_p, (c.token, local[c.token], c.raw_p)
    sharp = pipelines.next_token("Hello, how are you?", model, temperature=0.5, top_k=3, top_n=20)
    assert [c.kept for c in sharp.candidates] == [True] * 3 + [False] * 17 and sharp.kept_count == 3
    squared = [r ** 2 for r in raw[:3]]
    assert all(abs(c.p - s / sum(squared)) < 1e-5 for c, s in zip(sharp.candidates, squared))
    assert abs(sharp.kept_mass - sum(raw[:3])) < 1e-6
    greedy = pipelines.next_token("Hello, how are you?", model, temperature=0, repetition_penalty=1.5, top_n=20)
    assert greedy.candidates[0].p == 1.0 and any("repetition penalty" in n for n in greedy.notices)
    assert metric(server, "vllm:request_success_total") == asked + 1  # the sliders re-ranked the kept answer
    from ui.next_token_tab import chart_html

    shown = chart_html(view)  # the tab says what is unknown, and its rows cannot be clicked to append
    assert "only the top 20 tokens the server returned are known" in shown and "nt-click" not in shown
    text = pipelines.next_token("今天天气很好", "vLLM GPT-2 中文", top_n=10)  # /v1/completions' logprobs=N
    assert len(text.candidates) == 10 and all(c.token and c.raw_p > 0 for c in text.candidates)
    folder = vllm_servers.models["gpt2_zh"]  # the model's view of the prompt's own tokens (no [CLS] … [SEP])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("今天天气很好", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)(torch.tensor([ids])).logits[0, -1]
    local = {}
    for i, p in enumerate(logits.softmax(-1).tolist()):
        local[readable(tokenizer, i)] = local.get(readable(tokenizer, i), 0.0) + p
    for c in text.candidates:
        assert abs(local[c.token] - c.raw_p) <= 0.1 * c.raw_p, (c.token, local[c.token], c.raw_p)
    with pytest.raises(InvalidInputError, match="local models only"):
        pipelines.sample_step("今天天气很好", "vLLM GPT-2 中文")


def test_an_hf_endpoint_shows_the_next_token_view_through_chat_completion(remote, monkeypatch):
    """An ``hf:`` entry asks ``InferenceClient.chat_completion`` for logprobs: the same numbers as ``openai:``."""
    from huggingface_hub import constants

    from pipelines.next_token import CHAT_SUFFIX

    openai = pipelines.next_token("Hello, how are you?", f"vLLM Qwen2 {CHAT_SUFFIX}", top_n=5)
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)  # the "endpoint" is on loopback
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Endpoint=hf:{remote['chat'].base}#{CHAT_NAME}")
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"HF GPT-2=hf:{remote['textgen'].base}#{GPT2_NAME}")
    hf = pipelines.next_token("Hello, how are you?", f"Endpoint {CHAT_SUFFIX}", top_n=5)
    assert [c.token for c in hf.candidates] == [c.token for c in openai.candidates]
    # vLLM computes in bfloat16 (or float32) and the second request reuses its prefix cache: the same numbers to
    # rounding
    assert all(abs(a.raw_p - b.raw_p) <= 0.02 * b.raw_p for a, b in zip(hf.candidates, openai.candidates)), \
        [(a.raw_p, b.raw_p) for a, b in zip(hf.candidates, openai.candidates)]
    with pytest.raises(InvalidInputError, match="cannot show the next-token view: its text generation"):
        pipelines.next_token("今天天气很好", "HF GPT-2")
