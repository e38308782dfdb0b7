"""Which model serves which role, and the one loaded copy of each.

A role ("chat", "story", "textgen", "classifier", "captioner", "translator") maps to one or more
``ModelSpec``s read from the environment (through ``settings``) when a model is first needed, never at
import. An entry is ``[Display name=]hub-id-or-local-folder[@revision]``, or a remote one
(``openai:URL#served-model``, ``hf:model-id[:provider]``) that ``backends`` serve without loading anything
here; several entries are comma-separated and the first is the default. Models load lazily, once per (task, source, revision), and the story role
shares the chat model's copy. Loads happen one at a time under one lock: two threads asking for the
same model load it once, and transformers' loading, which builds models on a process-wide "meta"
device and resolves classes lazily, is not safe to run for two models at once (seen here: "Cannot
copy out of meta tensor"). A failed load is not remembered: the next request tries again.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from . import hub, lean_decode, settings
from .attention import use_packed_sdpa
from .devices import device_and_dtype, quantization
from .engine import engine, in_own_thread
from .errors import InvalidInputError, ModelUnavailableError, PipelineError, WrongModelError
from .quantize import (compact_input_embedding, give_back_freed_memory, int8_kernels_of, quantize_int8,
                       weight_bytes)

log = logging.getLogger(__name__)

CAUSAL_LM = "causal-lm"
TEXT_CLASSIFICATION = "text-classification"
IMAGE_CAPTIONING = "image-captioning"
TRANSLATION = "translation"


@dataclass(frozen=True)
class RoleDefaults:
    variable: str
    task: str
    defaults: tuple[str, ...]


ROLES: dict[str, RoleDefaults] = {
    "chat": RoleDefaults("MODELDECK_CHAT_MODEL", CAUSAL_LM, ("Qwen/Qwen2.5-0.5B-Instruct",)),
    # An empty default means "the same model as chat": one loaded copy serves both roles.
    "story": RoleDefaults("MODELDECK_STORY_MODEL", CAUSAL_LM, ()),
    "textgen": RoleDefaults("MODELDECK_TEXTGEN_MODELS", CAUSAL_LM,
                            ("uer/gpt2-chinese-cluecorpussmall", "openai-community/gpt2")),
    "classifier": RoleDefaults("MODELDECK_CLASSIFIER_MODELS", TEXT_CLASSIFICATION,
                               ("uer/roberta-base-finetuned-jd-binary-chinese",
                                "distilbert/distilbert-base-uncased-finetuned-sst-2-english")),
    "captioner": RoleDefaults("MODELDECK_CAPTION_MODEL", IMAGE_CAPTIONING,
                              ("Salesforce/blip-image-captioning-base",)),
    "translator": RoleDefaults("MODELDECK_TRANSLATE_MODEL", TRANSLATION, ("Helsinki-NLP/opus-mt-en-zh",)),
}

# Short, readable names for the default models; anything else is named after its last path part.
DISPLAY_NAMES = {
    "Qwen/Qwen2.5-0.5B-Instruct": "Qwen2.5-0.5B-Instruct",
    "uer/gpt2-chinese-cluecorpussmall": "GPT-2 中文 (Chinese)",
    "openai-community/gpt2": "GPT-2 English",
    "uer/roberta-base-finetuned-jd-binary-chinese": "中文评论情感 (JD reviews, Chinese)",
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english": "English sentiment (SST-2)",
    "Salesforce/blip-image-captioning-base": "BLIP caption (base)",
    "Helsinki-NLP/opus-mt-en-zh": "Opus-MT English→中文",
}


@dataclass(frozen=True)
class ModelSpec:
    """What to load for one role: a Hub id or local folder, its revision, and the task."""

    role: str
    source: str
    revision: str | None
    task: str
    name: str
    variable: str
    entry: settings.ModelEntry | None = None  # how it was written; remote entries are served by backends

    @property
    def key(self) -> tuple[str, str, str | None]:
        if self.is_remote:
            assert self.entry is not None
            return (self.task, f"{self.entry.scheme}:{self.source}#{self.entry.model}:{self.entry.provider}", None)
        return (self.task, self.source, self.revision)

    @property
    def is_remote(self) -> bool:
        """True for ``openai:`` and ``hf:`` entries (nothing is loaded in this process)."""
        return self.entry is not None and self.entry.remote


def _spec(role: str, entry: settings.ModelEntry, defaults: RoleDefaults) -> ModelSpec:
    source = entry.source
    name = entry.name or DISPLAY_NAMES.get(source) or os.path.basename(source.rstrip("/\\")) or source
    return ModelSpec(role, source, entry.revision, defaults.task, name, defaults.variable, entry)


def specs(role: str) -> list[ModelSpec]:
    """Return the models configured for ``role``, the default first."""
    if role not in ROLES:
        raise InvalidInputError(f"未知的模型角色：{role}", f"Unknown model role: {role}")
    defaults = ROLES[role]
    entries = settings.get(defaults.variable)
    if entries is None and not defaults.defaults:  # the story role borrows the chat model
        return [replace(s, role=role) for s in specs("chat")]
    if entries is None:
        entries = [settings.parse_model_entry(e) for e in defaults.defaults]
    out: list[ModelSpec] = []
    for entry in entries:
        spec = _spec(role, entry, defaults)
        if any(s.name == spec.name for s in out):  # keep display names unique
            spec = replace(spec, name=f"{spec.name} ({len(out) + 1})")
        out.append(spec)
    return out


def model_names(role: str) -> list[str]:
    """Return the display names of ``role``'s models, the default first."""
    return [s.name for s in specs(role)]


