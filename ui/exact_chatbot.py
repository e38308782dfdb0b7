"""The chat's Chatbot, showing each message's text exactly as given.

gradio writes type stubs for the class into ``exact_chatbot.pyi`` next to this file when it is first imported
(its component metaclass does that for every component class; the file is git-ignored).
"""

from __future__ import annotations

from typing import Any

import gradio as gr


class ExactChatbot(gr.Chatbot):
    """A ``gr.Chatbot`` that shows each message's text as given.

    gradio's Chatbot passes text through ``inspect.cleandoc``, which drops the whitespace around it and the
    indentation its lines share; the text then comes back changed, and a saved, exported or flipped answer
    is no longer the one generated. A template of gradio's (``is_template``): the page draws it as a
    Chatbot, and gradio rebuilds it as this class when an event updates its properties.
    """

    is_template = True

    def _postprocess_content(self, chat_message: Any) -> Any:
        from gradio.components.chatbot import TextMessage

        if isinstance(chat_message, str):
            return TextMessage(text=chat_message)
        return super()._postprocess_content(chat_message)
