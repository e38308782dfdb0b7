"""The next-token tab: the model's next-token candidates before and after the sampling settings, and step mode.

A tab of its own (not a panel of text generation): the chart needs the width, it serves the chat model
too, and it leaves the text generation tab's layout to the people who change it.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

import pipelines
from pipelines.inputs import seed as parse_seed
from pipelines.next_token import MAX_TOP_N, model_choices
from pipelines.next_token_step import token_label
from pipelines.sampling import REPETITION_PENALTY_RANGE, TEMPERATURE_RANGE, TOP_K_RANGE, TOP_P_RANGE
from pipelines.tokens import SPACE_NOTE

from .common import (NEXT_TOKEN, concurrency_limit, edge, examples, gpu, joined, need_prompt_and_seed, notices_md,
                     one_step, t)

EXAMPLES = ["今天天气很好，我们一起去", "The capital of France is", "从前有一座山，山里有一座庙，",
            "Once upon a time, in a small village,"]

CSS = """
#nt-chart table { width: 100%; border-collapse: collapse; font-size: 14px; }
#nt-chart td { padding: 2px 6px; vertical-align: middle; }
#nt-chart .nt-bar { height: 14px; border-radius: 3px; min-width: 1px; }
#nt-chart .nt-before { background: #6b8fd6; }
#nt-chart .nt-after { background: #e8873a; }
#nt-chart tr.nt-removed td { opacity: 0.35; }
#nt-chart tr.nt-removed .nt-after { background: #999; }
#nt-chart tr.nt-click { cursor: pointer; }
#nt-chart tr.nt-click:hover td, #nt-chart tr.nt-click:focus td { background: #fdf1e2; }
#nt-chart code { white-space: pre; }
#nt-text .nt-added { background: #fde7c8; border-radius: 3px; }
"""

EXPLAIN = """
**顺序 / Order:** 重复惩罚 → 温度 → top-k → top-p → 重新归一化 → 抽签。文本生成用的就是同一段代码（`pipelines/sampling.py` 的 `processed`）。 /
Repetition penalty → temperature → top-k → top-p → renormalise → draw: the same code text generation samples with.

**温度 temperature** — 每个词的分数（logit）先除以 T 再换算成概率。T < 1 让本来就高的词更高、分布更尖、熵更低；T > 1 把概率摊平，冷门词机会变大；T = 0 不抽签，总是取最可能的词。 /
Every token's score (logit) is divided by T before it becomes a probability. T < 1 sharpens the distribution (lower entropy), T > 1 flattens it so unlikely tokens get more chances, and T = 0 skips the draw and always takes the most likely token.

**top-k** — 只保留概率最高的 k 个词，其余的概率变成 0（图中变灰），再把保留下来的概率重新加到 100%。0 = 不限制。 /
Keeps only the k most likely tokens; the others get probability 0 (greyed in the chart) and the kept ones are scaled back up to 100%. 0 = no limit.

**top-p（核采样 nucleus）** — 从最可能的词开始往下累加概率，加到 p 为止，只在这些词里抽签。模型很确定时只剩一两个词，不确定时会留下很多词。1 = 不限制。 /
Adds up probabilities from the most likely token down until they reach p, and draws only among those: one or two tokens when the model is sure, many when it is not. 1 = no limit.

**重复惩罚 repetition penalty** — 文本里已经出现过的词，分数为正时除以 r，为负时乘以 r，所以都变得更不可能。1 = 不惩罚。 /
Tokens already in the text have their score divided by r (if positive) or multiplied by r (if negative), so they become less likely. 1 = no penalty.

**熵 entropy** 衡量不确定程度（比特）：1 比特 ≈ 两个词五五开。**保留的概率 kept mass** 是被保留的词在原始分布里占的概率。 /
**Entropy** measures uncertainty in bits: 1 bit ≈ a coin flip between two tokens. **Kept mass** is how much of the original probability the kept tokens hold.

