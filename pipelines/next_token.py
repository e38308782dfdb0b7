"""The next-token explorer: what a model would write next, before and after the sampling settings.

The model runs once per text: its last logits are kept per (model, tokens), so moving a slider only
re-ranks them (no forward pass), and the kept KV cache lets a text grown by one token (step mode) cost
a one-token forward. The "after" distribution comes from ``sampling.processed``, the function the
decode loop samples with; ``next_token_step`` draws from it. Everything touching torch runs on the
engine thread.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .backends.local import LocalChatBackend
from .decoding import DecodeBatch
from .engine import engine
from .errors import InvalidInputError
from .inputs import clean_text, number
from .sampling import SamplingParams, checked_settings, distribution
from .tokens import BYTES_NOTE, has_byte_pieces, readable
from .windows import context_window

CHAT_SUFFIX = "· 对话模板 chat template"
STEP_ZH = "逐词模式（抽一个词、点候选词接上去）只支持本地模型：远程服务器只返回前几个词的概率。请选本地模型。"
STEP_EN = ("Step mode (sampling a token, clicking a candidate to append it) works with local models only: a remote "
           "server returns only its top tokens' probabilities. Choose a local model.")
MAX_TOP_N = 100
KEPT_TEXTS = 8  # (model, text) pairs whose logits stay cached
_prompts_lock = threading.Lock()


@dataclass(frozen=True)
class Candidate:
    """One possible next token: readable text, id, probability before and after the settings, kept or removed."""

    token: str
    id: int
    raw_p: float
    p: float
    kept: bool

    def as_dict(self) -> dict[str, Any]:
        """``{token, id, raw_p, p, kept}``, the API's shape."""
        return {"token": self.token, "id": self.id, "raw_p": self.raw_p, "p": self.p, "kept": self.kept}


@dataclass
class NextTokenView:
    """The top candidates (by ``raw_p``) and summary numbers of both distributions (entropies in bits)."""

    model: str
    candidates: list[Candidate]
    entropy_before: float
    entropy_after: float
    kept_mass: float  # how much of the "before" probability the kept tokens hold
    kept_count: int
    vocab_size: int  # a remote model: the number of tokens the server returned
    prompt_tokens: int
    notices: list[str] = field(default_factory=list)
    known_mass: float | None = None  # a remote model: the probability its returned top tokens hold (None: local)


class _Explorer:
    """One model's cached last logits (and the newest KV cache of each line of texts). Engine thread only."""

    def __init__(self, loaded: registry.LoadedModel) -> None:
        self.batch = DecodeBatch(loaded)
        self.entries: collections.OrderedDict[tuple[int, ...], list[Any]] = collections.OrderedDict()
        self.forwards = 0  # forward passes run (tests and the benchmark read it)
        self.fed = 0  # tokens fed to them

    def logits(self, ids: list[int]) -> Any:
        """The model's logits for the token after ``ids``, from the cache when it has them."""
        return self._entry(ids)[0]

    def before(self, ids: list[int]) -> tuple[Any, float, list[int], list[float]]:
        """The "before" distribution after ``ids`` (probabilities, entropy, the most likely ids and their
        probabilities), computed once per text: a redraw only re-ranks."""
        entry = self._entry(ids)
        if entry[2] is None:
            import torch

            raw = entry[0].softmax(-1)
            values, order = torch.topk(raw, min(MAX_TOP_N, raw.shape[-1]))
            entry[2] = (raw, entropy(raw), order.tolist(), values.tolist())
        return entry[2]

    def _entry(self, ids: list[int]) -> list[Any]:
        import torch

        key = tuple(ids)
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        start, parent = 0, None
        for other, entry in self.entries.items():  # the longest kept start of ``ids`` that has its KV cache
            if entry[1] is not None and start < len(other) < len(ids) and key[:len(other)] == other:
                start, parent = len(other), entry
        if parent is not None:  # the cache grows in place: it now belongs to the longer text
            cache, parent[1] = parent[1], None
        else:
            cache = self.batch.new_cache()
        device = self.batch.device
        mask = torch.ones((1, len(ids)), dtype=torch.long, device=device)
        positions = torch.arange(start, len(ids), device=device)[None]
        fed = torch.tensor([ids[start:]], device=device)
        logits = self.batch.forward(fed, mask, positions, cache)[0].float()
        self.forwards, self.fed = self.forwards + 1, self.fed + len(ids) - start
        self.entries[key] = [logits, cache, None]
        while len(self.entries) > KEPT_TEXTS:
            self.entries.popitem(last=False)
        return self.entries[key]


