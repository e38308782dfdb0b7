"""The text-generation tab: sampling sliders explained, a reproducible seed, streamed output.

The seed is a text box that starts empty: empty means a new random seed on every click (a
``gr.Number`` cannot be empty in the browser; it shows 0, and every click then repeated seed 0). The
seed each run used is shown under the output, and "reuse" puts it back in the box in one click.
"""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from pipelines.sampling import (REPETITION_PENALTY_RANGE, TEMPERATURE_RANGE, TOP_K_RANGE, TOP_P_RANGE,
                                max_new_tokens_range)
from pipelines.textgen import DEFAULT_MAX_NEW_TOKENS, MAX_SEQUENCES

from . import adapters
from .common import (STOPPED, TEXTGEN, edge, examples, gpu, joined, model_choices, need_prompt_and_seed, notices_md,
                     one_step, t, usage_md)
from .token_colors import colored_html

EXAMPLES = ["今天天气很好，我们一起去", "从前有一座山，山里有一座庙，", "Once upon a time, in a small village,",
            "The best way to learn machine learning is"]


@gpu
@edge
def run(prompt: str, model: str, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
        repetition_penalty: float, num_return_sequences: int,
        seed: str | None) -> Iterator[tuple[str, str, int | None, str]]:
    """Stream the continuation(s), a status line with the seed that reproduces them, that seed, then the
    text coloured by each token's probability."""
    stream = adapters.generate(prompt, model, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                               num_return_sequences, seed, top_logprobs=5)
    notes = joined(notices_md(stream.notices), f"🎲 seed **{stream.seed}**" if stream.seed is not None else "")
    # Before the first token: the last run's status and coloured text go, the seed shows (and Stop keeps it).
    yield gr.skip(), notes, stream.seed, ""
    for text in stream:
        yield text, notes, stream.seed, gr.skip()
    yield (stream.text, joined(notices_md(stream.notices), usage_md(stream.usage, stream.seed)),
           stream.seed, colored_html(stream.pieces, prompt))


RUNNING = "上一次生成还没结束：请等它写完，或先按“停止”。 / The last run is still going: wait for it or press Stop."


def stopped(status: str, running: int) -> Any:
    """The status line after Stop, when a run was going: what it said (the seed, notices), then stopped."""
    return joined(status, STOPPED) if running else gr.skip()


def reuse_seed(last: int | None) -> str:
    """The last run's seed for the seed box (empty when it was greedy and used none)."""
    return "" if last is None else str(last)


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
            temperature = gr.Slider(*TEMPERATURE_RANGE, value=0.8, step=0.05, label=t("md_temperature"),
                                    info=t("md_temperature_info"), elem_id="textgen-temperature")
            top_k = gr.Slider(*TOP_K_RANGE, value=50, step=1, label=t("md_top_k"), info=t("md_top_k_info"))
            top_p = gr.Slider(*TOP_P_RANGE, value=0.95, step=0.01, label=t("md_top_p"), info=t("md_top_p_info"))
            fewest, most = max_new_tokens_range()  # what the pipeline clamps to
            max_new = gr.Slider(fewest, most, value=min(DEFAULT_MAX_NEW_TOKENS, most), step=1,
                                label=t("md_max_new_tokens"), info=t("md_max_new_tokens_info"),
                                elem_id="textgen-max-new")
            penalty = gr.Slider(*REPETITION_PENALTY_RANGE, value=1.1, step=0.05, label=t("md_repetition_penalty"),
                                info=t("md_repetition_penalty_info"))
            sequences = gr.Slider(1, MAX_SEQUENCES, value=1, step=1, label=t("md_num_sequences"),
                                  info=t("md_num_sequences_info"), elem_id="textgen-sequences")
            seed = gr.Textbox(value="", placeholder=t("md_seed_ph"), label=t("md_seed"), info=t("md_seed_info"),
                              elem_id="textgen-seed")
            with gr.Row():
                reuse = gr.Button(t("md_seed_reuse"), size="sm", elem_id="textgen-seed-reuse")
                randomize = gr.Button(t("md_seed_random"), size="sm", elem_id="textgen-seed-random")
    last_seed = gr.State(None)
    examples([[e] for e in EXAMPLES], [prompt], ["提示文本 Prompt"])
    running = gr.State(0)  # runs started and not ended: one at a time (they share the output and status)
    event = one_step(go.click, need_prompt_and_seed, [prompt, seed], running, RUNNING, {
        "fn": run, "inputs": [prompt, model, max_new, temperature, top_k, top_p, penalty, sequences, seed],
        "outputs": [output, status, last_seed, colors], "concurrency_id": TEXTGEN, "concurrency_limit": 1,
        "api_visibility": "private"})
    stop.click(stopped, [status, running], status, cancels=[event], api_visibility="private", queue=False)
    reuse.click(reuse_seed, last_seed, seed, api_visibility="private", queue=False)
    randomize.click(lambda: "", None, seed, api_visibility="private", queue=False)
