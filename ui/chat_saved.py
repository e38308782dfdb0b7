"""The chat tab's saved conversations: kept in the browser across reloads, reopened, deleted,
exported as JSON or Markdown and imported from JSON. The rules live in ``pipelines.conversations``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.context import Context

from pipelines import InvalidInputError, answer_versions, conversations, registry
from pipelines.conversations import Conversation
from pipelines.downloads import save_download
from pipelines.inputs import max_input_chars, normalize_messages

from . import browser_store, chat_versions
from .adapters import file_path
from .chat_versions import VersionNav
from .common import checked, edge, finally_, need_idle

EMPTY_STORE: dict[str, Any] = {"current": None, "chats": []}
# The browser stores the chats; gradio's BrowserState "encrypts" them with a key it also sends to the
# page. A fixed key keeps saved chats readable after the server restarts (a random one would not), and lets
# the server read what another tab stored (``browser_store``).
STORE_SECRET = "modeldeck-saved-chats-v1"
STORAGE_KEY = "modeldeck-chats"
SETTINGS = 5  # what a conversation keeps besides its messages: system prompt, temperature, top_p, max_new_tokens, model


@dataclass
class SavedChats:
    """The components other chat events need: the browser store and the open conversation's id."""

    store: gr.BrowserState
    current: gr.State
    listing: gr.Dropdown
    settings: list[Any]
    nav: VersionNav

    def save_after(self, event: Any) -> list[Any]:
        """Chain saving the open conversation (and recording its last answer's version) after ``event``, however
        it ends: a reply that failed still leaves the question it was asked in the kept chat."""
        inputs = [self.current, *self.settings, self.nav.state, self.store]
        return finally_(event, fn=save, inputs=inputs, outputs=[self.current, self.store, self.listing, *self.nav.outputs],
                        js=fresh(len(inputs) - 1), api_visibility="private", queue=False)


def fresh(at: int) -> str:
    """The ``js=`` of an event whose input ``at`` is the store: it sends what the browser holds now, which another
    tab may have changed since this page loaded, and the browser's time zone."""
    return browser_store.fresh_js(STORAGE_KEY, at)


def _read(store: Any) -> browser_store.Fresh:
    return browser_store.read(store, STORE_SECRET, EMPTY_STORE)


def _choices(store: Any, selected: str | None = None, zone: Any = None) -> dict[str, Any]:
    """The past chats list, each chat with the time it was last kept in the browser's time zone ``zone``."""
    chats = conversations.saved_list(store)
    choices = [(f"{c.title} · {browser_store.local_time(c.updated, zone)}", c.id) for c in chats]
    ids = [c.id for c in chats]
    return gr.update(choices=choices, value=selected if selected in ids else None)


def _conversation(conversation_id: str | None, history: list[dict], system: str, temperature: float,
                  top_p: float, max_new_tokens: int, model: str | None, versions: Any = None) -> Conversation:
    messages = [m for m in normalize_messages(history) if m["role"] in ("user", "assistant")]
    settings = {"temperature": float(temperature), "top_p": float(top_p), "max_new_tokens": int(max_new_tokens)}
    model = registry.resolve("chat", model).source
    system = (system or "")[:max_input_chars()]  # what the model reads; a longer one could not be read back
    conversation = Conversation(messages, system, settings, model, answer_versions.saved_form(versions, messages))
    if conversation_id:
        conversation.id = conversation_id
    return conversation


def _model_shown(model: str) -> Any:
    """The chat model list's value for a conversation kept with ``model`` (its configured id); a chat kept without
    one, or with a model no longer configured, leaves the list as it is."""
    try:
        return registry.resolve("chat", model).name if model else gr.skip()
    except InvalidInputError:
        return gr.skip()


def _shown(conversation: Conversation | None) -> tuple[Any, ...]:
    """The chat view, id, answer versions, system prompt, sliders and chat model for ``conversation`` (cleared for
    None)."""
    if conversation is None:
        return [], None, *chat_versions.NONE, *(gr.skip(),) * SETTINGS
    s = conversation.settings
    messages = [dict(m) for m in conversation.messages]
    versions = answer_versions.restored(conversation.versions, messages)
    return (messages, conversation.id, *chat_versions.shown(versions, messages), conversation.system_prompt,
            s.get("temperature", 0.7), s.get("top_p", 0.9), s.get("max_new_tokens", 512),
            _model_shown(conversation.model))