**远程后端 remote backends** — OpenAI 兼容的服务器（例如 vLLM）只返回概率最高的前 N 个词（最多 20 个）的 logprobs：“之前”就是这 N 个，“之后”只用这 N 个重新计算（当作整个词表），熵也只算这 N 个；重复惩罚无法显示，逐词模式只支持本地模型。`hf:` 条目只有对话模型可以（通过 chat_completion）。不返回 logprobs 的服务器（例如 `transformers serve`）无法显示这个视图，会直接说明。 /
An OpenAI-compatible server (vLLM, for one) returns the logprobs of its top N tokens only (at most 20): "before" is those N, "after" is recomputed from those N alone (as if they were the whole vocabulary), and so are the entropies; the repetition penalty cannot be shown and step mode needs a local model. Of `hf:` entries only chat models can (through chat_completion). A server that returns no logprobs (`transformers serve`) cannot show this view, and the tab says so.
"""


def _pct(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 or p == 0 else f"{p:.2e}"


# Clicking a row (or Enter on it) appends its token: one listener on the component, which outlives redraws.
CLICK_JS = """
if (!element.dataset.ntClick) {
  element.dataset.ntClick = "1";
  const pick = (event) => {
    const row = event.target.closest("tr.nt-click");
    if (row && element.contains(row)) trigger("click", {token_id: row.dataset.id});
  };
  element.addEventListener("click", pick);
  element.addEventListener("keydown", (event) => { if (event.key === "Enter") pick(event); });
}
"""


def chart_html(view: pipelines.NextTokenView) -> str:
    """The before/after bars of ``view``'s candidates, removed ones greyed, with entropy and kept mass; each row of a
    local model is a button that appends its token."""
    top = max([c.raw_p for c in view.candidates] + [c.p for c in view.candidates] + [1e-9])
    rows = []
    for rank, c in enumerate(view.candidates, start=1):
        after = _pct(c.p) if c.kept else "✂ 已过滤 removed"
        click = (f" nt-click' data-id='{c.id}' tabindex='0' role='button' title='点击接上这个词 / click to append'"
                 if c.id >= 0 else "'")
        rows.append(
            f"<tr class='nt-row {'nt-kept' if c.kept else 'nt-removed'}{click}><td>{rank}</td><td><code>{html.escape(c.token)}</code></td>"
            f"<td style='width:32%'><div class='nt-bar nt-before' style='width:{100 * c.raw_p / top:.2f}%'></div></td>"
            f"<td>{_pct(c.raw_p)}</td>"
            f"<td style='width:32%'><div class='nt-bar nt-after' style='width:{100 * c.p / top:.2f}%'></div></td>"
            f"<td>{after}</td></tr>")
    summary = (f"<p class='nt-summary'>熵 entropy: <b>{view.entropy_before:.2f}</b> → <b>{view.entropy_after:.2f}</b> bits"
               f" · 保留 kept: <b>{view.kept_count}</b> / {view.vocab_size} 个词 tokens, "
               f"占原始概率 kept mass <b>{view.kept_mass:.1%}</b> · {html.escape(view.model)}</p>")
    if view.known_mass is not None:
        n = view.vocab_size
        summary += (f"<p class='nt-remote'>⚠️ 远程模型：只知道服务器返回的前 {n} 个词（共占概率 {view.known_mass:.1%}）；"
                    f"“之后”和熵只用这 {n} 个词重新计算；重复惩罚无法显示；逐词模式只支持本地模型。 / Remote model: only "
                    f"the top {n} tokens the server returned are known (together {view.known_mass:.1%} of the "
                    f"probability); \"after\" and the entropies are recomputed from those {n} only; the repetition "
                    "penalty cannot be shown; step mode needs a local model.</p>")
    head = ("<tr><th>#</th><th>词元 token</th><th colspan='2'>之前 before (T=1, 不过滤 no filter)</th>"
            "<th colspan='2'>之后 after (当前设置 current settings)</th></tr>")
    return f"{summary}<table>{head}{''.join(rows)}</table><p><small>{SPACE_NOTE}</small></p>"


def text_html(prompt: str, added: list[str], marks: list[str]) -> str:
    """The text so far: the prompt, then the appended tokens highlighted, each with how it was chosen."""
    tokens = "".join(f"<span class='nt-added'>{html.escape(a)}</span><sup class='nt-mark'>{html.escape(m)}</sup>"
                     for a, m in zip(added, marks))
    return f"<div>📝 {html.escape(prompt)}{tokens}</div>"


BUSY = "上一步还在进行：请等它完成。 / The last step is still running: wait for it to finish."


def fresh_state() -> dict[str, Any]:
    """Step mode's memory: the prompt and model it belongs to, appended ids, the seeded generator, the generator as
    it was before each appended token (Undo puts it back), and what the last step said."""
    return {"key": None, "ids": [], "tokens": [], "marks": [], "seed": None, "rng": None, "before": [], "said": ""}


def _own(state: dict[str, Any] | None, prompt: str, model: str) -> dict[str, Any]:
    state = dict(state or fresh_state())
    if state["key"] != (prompt, model):  # another text or model: step mode starts over
        state = {**fresh_state(), "key": (prompt, model)}
    return state


def _grown(state: dict[str, Any], token_id: int, token: str, mark: str, said: str = "") -> dict[str, Any]:
    """``state`` with a token appended, remembering the generator as it was before it."""
    return {**state, "ids": state["ids"] + [token_id], "tokens": state["tokens"] + [token], "said": said,
            "marks": state["marks"] + [mark], "before": state["before"] + [(state["seed"], state["rng"])]}


def _shown(prompt: str, model: str, temperature: float, top_k: int, top_p: float, penalty: float, top_n: int,
           state: dict[str, Any]) -> tuple[str, str, str]:
    if not (prompt or "").strip():
        return "<p>输入提示文本，然后点「显示下一个词」。 / Enter a prompt, then press Show next token.</p>", "", ""
    view = pipelines.next_token(prompt, model, temperature=temperature, top_k=top_k, top_p=top_p,
                                repetition_penalty=penalty, top_n=top_n, appended=state["ids"])
    return chart_html(view), text_html(prompt, state["tokens"], state["marks"]), notices_md(view.notices)


@gpu
@edge
def draw(prompt: str, model: str, temperature: float, top_k: int, top_p: float, penalty: float, top_n: int,
         state: dict[str, Any] | None, busy: int) -> tuple[Any, Any, Any, Any]:
    """Redraw the chart (from cached logits when the text is unchanged); its rows are the candidates to click.
    While a step runs it does nothing: the step redraws once it is over, with the prompt and settings of then."""
    if busy:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    own = _own(state, prompt, model)  # written back only when step mode starts over: a step may be writing it
    return (*_shown(prompt, model, temperature, top_k, top_p, penalty, top_n, own),
            own if own["key"] != (state or {}).get("key") else gr.skip())


@gpu
@edge
def redrawn(prompt: str, model: str, temperature: float, top_k: int, top_p: float, penalty: float, top_n: int,
            state: dict[str, Any] | None) -> tuple[str, str, str]:
    """After a step: the chart and the text, with the prompt and settings of now, and what the step said."""
    own = _own(state, prompt, model)
    chart, text, notes = _shown(prompt, model, temperature, top_k, top_p, penalty, top_n, own)
    return chart, text, joined(own["said"], notes)


@gpu
@edge
def sample(prompt: str, model: str, temperature: float, top_k: int, top_p: float, penalty: float, seed: str | None,
           state: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """Draw one token with the seed (continuing the seeded sequence) and append it; return the state and the seed."""
    state = _own(state, prompt, model)
    wanted = parse_seed(seed)  # checked before this step (need_prompt_and_seed)
    if wanted is not None and wanted != state["seed"]:  # a new seed starts a new sequence of draws
        state.update(seed=wanted, rng=None)
    step = pipelines.sample_step(prompt, model, temperature=temperature, top_k=top_k, top_p=top_p,
                                 repetition_penalty=penalty, appended=state["ids"], seed=state["seed"],
                                 rng=state["rng"])
    seed_text = f" · 🎲 seed **{step.seed}**" if step.seed is not None else ""
    said = (f"**抽到 sampled:** `{step.token}` — 排名 rank **{step.rank}**, 原始概率 raw p {_pct(step.raw_p)}, "
            f"设置后 after {_pct(step.p)}{seed_text}\n\n{step.reason}")
    state = _grown(state, step.id, step.token, f"🎲{step.rank}", said)  # marked in the text with its rank
    if step.seed is None:  # greedy (temperature 0): nothing drawn, the generator and the seed box stay as they are
        return state, gr.skip()
    state.update(seed=step.seed, rng=step.rng)
    return state, str(step.seed)


def picked(event: gr.EventData) -> str:
    """The token id of the chart row clicked (kept for the step that appends it: a chained step gets no event data)."""
    return str(getattr(event, "token_id", "") or "")


@gpu
@edge
def append(prompt: str, model: str, state: dict[str, Any] | None, choice: str) -> dict[str, Any]:
    """Append the candidate whose row was clicked (``choice``, its token id)."""
    state = _own(state, prompt, model)
    return _grown(state, int(choice), token_label(model, int(choice)), "👆") if choice.isdigit() else state


def undo(state: dict[str, Any] | None) -> dict[str, Any]:
    """Remove the last appended token, and put the seeded generator back where it was before it was drawn."""
    state = {**(state or fresh_state()), "said": ""}
    if state["ids"]:
        seed, rng = state["before"][-1]
        state.update(ids=state["ids"][:-1], tokens=state["tokens"][:-1], marks=state["marks"][:-1],
                     before=state["before"][:-1], seed=seed, rng=rng)
    return state


def build() -> None:
    """Lay out the next-token tab inside the current Blocks."""
    names = model_choices()
    state = gr.State(fresh_state())
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label=t("md_prompt"), placeholder=t("md_prompt_ph"), lines=3, elem_id="nt-prompt")
            with gr.Row():
                model = gr.Dropdown(names, value=names[0], label=t("md_model"), elem_id="nt-model", scale=3)
                top_n = gr.Slider(5, MAX_TOP_N, value=20, step=1, label=t("md_nt_top_n"), elem_id="nt-top-n", scale=2)
            with gr.Row():
                show = gr.Button(t("md_nt_show"), variant="primary", elem_id="nt-run")
                step = gr.Button(t("md_nt_sample"), elem_id="nt-sample")
                back = gr.Button(t("md_undo"), elem_id="nt-undo")
                restart = gr.Button(t("md_nt_restart"), elem_id="nt-restart")
            # A text box, as in text generation: a ``gr.Number`` cannot be empty in the browser (it showed 0, so every
            # learner drew with seed 0, whatever the hint said); the seed is checked by ``need_prompt_and_seed``.
            seed = gr.Textbox(value="", placeholder=t("md_seed_ph"), label=t("md_seed"), info=t("md_nt_seed_info"),
                              elem_id="nt-seed")
            text = gr.HTML(elem_id="nt-text")
            status = gr.Markdown(elem_id="nt-status")
            gr.Markdown(t("md_nt_pick"), elem_id="nt-pick-hint")
            chart = gr.HTML(elem_id="nt-chart", js_on_load=CLICK_JS)
        with gr.Column(scale=2):
            temperature = gr.Slider(*TEMPERATURE_RANGE, value=1.0, step=0.05, label=t("md_temperature"), elem_id="nt-temperature")
            top_k = gr.Slider(*TOP_K_RANGE, value=0, step=1, label=t("md_top_k"), elem_id="nt-top-k")
            top_p = gr.Slider(*TOP_P_RANGE, value=1.0, step=0.01, label=t("md_top_p"), elem_id="nt-top-p")
            penalty = gr.Slider(*REPETITION_PENALTY_RANGE, value=1.0, step=0.05, label=t("md_repetition_penalty"), elem_id="nt-penalty")
            gr.Markdown(EXPLAIN, elem_id="nt-explain")
    examples([[e] for e in EXAMPLES], [prompt], ["提示文本 Prompt"])

    settings = [prompt, model, temperature, top_k, top_p, penalty, top_n]
    quiet = {"api_visibility": "private", "concurrency_id": NEXT_TOKEN,
             "concurrency_limit": concurrency_limit(NEXT_TOKEN)}
    # The steps change the text: one at a time (``busy`` counts them), each writing the state and the seed, then
    # drawing the chart and text. Two at once, the later one wrote the text it started from plus its own token only.
    # A redraw asked for meanwhile waits for the step's end, when the chart is drawn again with the settings of then
    # (a redraw run beside the step's could end first and be drawn over with the older settings).
    busy, clicked = gr.State(0), gr.State("")
    redraw = {"fn": draw, "inputs": settings + [state, busy], "outputs": [chart, text, status, state], **quiet}
    show.click(**redraw)
    prompt.submit(**redraw)
    model.change(**redraw)
    for slider in (temperature, top_k, top_p, penalty, top_n):
        slider.change(trigger_mode="always_last", show_progress="hidden", **redraw)
    after = {"fn": redrawn, "inputs": settings + [state], "outputs": [chart, text, status], **quiet}
    steps = [(step.click, need_prompt_and_seed, [prompt, seed],
              {"fn": sample, "inputs": settings[:-1] + [seed, state], "outputs": [state, seed]}),
             (chart.click(picked, None, clicked, queue=False, api_visibility="private").then, None, [],
              {"fn": append, "inputs": [prompt, model, state, clicked], "outputs": [state]}),
             (back.click, None, [], {"fn": undo, "inputs": [state], "outputs": [state]}),
             (restart.click, None, [], {"fn": fresh_state, "inputs": None, "outputs": [state]})]
    for trigger, check, inputs, work in steps:
        one_step(trigger, check, inputs, busy, BUSY, {**work, **quiet}, after, {**after, "show_progress": "hidden"},
                 [step, back, restart])
