"""Generated text coloured by each token's probability, with the top alternatives on hover."""

from __future__ import annotations

import html
import math

from pipelines import TokenLogprob

LEGEND = ("<p class='md-prob-legend'><small>颜色 = 模型给每个词的概率（温度 1、未过滤）：<span style='background:"
          "hsl(0,75%,82%)'>低 low</span> → <span style='background:hsl(120,75%,82%)'>高 high</span>；"
          "鼠标悬停查看备选词。 / Colour = the probability the model gave each token (temperature 1, no filter); "
          "hover for the alternatives.</small></p>")


def _label(token: TokenLogprob) -> str:
    return repr(token.token)[1:-1] or "∅"


def piece_html(text: str, tokens: list[TokenLogprob]) -> str:
    """One piece of text as a coloured span: the probability of its tokens together, alternatives in the title."""
    p = math.exp(sum(t.logprob for t in tokens)) if tokens else 1.0
    lines = [f"p = {p:.1%}"]
    for token in tokens:
        lines.append(f"{_label(token)}: {math.exp(token.logprob):.1%} · 备选 alternatives: " + ", ".join(
            f"{_label(alt)} {math.exp(alt.logprob):.1%}" for alt in token.top))
    return (f"<span class='md-tok' data-p='{p:.4f}' style='background:hsl({120 * p:.0f},75%,82%)' "
            f"title='{html.escape(chr(10).join(lines), quote=True)}'>{html.escape(text)}</span>")


def colored_html(rows: list[list[tuple[str, list[TokenLogprob]]]], prefix: str = "") -> str:
    """Every row's pieces coloured after the plain ``prefix`` (the prompt), numbered when there are several."""
    if not any(rows):
        return ("<p class='md-prob-legend'><small>这个模型没有给出每个词的概率（远程后端）。 / This model gave no "
                "per-token probabilities (a remote backend).</small></p>")
    shown = []
    for i, pieces in enumerate(rows):
        number = f"【{i + 1}】\n" if len(rows) > 1 else ""
        body = "".join(piece_html(text, tokens) for text, tokens in pieces)
        shown.append(f"{number}<span class='md-prompt'>{html.escape(prefix)}</span>{body}")
    return f"<div style='white-space:pre-wrap;line-height:1.8'>{'<br><br>'.join(shown)}</div>{LEGEND}"