@edge
def save(conversation_id: str | None, history: list[dict], system: str, temperature: float, top_p: float,
         max_new_tokens: int, model: str | None, versions: Any, store: Any) -> tuple[Any, ...]:
    """Keep the open conversation in the browser, its last answer among that answer's versions (a chat
    without messages is not kept: one Undo emptied stops being the chat a reload opens, and its kept copy stays
    in the list as it was)."""
    store, zone = (read := _read(store)).value, read.zone
    versions = answer_versions.record(versions, history)
    conversation = _conversation(conversation_id, history, system, temperature, top_p, max_new_tokens, model,
                                 versions)
    if not conversation.messages:
        if conversation_id and isinstance(store, dict) and store.get("current") == conversation_id:
            store = {**store, "current": None}  # before, a reload brought back the exchange just undone
            return conversation_id, store, _choices(store, None, zone), *chat_versions.NONE
        return conversation_id, gr.skip(), gr.skip(), *chat_versions.NONE
    store = conversations.remember(store, conversation)
    return conversation.id, store, _choices(store, conversation.id, zone), *chat_versions.shown(versions, history)


def restore(store: Any, history: list[dict], conversation_id: str | None) -> tuple[Any, ...]:
    """After a reload, show the conversation that was open (only into an empty, unsaved chat view)."""
    store, zone = (read := _read(store)).value, read.zone
    listing = _choices(store, store.get("current") if isinstance(store, dict) else None, zone)
    if history or conversation_id:
        return (gr.skip(),) * (5 + SETTINGS) + (listing,)
    current = conversations.find(store, store.get("current") if isinstance(store, dict) else None)
    if current is None:
        return (gr.skip(),) * (5 + SETTINGS) + (listing,)
    return (*_shown(current), listing)


def relist(selected: str | None, store: Any) -> Any:
    """The past chats list as the browser's store holds it now (another tab kept or deleted a chat)."""
    read = _read(store)
    return _choices(read.value, selected, read.zone)


# Another tab of the site changing the kept chats fires the browser's ``storage`` event here (never in the tab that
# changed them): it presses the hidden refresh button, whose event reads the store afresh.
LISTEN_JS = f"""() => {{
    if (window.modeldeckChatsListener) return;
    window.modeldeckChatsListener = (event) => {{
        if (event.key === {STORAGE_KEY!r} || event.key === null) document.getElementById("chat-saved-refresh")?.click();
    }};
    window.addEventListener("storage", window.modeldeckChatsListener);
}}"""


def chosen(selected: str | None, store: Any, writing: int = 0) -> None:
    """Refuse, before anything on the page changes, when no saved conversation is chosen in the list, or while a
    reply is being written (it would go on over the chat shown instead, and be saved under its name)."""
    need_idle(writing)
    if conversations.find(store, selected) is None:
        raise gr.Error("请先在列表里选择一个对话。 / Choose a conversation in the list first.", print_exception=False)


def open_saved(selected: str | None, store: Any) -> tuple[Any, ...]:
    """Show the chosen saved conversation."""
    store = _read(store).value
    chosen(selected, store)
    conversation = conversations.find(store, selected)
    store = {**store, "current": conversation.id}
    return (*_shown(conversation), store)


def delete_saved(selected: str | None, conversation_id: str | None, store: Any) -> tuple[Any, ...]:
    """Delete the chosen saved conversation; deleting the open one clears the chat view."""
    store, zone = (read := _read(store)).value, read.zone
    chosen(selected, store)
    store = conversations.forget(store, selected)
    view = ([], None, *chat_versions.NONE) if selected == conversation_id else (gr.skip(),) * 5
    return (*view, store, _choices(store, None, zone))


def start_new(store: Any) -> tuple[Any, ...]:
    """Forget which conversation is open (the old one stays in the list) and its answer versions."""
    store = _read(store).value
    return None, {**(store if isinstance(store, dict) else EMPTY_STORE), "current": None}, *chat_versions.NONE


@edge
def export(kind: str, conversation_id: str | None, history: list[dict], system: str, temperature: float,
           top_p: float, max_new_tokens: int, model: str | None, versions: Any) -> Any:
    """Write the open conversation as a JSON or Markdown file and offer it for download."""
    conversation = _conversation(conversation_id, history, system, temperature, top_p, max_new_tokens, model,
                                 versions)
    if not conversation.messages:
        raise gr.Error("对话是空的，没有可导出的内容。 / The chat is empty: there is nothing to export.",
                       print_exception=False)
    if kind == "json":
        path = save_download(conversations.to_json(conversation).encode("utf-8"), "modeldeck-chat", "json")
    else:
        path = save_download(conversations.to_markdown(conversation).encode("utf-8"), "modeldeck-chat", "md")
    return gr.update(value=path, visible=True)


