"""What every tab shares: translations, the error edge, ZeroGPU, concurrency ids, formatting."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable, Sequence

import gradio as gr

from pipelines import registry
from pipelines.errors import UNEXPECTED, known_error
from pipelines.inputs import clean_text, seed as parse_seed
from pipelines.batching import max_batch

log = logging.getLogger("modeldeck.ui")

# Events that run the same model share a concurrency id, so one model never runs N copies at once.
LLM = "llm"  # chat, story and picture story share the chat model
TEXTGEN, CLASSIFIER, CAPTIONER, SPEECH = "textgen", "classifier", "captioner", "speech"
NEXT_TOKEN = "next_token"  # redraws are short engine calls; they need not wait behind a text generation


def concurrency_limit(concurrency_id: str) -> int:
    """How many requests of one kind run at once.

    Chat-model requests run up to ``MODELDECK_MAX_BATCH`` at once because they meet in the
    batcher, which runs one decode loop per model; speech waits on the network.
    """
    if concurrency_id == LLM:
        return max_batch()
    return 2 if concurrency_id in (SPEECH, NEXT_TOKEN) else 1

try:  # ZeroGPU Spaces: a no-op off a ZeroGPU Space, absent locally
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn: Any = None, **_: Any) -> Any:
        return fn if callable(fn) else (lambda f: f)


def edge(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn pipeline errors into ``gr.Error`` (UI toast, client AppError); hide unexpected ones."""

    def convert(exc: Exception) -> gr.Error:
        if isinstance(exc, gr.Error):
            return exc
        known = known_error(exc)
        if known is not None:
            return gr.Error(str(known), print_exception=False)
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error(" / ".join(UNEXPECTED), print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except Exception as exc:
                raise convert(exc) from exc
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise convert(exc) from exc
    return call


def checked(trigger: Callable[..., Any], check: Callable[..., None], inputs: list[Any]) -> Any:
    """``trigger`` runs ``check`` on ``inputs`` first; chain the work after it with ``.success(...)``.

    The check has no outputs, so a bad input is answered by its message as a toast and nothing else. Raised by
    the work itself, the same ``gr.Error`` would also veil each of the work's outputs with gradio's error badge,
    hiding what they showed (the conversation, the story) until dismissed. Queued: gradio 6.31's page shows no
    toast for an error raised by an unqueued event (see ``chat_saved.build``).
    """
    return trigger(edge(check), inputs, None, show_progress="hidden", api_visibility="private")


REPLYING = "回答还在生成：请等它写完，或先按“停止”。 / A reply is still being written: wait for it or press Stop."


def need_idle(running: int, message: str = REPLYING) -> None:
    """A check for ``checked``: refuse while ``running`` (the page's steps started and not ended) is not 0, with
    ``message``; a second step at once would write over the first's outputs."""
    if running:
        raise gr.Error(message, print_exception=False)


def one_step(trigger: Callable[..., Any], check: Callable[..., None] | None, inputs: list[Any], busy: Any,
             message: str, work: dict[str, Any], after: dict[str, Any] | None = None,
             idle: dict[str, Any] | None = None, locks: Sequence[Any] = ()) -> Any:
    """``trigger`` runs ``work`` (``.then`` arguments), then ``after`` (failed or not), unless another step of the tab
    runs: while ``busy`` (a ``gr.State`` count of the steps started and not ended) is not 0 it is refused with
    ``message`` (see ``need_idle``) and ``locks`` (buttons) cannot be pressed. Then ``check`` (if any) runs on
    ``inputs`` (see ``checked``). Returns the work's event; ``busy`` counts down when it ends, stopped too, and
    then ``idle`` runs."""

    def ready(*values: Any) -> None:
        need_idle(values[-1], message)
        if check is not None:
            check(*values[:-1])

    def counted(change: int) -> Callable[[int], Any]:
        def count(n: int) -> Any:
            n = max(0, n + change)
            return (n, *[gr.update(interactive=not n)] * len(locks)) if locks else n
        return count

    private = {"queue": False, "api_visibility": "private"}
    started = checked(trigger, ready, [*inputs, busy]).success(counted(1), busy, [busy, *locks], **private)
    run = started.then(**work)
    ends = finally_(run, **after) if after is not None else [run]
    for end in ends:
        for ended in finally_(end, fn=counted(-1), inputs=busy, outputs=[busy, *locks], **private):
            if idle is not None:
                finally_(ended, **idle)
    return run


def finally_(event: Any, **listener: Any) -> list[Any]:
    """Run ``listener`` (``.then`` arguments) once ``event`` ends, whatever the outcome; return the new events.

    ``.then`` is documented to run after a failure too, but gradio 6.31's page runs it only after a success or a
    cancel (``.failure`` listeners alone after an error). A step whose work raised left its tab's count of running
    steps above 0, and every button of the tab then said to wait, until a reload. ``.success`` and ``.failure``
    are exclusive, so exactly one of the two runs (a cancel runs the failure listeners)."""
    return [event.success(**listener), event.failure(**listener)]


def need_text(field_zh: str, field_en: str) -> Callable[[Any], None]:
    """A check for ``checked``: refuse an empty text box in the words the pipeline would use."""

    def check(value: Any) -> None:
        clean_text(value, field_zh=field_zh, field_en=field_en, notices=[])
    return check


def need_prompt_and_seed(prompt: str, seed: Any) -> None:
    """A check for ``checked``: refuse an empty prompt, or a seed that is not a whole number in 0…2³¹−1."""
    need_text("提示文本", "prompt")(prompt)
    parse_seed(seed)


def examples(samples: list[list[Any]], inputs: list[Any], headers: list[str]) -> gr.Examples:
    """Examples with plain bilingual column headers (headers taken from i18n labels would show raw keys)."""
    shown = gr.Examples(samples, inputs=inputs, label=t("md_examples"))
    shown.dataset.headers = headers
    return shown


def model_choices(role: str) -> list[tuple[str, str]]:
    """Dropdown choices (label, name) for ``role``'s models; a remote one says where it runs."""
    choices = []
    for spec in registry.specs(role):
        label = spec.name
        if spec.is_remote and spec.entry is not None:
            where = "Inference Providers" if spec.entry.scheme == "hf" else "OpenAI API"
            label = f"{spec.name} · 🌐 远程 remote ({where})"
        choices.append((label, spec.name))
    return choices


def notices_md(notices: list[str]) -> str:
    """Render notices as a Markdown list (empty when there are none)."""
    return "\n".join(f"- ⚠️ {n}" for n in notices)


READING_MARK = "⏳ 正在读入提示"
STOPPED = "⏹ 已停止 / stopped"


def joined(*parts: str) -> str:
    """Markdown blocks of a status line, the empty ones left out."""
    return "\n\n".join(part for part in parts if part)


def reading_md(progress: Any) -> str:
    """A long prompt being read a chunk at a time: how far (empty when no prompt is being read)."""
    if progress is None or not progress.reading:
        return ""
    return (f"{READING_MARK} **{progress.read} / {progress.total}** 词元 · reading the prompt: "
            f"{progress.read} of {progress.total} tokens")


def usage_md(usage: Any, seed: int | None = None) -> str:
    """Render token usage like FastChat's output: prompt / completion / total."""
    text = (f"🧮 prompt_tokens **{usage.prompt_tokens}** · completion_tokens **{usage.completion_tokens}** · "
            f"total_tokens **{usage.total_tokens}**")
    if usage.finish_reason == "cancelled":
        text += f" · {STOPPED}"
    if seed is not None:
        text += f" · 🎲 seed **{seed}**"
    return text


ZH = {
    "md_title": "# 🧪 ModelDeck · 小模型游乐场\n在浏览器里试用 Hugging Face 小模型：对话、文本生成、文本分类、看图讲故事。",
    "md_tab_chat": "💬 对话", "md_tab_textgen": "✍️ 文本生成", "md_tab_classify": "🏷️ 文本分类",
    "md_tab_story": "🖼️ 看图讲故事", "md_tab_about": "ℹ️ 关于 / 状态",
    "md_message": "消息", "md_message_ph": "输入消息，按回车发送", "md_send": "发送", "md_stop": "⏹ 停止",
    "md_regenerate": "🔄 重新生成", "md_undo": "↩️ 撤销", "md_clear": "🗑️ 清空", "md_system_prompt": "系统提示词",
    "md_settings": "⚙️ 生成参数", "md_chatbot": "对话",
    "md_temperature": "温度 temperature",
    "md_temperature_info": "越低越确定、越保守；越高越随机、越有创意。0 = 贪心解码（每步取概率最高的词）。",
    "md_top_p": "核采样 top-p", "md_top_p_info": "从概率最高的词开始累加，累计概率达到 p 的词才参与采样。1 = 不限制。",
    "md_top_k": "top-k", "md_top_k_info": "每步只在概率最高的 k 个词里采样。0 = 不限制。",
    "md_max_new_tokens": "最多生成词元数", "md_max_new_tokens_info": "回答/续写最多生成多少个词元（token）。",
    "md_repetition_penalty": "重复惩罚", "md_repetition_penalty_info": "大于 1 时降低已出现词的概率，减少车轱辘话。",
    "md_num_sequences": "生成条数", "md_num_sequences_info": "用同一提示一次生成几段不同的续写。",
    "md_seed": "随机种子", "md_seed_info": "留空 = 每次随机（用到的种子显示在结果下方）；填入那个种子可以复现同样的结果。",
    "md_seed_ph": "🎲 留空 = 每次随机", "md_seed_reuse": "♻️ 复用上次的种子", "md_seed_random": "🎲 改回每次随机",
    "md_prompt": "提示文本（开头）", "md_prompt_ph": "写一个开头，模型接着往下写", "md_generate": "🚀 生成",
    "md_model": "模型", "md_chat_model": "对话模型",
    "md_chat_model_info": "整段对话都交给所选模型：换一个模型后按“重新生成”，可以比较两个模型的回答。",
    "md_output": "生成结果", "md_examples": "示例",
    "md_text": "文本", "md_text_ph": "输入一段评论或句子，按回车分类（Shift+回车换行）", "md_classify": "🏷️ 分类", "md_labels": "各标签得分",
    "md_image": "上传图片", "md_style": "故事风格", "md_length": "故事长度（中文字数 / 英文单词数）",
    "md_creativity": "创意值（0–10）", "md_creativity_info": "0 = 保守常规，10 = 脑洞大开（对应温度 0.2–1.2）",
    "md_language": "故事语言", "md_run_all": "🚀 生成描述 + 故事 + 语音", "md_caption_zh": "图片描述（可修改；中文故事据此写）",
    "md_caption_en": "英文描述（BLIP 原文，可修改；英文故事据此写）", "md_story": "故事", "md_audio": "🎵 故事音频（可试听/下载）",
    "md_rewrite": "✏️ 按描述重写故事", "md_revoice": "🔊 重新配音", "md_caption_only": "🖼️ 只生成描述",
    "md_refresh": "🔄 刷新", "md_status": "状态",
    "md_tab_next_token": "🔍 下一个词 · Next token", "md_nt_top_n": "显示前 N 个词", "md_nt_show": "🔍 显示下一个词",
    "md_nt_sample": "🎲 采样一个词", "md_nt_restart": "🔄 重新开始",
    "md_nt_seed_info": "留空 = 随机；同一个种子连续采样，写出的词和文本生成用这个种子写出的一样。",
    "md_nt_pick": "👆 点图里的一行，把这个词接到文本后面", "md_color_by_p": "🎨 按概率给回复上色",
}
EN = {
    "md_title": "# 🧪 ModelDeck · small-model playground\nTry small Hugging Face models in your browser: chat, "
             "text generation, classification, picture → story → voice.",
    "md_tab_chat": "💬 Chat", "md_tab_textgen": "✍️ Text generation", "md_tab_classify": "🏷️ Classification",
    "md_tab_story": "🖼️ Picture → story → voice", "md_tab_about": "ℹ️ About / status",
    "md_message": "Message", "md_message_ph": "Type a message and press Enter", "md_send": "Send", "md_stop": "⏹ Stop",
    "md_regenerate": "🔄 Regenerate", "md_undo": "↩️ Undo", "md_clear": "🗑️ Clear", "md_system_prompt": "System prompt",
    "md_settings": "⚙️ Generation settings", "md_chatbot": "Chat",
    "md_temperature": "Temperature",
    "md_temperature_info": "Lower is more certain and conservative; higher is more random and creative. 0 = greedy.",
    "md_top_p": "Top-p (nucleus)", "md_top_p_info": "Sample only from the most likely words whose probabilities add up to p. "
                                               "1 = no limit.",
    "md_top_k": "Top-k", "md_top_k_info": "Sample only from the k most likely words at each step. 0 = no limit.",
    "md_max_new_tokens": "Max new tokens", "md_max_new_tokens_info": "The most tokens the reply or continuation may have.",
    "md_repetition_penalty": "Repetition penalty", "md_repetition_penalty_info": "Above 1 makes repeated words less "
                                                                           "likely.",
    "md_num_sequences": "Number of sequences", "md_num_sequences_info": "How many different continuations to write.",
    "md_seed": "Seed", "md_seed_info": "Empty = a new random seed each time (shown under the output); enter that "
                                       "seed to reproduce the result.",
    "md_seed_ph": "🎲 empty = random each time", "md_seed_reuse": "♻️ Reuse last seed",
    "md_seed_random": "🎲 Back to random",
    "md_prompt": "Prompt (the beginning)", "md_prompt_ph": "Write a beginning; the model continues it",
    "md_generate": "🚀 Generate", "md_model": "Model", "md_chat_model": "Chat model",
    "md_chat_model_info": "The whole conversation goes to the chosen model: pick another and press Regenerate "
                          "to compare two models' answers.",
    "md_output": "Output", "md_examples": "Examples",
    "md_text": "Text", "md_text_ph": "Type a review or a sentence; Enter classifies (Shift+Enter for a new line)", "md_classify": "🏷️ Classify", "md_labels": "Scores",
    "md_image": "Upload a picture", "md_style": "Story style", "md_length": "Story length (Chinese characters / English words)",
    "md_creativity": "Creativity (0–10)", "md_creativity_info": "0 = conventional, 10 = wild (temperature 0.2–1.2)",
    "md_language": "Story language", "md_run_all": "🚀 Caption + story + voice", "md_caption_zh": "Caption (editable; Chinese stories are written from it)",
    "md_caption_en": "English caption (BLIP; editable; English stories are written from it)", "md_story": "Story", "md_audio": "🎵 Story audio (play / download)",
    "md_rewrite": "✏️ Rewrite story from caption", "md_revoice": "🔊 Voice again", "md_caption_only": "🖼️ Caption only",
    "md_refresh": "🔄 Refresh", "md_status": "Status",
    "md_tab_next_token": "🔍 Next token", "md_nt_top_n": "Show the top N tokens", "md_nt_show": "🔍 Show next token",
    "md_nt_sample": "🎲 Sample one token", "md_nt_restart": "🔄 Start over",
    "md_nt_seed_info": "Empty = random; sampling step by step with one seed writes what text generation writes "
                       "with that seed.",
    "md_nt_pick": "👆 Click a row of the chart to append its token to the text", "md_color_by_p": "🎨 Colour the reply by probability",
}
assert ZH.keys() == EN.keys()
# Keys carry a prefix: gradio has its own translation namespaces ("audio", "image", …).
I18N = gr.I18n(**{"zh": ZH, "zh-CN": ZH, "zh-TW": ZH, "zh-HK": ZH, "en": EN})
t = I18N  # t("md_key") marks a string for the browser's language
