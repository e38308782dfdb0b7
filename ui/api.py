"""The scriptable API: one function per endpoint, with the parameter names scripts use.

Registered with ``gr.api`` so that every parameter reaches ``pipelines`` as sent and is checked
there (one set of rules for the UI and scripts). Each returns plain JSON or a file.

``gr.api`` takes a generator's return annotation as the type of each value it yields (a tuple
means several outputs), and it reads the annotation object itself, so this module must not use
``from __future__ import annotations``.
"""

import inspect
from typing import Optional, Union

import gradio as gr
from gradio import FileData

import pipelines
from pipelines import DEFAULT_SYSTEM_PROMPT
from pipelines.chat import DEFAULT_MAX_NEW_TOKENS as CHAT_MAX_NEW_TOKENS
from pipelines.story import DEFAULT_CREATIVITY, DEFAULT_LANGUAGE, DEFAULT_LENGTH, DEFAULT_STYLE
from pipelines.textgen import DEFAULT_MAX_NEW_TOKENS as TEXTGEN_MAX_NEW_TOKENS
from pipelines.tokens import BYTES_NOTE

from . import adapters
from .common import CAPTIONER, CLASSIFIER, LLM, NEXT_TOKEN, SPEECH, TEXTGEN, concurrency_limit, edge, gpu


def warn(notices: list[str]) -> None:
    """Show notices as toasts in the UI and as warnings to gradio_client."""
    for notice in notices:
        gr.Warning(notice)


@gpu
@edge
def chat(message: str, history: Optional[list[dict]] = None, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
         temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = CHAT_MAX_NEW_TOKENS,
         model: Optional[str] = None) -> str:
    """Chat with the small instruction-tuned model (Qwen2.5-0.5B-Instruct by default); it answers in the language
    of the message, Chinese and English best. Streams the reply as it grows; the last value is the whole reply.

    Args:
        message: The user's new message (plain text, at most 20000 characters by default; longer is cut).
        history: Earlier turns, oldest first, as [{"role": "user" or "assistant", "content": "..."}]; empty or
            null for a new conversation. The oldest turns are left out when the conversation outgrows the
            model's context window.
        system_prompt: Instructions for the assistant; empty keeps the model's own default.
        temperature: Randomness from 0 (always the most likely token) to 2; default 0.7.
        top_p: Nucleus sampling, from 0.01 to 1 (1 = no limit); default 0.9.
        max_new_tokens: The most tokens the reply may have, from 1 to 1024 (at most half the context window);
            default 512. About one token per Chinese character, or three quarters of an English word.
        model: Which chat model answers, by the name the Chat tab's list shows (or its configured id); null for
            the first (the default). Only the models configured in MODELDECK_CHAT_MODEL are offered.

    Returns:
        The assistant's reply so far, as text; the final value is the complete reply. Values out of range are
        clamped and reported as warnings; an empty message is an error.
    """
    stream = adapters.chat(message, history, system_prompt, temperature, top_p, max_new_tokens, model=model)
    warn(stream.notices)
    yield ""
    yield from stream


@gpu
@edge
def generate(prompt: str, model: Optional[str] = None, max_new_tokens: int = TEXTGEN_MAX_NEW_TOKENS,
             temperature: float = 0.8, top_k: int = 50, top_p: float = 0.95, repetition_penalty: float = 1.1,
             num_return_sequences: int = 1, seed: Union[int, str, None] = None) -> tuple[str, Optional[int]]:
    """Continue a text with a small GPT-2 model (not a chat model: it writes what could come next).
    Streams the growing text; the last value is final.

    Args:
        prompt: The beginning to continue (at most 20000 characters; when too long for the model its last
            tokens are used).
        model: Which model: "GPT-2 中文 (Chinese)" (default, writes Chinese) or "GPT-2 English"; null for the
            default. Any other name is an error that lists the choices.
        max_new_tokens: Tokens to add to each continuation, from 1 to 1024 (at most half the model's window);
            default 100.
        temperature: Randomness from 0 (greedy: always the most likely token) to 2; default 0.8.
        top_k: Sample only from the k most likely tokens, 0 to 200 (0 = no limit); default 50.
        top_p: Nucleus sampling, from 0.01 to 1 (1 = no limit); default 0.95.
        repetition_penalty: From 1 (none) to 2; above 1 makes repeated tokens less likely; default 1.1.
        num_return_sequences: How many different continuations, 1 to 8; several are numbered 【1】, 【2】, …
        seed: A whole number from 0 to 2147483647 to reproduce a result; null for a random one.

    Returns:
        A pair (text, seed): the prompt followed by its continuation(s), and the seed used (pass it again to
        get the same text).
    """
    stream = adapters.generate(prompt, model, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                               num_return_sequences, seed)
    warn(stream.notices)
    shown = len(stream.notices)
    yield prompt, stream.seed
    for text in stream:
        yield text, stream.seed
    warn(stream.notices[shown:])  # what the backend found out while generating (settings it ignored)