def explorer(loaded: registry.LoadedModel) -> _Explorer:
    """The explorer state of ``loaded`` (created on the engine thread's first use)."""
    if "next_token" not in loaded.extras:
        loaded.extras["next_token"] = _Explorer(loaded)
    return loaded.extras["next_token"]


def model_choices() -> list[str]:
    """The models the explorer offers: the text generation models, then the chat model with its template."""
    return registry.model_names("textgen") + [f"{name} {CHAT_SUFFIX}" for name in registry.model_names("chat")]


def _resolve(name: str | None) -> tuple[registry.ModelSpec, bool]:
    """The model ``name`` names (a text generation model, or the chat model) and whether it is the chat model."""
    wanted = (name or "").strip()
    if wanted.endswith(CHAT_SUFFIX) or (wanted and wanted not in registry.model_names("textgen")
                                        and wanted in registry.model_names("chat")):
        return registry.resolve("chat", wanted.removesuffix(CHAT_SUFFIX).strip() or None), True
    try:
        return registry.resolve("textgen", wanted or None), False
    except InvalidInputError:
        raise InvalidInputError(f"没有名为 {wanted!r} 的模型。可选：{'、'.join(model_choices())}",
                                f"There is no model called {wanted!r}. Choose one of: {', '.join(model_choices())}")


def _shown(spec: registry.ModelSpec, is_chat: bool) -> str:
    return f"{spec.name} {CHAT_SUFFIX}" if is_chat else spec.name


def local_model(name: str | None) -> tuple[registry.LoadedModel, bool, str]:
    """Load the local model ``name`` names; return it, whether it is the chat model, and its shown name."""
    spec, is_chat = _resolve(name)
    if spec.is_remote:
        raise InvalidInputError(STEP_ZH, STEP_EN)
    return registry.get_model("chat" if is_chat else "textgen", spec.name), is_chat, _shown(spec, is_chat)


def prompt_ids(prompt: str, model: str | None, notices: list[str]) -> tuple[registry.LoadedModel, list[int], str]:
    """Load the model and tokenize ``prompt`` (the chat model's through its chat template, as chat sends it); uncut:
    ``fitted`` fits the whole text, appended tokens included, to the window."""
    text = clean_text(prompt, field_zh="提示文本", field_en="prompt", notices=notices)
    loaded, is_chat, shown = local_model(model)
    ids = _tokenized(loaded, is_chat, text)
    if not ids:
        raise InvalidInputError("提示文本里没有模型认识的字符，请换一段文字。",
                                "The model recognises no character of the prompt; try other text.")
    return loaded, ids, shown


def fitted(loaded: registry.LoadedModel, ids: list[int], notices: list[str]) -> list[int]:
    """The last ``window - 1`` of ``ids`` (the text so far: prompt and appended tokens), with a notice when cut: the
    next token follows the end, and a longer text would outgrow the model's position table."""
    window = context_window(loaded)
    if len(ids) < window:
        return ids
    notices.append(f"文本过长，只使用了最后 {window - 1} 个词元。 / "
                   f"The text was too long; only its last {window - 1} tokens were used.")
    return ids[-(window - 1):]


def chat_messages(text: str) -> list[dict[str, str]]:
    """The conversation the chat model is shown ``text`` in: the chat tab's system prompt, then ``text``."""
    from .chat import DEFAULT_SYSTEM_PROMPT

    return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": text}]