@edge
def read_import(upload: Any) -> Conversation:
    """Check a JSON export; a bad file is refused here, before anything on the page changes."""
    path = file_path(upload)
    if not path:
        raise gr.Error("请选择一个 JSON 文件。 / Choose a JSON file.", print_exception=False)
    with open(path, "rb") as f:  # a path gradio gave us inside its upload folder
        return conversations.parse_export(f.read(conversations.MAX_IMPORT_BYTES + 1))


def open_import(conversation: Conversation, system: str, store: Any) -> tuple[Any, ...]:
    """Open a checked import as a new saved conversation; a file that does not say what its system prompt was
    (a bare message list, another program's export) keeps the ``system`` prompt the page shows."""
    if conversation.system_prompt is None:
        conversation.system_prompt = (system or "")[:max_input_chars()]
    store, zone = (read := _read(store)).value, read.zone
    store = conversations.remember(store, conversation)
    gr.Info("已导入对话。 / The conversation was imported.")
    return (*_shown(conversation), store, _choices(store, conversation.id, zone))


def build(chatbot: gr.Chatbot, settings: list[Any], nav: VersionNav, writing: gr.State) -> SavedChats:
    """Lay out the saved-chats row and the export/import row; wire everything that needs no model.

    ``writing`` counts the replies being written: opening, deleting or importing a chat waits for it to be 0.
    """
    store = gr.BrowserState(EMPTY_STORE, storage_key=STORAGE_KEY, secret=STORE_SECRET)
    current = gr.State(None)
    with gr.Row(equal_height=True):
        listing = gr.Dropdown([], label="历史对话 Past chats", scale=4, elem_id="chat-saved")
        open_btn = gr.Button("📂 打开 Open", scale=1, elem_id="chat-open")
        delete_btn = gr.Button("🗑️ 删除 Delete", scale=1, elem_id="chat-delete")
    with gr.Row(equal_height=True):
        json_btn = gr.Button("⬇️ 导出 JSON · Export JSON", elem_id="chat-export-json")
        md_btn = gr.Button("⬇️ 导出 Markdown · Export Markdown", elem_id="chat-export-md")
        upload = gr.UploadButton("⬆️ 导入 JSON · Import JSON", file_types=[".json"], elem_id="chat-import")
    exported = gr.File(label="导出的文件 Exported file", interactive=False, visible=False, elem_id="chat-exported")
    refresh = gr.Button("↻", visible="hidden", elem_id="chat-saved-refresh")  # pressed by ``LISTEN_JS``

    # Events that can refuse go through the queue: gradio 6.31's page shows no toast for an error raised by an
    # unqueued event (its run/predict reply reaches the page without the "visible" flag the toast needs).
    private = {"api_visibility": "private", "show_progress": "hidden"}  # quick; no spinner or error veil
    view = [chatbot, current, *nav.outputs, *settings]  # settings: system prompt, sliders, chat model (SETTINGS)
    root = Context.root_block
    if root is not None:  # restore once the page has read the browser's store (either may come first)
        gr.on([root.load, store.change], restore, [store, chatbot, current], [*view, listing], queue=False,
              js=fresh(0), **private)
        root.load(None, None, None, js=LISTEN_JS)  # the list follows the other tabs' changes at once
    refresh.click(relist, [listing, store], listing, js=fresh(1), queue=False, **private)
    # Every change of the store starts from what the browser holds now (``fresh``): another tab may have kept or
    # deleted a chat since this page loaded.
    checked(open_btn.click, chosen, [listing, store, writing]).success(open_saved, [listing, store], [*view, store],
                                                                       js=fresh(1), **private)
    checked(delete_btn.click, chosen, [listing, store, writing]).success(
        delete_saved, [listing, current, store], [chatbot, current, *nav.outputs, store, listing], js=fresh(2),
        **private)
    for button, kind in ((json_btn, "json"), (md_btn, "md")):
        button.click(lambda *a, kind=kind: export(kind, *a), [current, chatbot, *settings, nav.state], exported,
                     **private)
    imported = gr.State(None)  # a refused file marks only this invisible output with an error
    checked(upload.upload, need_idle, [writing]).success(read_import, upload, imported, **private).success(
        open_import, [imported, settings[0], store], [*view, store, listing], js=fresh(2), **private)
    return SavedChats(store, current, listing, [chatbot, *settings], nav)
