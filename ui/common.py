"""What every tab shares: translations, the error edge, ZeroGPU, concurrency ids, formatting."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import gradio as gr

from pipelines import PipelineError

log = logging.getLogger("modeldeck.ui")

# Events that run the same model share a concurrency id, so one model never runs N copies at once.
LLM = "llm"  # chat, story and picture story share the chat model
TEXTGEN, CLASSIFIER, CAPTIONER, SPEECH = "textgen", "classifier", "captioner", "speech"


def concurrency_limit(concurrency_id: str) -> int:
    """How many requests of one kind run at once (speech waits on the network, so it may run more)."""
    return 2 if concurrency_id == SPEECH else 1

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
        if isinstance(exc, PipelineError):
            return gr.Error(str(exc), print_exception=False)
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error("出现意外错误，已记录。请重试。 / Something unexpected went wrong and was logged. Please retry.",
                        print_exception=False)

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


def notices_md(notices: list[str]) -> str:
    """Render notices as a Markdown list (empty when there are none)."""
    return "\n".join(f"- ⚠️ {n}" for n in notices)


def usage_md(usage: Any, seed: int | None = None) -> str:
    """Render token usage like FastChat's output: prompt / completion / total."""
    text = (f"🧮 prompt_tokens **{usage.prompt_tokens}** · completion_tokens **{usage.completion_tokens}** · "
            f"total_tokens **{usage.total_tokens}**")
    if usage.finish_reason == "cancelled":
        text += " · ⏹ 已停止 / stopped"
    if seed is not None:
        text += f" · 🎲 seed **{seed}**"
    return text


ZH = {
    "title": "# 🧪 ModelDeck · 小模型游乐场\n在浏览器里试用 Hugging Face 小模型：对话、文本生成、文本分类、看图讲故事。",
    "tab_chat": "💬 对话", "tab_textgen": "✍️ 文本生成", "tab_classify": "🏷️ 文本分类",
    "tab_story": "🖼️ 看图讲故事", "tab_about": "ℹ️ 关于 / 状态",
    "message": "消息", "message_ph": "输入消息，按回车发送", "send": "发送", "stop": "⏹ 停止",
    "regenerate": "🔄 重新生成", "undo": "↩️ 撤销", "clear": "🗑️ 清空", "system_prompt": "系统提示词",
    "settings": "⚙️ 生成参数", "chatbot": "对话",
    "temperature": "温度 temperature",
    "temperature_info": "越低越确定、越保守；越高越随机、越有创意。0 = 贪心解码（每步取概率最高的词）。",
    "top_p": "核采样 top-p", "top_p_info": "从概率最高的词开始累加，累计概率达到 p 的词才参与采样。1 = 不限制。",
    "top_k": "top-k", "top_k_info": "每步只在概率最高的 k 个词里采样。0 = 不限制。",
    "max_new_tokens": "最多生成词元数", "max_new_tokens_info": "回答/续写最多生成多少个词元（token）。",
    "repetition_penalty": "重复惩罚", "repetition_penalty_info": "大于 1 时降低已出现词的概率，减少车轱辘话。",
    "num_sequences": "生成条数", "num_sequences_info": "用同一提示一次生成几段不同的续写。",
    "seed": "随机种子", "seed_info": "留空 = 随机；填上用过的种子可以复现同样的结果。",
    "prompt": "提示文本（开头）", "prompt_ph": "写一个开头，模型接着往下写", "generate": "🚀 生成",
    "model": "模型", "output": "生成结果", "examples": "示例",
    "text": "文本", "text_ph": "输入一段评论或句子", "classify": "🏷️ 分类", "labels": "各标签得分",
    "image": "上传图片", "style": "故事风格", "length": "故事长度（中文字数 / 英文单词数）",
    "creativity": "创意值（0–10）", "creativity_info": "0 = 保守常规，10 = 脑洞大开（对应温度 0.2–1.2）",
    "language": "故事语言", "run_all": "🚀 生成描述 + 故事 + 语音", "caption_zh": "图片描述（可修改）",
    "caption_en": "英文描述（BLIP 原文）", "story": "故事", "audio": "🎵 故事音频（可试听/下载）",
    "rewrite": "✏️ 按描述重写故事", "revoice": "🔊 重新配音", "caption_only": "🖼️ 只生成描述",
    "refresh": "🔄 刷新", "status": "状态",
}
EN = {
    "title": "# 🧪 ModelDeck · small-model playground\nTry small Hugging Face models in your browser: chat, "
             "text generation, classification, picture → story → voice.",
    "tab_chat": "💬 Chat", "tab_textgen": "✍️ Text generation", "tab_classify": "🏷️ Classification",
    "tab_story": "🖼️ Picture → story → voice", "tab_about": "ℹ️ About / status",
    "message": "Message", "message_ph": "Type a message and press Enter", "send": "Send", "stop": "⏹ Stop",
    "regenerate": "🔄 Regenerate", "undo": "↩️ Undo", "clear": "🗑️ Clear", "system_prompt": "System prompt",
    "settings": "⚙️ Generation settings", "chatbot": "Chat",
    "temperature": "Temperature",
    "temperature_info": "Lower is more certain and conservative; higher is more random and creative. 0 = greedy.",
    "top_p": "Top-p (nucleus)", "top_p_info": "Sample only from the most likely words whose probabilities add up to p. "
                                               "1 = no limit.",
    "top_k": "Top-k", "top_k_info": "Sample only from the k most likely words at each step. 0 = no limit.",
    "max_new_tokens": "Max new tokens", "max_new_tokens_info": "The most tokens the reply or continuation may have.",
    "repetition_penalty": "Repetition penalty", "repetition_penalty_info": "Above 1 makes repeated words less "
                                                                           "likely.",
    "num_sequences": "Number of sequences", "num_sequences_info": "How many different continuations to write.",
    "seed": "Seed", "seed_info": "Empty = random; reuse a shown seed to reproduce a result.",
    "prompt": "Prompt (the beginning)", "prompt_ph": "Write a beginning; the model continues it",
    "generate": "🚀 Generate", "model": "Model", "output": "Output", "examples": "Examples",
    "text": "Text", "text_ph": "Type a review or a sentence", "classify": "🏷️ Classify", "labels": "Scores",
    "image": "Upload a picture", "style": "Story style", "length": "Story length (Chinese characters / English words)",
    "creativity": "Creativity (0–10)", "creativity_info": "0 = conventional, 10 = wild (temperature 0.2–1.2)",
    "language": "Story language", "run_all": "🚀 Caption + story + voice", "caption_zh": "Caption (editable)",
    "caption_en": "English caption (BLIP)", "story": "Story", "audio": "🎵 Story audio (play / download)",
    "rewrite": "✏️ Rewrite story from caption", "revoice": "🔊 Voice again", "caption_only": "🖼️ Caption only",
    "refresh": "🔄 Refresh", "status": "Status",
}
assert ZH.keys() == EN.keys()
I18N = gr.I18n(**{"zh": ZH, "zh-CN": ZH, "zh-TW": ZH, "zh-HK": ZH, "en": EN})
t = I18N  # t("key") marks a string for the browser's language
