"""The chat tab: streamed replies, stop, regenerate, edit an earlier message, undo, clear, trimming notices,
token usage; saved conversations, export and import come from ``chat_saved``."""

from __future__ import annotations

import threading
from typing import Any, Iterator

import gradio as gr

import pipelines
from pipelines.inputs import blank, max_input_chars, normalize_messages, printable
from pipelines.chat import DEFAULT_MAX_NEW_TOKENS
from pipelines.sampling import TEMPERATURE_RANGE, TOP_P_RANGE, max_new_tokens_range

from . import adapters, chat_saved, chat_versions
from .exact_chatbot import ExactChatbot
from .common import (LLM, READING_MARK, STOPPED, checked, concurrency_limit, edge, examples, finally_, gpu,
                     joined, model_choices, need_idle, notices_md, reading_md, t, usage_md)
from .token_colors import colored_html

CSS = chat_versions.CSS
EXAMPLES = ["用三句话介绍一下 Hugging Face。", "温度（temperature）和 top-p 有什么区别？",
            "Write a haiku about small language models.", "帮我把这句话翻译成英文：今天天气真好。"]


WRITING = ("回答还在生成：请等它写完，或先按“停止”。你的消息还在输入框里。 / A reply is still being written: wait for "
           "it or press Stop. Your message is still in the box.")


# The reply each page (session) is writing. An edit made meanwhile stops it: the edited conversation gets its
# own reply, and the old one must not write over it.
_writing: dict[str, Any] = {}
_writing_lock = threading.Lock()


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def stop_reply(request: gr.Request | None) -> None:
    """Stop the reply this page is writing, if any; it ends without changing the page again."""
    with _writing_lock:
        stream = _writing.pop(_session(request), None)
    if stream is not None:
        stream.cancel()


def need_message(message: str, writing: int = 0) -> None:
    """Refuse an empty box, or any message while a reply is being written, saying what to do (``checked``:
    before anything on the page changes, so a refused message stays in the box)."""
    need_idle(writing, WRITING)
    if not message or blank(message):  # a zero-width space alone is empty too
        raise gr.Error("请先输入消息。 / Enter a message first.", print_exception=False)


def readable(message: str) -> str:
    """``message`` cut to what the model reads (``MODELDECK_MAX_INPUT_CHARS``), with a warning when it is cut.

    The chat shows and keeps what the model was given: a longer message would be answered from its beginning
    only, and a saved chat with it could not be read back (the page lost it on the next reload)."""
    limit = max_input_chars()
    if len(message) <= limit:
        return message
    gr.Warning(f"消息过长，只保留了前 {limit} 个字符（模型只读这么多）。 / The message was too long: only its first "
               f"{limit} characters were kept (the model reads no more).")
    return message[:limit]


def add_user_message(message: str, history: list[dict]) -> tuple[Any, list[dict]]:
    """Move the typed message into the chat (cut to what the model reads)."""
    need_message(message)
    return "", list(history or []) + [{"role": "user", "content": readable(message)}]


