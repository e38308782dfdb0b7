"""Chat, story and text generation through a real OpenAI-compatible server: ``transformers serve``.

One server (started once for this module, in its own process group) serves the tiny Qwen2 chat model and
the tiny Chinese GPT-2 on demand; both sample (``do_sample: true``), as the real checkpoints do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

import pipelines as p
from pipelines import InvalidInputError, ModelUnavailableError, backends, registry
from pipelines.next_token import CHAT_SUFFIX
from servers import free_port, running
from tiny_models import gpt2_zh, qwen2_chat, sample_by_default


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    """(base URL, chat model name, text model name) of a running ``transformers serve``."""
    root = tmp_path_factory.mktemp("served")
    qwen2_chat(root / "qwen2")
    gpt2_zh(root / "gpt2")
    for name in ("qwen2", "gpt2"):
        sample_by_default(root / name)
    port = free_port()
    command = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
               "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with running(command, port, root / "serve.log", env={"HF_HUB_OFFLINE": "1"}) as url:
        yield url, str(root / "qwen2"), str(root / "gpt2")


@pytest.fixture
def remote(serve, monkeypatch):
    """Point chat, story and text generation at the server; classification stays local."""
    url, chat_model, text_model = serve
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Served Qwen=openai:{url}/v1#{chat_model}#context=512")
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"Served GPT-2=openai:{url}/v1#{text_model}")
    monkeypatch.delenv("MODELDECK_STORY_MODEL", raising=False)
    return serve


def test_chat_streams_from_the_server_with_usage(remote):
    stream = p.chat("你好", [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}],
                    max_new_tokens=12, temperature=0.9)
    texts = list(stream)
    assert texts and all(isinstance(t, str) for t in texts)
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))  # cumulative, as locally
    assert stream.usage.prompt_tokens > 10  # from the server's usage chunk: the whole conversation was sent
    assert 0 < stream.usage.completion_tokens <= 12
    assert stream.usage.finish_reason in ("eos", "length")
    assert backends.chat_backend().context_window == 512  # from the entry's #context=


def test_story_is_written_by_the_served_chat_model(remote):
    stream = p.write_story("一只猫坐在红色的椅子上", "童话", 50, 5, "zh", seed=1)
    text = stream.collect()
    assert isinstance(text, str)
    assert stream.usage.completion_tokens > 0 and stream.seed == 1  # counted even when the story stops early


def test_text_generation_uses_completions_and_names_the_settings_the_server_ignores(remote):
    stream = p.generate_text("今天天气很好", max_new_tokens=8, temperature=0.8, top_k=40, repetition_penalty=1.2,
                             num_return_sequences=2, seed=7)
    text = stream.collect()
    assert text.startswith("今天天气很好")  # the prompt, then its continuation
    assert stream.seed == 7 and stream.usage.completion_tokens > 0
    joined = " ".join(stream.notices)
    # transformers serve refuses top_k / repetition_penalty (422) and ignores n: said, not silently dropped.
    assert "top_k" in joined and "repetition_penalty" in joined and "num_return_sequences=2" in joined
    again = p.generate_text("今天天气很好", max_new_tokens=4, top_k=0, repetition_penalty=1.0)
    again.collect()
    assert not any("top_k" in n for n in again.notices)  # neutral values: nothing was lost


def _connections_to(port: int) -> int:
    """Sockets this process holds to ``port`` in any state (one the server has finished is in CLOSE_WAIT
    until we close it; a socket we closed is no longer ours)."""
    return sum(1 for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port)


def test_stop_closes_the_http_stream(remote):
    url, _, _ = remote
    port = int(url.rsplit(":", 1)[1])
    stream = p.chat("Hello, how are you?", max_new_tokens=200, temperature=1.0, seed=3)
    chunks = iter(stream)
    assert isinstance(next(chunks), str)
    streaming = _connections_to(port)  # the stream's socket and any idle pooled ones
    stream.close()  # what Stop and a closed tab do
    assert stream.usage.finish_reason == "cancelled"
    assert _connections_to(port) == streaming - 1  # its socket is closed: the server sees the client leave
    assert p.chat("你好", max_new_tokens=4).collect() is not None  # and serves the next request


def test_a_server_that_is_down_names_the_variable_and_leaves_local_roles_alone(monkeypatch):
    port = free_port()  # nobody listens here
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"openai:http://127.0.0.1:{port}/v1#some-model")
    monkeypatch.setenv("MODELDECK_REMOTE_RETRIES", "1")
    with pytest.raises(ModelUnavailableError) as err:
        p.chat("你好", max_new_tokens=4)
    assert "MODELDECK_CHAT_MODEL" in str(err.value) and f"127.0.0.1:{port}" in str(err.value)
    assert p.classify_text("很好")  # the local classifier still answers


def test_a_refused_request_shows_the_servers_message(remote):
    url, _, text_model = remote
    spec = registry.resolve("textgen")
    with pytest.raises(InvalidInputError) as err:  # a real 422 from the server
        backends.remote_for(spec).send("POST", f"{url}/v1/completions",
                                       body={"model": text_model, "prompt": "x", "bogus_field": 1})
    assert "bogus_field" in str(err.value) and "Served GPT-2" in str(err.value)


def test_a_path_the_server_lacks_is_named_instead_of_blaming_the_model(remote, monkeypatch):
    """A real 404 for a path (not for a model): an address without /v1, a classifier on a server with no /classify."""
    url, chat_model, text_model = remote
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"openai:{url}#{chat_model}")  # /v1 forgotten
    with pytest.raises(ModelUnavailableError, match="usually ends in /v1; check MODELDECK_CHAT_MODEL") as err:
        p.chat("你好", max_new_tokens=4)
    assert "serves this model" not in str(err.value) and "通常以 /v1 结尾" in str(err.value)
    monkeypatch.setenv("MODELDECK_CLASSIFIER_MODELS", f"openai:{url}/v1#{text_model}")
    with pytest.raises(ModelUnavailableError, match="no /classify endpoint: classification needs vLLM started with "
                                                    "--runner pooling; change MODELDECK_CLASSIFIER_MODELS"):
        p.classify_text("很好")


def test_hf_inference_client_against_the_server(remote, monkeypatch):
    from huggingface_hub import constants

    url, chat_model, _ = remote
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)  # the "endpoint" is on loopback
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Endpoint=hf:{url}#{chat_model}")
    stream = p.chat("你好", max_new_tokens=6)
    assert isinstance(stream.collect(), str)
    assert stream.usage.completion_tokens > 0
    assert type(backends.chat_backend()).__name__ == "HFChatBackend"


def test_two_roles_served_by_one_server_keep_their_own_names_and_options(remote, monkeypatch):
    """The chat model and a text-generation entry naming the same served model are two entries: each keeps its
    display name, variable and ``#context=`` (they shared the first one's, so errors named the wrong model)."""
    url, chat_model, _ = remote
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"Writer=openai:{url}/v1#{chat_model}#context=64")
    assert p.chat("你好", max_new_tokens=3).collect() is not None  # the chat entry is used first
    writer = backends.text_backend()
    assert (writer.name, writer.context_window) == ("Writer", 64)
    assert backends.remote_for(registry.resolve("textgen")).variable == "MODELDECK_TEXTGEN_MODELS"
    assert (backends.chat_backend().name, backends.chat_backend().context_window) == ("Served Qwen", 512)