def _tokenized(loaded: registry.LoadedModel, is_chat: bool, text: str) -> list[int]:
    """``text``'s token ids (the chat model's through its template), remembered: a redraw re-tokenizes nothing."""
    with _prompts_lock:
        kept = loaded.extras.setdefault("next_token_prompts", collections.OrderedDict())
        if (is_chat, text) in kept:
            kept.move_to_end((is_chat, text))
            return list(kept[(is_chat, text)])
    prompt = LocalChatBackend(loaded).render(chat_messages(text)) if is_chat else text
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with _prompts_lock:
        kept[(is_chat, text)] = ids
        while len(kept) > KEPT_TEXTS:
            kept.popitem(last=False)
    return list(ids)


def settings(temperature: Any, top_k: Any, top_p: Any, repetition_penalty: Any, notices: list[str]) -> SamplingParams:
    """Check the four settings (the text generation tab's ranges) and return them as ``SamplingParams``."""
    return SamplingParams(**checked_settings(temperature, top_k, top_p, repetition_penalty, notices,
                                             defaults=(1.0, 0, 1.0, 1.0)))


def entropy(probs: Any) -> float:
    """The entropy of ``probs`` in bits."""
    import torch

    return float(torch.special.entr(probs).sum(dtype=torch.float64)) / math.log(2)


def _view(loaded: registry.LoadedModel, ids: list[int], params: SamplingParams, top_n: int, shown: str,
          notices: list[str]) -> NextTokenView:
    import torch

    state = explorer(loaded)
    logits = state.logits(ids)
    raw, entropy_before, order, values = state.before(ids)
    after, kept = distribution(logits, params, torch.tensor(ids, device=logits.device))
    top = torch.tensor(order[:top_n], device=logits.device)
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    candidates = [Candidate(readable(tokenizer, i), i, v, p, k) for i, v, p, k in
                  zip(order[:top_n], values[:top_n], after[top].tolist(), kept[top].tolist())]
    if has_byte_pieces([c.token for c in candidates]):
        notices.append(BYTES_NOTE)
    return NextTokenView(shown, candidates, entropy_before, entropy(after), float(raw[kept].sum()),
                         int(kept.sum()), raw.shape[-1], len(ids), notices)


def next_token(prompt: str, model: str | None = None, *, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, repetition_penalty: float = 1.0, top_n: int = 20,
               appended: list[int] | None = None) -> NextTokenView:
    """Return the ``top_n`` most likely next tokens after ``prompt`` (then ``appended`` token ids), before and
    after the settings."""
    notices: list[str] = []
    spec, is_chat = _resolve(model)
    if spec.is_remote:  # only the server's top tokens are known
        from .next_token_remote import remote_view

        if appended:
            raise InvalidInputError(STEP_ZH, STEP_EN)
        text = clean_text(prompt, field_zh="提示文本", field_en="prompt", notices=notices)
    else:
        loaded, ids, shown = prompt_ids(prompt, model, notices)
    params = settings(temperature, top_k, top_p, repetition_penalty, notices)
    n = number(top_n, name="top_n", lo=1, hi=MAX_TOP_N, notices=notices, integer=True, default=20)
    if spec.is_remote:
        return remote_view(spec, is_chat, text, params, n, _shown(spec, is_chat), notices)
    ids = fitted(loaded, ids + appended_ids(appended, loaded), notices)
    return engine.call(_view, loaded, ids, params, n, shown, notices)


def appended_ids(appended: Any, loaded: registry.LoadedModel) -> list[int]:
    """``appended`` as token ids of ``loaded``'s vocabulary, checked."""
    size = int(getattr(loaded.model.config, "vocab_size", 0) or 0)
    try:
        extra = [int(i) for i in (appended or [])]
    except (TypeError, ValueError):
        raise InvalidInputError("appended 必须是词元 id 的列表。", "appended must be a list of token ids.") from None
    if any(not 0 <= i < size for i in extra):
        raise InvalidInputError(f"词元 id 必须在 0 到 {size - 1} 之间。", f"Token ids must be between 0 and {size - 1}.")
    return extra