@gpu
@edge
def reply(history: list[dict], system_prompt: str, temperature: float, top_p: float,
          max_new_tokens: int, color: bool = False, model: str | None = None,
          request: gr.Request | None = None) -> Iterator[tuple[list[dict], str, str]]:
    """Stream the assistant's answer to the last user message; the conversation is never lost.

    A page writes one reply at a time: this one replaces any other of the same page (``request``), and leaves
    the page alone once an edit (``stop_reply``) or a newer reply replaces it.

    The answer is shown as the chat keeps it, without control characters: a random model writes some, and a
    backslash before one is a plain backslash in Markdown but an escape once it is gone. With ``color``, the
    finished reply is also shown coloured by each token's probability. ``model`` is the chat model list's
    choice: the whole conversation goes to it, so a regenerated answer may come from another model.
    """
    messages = normalize_messages(history)
    if not messages or messages[-1]["role"] != "user":  # nothing to answer (a refused edit): leave the page as is
        yield gr.skip(), gr.skip(), gr.skip()  # a generator that yields nothing would empty its outputs
        return
    shown = list(history)
    stream = adapters.chat(messages[-1]["content"], messages[:-1], system_prompt, temperature, top_p,
                           max_new_tokens, top_logprobs=5 if color else None, model=model)
    page = _session(request)
    if page is not None:
        with _writing_lock:
            replaced, _writing[page] = _writing.get(page), stream
        if replaced is not None:
            replaced.cancel()

    def current() -> bool:
        return page is None or _writing.get(page) is stream

    notes = notices_md(stream.notices)
    progress = getattr(stream, "progress", None)  # a long prompt read in chunks (a local model): show how far
    if progress is not None:
        progress.wanted = True
    try:
        yield shown + [{"role": "assistant", "content": ""}], notes, ""
        for text in stream:
            if not current():
                break
            yield (shown + [{"role": "assistant", "content": printable(text)}], joined(notes, reading_md(progress)),
                   gr.skip())
        if current():
            yield (shown + [{"role": "assistant", "content": printable(stream.text)}],
                   joined(notes, usage_md(stream.usage)), colored_html(stream.pieces) if color else "")
        else:  # replaced: gradio ends an event by showing its last outputs again, so make that a no-op
            yield gr.skip(), gr.skip(), gr.skip()
    finally:
        with _writing_lock:
            if page is not None and _writing.get(page) is stream:
                del _writing[page]


def stopped_status(status: str) -> str:
    """The status line after Stop: a prompt that was being read no longer is (Stop ends it between chunks)."""
    parts = (status or "").split("\n\n")
    kept = [part for part in parts if not part.startswith(READING_MARK)]
    return joined(*kept, STOPPED if len(kept) < len(parts) else "")


def drop_last_reply(history: list[dict]) -> list[dict]:
    """Remove the trailing assistant message(s) so the last user message can be answered again."""
    history = list(history or [])
    while history and history[-1].get("role") == "assistant":
        history.pop()
    return history


def edit_message(history: list[dict], edit: gr.EditData, request: gr.Request | None = None) -> list[dict]:
    """Keep the conversation up to the edited user message, which takes its new text; a reply being written
    meanwhile stops (the edited message is answered instead).

    An edit that empties the message puts its earlier text back, with a warning: raising instead would veil the
    whole conversation with gradio's error badge, and the page would keep showing the emptied message.
    """
    index = edit.index[0] if isinstance(edit.index, (list, tuple)) else edit.index
    history = list(history or [])
    parts = normalize_messages([{"role": "user", "content": edit.value}]) if edit.value else []
    if not parts or not parts[0]["content"]:
        gr.Warning("消息不能为空，已恢复原来的消息。 / A message cannot be empty: its earlier text is back.")
        return history[:index] + [{**history[index], "content": edit.previous_value}] + history[index + 1:]
    stop_reply(request)
    return history[:index] + [{"role": "user", "content": readable(parts[0]["content"])}]


def undo(history: list[dict], request: gr.Request | None = None) -> tuple[list[dict], str]:
    """Remove the last exchange and put its question back in the box; a reply being written stops and never
    writes into the chat again (``stop_reply``: gradio's cancel reaches it later, after more of its text)."""
    stop_reply(request)
    history = drop_last_reply(history)
    if not history:
        return [], ""
    last = normalize_messages(history[-1:])
    return history[:-1], last[0]["content"] if last else ""


def clear_chat(request: gr.Request | None = None) -> tuple[list[dict], str, str]:
    """An empty chat, status and colours; a reply being written stops and never writes into the chat again."""
    stop_reply(request)
    return [], "", ""


def cleared_notes(request: gr.Request | None = None) -> tuple[str, str]:
    """The chat's own 🗑 icon emptied it: the status and colours too, and a reply being written stops."""
    return clear_chat(request)[1:]