def test_a_prompt_longer_than_the_remote_context_keeps_its_end(remote, monkeypatch):
    """With ``#tokenizer=`` a text-generation prompt is cut to its end to fit ``#context=`` with the reply, as
    locally (sent whole, the 128-position GPT-2 failed on the server: "index out of range")."""
    url, _, text_model = remote
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"Short=openai:{url}/v1#{text_model}#context=120#tokenizer={text_model}")
    prompt = "我你他好天猫狗的一是" * 20  # 200 tokens, one a character
    stream = p.generate_text(prompt, max_new_tokens=20, temperature=0.8)
    text = stream.collect()
    assert any("only its last 100 tokens were used" in n for n in stream.notices)
    assert text.startswith(prompt[-100:]) and not text.startswith(prompt[-101:])
    assert stream.usage.prompt_tokens <= 102  # the server's count: those 100, and the [CLS] … [SEP] it adds


def test_an_hf_entry_trims_the_history_with_its_tokenizer(remote, monkeypatch):
    """``#tokenizer=`` on an ``hf:`` entry trims the chat history to ``#context=``, as on an ``openai:`` one."""
    from huggingface_hub import constants

    url, chat_model, _ = remote
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)  # the "endpoint" is on loopback
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Endpoint=hf:{url}#{chat_model}#context=256#tokenizer={chat_model}")
    history = []
    for i in range(16):
        history += [{"role": "user", "content": f"{i}: " + "Hello, how are you? " * 3},
                    {"role": "assistant", "content": "你好，我是一个模型。" * 2}]
    stream = p.chat("你好", history, max_new_tokens=32, system_prompt="")
    stream.collect()
    assert any("oldest" in n for n in stream.notices)
    assert 0 < stream.usage.prompt_tokens <= 256 - 32  # the server's count of what it was sent


def test_status_lists_the_remote_backend_without_credentials(remote, monkeypatch):
    from ui import about_tab
    from ui.about_tab import status_markdown

    monkeypatch.setattr(about_tab, "PROBE_SECONDS", 30.0)  # a loaded test machine may answer slowly

    url, _, _ = remote
    monkeypatch.setenv("MODELDECK_OPENAI_API_KEY", "sk-NeverShowThis123")
    p.chat("你好", max_new_tokens=3).collect()
    page = status_markdown()
    assert f"{url}/v1" in page and "qwen2" in page
    assert "✅" in page  # reachable
    assert "sk-NeverShowThis123" not in page


def test_the_next_token_view_says_plainly_that_a_server_without_logprobs_cannot_show_it(remote):
    """``transformers serve`` accepts ``logprobs`` but ignores it: no distribution comes back, and the view says so."""
    for model in ("Served GPT-2", f"Served Qwen {CHAT_SUFFIX}"):  # completions, then chat completions
        with pytest.raises(InvalidInputError, match="cannot show the next-token view: the server returned no logprobs"):
            p.next_token("今天天气很好", model, top_n=5)
    with pytest.raises(InvalidInputError, match="Step mode .* local models only"):
        p.sample_step("今天天气很好", "Served GPT-2", seed=1)
    with pytest.raises(InvalidInputError, match="Step mode .* local models only"):
        p.next_token("今天天气很好", "Served GPT-2", appended=[3])
