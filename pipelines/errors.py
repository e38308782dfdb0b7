"""The exceptions a user can act on.

Every message is bilingual (Chinese first) and says what to do next. The UI edge turns a
``PipelineError`` into ``gradio.Error`` unchanged. The UI writes only messages about its own
widgets (an empty chat box, an upload gradio cannot open, an unexpected error).

    PipelineError
    ├── InvalidInputError       the request itself is wrong: fix the input
    ├── ModelUnavailableError   a model could not be downloaded or loaded
    │   ├── WrongModelError     it loads, but is not the kind of model its role needs
    │   └── RemoteUnavailableError   a remote server is down or does not serve the model
    ├── SpeechUnavailableError  no text-to-speech engine could produce audio
    ├── StorageError            the audio folder is full or cannot be written
    ├── BusyError               too many requests of this kind are waiting: come back later
    │   └── RemoteBusyError     a remote server said 429 (too many requests), with its wait
    ├── OutOfMemoryError        a model ran out of memory: ask for less (see ``known_error``)
    └── ConfigError             a MODELDECK_* setting is malformed (start-up stops with it)
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: ``zh`` and ``en`` say the same thing; ``str()`` gives both."""

    def __init__(self, zh: str, en: str) -> None:
        self.zh = zh
        self.en = en
        super().__init__(f"{zh} / {en}")


class InvalidInputError(PipelineError):
    """The input cannot be processed as given; ``param`` names the parameter at fault, when there is one."""

    def __init__(self, zh: str, en: str, param: str | None = None) -> None:
        super().__init__(zh, en)
        self.param = param


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


class WrongModelError(ModelUnavailableError):
    """A model that is not what its role needs: another kind of model (a captioner set as a text generator), or
    a checkpoint without the role's output layer, which loading would fill with random numbers (a chat model set
    as a classifier would answer at random)."""

    def __init__(self, model: str, variable: str, kind: tuple[str, str], reason: tuple[str, str]) -> None:
        PipelineError.__init__(  # noqa: the advice differs from a load failure: the network is not at fault
            self,
            f"模型 {model} 不是{kind[0]}：{reason[0]}。请把环境变量 {variable} 改为这样的模型。",
            f"The model {model} is not a {kind[1]}: {reason[1]}. Set {variable} to such a model.",
        )
        self.model, self.variable, self.reason = model, variable, reason[1]


class SpeechUnavailableError(PipelineError):
    """Every configured text-to-speech engine failed."""


class StorageError(PipelineError):
    """Generated files cannot be written."""


class BusyError(PipelineError):
    """Too many requests of one kind are already waiting; the message says when to come back."""


class OutOfMemoryError(PipelineError):
    """A model ran out of (GPU or CPU) memory on this request; a smaller request may fit."""

    def __init__(self) -> None:
        super().__init__("内存不足：请缩短输入、减少生成长度或生成条数后重试。",
                         "Out of memory: shorten the input or ask for fewer new tokens or sequences, then retry.")


# torch.OutOfMemoryError ("CUDA out of memory. Tried to allocate …", a RuntimeError), MPS ("MPS backend out of
# memory"), and the CPU allocator ("DefaultCPUAllocator: not enough memory: you tried to allocate …").
_OUT_OF_MEMORY = ("out of memory", "not enough memory")


def known_error(exc: BaseException) -> PipelineError | None:
    """Return ``exc`` as an error a user can act on (itself, or ``OutOfMemoryError`` for torch's
    ``OutOfMemoryError``, its allocators' ``RuntimeError`` or ``MemoryError``); None when it is unexpected."""
    if isinstance(exc, PipelineError):
        return exc
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(
            words in str(exc).lower() for words in _OUT_OF_MEMORY)):
        return OutOfMemoryError()
    return None


UNEXPECTED = ("出现意外错误，已记录。请重试。", "Something unexpected went wrong and was logged. Please retry.")


class ConfigError(PipelineError):
    """A ``MODELDECK_*`` (or token) setting is malformed; names the variable and shows a correct example."""

    def __init__(self, variable: str, value: str, problem_zh: str, problem_en: str, example: str) -> None:
        self.variable = variable
        self.example = example
        super().__init__(
            f"环境变量 {variable}={value!r} 无效：{problem_zh}。正确示例：{variable}={example}",
            f"The environment variable {variable}={value!r} is not valid: {problem_en}. "
            f"A correct example: {variable}={example}",
        )


class RemoteUnavailableError(ModelUnavailableError):
    """A remote backend cannot be reached or does not serve the model; names the URL and the variable."""

    def __init__(self, model: str, variable: str, reason: str, hint: tuple[str, str] | None = None) -> None:
        # ``hint`` (Chinese, English): what to do, when the answer says more than "down, or no such model"
        zh, en = hint or (f"请确认服务器正在运行并提供这个模型，或修改环境变量 {variable}",
                          f"Check that the server is running and serves this model, or change {variable}")
        PipelineError.__init__(  # noqa: the wording differs from a local load failure
            self, f"远程模型 {model} 不可用（{reason}）。{zh}。", f"The remote model {model} is not available ({reason}). {en}.")
        self.model, self.variable, self.reason = model, variable, reason


class RemoteBusyError(BusyError):
    """The server refused the request for now (HTTP 429); ``retry_after`` is its wait in seconds, if given."""

    def __init__(self, model: str, retry_after: float | None) -> None:
        self.retry_after = retry_after
        wait_zh = f"请 {retry_after:.0f} 秒后重试" if retry_after is not None else "请稍后重试"
        wait_en = f"retry in {retry_after:.0f} s" if retry_after is not None else "retry in a moment"
        super().__init__(f"远程模型 {model} 正忙（请求太多，HTTP 429），{wait_zh}。",
                         f"The remote model {model} is busy (too many requests, HTTP 429): {wait_en}.")