def build() -> None:
    """Lay out the chat tab inside the current Blocks."""
    choices = model_choices("chat")
    model = gr.Dropdown(choices, value=choices[0][1], label=t("md_chat_model"), info=t("md_chat_model_info"),
                        elem_id="chat-model")
    chatbot = ExactChatbot(label=t("md_chatbot"), height=420, buttons=["copy", "copy_all"], editable="user",
                           elem_id="chatbot")
    nav, flips = chat_versions.build(chatbot)
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
    with gr.Accordion(t("md_settings"), open=False, elem_id="chat-settings"):
        system = gr.Textbox(label=t("md_system_prompt"), value=pipelines.DEFAULT_SYSTEM_PROMPT, lines=2)
        temperature = gr.Slider(*TEMPERATURE_RANGE, value=0.7, step=0.05, label=t("md_temperature"),
                                info=t("md_temperature_info"))
        top_p = gr.Slider(*TOP_P_RANGE, value=0.9, step=0.01, label=t("md_top_p"), info=t("md_top_p_info"))
        fewest, most = max_new_tokens_range()  # what the pipeline clamps to
        max_new = gr.Slider(fewest, most, value=min(DEFAULT_MAX_NEW_TOKENS, most), step=1, label=t("md_max_new_tokens"),
                            info=t("md_max_new_tokens_info"), elem_id="chat-max-new")
        color = gr.Checkbox(False, label=t("md_color_by_p"), elem_id="chat-color")
    examples([[e] for e in EXAMPLES], [box], ["示例 Example"])
    # How many replies this page has started and not ended: a second one started meanwhile would overwrite the
    # chat under the first (a message sent during a reply was lost that way), so Send is greyed out, and Enter,
    # Regenerate and opening, deleting or importing a past chat refuse, until it is 0. An edit may start one
    # anyway (it stops the one being written); counting, not a flag, keeps the stopped one's end from marking
    # the page idle while the edit's reply is written.
    writing = gr.State(0)
    saved = chat_saved.build(chatbot, [system, temperature, top_p, max_new, model], nav, writing)

    settings = [chatbot, system, temperature, top_p, max_new, color, model]
    private = {"api_visibility": "private"}
    # A failed reply marks the status line, not the chat: gradio veils every output it shows progress on.
    answer = {"fn": reply, "inputs": settings, "outputs": [chatbot, status, colors], "concurrency_id": LLM,
              "concurrency_limit": concurrency_limit(LLM), "show_progress_on": [status], **private}
    asked = [checked(typed, need_message, [box, writing]).success(add_user_message, [box, chatbot], [box, chatbot],
                                                                  **private)
             for typed in (box.submit, send.click)]
    asked += [chatbot.edit(edit_message, chatbot, chatbot, **private)]
    for question in asked:  # kept before it is answered: a reload or Clear meanwhile must not lose it
        saved.save_after(question)
    starts = asked + [checked(again, need_idle, [writing]).success(drop_last_reply, chatbot, chatbot, **private)
                      for again in (regenerate.click, chatbot.retry)]  # not saved: the answer and versions stay kept
    started = {"fn": lambda n: (chat_versions.hide(), n + 1, gr.Button(interactive=False)), "inputs": [writing],
               "outputs": [nav.row, writing, send], "queue": False, **private}
    runs = [start.success(**started).then(**answer) for start in starts]
    ended = {"fn": lambda n: (max(0, n - 1), gr.Button(interactive=n <= 1)), "inputs": [writing],
             "outputs": [writing, send], "queue": False, **private}
    for run in runs:
        finally_(run, **ended)  # after a failure too, and after Stop, Undo or Clear cancel it
    for run in runs + flips:
        saved.save_after(run)
    saved.save_after(stop.click(stopped_status, status, status, cancels=runs, queue=False, **private))
    saved.save_after(undo_btn.click(undo, chatbot, [chatbot, box], cancels=runs, **private))
    for cleared in (clear.click(clear_chat, None, [chatbot, status, colors], cancels=runs, **private),
                    chatbot.clear(cleared_notes, None, [status, colors], cancels=runs, **private)):  # its 🗑 icon
        cleared.then(chat_saved.start_new, saved.store, [saved.current, saved.store, *nav.outputs],
                     js=chat_saved.fresh(0), **private)
