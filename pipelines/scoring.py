"""How likely a local text generation model finds each token of a text: what ``/v1/completions`` gives back
for the prompt with ``echo`` and ``logprobs`` (the log-likelihood scoring of evaluation harnesses)."""

from __future__ import annotations

from .engine import engine
from .errors import InvalidInputError
from .inputs import logprobs_count
from .next_token import appended_ids, local_model
from .tokens import TokenLogprob, token_logprob
from .windows import context_window

# Rows of log-probabilities worked out at a time: a 1024-token text over a 50k vocabulary would take 200 MB.
ROWS_AT_A_TIME = 128


def prompt_logprobs(prompt: str | list[int], model: str | None = None, *, top_logprobs: int = 0,
                    notices: list[str] | None = None) -> list[tuple[int, TokenLogprob | None]]:
    """Each token of ``prompt`` as the text generation model ``model`` reads it, with the offset of its text in
    ``prompt`` and its log-probability after the tokens before it (temperature 1, no filter), with
    ``top_logprobs`` alternatives. The first token has no tokens before it: ``None``, as OpenAI writes ``null``.

    The tokens are the ones a continuation of ``prompt`` is generated after (no special tokens added); a list of
    token ids is scored as it is (offsets in ``prompt_text`` of it). A text longer than the model's window is read
    from its end, with a notice; its first kept token is then ``None``.
    """
    notices = [] if notices is None else notices
    loaded = _text_model(model)
    count = logprobs_count(top_logprobs, notices) or 0
    tokenizer = loaded.processor
    if isinstance(prompt, str):
        encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
        ids = list(encoded["input_ids"])
        fast = tokenizer.is_fast
    else:
        ids, fast = appended_ids(prompt, loaded), False
    if not ids:
        raise InvalidInputError("提示文本里没有模型认识的字符，请换一段文字。",
                                "The model recognises no character of the prompt; try other text.")
    window = context_window(loaded)
    cut = max(0, len(ids) - window)
    if cut:
        notices.append(f"提示文本过长，只为最后 {window} 个词元给出概率。 / "
                       f"The prompt was too long; only its last {window} tokens were scored.")
    offsets = [start for start, _ in encoded["offset_mapping"]][cut:] if fast else _offsets(tokenizer, ids, cut)
    ids = ids[cut:]
    scored = engine.call(_score, loaded, ids, count)
    out: list[tuple[int, TokenLogprob | None]] = [(offsets[0], None)]
    for i, (logprob, top) in enumerate(scored, start=1):
        out.append((offsets[i], token_logprob(tokenizer, ids[i], logprob, top)))
    return out


def prompt_text(ids: list[int], model: str | None = None) -> str:
    """The text the token ids ``ids`` of the text generation model ``model`` spell (a prompt sent as ids)."""
    loaded = _text_model(model)
    return loaded.processor.decode(appended_ids(ids, loaded))


def _text_model(model: str | None) -> object:
    loaded, is_chat, _ = local_model(model)
    if is_chat:
        raise InvalidInputError("只有文本生成模型能为提示文本给出词元概率。",
                                "Only a text generation model gives the prompt's token log-probabilities.")
    return loaded


def _offsets(tokenizer: object, ids: list[int], first: int = 0) -> list[int]:
    """Where the text of each token from ``ids[first]`` on starts in the decoded ``ids`` (a tokenizer with no
    offsets): the lengths of the decoded starts. Past ``first`` they are measured on the decoded tail, plus the
    length before it and what joins the two (a space between WordPiece tokens, say), so that the cost stays that
    of the kept tokens however long the prompt sent as ids (decoding every start of it was quadratic)."""
    before = len(tokenizer.decode(ids[:first]))
    tail = [len(tokenizer.decode(ids[first:i])) for i in range(first + 1, len(ids))]
    if not first or not tail:
        return [before, *tail]
    joint = len(tokenizer.decode(ids[:first + 1])) - before - tail[0]
    return [before, *(before + joint + n for n in tail)]


def _score(loaded: object, ids: list[int], count: int) -> list[tuple[float, list[tuple[int, float]]]]:
    """(log-probability, alternatives) of ``ids[1:]``, each after the tokens before it. Engine thread."""
    import torch

    model = loaded.model
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=loaded.device), use_cache=False).logits[0, :-1]
        scored = []
        for start in range(0, logits.shape[0], ROWS_AT_A_TIME):
            rows = logits[start:start + ROWS_AT_A_TIME].float().log_softmax(-1)
            wanted = torch.tensor(ids[start + 1:start + 1 + rows.shape[0]], device=rows.device)
            chosen = rows.gather(1, wanted[:, None])[:, 0].tolist()
            if count:
                values, order = rows.topk(count, dim=-1)
                tops = [list(zip(o, v)) for o, v in zip(order.tolist(), values.tolist())]
            else:
                tops = [[] for _ in chosen]
            scored += list(zip(chosen, tops))
    return scored