@gpu
@edge
def next_token(prompt: str, model: Optional[str] = None, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, repetition_penalty: float = 1.0, top_n: int = 20) -> list[dict]:
    """Return the `top_n` most likely next tokens after `prompt` as {token, id, raw_p, p, kept}, by raw_p.

    `raw_p` is the model's probability (temperature 1, no filter); `p` the probability after the settings,
    the one text generation samples from; `kept` is False for tokens that top-k or top-p remove.

    Args:
        prompt: The text so far (at most 20000 characters; when too long for the model its last tokens are used).
        model: A text generation model's name as for the generate tool, or the chat model's name followed by
            " · 对话模板 chat template" (the prompt is then read as a user message); null for the default.
        temperature: Scales the probabilities p, from 0 (greedy: all weight on the most likely token) to 2;
            default 1.
        top_k: Keep only the k most likely tokens in p, 0 to 200 (0 = no limit); default 0.
        top_p: Keep the most likely tokens up to this total probability in p, 0.01 to 1 (1 = no limit);
            default 1.
        repetition_penalty: From 1 (none) to 2; above 1 lowers p for tokens already in the prompt; default 1.
        top_n: How many tokens to return, 1 to 100; default 20.

    Returns:
        The `top_n` tokens, most likely first, as [{"token", "id", "raw_p", "p", "kept"}, …]; a remote model gives
        only the server's top 20 or fewer, with id -1.
    """
    view = pipelines.next_token(prompt, model, temperature=temperature, top_k=top_k, top_p=top_p,
                                repetition_penalty=repetition_penalty, top_n=top_n)
    warn([n for n in view.notices if n != BYTES_NOTE])
    return [c.as_dict() for c in view.candidates]


@gpu
@edge
def classify(text: str, model: Optional[str] = None) -> dict[str, float]:
    """Classify the sentiment of a text (a review, a comment): positive or negative.

    Args:
        text: The text to classify (at most 20000 characters; cut to the model's maximum input length).
        model: "中文评论情感 (JD reviews, Chinese)" (default, for Chinese) or "English sentiment (SST-2)" (for
            English); null for the default.

    Returns:
        Every label with its probability between 0 and 1 (they add up to 1), highest first, e.g.
        {"正面 positive": 0.97, "负面 negative": 0.03}. A warning says when the text was cut.
    """
    shown = adapters.classify(text, model)
    warn(shown.notices)
    return shown.scores


@gpu
@edge
def classify_batch(texts: list[str], model: Optional[str] = None) -> list[dict[str, float]]:
    """Classify the sentiment of many texts at once (e.g. a column of reviews), in the batched path.

    Args:
        texts: The texts, in order (at most 1000 by default, MODELDECK_MAX_BATCH_ROWS); each is cut to the
            model's maximum input length.
        model: A classifier's name as for the classify tool; null for the default (Chinese reviews).

    Returns:
        One {label: probability} per text, in the same order; {} for a text that was empty or not text (a
        warning names its row). Too many texts is an error saying how many are allowed.
    """
    results = pipelines.classify_rows(texts, model)
    noted = [f"{r.row}: {r.note}" for r in results if r.note]
    warn(noted[:5] + ([f"… +{len(noted) - 5}"] if len(noted) > 5 else []))
    return [r.scores for r in results]


@gpu
@edge
def caption(image: FileData) -> tuple[str, str]:
    """Describe a picture in one sentence, in Chinese and in English (BLIP captioner, then a translation model).

    Args:
        image: The picture: an http(s) URL or a data: URL of a JPG, PNG or WebP file (at most 50 megapixels
            and 10 MB by default).

    Returns:
        A pair (caption, English caption): the caption is Chinese, or English (with a warning) when the
        translation failed; a file that is not a picture is an error.
    """
    shown = adapters.caption(image)
    warn(shown.notices)
    return shown.caption, shown.english


