"""The exceptions a user can act on.

Every message is bilingual (Chinese first) and says what to do next. The UI edge turns a
``PipelineError`` into ``gradio.Error`` unchanged; nothing else in the app invents messages.

    PipelineError
    ├── InvalidInputError       the request itself is wrong: fix the input
    ├── ModelUnavailableError   a model could not be downloaded or loaded
    ├── SpeechUnavailableError  no text-to-speech engine could produce audio
    ├── StorageError            the audio folder is full or cannot be written
    └── BusyError               too many requests of this kind are waiting: come back later
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: ``zh`` and ``en`` say the same thing; ``str()`` gives both."""

    def __init__(self, zh: str, en: str) -> None:
        self.zh = zh
        self.en = en
        super().__init__(f"{zh} / {en}")


class InvalidInputError(PipelineError):
    """The input cannot be processed as given."""


class ModelUnavailableError(PipelineError):
    """A model could not be fetched or loaded; names the model and the variable to change."""

    def __init__(self, model: str, variable: str, reason: str) -> None:
        self.model = model
        self.variable = variable
        self.reason = reason
        super().__init__(
            f"模型 {model} 无法加载（{reason}）。请检查网络，或把环境变量 {variable} 设为本地模型文件夹。",
            f"The model {model} could not be loaded ({reason}). Check the network, "
            f"or set {variable} to a local model folder.",
        )


class SpeechUnavailableError(PipelineError):
    """Every configured text-to-speech engine failed."""


class StorageError(PipelineError):
    """Generated files cannot be written."""


class BusyError(PipelineError):
    """Too many requests of one kind are already waiting; the message says when to come back."""
