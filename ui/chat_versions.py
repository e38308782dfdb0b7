"""The chat tab's ◀ n/m ▶ under the chat: flip between the kept versions of the last answer.
The bookkeeping lives in ``pipelines.answer_versions``; saving the chat records each new version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines import answer_versions

from .common import edge

# ◀ n/m ▶ side by side at the left, each as wide as its content (a Row would stretch the label)
CSS = """
#chat-versions { align-items: center; gap: 6px; }
#chat-versions > * { flex: 0 0 auto !important; width: auto !important; }
"""


@dataclass
class VersionNav:
    """The versions of the last answer (a State) and the row that shows and flips them."""

    state: gr.State
    row: gr.Row
    label: gr.Markdown

    @property
    def outputs(self) -> list[Any]:
        """The components ``shown`` fills, in its order."""
        return [self.state, self.row, self.label]


def shown(versions: Any, history: Any) -> tuple[Any, Any, str]:
    """The versions, the row's visibility and its "n/m" for the chat ``history`` (hidden below 2 versions)."""
    at = answer_versions.position(versions, history)
    return versions, gr.Row(visible=at is not None), f"**{at[0]}/{at[1]}**" if at else ""


NONE = (None, gr.Row(visible=False), "")  # what ``shown`` gives for a chat without versions


@edge
def flip(versions: Any, history: Any, step: int) -> tuple[Any, ...]:
    """The chat showing the previous or next version of its last answer; that version is the one kept."""
    chat, versions = answer_versions.flip(versions, history, step)
    return (chat, *shown(versions, chat))


def build(chatbot: gr.Chatbot) -> tuple[VersionNav, list[Any]]:
    """Lay out the ◀ n/m ▶ row; return it and the flip events (to save after them)."""
    state = gr.State(None)
    with gr.Row(visible=False, elem_id="chat-versions") as row:
        prev = gr.Button("◀", size="sm", scale=0, min_width=48, elem_id="chat-version-prev")
        label = gr.Markdown(elem_id="chat-version", scale=0, min_width=56)
        after = gr.Button("▶", size="sm", scale=0, min_width=48, elem_id="chat-version-next")
    nav = VersionNav(state, row, label)
    events = [button.click(lambda v, h, step=step: flip(v, h, step), [state, chatbot], [chatbot, *nav.outputs],
                           api_visibility="private", show_progress="hidden")
              for button, step in ((prev, -1), (after, 1))]
    return nav, events


def hide() -> Any:
    """Hide the row while a new answer is written (its versions are recorded once it is complete)."""
    return gr.Row(visible=False)