def resolve(role: str, name: str | None = None) -> ModelSpec:
    """Return the spec a request names (display name or configured id); only configured models qualify."""
    available = specs(role)
    if name is None or not str(name).strip():
        return available[0]
    wanted = str(name).strip()
    for spec in available:
        if wanted in (spec.name, spec.source):
            return spec
    choices = "、".join(s.name for s in available)
    raise InvalidInputError(
        f"没有名为 {wanted!r} 的模型。可选：{choices}",
        f"There is no model called {wanted!r}. Choose one of: {', '.join(s.name for s in available)}",
    )


@dataclass
class LoadedModel:
    """A model placed on its device, with its tokenizer or processor."""

    spec: ModelSpec
    model: Any
    processor: Any
    device: str
    dtype: str
    load_seconds: float
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the weights and buffers (an estimate of resident memory)."""
        return weight_bytes(self.model)


def _trust_remote_code() -> bool:
    return settings.get("MODELDECK_TRUST_REMOTE_CODE")


def _load_classes(task: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    import transformers as tf

    if task == CAUSAL_LM:
        return tf.AutoTokenizer.from_pretrained, tf.AutoModelForCausalLM.from_pretrained
    if task == TEXT_CLASSIFICATION:
        return tf.AutoTokenizer.from_pretrained, tf.AutoModelForSequenceClassification.from_pretrained
    if task == IMAGE_CAPTIONING:  # the image-to-text pipeline task is gone in transformers 5
        return tf.BlipProcessor.from_pretrained, tf.BlipForConditionalGeneration.from_pretrained
    if task == TRANSLATION:
        return tf.AutoTokenizer.from_pretrained, tf.AutoModelForSeq2SeqLM.from_pretrained
    raise InvalidInputError(f"未知任务：{task}", f"Unknown task: {task}")


# What each task needs, for the message when a model is another kind (Chinese, English).
KINDS = {CAUSAL_LM: ("因果语言模型（续写文本的模型，如 GPT-2、Qwen）", "causal language model (one that continues text, "
                                                          "such as GPT-2 or Qwen)"),
         TEXT_CLASSIFICATION: ("文本分类模型（带分类层的模型）", "text classification model (one with a classification layer)"),
         IMAGE_CAPTIONING: ("BLIP 图片描述模型", "BLIP image captioning model"),
         TRANSLATION: ("翻译模型（seq2seq，如 opus-mt）", "translation model (sequence-to-sequence, such as opus-mt)")}


def _wrong_architecture(spec: ModelSpec, exc: BaseException) -> WrongModelError | None:
    """The error for a checkpoint whose architecture the task's Auto class cannot load, else None."""
    text = str(exc)
    if not (isinstance(exc, ValueError) and "Unrecognized configuration class" in text):
        return None
    found = re.search(r"\.(\w+)Config'>", text)
    kind = found.group(1) if found else "?"
    return WrongModelError(spec.source, spec.variable, KINDS[spec.task],
                           (f"它的结构是 {kind}", f"its architecture is {kind}"))


