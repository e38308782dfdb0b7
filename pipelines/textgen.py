"""Free text continuation with a choice of models, streamed."""

from __future__ import annotations

from . import registry
from .errors import InvalidInputError
from .inputs import clean_text, env_int, logprobs_count, number, seed as parse_seed
from .batching import stream_generate
from .streaming import SamplingParams, TextStream

MAX_SEQUENCES = 8


def join_sequences(texts: list[str]) -> str:
    """Render several continuations as one text, numbered."""
    if len(texts) == 1:
        return texts[0]
    return "\n\n".join(f"【{i + 1}】\n{t}" for i, t in enumerate(texts))


def generate_text(prompt: str, model: str | None = None, *, max_new_tokens: int = 100,
                  temperature: float = 0.8, top_k: int = 50, top_p: float = 0.95,
                  repetition_penalty: float = 1.1, num_return_sequences: int = 1,
                  seed: int | None = None, top_logprobs: int | None = None) -> TextStream:
    """Return a stream of ``prompt`` followed by each continuation; ``temperature`` 0 is greedy.

    The stream's ``seed`` is the seed actually used (random when none is given), so a result can
    be reproduced; ``texts`` holds each sequence separately. With ``top_logprobs`` (0–20) the stream also
    records each token's log-probability and that many alternatives (``logprobs``, ``pieces``).
    """
    notices: list[str] = []
    text = clean_text(prompt, field_zh="提示文本", field_en="prompt", notices=notices)
    loaded = registry.get_model("textgen", model)
    tokenizer = loaded.processor
    window = min(int(getattr(loaded.model.config, "max_position_embeddings", 0)
                     or getattr(loaded.model.config, "n_positions", 1024)),
                 env_int("MODELDECK_MAX_CONTEXT_TOKENS", 4096))
    cap = max(1, min(env_int("MODELDECK_MAX_NEW_TOKENS", 1024), window // 2))
    params = SamplingParams(
        max_new_tokens=number(max_new_tokens, name="max_new_tokens", lo=1, hi=cap, notices=notices,
                              integer=True, default=100),
        temperature=number(temperature, name="temperature", lo=0.0, hi=2.0, notices=notices, default=0.8),
        top_k=number(top_k, name="top_k", lo=0, hi=1000, notices=notices, integer=True, default=50),
        top_p=number(top_p, name="top_p", lo=0.01, hi=1.0, notices=notices, default=0.95),
        repetition_penalty=number(repetition_penalty, name="repetition_penalty", lo=1.0, hi=2.0,
                                  notices=notices, default=1.1),
        seed=parse_seed(seed),
        top_logprobs=logprobs_count(top_logprobs, notices),
    )
    n = number(num_return_sequences, name="num_return_sequences", lo=1, hi=MAX_SEQUENCES, notices=notices,
               integer=True, default=1)
    # WordPiece vocabularies (the Chinese GPT-2) would wrap the prompt in [CLS] … [SEP].
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InvalidInputError("提示文本里没有模型认识的字符，请换一段文字。",
                                "The model recognises no character of the prompt; try other text.")
    whole = len(ids)
    budget = window - params.max_new_tokens
    if len(ids) > budget:  # the continuation follows the end, so keep the end
        ids = ids[-budget:]
        notices.append(f"提示文本过长，只使用了最后 {budget} 个词元。 / "
                       f"The prompt was too long; only its last {budget} tokens were used.")
    import torch

    input_ids = torch.tensor([ids] * n)
    prefix = text if len(ids) == whole else tokenizer.decode(ids, skip_special_tokens=True)
    return stream_generate(loaded, input_ids, torch.ones_like(input_ids), params, notices=notices,
                           render=lambda rows: join_sequences([prefix + r for r in rows]))