@gpu
@edge
def story(caption: str, style: Optional[str] = DEFAULT_STYLE, length: Optional[int] = DEFAULT_LENGTH,
          creativity: Optional[float] = DEFAULT_CREATIVITY, language: Optional[str] = DEFAULT_LANGUAGE) -> str:
    """Write a short story about a scene, streamed as it grows; the last value is the whole story.

    Every setting left out, null or empty takes its default, as in the tab.

    Args:
        caption: What the story is about, e.g. a picture's caption (at most 2000 characters).
        style: One of 搞笑 funny, 武侠 wuxia, 爱情 romance, 动作 action, 科幻 science fiction, 悬疑 mystery,
            奇幻 fantasy, 温馨 heart-warming (default), 恐怖 horror, 冒险 adventure, 童话 fairy tale, 寓言 fable
            (Chinese or English name); another name is an error.
        length: About how long, 50 to 1000: Chinese characters for "zh", English words for "en"; default 300
            (a number outside 50–1000 is clamped, with a warning).
        creativity: 0 (conventional) to 10 (wild); default 5 (clamped to 0–10, with a warning).
        language: "zh" (Chinese, default) or "en" (English); another language is an error.
    Returns:
        The story so far, as text, ending on a whole sentence once complete.
    """
    stream = adapters.story(caption, style, length, creativity, language)
    warn(stream.notices)
    yield ""
    yield from stream


@edge
def speak(text: str, language: Optional[str] = "auto") -> FileData:
    """Read a text aloud and return the recording.

    Args:
        text: What to read (at most 3000 characters by default; a longer text is cut at a sentence end).
        language: "zh" (Mandarin), "en" (English) or "auto" (default). Chinese characters are always read by the
            Mandarin voice and Latin letters by the English one (a mixed text in runs, in one file); the language
            picks the voice only for a text of digits and signs. Null or empty means "auto".

    Returns:
        An audio file (MP3 from Google TTS when reachable, else WAV from espeak-ng).
    """
    result = adapters.speak(text, language)
    warn(result.notices)
    return FileData(path=result.path)


@gpu
@edge
def picture_story(image: FileData, style: Optional[str] = DEFAULT_STYLE, length: Optional[int] = DEFAULT_LENGTH,
                  creativity: Optional[float] = DEFAULT_CREATIVITY,
                  language: Optional[str] = DEFAULT_LANGUAGE) -> tuple[str, str, Optional[FileData]]:
    """Picture to story to voice in one call: caption a picture, write a story about it, read it aloud.

    Every setting left out, null or empty takes its default, as in the tab.

    Args:
        image: The picture: an http(s) URL or a data: URL of a JPG, PNG or WebP file.
        style: The story's style, as for the story tool (default 温馨 heart-warming); another name is an error.
        length: About how long, 50 to 1000 Chinese characters ("zh") or English words ("en"); default 300
            (clamped to 50–1000, with a warning).
        creativity: 0 (conventional) to 10 (wild); default 5 (clamped to 0–10, with a warning).
        language: "zh" (Chinese, default) or "en" (English): the story's language, the caption it is written
            from (Chinese or English) and the voice that reads it; another language is an error.
    Returns:
        A stream of (caption, story, audio): the caption first, then the story as it grows, then the audio
        file of the story (null until it is ready).
    """
    warned = 0
    for shown in adapters.picture_story(image, style, length, creativity, language):
        warn(shown.notices[warned:])
        warned = len(shown.notices)
        yield shown.caption, shown.story, FileData(path=shown.audio) if shown.audio else None


def one_line_args(doc: str) -> str:
    """``doc`` with each ``Args:`` entry joined onto one line.

    Gradio 6.31 reads a parameter's description (shown to MCP clients and on the API page) from the
    entry's first line only (``gradio.utils.get_function_description``); continuation lines would be lost.
    """
    out: list[str] = []
    in_args = False
    for line in inspect.cleandoc(doc).split("\n"):
        if line.strip() in ("Args:", "Returns:"):
            in_args = line.strip() == "Args:"
        elif in_args and line.startswith(" " * 8) and out:  # deeper than an entry: it goes on
            out[-1] += " " + line.strip()
            continue
        out.append(line)
    return "\n".join(out)


def register() -> None:
    """Add the API endpoints to the Blocks being built."""
    for fn, concurrency_id in [(chat, LLM), (story, LLM), (picture_story, LLM), (generate, TEXTGEN),
                               (classify, CLASSIFIER), (classify_batch, CLASSIFIER), (caption, CAPTIONER),
                               (speak, SPEECH), (next_token, NEXT_TOKEN)]:
        fn.__doc__ = one_line_args(fn.__doc__ or "")
        gr.api(fn, api_name=fn.__name__, concurrency_limit=concurrency_limit(concurrency_id),
               concurrency_id=concurrency_id)
