"""The text-generation tab: sampling sliders explained, a reproducible seed, streamed output."""

from __future__ import annotations

from typing import Iterator

import gradio as gr

import pipelines

from .common import model_choices, TEXTGEN, edge, examples, gpu, notices_md, t, usage_md
from .token_colors import colored_html

EXAMPLES = ["今天天气很好，我们一起去", "从前有一座山，山里有一座庙，", "Once upon a time, in a small village,",
            "The best way to learn machine learning is"]


@gpu
@edge
def run(prompt: str, model: str, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
        repetition_penalty: float, num_return_sequences: int, seed: float | None) -> Iterator[tuple[str, str, str]]:
    """Stream the continuation(s), a status line with the seed that reproduces them, then the coloured text."""
    stream = pipelines.generate_text(prompt, model, max_new_tokens=max_new_tokens, temperature=temperature,
                                     top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                                     num_return_sequences=num_return_sequences, seed=seed, top_logprobs=5)
    notes = notices_md(stream.notices)
    for text in stream:
        yield text, notes, gr.skip()
    yield (stream.text, "\n\n".join(x for x in (notices_md(stream.notices), usage_md(stream.usage, stream.seed)) if x),
           colored_html(stream.pieces, prompt))


def build() -> None:
    """Lay out the text-generation tab inside the current Blocks."""
    choices = model_choices("textgen")
    names = [name for _, name in choices]
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label=t("md_prompt"), placeholder=t("md_prompt_ph"), lines=4, elem_id="textgen-prompt")
            model = gr.Dropdown(choices, value=names[0], label=t("md_model"), elem_id="textgen-model")
            with gr.Row():
                go = gr.Button(t("md_generate"), variant="primary", elem_id="textgen-run")
                stop = gr.Button(t("md_stop"), variant="stop", elem_id="textgen-stop")
            output = gr.Textbox(label=t("md_output"), lines=10, buttons=["copy"], elem_id="textgen-output")
            status = gr.Markdown(elem_id="textgen-status")
            colors = gr.HTML(elem_id="textgen-colors", js_on_load=None)
        with gr.Column(scale=2):
            temperature = gr.Slider(0, 2, value=0.8, step=0.05, label=t("md_temperature"), info=t("md_temperature_info"))
            top_k = gr.Slider(0, 200, value=50, step=1, label=t("md_top_k"), info=t("md_top_k_info"))
            top_p = gr.Slider(0.05, 1, value=0.95, step=0.05, label=t("md_top_p"), info=t("md_top_p_info"))
            max_new = gr.Slider(8, 512, value=100, step=8, label=t("md_max_new_tokens"), info=t("md_max_new_tokens_info"))
            penalty = gr.Slider(1.0, 2.0, value=1.1, step=0.05, label=t("md_repetition_penalty"),
                                info=t("md_repetition_penalty_info"))
            sequences = gr.Slider(1, pipelines.textgen.MAX_SEQUENCES, value=1, step=1, label=t("md_num_sequences"),
                                  info=t("md_num_sequences_info"))
            seed = gr.Number(value=None, precision=0, minimum=0, label=t("md_seed"), info=t("md_seed_info"),
                             elem_id="textgen-seed")
    examples([[e] for e in EXAMPLES], [prompt], ["提示文本 Prompt"])
    event = go.click(run, [prompt, model, max_new, temperature, top_k, top_p, penalty, sequences, seed],
                     [output, status, colors], concurrency_id=TEXTGEN, concurrency_limit=1, api_visibility="private")
    stop.click(None, None, None, cancels=[event], api_visibility="private")
