"""The chat tab: streamed replies, stop, regenerate, undo, clear, trimming notices, token usage."""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

import pipelines
from pipelines.inputs import normalize_messages

from .common import LLM, concurrency_limit, edge, examples, gpu, notices_md, t, usage_md
from .token_colors import colored_html

EXAMPLES = ["用三句话介绍一下 Hugging Face。", "温度（temperature）和 top-p 有什么区别？",
            "Write a haiku about small language models.", "帮我把这句话翻译成英文：今天天气真好。"]


def add_user_message(message: str, history: list[dict]) -> tuple[Any, list[dict]]:
    """Move the typed message into the chat; an empty box changes nothing."""
    if not message or not message.strip():
        raise gr.Error("请先输入消息。 / Enter a message first.", print_exception=False)
    return "", list(history or []) + [{"role": "user", "content": message}]


@gpu
@edge
def reply(history: list[dict], system_prompt: str, temperature: float, top_p: float,
          max_new_tokens: int, color: bool = False) -> Iterator[tuple[list[dict], str, str]]:
    """Stream the assistant's answer to the last user message; the conversation is never lost.

    With ``color``, the finished reply is also shown coloured by each token's probability.
    """
    messages = normalize_messages(history)
    if not messages or messages[-1]["role"] != "user":
        return
    shown = list(history)
    stream = pipelines.chat(messages[-1]["content"], messages[:-1], system_prompt=system_prompt,
                            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                            top_logprobs=5 if color else None)
    notes = notices_md(stream.notices)
    yield shown + [{"role": "assistant", "content": ""}], notes, ""
    for text in stream:
        yield shown + [{"role": "assistant", "content": text}], notes, gr.skip()
    yield shown + [{"role": "assistant", "content": stream.text}], "\n\n".join(
        x for x in (notes, usage_md(stream.usage)) if x), colored_html(stream.pieces) if color else ""


def drop_last_reply(history: list[dict]) -> list[dict]:
    """Remove the trailing assistant message(s) so the last user message can be answered again."""
    history = list(history or [])
    while history and history[-1].get("role") == "assistant":
        history.pop()
    return history


def undo(history: list[dict]) -> tuple[list[dict], str]:
    """Remove the last exchange and put its question back in the box."""
    history = drop_last_reply(history)
    if not history:
        return [], ""
    last = normalize_messages(history[-1:])
    return history[:-1], last[0]["content"] if last else ""


def build() -> None:
    """Lay out the chat tab inside the current Blocks."""
    chatbot = gr.Chatbot(label=t("md_chatbot"), height=420, buttons=["copy", "copy_all"], elem_id="chatbot")
    status = gr.Markdown(elem_id="chat-status")
    colors = gr.HTML(elem_id="chat-colors", js_on_load=None)
    with gr.Row():
        box = gr.Textbox(placeholder=t("md_message_ph"), show_label=False, scale=8, elem_id="chat-input")
        send = gr.Button(t("md_send"), variant="primary", scale=1, elem_id="chat-send")
    with gr.Row():
        stop = gr.Button(t("md_stop"), variant="stop", elem_id="chat-stop")
        regenerate = gr.Button(t("md_regenerate"), elem_id="chat-regenerate")
        undo_btn = gr.Button(t("md_undo"), elem_id="chat-undo")
        clear = gr.Button(t("md_clear"), elem_id="chat-clear")
    with gr.Accordion(t("md_settings"), open=False):
        system = gr.Textbox(label=t("md_system_prompt"), value=pipelines.DEFAULT_SYSTEM_PROMPT, lines=2)
        temperature = gr.Slider(0, 2, value=0.7, step=0.05, label=t("md_temperature"), info=t("md_temperature_info"))
        top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label=t("md_top_p"), info=t("md_top_p_info"))
        max_new = gr.Slider(16, 1024, value=512, step=16, label=t("md_max_new_tokens"), info=t("md_max_new_tokens_info"))
        color = gr.Checkbox(False, label=t("md_color_by_p"), elem_id="chat-color")
    examples([[e] for e in EXAMPLES], [box], ["示例 Example"])

    settings = [chatbot, system, temperature, top_p, max_new, color]
    private = {"api_visibility": "private"}
    answer = {"fn": reply, "inputs": settings, "outputs": [chatbot, status, colors], "concurrency_id": LLM,
              "concurrency_limit": concurrency_limit(LLM), **private}
    runs = [box.submit(add_user_message, [box, chatbot], [box, chatbot], **private).success(**answer),
            send.click(add_user_message, [box, chatbot], [box, chatbot], **private).success(**answer)]
    runs.append(regenerate.click(drop_last_reply, chatbot, chatbot, **private).then(**answer))
    stop.click(None, None, None, cancels=runs, **private)
    undo_btn.click(undo, chatbot, [chatbot, box], cancels=runs, **private)
    clear.click(lambda: ([], "", ""), None, [chatbot, status, colors], cancels=runs, **private)
