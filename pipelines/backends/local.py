"""Backends that run a registry model in this process, on the engine thread.

Chat and story go through the model's continuous batcher; text generation runs each request on its
own (a seed must reproduce its text, see ``batching``); classification, captioning and translation
are one engine call each.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import registry, settings
from ..batching import batcher_for, stream_generate
from ..engine import engine
from ..errors import InvalidInputError
from ..sampling import SamplingParams
from ..streaming import TextStream
from ..windows import context_window, input_window
from .base import Message, Render, fit_messages, prompt_cut_notice

TRANSLATION_TOKENS = 96  # a one-sentence caption in Chinese, with room to spare
# Cutting a message and decoding it may re-tokenize differently at the cut (a byte-level character split,
# merged pieces): cut this many tokens more than the overflow, so that one cut is enough to fit.
RETOKENIZE_MARGIN = 8


def _fallback_template(messages: list[Message]) -> str:
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


class LocalChatBackend:
    """A local causal LM driven through its chat template."""

    def __init__(self, loaded: registry.LoadedModel) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.processor
        self.name = loaded.spec.name
        self.context_window = context_window(loaded)
        # The model's own recommendation (Qwen2.5 ships 1.05), used by chat and story.
        self.repetition_penalty = float(getattr(loaded.model.generation_config, "repetition_penalty", None) or 1.0)

    def render(self, messages: list[Message]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return _fallback_template(messages)

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def shorten(self, content: str, overflow: int) -> str:
        ids = self.tokenizer(content, add_special_tokens=False)["input_ids"]
        keep = max(1, len(ids) - overflow - RETOKENIZE_MARGIN)
        return self.tokenizer.decode(ids[:keep], skip_special_tokens=True).rstrip("\ufffd")

    def fit(self, messages: list[Message], budget: int, notices: list[str]) -> str:
        """Render ``messages``, dropping the oldest turns (then cutting the last message) to fit ``budget``."""
        kept = fit_messages(messages, budget, lambda ms: self.count(self.render(ms)), self.shorten,
                            self.context_window, notices)
        return self.render(kept)

    def stream_chat(self, messages: list[Message], params: SamplingParams, notices: list[str]) -> TextStream:
        budget = self.context_window - params.max_new_tokens
        text = self.fit(messages, budget, notices)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return batcher_for(self.loaded).submit(ids, params, notices)


class LocalTextBackend:
    """A local causal LM continuing a plain prompt, ``n`` sequences at once."""

    ignored: set[str] = set()

    def __init__(self, loaded: registry.LoadedModel) -> None:
        self.loaded = loaded
        self.name = loaded.spec.name
        self.context_window = context_window(loaded)

    def stream_text(self, prompt: str, params: SamplingParams, n: int, notices: list[str],
                    render: Render) -> TextStream:
        tokenizer = self.loaded.processor
        # WordPiece vocabularies (the Chinese GPT-2) would wrap the prompt in [CLS] … [SEP].
        encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
        ids = encoded["input_ids"]
        if not ids:
            raise InvalidInputError("提示文本里没有模型认识的字符，请换一段文字。",
                                    "The model recognises no character of the prompt; try other text.")
        whole = len(ids)
        budget = self.context_window - params.max_new_tokens
        if len(ids) > budget:  # the continuation follows the end, so keep the end
            ids = ids[-budget:]
            notices.append(prompt_cut_notice(budget))
        import torch

        input_ids = torch.tensor([ids] * n)
        prefix = prompt if len(ids) == whole else kept_end(prompt, encoded, len(ids), tokenizer)
        return stream_generate(self.loaded, input_ids, torch.ones_like(input_ids), params, notices=notices,
                               render=lambda rows: render([prefix + r for r in rows]))


def kept_end(prompt: str, encoded: Any, kept: int, tokenizer: Any) -> str:
    """The end of ``prompt`` its last ``kept`` tokens came from, as the user wrote it. Decoding those tokens
    instead would space out every Chinese character (WordPiece) and drop characters the model does not know."""
    offsets = encoded.get("offset_mapping")
    if offsets:
        return prompt[offsets[-kept][0]:]
    return tokenizer.decode(encoded["input_ids"][-kept:], skip_special_tokens=True)


def labels_of(model: Any) -> list[str]:
    """Return the readable label of each output index, made unique."""
    from ..classify import readable_label

    id2label = getattr(model.config, "id2label", None) or {}
    names: list[str] = []
    for i in range(model.config.num_labels):
        name = readable_label(id2label.get(i, f"LABEL_{i}"))
        names.append(name if name not in names else f"{name} ({i})")
    return names


class LocalClassifier:
    """A local sequence classifier; texts sorted by length and batched with dynamic padding."""

    def __init__(self, loaded: registry.LoadedModel) -> None:
        self.loaded = loaded
        self.name = loaded.spec.name

    def classify(self, texts: list[str], batch_size: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[dict[str, float]]:
        loaded = self.loaded
        tokenizer, net = loaded.processor, loaded.model
        names = labels_of(net)
        limit = input_window(loaded)
        size = batch_size or settings.get("MODELDECK_CLASSIFY_BATCH")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[dict[str, float]] = [{} for _ in texts]

        def probabilities(chunk: list[str]) -> list[list[float]]:
            import torch

            enc = tokenizer(chunk, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(loaded.device)
            with torch.inference_mode():
                return net(**enc).logits.float().softmax(-1).cpu().tolist()

        for start in range(0, len(order), size):  # one engine call a batch: generation interleaves between them
            chunk = order[start:start + size]
            for row, i in zip(engine.call(probabilities, [texts[i] for i in chunk]), chunk):
                results[i] = dict(sorted(zip(names, row), key=lambda kv: -kv[1]))
            if progress is not None:
                progress(min(start + size, len(order)), len(order))
        return results


class LocalCaptioner:
    """A local BLIP captioner, greedy with a short cap (as good as beams here, and faster)."""

    def __init__(self, loaded: registry.LoadedModel) -> None:
        self.loaded = loaded
        self.name = loaded.spec.name

    def caption(self, image: Any, max_new_tokens: int) -> str:
        loaded = self.loaded
        most = min(max_new_tokens, input_window(loaded, room_for_output=1))  # the decoder starts with [DEC]

        def describe() -> Any:  # the image's conversion to a tensor is torch work too: all of it on the engine
            import torch

            inputs = loaded.processor(images=image, return_tensors="pt")
            pixel_values = inputs["pixel_values"].to(loaded.device, dtype=next(loaded.model.parameters()).dtype)
            with torch.inference_mode():
                return loaded.model.generate(pixel_values=pixel_values, max_new_tokens=most, num_beams=1,
                                             do_sample=False)

        return loaded.processor.decode(engine.call(describe)[0], skip_special_tokens=True).strip()


class LocalTranslator:
    """A local Marian translator; prepends ``MODELDECK_TRANSLATE_PREFIX`` when its vocabulary has that token."""

    def __init__(self, loaded: registry.LoadedModel) -> None:
        self.loaded = loaded
        self.name = loaded.spec.name

    def translate(self, text: str) -> str:
        loaded = self.loaded
        tokenizer = loaded.processor
        prefix = settings.get("MODELDECK_TRANSLATE_PREFIX")
        if prefix and tokenizer.convert_tokens_to_ids(prefix) not in (None, tokenizer.unk_token_id):
            text = f"{prefix} {text}"
        # The encoder reads the source within its window; the decoder writes after its start token.
        enc = tokenizer([text], return_tensors="pt", truncation=True, max_length=input_window(loaded)).to(loaded.device)
        most = min(TRANSLATION_TOKENS, input_window(loaded, room_for_output=1))

        def translate() -> Any:
            import torch

            with torch.inference_mode():  # greedy: half the time of 4 beams, same quality on captions
                return loaded.model.generate(**enc, max_new_tokens=most, num_beams=1, do_sample=False)

        return tokenizer.decode(engine.call(translate)[0], skip_special_tokens=True).strip()
