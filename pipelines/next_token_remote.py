"""The next-token view of a model on an OpenAI-compatible server, from the log-probabilities it returns.

Such a server gives at most the top N (vLLM: 20) tokens' log-probabilities, not the whole distribution:
the "before" bars are those N, as the server computed them (temperature 1, no filter), and "after" is
``sampling.distribution`` (the code sampling uses) applied to those N alone, as if they were the whole
vocabulary. An ``hf:`` chat model is asked through ``InferenceClient.chat_completion``. A server that refuses
or ignores ``logprobs`` (``transformers serve`` ignores it), and an ``hf:`` text model, cannot show the view,
and the message says so. The server's answer is kept per text: moving a slider asks nothing.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Any

from .errors import InvalidInputError
from .registry import ModelSpec
from .sampling import SamplingParams, distribution
from .tokens import readable_bytes

MAX_REMOTE_TOP_N = 20  # OpenAI's and vLLM's (default) limit on top_logprobs
KEPT_ANSWERS = 8
_lock = threading.Lock()


def cannot_show(name: str, why_zh: str, why_en: str) -> InvalidInputError:
    """The error that a remote model cannot show the next-token view, and why."""
    return InvalidInputError(f"远程模型 {name} 无法显示下一个词视图：{why_zh}请选本地模型，或换一个返回 logprobs 的服务器（例如 vLLM）。",
                             f"The remote model {name} cannot show the next-token view: {why_en} Choose a local "
                             "model, or a server that returns logprobs (vLLM does).")


def _token_bytes(entry: dict[str, Any] | None, token: str) -> bytes:
    """A returned token's bytes: its ``bytes`` field, vLLM's ``bytes:\\xe4`` spelling, else its text."""
    raw = (entry or {}).get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    if token.startswith("bytes:"):
        try:
            return token[6:].encode("latin-1").decode("unicode_escape").encode("latin-1")
        except (UnicodeError, ValueError):
            pass
    return token.encode()


def _is_hf(remote: Any) -> bool:
    return hasattr(remote, "inference_client")  # an hf: entry (Inference Providers or an endpoint URL)


def _request(remote: Any, is_chat: bool, text: str, n: int) -> Any:
    """The server's answer to a one-token request with ``n`` log-probabilities (OpenAI's shape, dict-like)."""
    from .next_token import chat_messages

    if _is_hf(remote):  # chat_completion through InferenceClient
        return remote.call(lambda client: client.chat_completion(
            chat_messages(text), model=remote.model, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=n))
    # Greedy: vLLM puts the sampled token among the returned ones, and a greedy one is the top one anyway.
    from .backends.openai_compat import PLAIN_PROMPT, UNSCHEMED, refused_extras, takes_extras

    body: dict[str, Any] = {"model": remote.model, "max_tokens": 1, "temperature": 0.0, "stream": False}
    if is_chat:
        body.update(messages=chat_messages(text), logprobs=True, top_logprobs=n)
    else:  # the prompt's tokens as the local view reads them (no [CLS] … [SEP] around a WordPiece prompt)
        body.update(prompt=text, logprobs=n, **(PLAIN_PROMPT if takes_extras(remote) else {}))
    url = remote.base_url + ("/chat/completions" if is_chat else "/completions")
    try:
        return remote.json("POST", url, body)
    except InvalidInputError as exc:
        if not any(key in body for key in UNSCHEMED) or not refused_extras(remote, exc):
            raise
        return remote.json("POST", url, {k: v for k, v in body.items() if k not in UNSCHEMED})


def _ask(remote: Any, is_chat: bool, text: str, n: int) -> list[tuple[bytes, float]]:
    """The server's top ``n`` (bytes, logprob) for the token after ``text``, most likely first."""
    if _is_hf(remote) and not is_chat:
        raise cannot_show(remote.name, "这个后端（Hugging Face）的文本生成接口在这里不返回 logprobs。",
                          "its text generation (Hugging Face text_generation) returns no logprobs here.")
    try:
        data = _request(remote, is_chat, text, n)
    except InvalidInputError as exc:  # a 400/422 answer: the server refuses logprobs (or this many of them)
        raise cannot_show(remote.name, f"服务器拒绝了 logprobs 请求（{exc.en}）。",
                          f"the server refused to return logprobs ({exc.en}).") from None
    choice = ((data or {}).get("choices") or [{}])[0] or {}
    logprobs = choice.get("logprobs") or {}
    found: list[tuple[bytes, float]] = []
    if is_chat and logprobs.get("content"):
        found = [(_token_bytes(e, str(e.get("token", ""))), float(e["logprob"]))
                 for e in logprobs["content"][0].get("top_logprobs") or [] if e]
    elif not is_chat and logprobs.get("top_logprobs"):
        found = [(_token_bytes(None, str(t)), float(lp)) for t, lp in (logprobs["top_logprobs"][0] or {}).items()]
    found = [(b, lp) for b, lp in found if math.isfinite(lp)]
    if not found:
        raise cannot_show(remote.name, "服务器没有返回 logprobs（它不支持，或忽略了这个参数）。",
                          "the server returned no logprobs (it does not support them, or ignored the request).")
    return sorted(found, key=lambda pair: -pair[1])[:n]


def answer(spec: ModelSpec, is_chat: bool, text: str, n: int) -> list[tuple[bytes, float]]:
    """The server's top-``n`` answer for ``text``, asked once per text (a redraw asks nothing)."""
    from .backends import remote_for

    remote = remote_for(spec)
    with _lock:
        kept = remote.facts.setdefault("next_token", collections.OrderedDict())
        known = kept.get((is_chat, text))
        if known is not None and known[0] >= n:
            kept.move_to_end((is_chat, text))
            return known[1][:n]
    found = _ask(remote, is_chat, text, n)
    with _lock:
        kept[(is_chat, text)] = (n, found)
        while len(kept) > KEPT_ANSWERS:
            kept.popitem(last=False)
    return found


def remote_view(spec: ModelSpec, is_chat: bool, text: str, params: SamplingParams, top_n: int, shown: str,
                notices: list[str]) -> Any:
    """The next-token view of a remote model: its top N before, and after the settings recomputed from those N."""
    import torch

    from .next_token import Candidate, NextTokenView, entropy

    if top_n > MAX_REMOTE_TOP_N:
        notices.append(f"远程服务器最多返回前 {MAX_REMOTE_TOP_N} 个词的概率，只显示这些。 / "
                       f"A remote server returns at most the top {MAX_REMOTE_TOP_N} tokens; only those are shown.")
    found = answer(spec, is_chat, text, min(top_n, MAX_REMOTE_TOP_N))
    if params.repetition_penalty != 1.0:
        notices.append("远程模型无法显示重复惩罚（不知道词元 id），“之后”没有应用它。 / A remote model cannot show the "
                       "repetition penalty (the token ids are unknown), so \"after\" does not apply it.")
        params = SamplingParams(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
    logprobs = torch.tensor([lp for _, lp in found], dtype=torch.float32)
    raw = logprobs.exp()
    after, kept = distribution(logprobs, params)  # the N known tokens as the whole vocabulary
    candidates = [Candidate(readable_bytes(b), -1, float(r), float(p), bool(k))
                  for (b, _), r, p, k in zip(found, raw.tolist(), after.tolist(), kept.tolist())]
    known = raw / raw.sum()
    return NextTokenView(shown, candidates, entropy(known), entropy(after), float(raw[kept].sum()), int(kept.sum()),
                         len(found), 0, notices, known_mass=float(raw.sum()))