def _check_head(spec: ModelSpec, model: Any, missing: set[str]) -> None:
    """Refuse a model whose checkpoint lacks weights outside its base model: the task's output layer (a chat
    model loaded as a classifier has no ``score``), which loading fills with random numbers. Buffers and the
    base model's own keys are left to transformers (tied or computed weights are not reported missing)."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    head = sorted(key for key in missing if key in parameters and not key.startswith(prefix))
    if head:
        shown = ", ".join(head[:3]) + ("…" if len(head) > 3 else "")
        raise WrongModelError(spec.source, spec.variable, KINDS[spec.task],
                              (f"检查点里没有 {shown}，加载会用随机数填上，结果毫无意义",
                               f"its checkpoint has no {shown}, which loading would fill with random numbers, "
                               "so every answer would be noise"))


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "couldn't connect" in first.lower() or "offline" in first.lower() or "connect" in type(exc).__name__.lower():
        return "no network access to the Hugging Face Hub / 无法连接 Hugging Face Hub"
    return f"{type(exc).__name__}: {first[:200]}"


def _load(spec: ModelSpec) -> LoadedModel:
    hub.install()  # an unreachable Hub fails in seconds, not after minutes of retries
    device, dtype = device_and_dtype()
    load_processor, load_model = _load_classes(spec.task)
    common = {"revision": spec.revision, "trust_remote_code": _trust_remote_code()}
    quantized = (spec.task in (CAUSAL_LM, TEXT_CLASSIFICATION)
                 and quantization(device, str(dtype).removeprefix("torch.")) == "int8")
    # A memory-mapped float32 checkpoint stays mapped after quantisation, and quantising reads every
    # page: those pages stay resident (Qwen-sized: 2.0 GB on top of the int8 model). Read it instead.
    reading = {"disable_mmap": True} if quantized else {}
    started = time.perf_counter()
    try:
        processor = load_processor(spec.source, **common)
        model, info = load_model(spec.source, dtype=dtype, output_loading_info=True, **common, **reading)
    except Exception as exc:  # every failure here means "this model is not usable now"
        log.warning("loading %s failed: %s", spec.source, _short_reason(exc))
        raise _wrong_architecture(spec, exc) or ModelUnavailableError(spec.source, spec.variable,
                                                                       _short_reason(exc)) from exc
    _check_head(spec, model, set(info.get("missing_keys", ())))
    model.to(device).eval()
    if spec.task == CAUSAL_LM and str(device) == "cpu":
        use_packed_sdpa(model)  # decode steps: one attention call per key/value head (attention.py)
    if quantized:
        quantize_int8(model)
        compact_input_embedding(model)
        give_back_freed_memory()  # the float32 weights and embedding just replaced (see quantize.py)
    tokenizer = getattr(processor, "tokenizer", processor)
    if getattr(tokenizer, "pad_token_id", None) is None and getattr(tokenizer, "eos_token", None):
        tokenizer.pad_token = tokenizer.eos_token  # batched generation needs a pad token
    loaded = LoadedModel(spec, model, processor, device,
                         str(dtype).removeprefix("torch.") + (" + int8" if quantized else ""),
                         time.perf_counter() - started)
    log.info("loaded %s on %s (%s) in %.1f s", spec.source, device, loaded.dtype, loaded.load_seconds)
    return loaded


_cache: dict[tuple[str, str, str | None], LoadedModel] = {}
_load_lock = threading.Lock()
load_count: dict[tuple[str, str, str | None], int] = {}  # how often each model was really loaded
_turns = threading.Condition()
_requests_waiting = 0  # requests waiting for a load; background loads let them go first


def _after_fork() -> None:
    """A forked child keeps the loaded models but not the threads that held these locks."""
    global _load_lock, _turns, _requests_waiting
    _load_lock, _turns, _requests_waiting = threading.Lock(), threading.Condition(), 0


os.register_at_fork(after_in_child=_after_fork)


def get_model(role: str, name: str | None = None, *, background: bool = False) -> LoadedModel:
    """Return the loaded model for ``role`` (and ``name``), loading it once on first use.

    ``background`` loads (preloading) use idle time only: they wait while a request is waiting for a
    load (a visitor who arrives during preloading waits for at most the one load in progress, not for
    the whole list) and while the engine is generating (a load beside it would take half the CPU).
    """
    global _requests_waiting
    spec = resolve(role, name)
    if spec.is_remote:
        raise InvalidInputError(f"{spec.name} 是远程模型，由 backends 调用，不在本进程加载。",
                                f"{spec.name} is a remote model: backends call it; nothing loads here.")
    cached = _cache.get(spec.key)
    if cached is not None:
        return cached
    with _turns:
        if background:
            while _requests_waiting or engine.busy():
                _turns.wait(0.1)
        else:
            _requests_waiting += 1
    try:
        with _load_lock:
            cached = _cache.get(spec.key)
            if cached is None:
                cached = in_own_thread(_load, spec)  # its OpenMP threads end with it: see engine.py
                _cache[spec.key] = cached
                load_count[spec.key] = load_count.get(spec.key, 0) + 1
    finally:
        if not background:
            with _turns:
                _requests_waiting -= 1
                _turns.notify_all()
    return cached


def is_loaded(role: str, name: str | None = None) -> bool:
    """True when the model for ``role`` is already in memory."""
    return resolve(role, name).key in _cache


def loaded_models() -> list[dict[str, Any]]:
    """Describe every loaded model: roles, source, device, dtype, int8 kernels, attention, whether its decode steps
    take the lean step (``lean_decode.py``), memory in MiB, load time."""
    rows = []
    for key, loaded in list(_cache.items()):
        roles = sorted({role for role in ROLES for s in _safe_specs(role) if s.key == key})
        rows.append({"name": loaded.spec.name, "source": loaded.spec.source, "roles": roles or [loaded.spec.role],
                     "device": loaded.device, "dtype": loaded.dtype, "int8_kernels": int8_kernels_of(loaded.model),
                     "attention": getattr(getattr(loaded.model, "config", None), "_attn_implementation", None),
                     "lean_decode": bool(loaded.spec.task == CAUSAL_LM and settings.get("MODELDECK_LEAN_DECODE")
                                         and lean_decode.supports(loaded.model)),
                     "memory_mib": round(loaded.memory_bytes / 2**20, 1),
                     "load_seconds": round(loaded.load_seconds, 2)})
    return rows


def _safe_specs(role: str) -> list[ModelSpec]:
    try:
        return specs(role)
    except PipelineError:
        return []


def preload(roles: list[str] | str) -> list[str]:
    """Load every model of the given roles (or "all"); return messages for the ones that failed."""
    wanted = list(ROLES) if roles == "all" or roles == ["all"] else list(roles)
    problems = []
    for role in wanted:
        for spec in specs(role):
            if spec.is_remote:  # nothing to load: the server holds it
                continue
            try:
                get_model(role, spec.name, background=True)
            except Exception as exc:  # preloading is best effort; the tab reports it again on use
                problems.append(str(exc))
    return problems


def clear() -> None:
    """Forget every loaded model (tests and configuration changes)."""
    with _load_lock:
        _cache.clear()
        load_count.clear()
    gc.collect()  # models sit in reference cycles (modules point to their parents' hooks, configs…)
    give_back_freed_memory()
