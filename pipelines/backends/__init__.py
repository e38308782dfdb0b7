"""Who computes each capability: picked by the model entry's scheme, behind one interface each.

Task modules ask here for a ``ChatBackend``, ``TextBackend``, ``Classifier``, ``Captioner`` or
``Translator`` and never see whether a local model (``local``), an OpenAI-compatible server
(``openai:``) or Hugging Face Inference Providers (``hf:``) answers. One remote object is kept per entry
(its HTTP client, what was learnt about the server, its last call) for the status tab.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from .. import registry, settings
from ..registry import ModelSpec
from ..sampling import max_new_tokens_range
from .base import Captioner, ChatBackend, Classifier, TextBackend, Translator
from .keys import check_keys
from .remote import Remote

__all__ = ["Captioner", "ChatBackend", "Classifier", "TextBackend", "Translator", "captioner", "chat_backend",
           "check_keys", "classifier", "max_new_tokens_cap", "remote_for", "remote_targets", "text_backend",
           "translator"]

_remotes: dict[Any, Remote] = {}
_lock = threading.Lock()


def remote_for(spec: ModelSpec) -> Remote:
    """The one remote object of a remote entry."""
    # Per variable and entry as written, not per server and model (``spec.key``): the chat model and a text
    # generation model served by the same server each keep their name, variable, #options and last call.
    key = (spec.variable, spec.entry)
    with _lock:
        if key not in _remotes:
            assert spec.entry is not None
            if spec.entry.scheme == "openai":
                from .openai_compat import OpenAIRemote

                _remotes[key] = OpenAIRemote(spec)
            else:
                from .hf_inference import HFRemote

                _remotes[key] = HFRemote(spec)
        return _remotes[key]


def _pick(role: str, name: str | None, local: Callable[[Any], Any], openai: str, hf: str,
          told_role: bool = False) -> Any:
    spec = registry.resolve(role, name)
    if not spec.is_remote:
        return local(registry.get_model(role, name))
    assert spec.entry is not None
    remote = remote_for(spec)
    if spec.entry.scheme == "openai":
        from . import openai_compat as module
        kind = openai
    else:
        from . import hf_inference as module  # type: ignore[no-redef]
        kind = hf
    if not kind:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"{spec.variable} 的 {spec.name} 不支持这个任务（{role}）。",
                                f"{spec.name} in {spec.variable} cannot serve this task ({role}).")
    backend = getattr(module, kind)
    return backend(remote, role) if told_role else backend(remote)  # chat backends serve chat and story


# Which remote schemes can serve each role (captions and translations have no OpenAI-compatible endpoint).
SCHEMES = {"chat": {"openai", "hf"}, "story": {"openai", "hf"}, "textgen": {"openai", "hf"},
           "classifier": {"openai", "hf"}, "captioner": {"hf"}, "translator": {"hf"}}


def check_roles() -> None:
    """Raise ``ConfigError`` for a remote entry in a role its scheme cannot serve (start-up check)."""
    from ..errors import ConfigError

    for role, schemes in SCHEMES.items():
        for spec in registry.specs(role):
            if spec.is_remote and spec.entry is not None and spec.entry.scheme not in schemes:
                raise ConfigError(spec.variable, f"{spec.entry.scheme}:…", f"{spec.entry.scheme}: 条目不能用于这个角色",
                                  f"{spec.entry.scheme}: entries cannot serve this role",
                                  "hf:Salesforce/blip-image-captioning-base" if role == "captioner"
                                  else "hf:Helsinki-NLP/opus-mt-en-zh")


def chat_backend(role: str = "chat", name: str | None = None) -> ChatBackend:
    """Return the backend that serves ``role`` ("chat" or "story") with the model called ``name`` (the default
    first)."""
    from .local import LocalChatBackend

    return _pick(role, name, LocalChatBackend, "OpenAIChatBackend", "HFChatBackend", told_role=True)


def text_backend(name: str | None = None) -> TextBackend:
    """Return the text-generation backend called ``name`` (the default first)."""
    from .local import LocalTextBackend

    return _pick("textgen", name, LocalTextBackend, "OpenAITextBackend", "HFTextBackend")


def classifier(name: str | None = None) -> Classifier:
    """Return the classifier called ``name`` (the default first)."""
    from .local import LocalClassifier

    return _pick("classifier", name, LocalClassifier, "OpenAIClassifier", "HFClassifier")


def captioner() -> Captioner:
    """Return the captioner."""
    from .local import LocalCaptioner

    return _pick("captioner", None, LocalCaptioner, "", "HFCaptioner")


def translator() -> Translator:
    """Return the English → Chinese translator."""
    from .local import LocalTranslator

    return _pick("translator", None, LocalTranslator, "", "HFTranslator")


def max_new_tokens_cap(backend: Any) -> int:
    """The most new tokens one request may ask for: a setting, and at most half the context window."""
    fewest, most = max_new_tokens_range()
    return max(fewest, min(most, backend.context_window // 2))


def remote_targets() -> list[tuple[str, ModelSpec, Remote]]:
    """Every configured remote entry as (role, spec, its remote object), for the status tab."""
    out = []
    for role in registry.ROLES:
        for spec in registry._safe_specs(role):
            if spec.is_remote and not (role == "story" and settings.get("MODELDECK_STORY_MODEL") is None):
                out.append((role, spec, remote_for(spec)))
    return out


def warm(role: str) -> None:
    """Load a local role's model ahead of use; a remote one needs nothing."""
    spec = registry.resolve(role)
    if not spec.is_remote:
        registry.get_model(role)
