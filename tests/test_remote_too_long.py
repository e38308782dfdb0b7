"""A request longer than a remote model's context: each tab's message says what to do on that tab.

The loopback fake answers with vLLM's own refusal (its body and wording, from ``vllm/renderers/params.py`` and
``vllm/entrypoints/serve/exception_handling``), either before the stream (HTTP 400) or as an error event in it.
The text-generation tab used to be told to "clear the chat"; ``test_vllm.py`` checks the same against vLLM.
"""

from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import pipelines as p
from pipelines import InvalidInputError
from ui import chat_tab, story_tab, textgen_tab

from test_remote_failures import Fake

VLLM_TOO_LONG = {"error": {
    "message": "This model's maximum context length is 256 tokens. However, your prompt contains 300 input tokens, "
               "which exceeds this limit even without any output tokens. Please reduce the length of the input "
               "prompt.",
    "type": "BadRequestError", "param": "input_tokens", "code": 400}}
ADVICE = {"textgen": ("shorten the prompt", "Max new tokens", "缩短提示文本"),
          "chat": ("clear the chat", "shorten the message", "清空对话"),
          "story": ("shorten the caption", "shorter story length", "缩短图片描述")}


@pytest.fixture(params=["refused", "in the stream"])
def too_long(request, monkeypatch):
    """A server whose chat and completions refuse every request as too long (before or after the stream opens)."""
    server = Fake()
    server.routes["/v1/models"] = lambda h, b: h.reply(200, {"data": [{"id": "m", "max_model_len": 256}]})
    if request.param == "refused":
        def refuse(h, body):
            h.reply(400, VLLM_TOO_LONG)
    else:
        def refuse(h, body):
            h.sse([VLLM_TOO_LONG])
    server.routes["/v1/completions"] = server.routes["/v1/chat/completions"] = refuse
    monkeypatch.setenv("MODELDECK_CHAT_MODEL", f"Far=openai:{server.url}/v1#m")
    monkeypatch.delenv("MODELDECK_STORY_MODEL", raising=False)  # the story role follows chat
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", f"Far=openai:{server.url}/v1#m")
    monkeypatch.setenv("MODELDECK_REMOTE_RETRIES", "0")
    yield server
    server.close()


def says(message: str, role: str) -> bool:
    """The message gives ``role``'s advice (both languages), the server's reason, and no other role's advice."""
    others = [words[0] for other, words in ADVICE.items() if other != role]
    return (all(words in message for words in ADVICE[role]) and "256 tokens" in message
            and not any(words in message for words in others))


def test_each_role_gets_its_own_advice(too_long):
    with pytest.raises(InvalidInputError) as textgen:
        p.generate_text("很长的提示" * 100, max_new_tokens=8).collect()
    with pytest.raises(InvalidInputError) as chat:
        p.chat("hi", max_new_tokens=8).collect()
    with pytest.raises(InvalidInputError) as story:
        p.write_story("a dog on a red chair", "童话", 50, 5, "en").collect()
    assert says(str(textgen.value), "textgen"), str(textgen.value)
    assert says(str(chat.value), "chat"), str(chat.value)
    assert says(str(story.value), "story"), str(story.value)


def test_the_tabs_show_it(too_long):
    """The functions the tabs' buttons call end in the same gradio.Error a person sees as a toast."""
    with pytest.raises(gr.Error) as textgen:
        list(textgen_tab.run("很长的提示" * 100, "Far", 8, 0.8, 50, 0.95, 1.1, 1, None))
    with pytest.raises(gr.Error) as chat:
        list(chat_tab.reply([{"role": "user", "content": "hi"}], "", 0.7, 0.9, 8, model="Far"))
    with pytest.raises(gr.Error) as story:
        list(story_tab.rewrite("一只狗在红椅子上", "a dog on a red chair", "童话", 50, 5, "en"))
    assert says(textgen.value.message, "textgen")
    assert says(chat.value.message, "chat")
    assert says(story.value.message, "story")


def test_the_api_says_it(too_long, url):
    client = Client(url, verbose=False)
    with pytest.raises(AppError) as textgen:
        client.predict("很长的提示" * 100, "Far", 8, api_name="/generate")
    assert says(str(textgen.value), "textgen"), str(textgen.value)
