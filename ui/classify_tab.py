"""The classification tab: every label's score as bars; many texts at once from ``classify_batch``."""

from __future__ import annotations

import gradio as gr

from . import adapters, classify_batch
from .common import model_choices, CLASSIFIER, checked, edge, examples, gpu, need_text, notices_md, t

EXAMPLES = ["这家店的服务太好了，下次还来！", "快递太慢了，包装也破了，很失望。",
            "This movie was absolutely wonderful.", "The food was cold and the waiter was rude."]


@gpu
@edge
def run(text: str, model: str) -> tuple[dict[str, float], str]:
    """Return every label with its probability, and a notice when the model read only part of the text."""
    shown = adapters.classify(text, model)
    return shown.scores, notices_md(shown.notices)


def build() -> None:
    """Lay out the classification tab inside the current Blocks."""
    choices = model_choices("classifier")
    names = [name for _, name in choices]
    with gr.Row():
        with gr.Column():
            # One line that grows: Enter classifies, Shift+Enter starts a new line (gradio submits on Enter only
            # when lines=1; with more lines it is the other way round).
            text = gr.Textbox(label=t("md_text"), placeholder=t("md_text_ph"), lines=1, max_lines=8,
                              elem_id="classify-text")
            model = gr.Dropdown(choices, value=names[0], label=t("md_model"), elem_id="classify-model")
            go = gr.Button(t("md_classify"), variant="primary", elem_id="classify-run")
        with gr.Column():
            labels = gr.Label(label=t("md_labels"), num_top_classes=10, elem_id="classify-labels")
            notices = gr.Markdown(elem_id="classify-notices")
    examples([[e, names[0] if i < 2 else names[-1]] for i, e in enumerate(EXAMPLES)], [text, model],
             ["文本 Text", "模型 Model"])
    for trigger in (go.click, text.submit):
        checked(trigger, need_text("文本", "text"), [text]).success(
            run, [text, model], [labels, notices], concurrency_id=CLASSIFIER, concurrency_limit=1, api_visibility="private")
    classify_batch.build(model)
