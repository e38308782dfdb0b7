"""The picture → story → voice tab: each step shown as soon as it is ready, each re-runnable."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterator

import gradio as gr

from pipelines import STYLES
from pipelines.bundle import story_bundle
from pipelines.images import check_picture
from pipelines.story import (DEFAULT_CREATIVITY, DEFAULT_LANGUAGE, DEFAULT_LENGTH, DEFAULT_STYLE, MAX_CREATIVITY,
                             MAX_LENGTH, MIN_CREATIVITY, MIN_LENGTH, StoryRecord, caption_for_story)

from . import adapters, story_saved
from .common import (CAPTIONER, LLM, SPEECH, STOPPED, checked, concurrency_limit, edge, examples, gpu, joined,
                     need_idle, need_text, notices_md, one_step, t)
from .picture_input import PictureInput

EXAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_images")
EXAMPLES = [("cat.jpg", "温馨", 200, 5, "zh"), ("rocket.jpg", "科幻", 300, 7, "zh"),
            ("coffee.jpg", "悬疑", 200, 6, "zh"), ("astronaut.jpg", "冒险", 150, 5, "en")]
LANGUAGE_CHOICES = [("中文", "zh"), ("English", "en")]


# The zip shown is of the story as it was when it was packed: once the picture, a caption, the story or the audio
# change (a new step, an edit, a restore), it is hidden, in the page (a stale zip looked like the new story's).
HIDE_BUNDLE = "() => ({__type__: 'update', value: null, visible: false})"
BUSY = ("上一步还在进行：请等它完成，或先按“停止”。 / The last step is still running: wait for it or press Stop.")


def stopped(status: str, busy: int) -> Any:
    """The status line after Stop, when a step was running: what it said, then stopped."""
    return joined(status, STOPPED) if busy else gr.skip()


@gpu
@edge
def run_all(image: Any, style: str, length: int, creativity: float,
            language: str) -> Iterator[tuple[str, str, str, Any, str, Any]]:
    """Caption, then story, then audio, each yielded as soon as it exists; last, what is writing the story."""
    for shown in adapters.picture_story(image, style, length, creativity, language):
        yield shown.caption, shown.english, shown.story, shown.audio, notices_md(shown.notices), shown.made


@gpu
@edge
def caption_only(image: Any) -> tuple[str, str, str]:
    """Caption the picture without writing a story."""
    shown = adapters.caption(image)
    return shown.caption, shown.english, notices_md(shown.notices)


def need_caption(caption: str, caption_en: str, language: str) -> None:
    """A check for ``checked``: refuse a rewrite with no caption to write from."""
    need_text("图片描述", "caption")(caption_for_story(caption, caption_en, language))


@gpu
@edge
def rewrite(caption: str, caption_en: str, style: str, length: int, creativity: float,
            language: str) -> Iterator[tuple[str, str, Any]]:
    """Write a new story from the (possibly edited) caption in the story's language (as the first story was:
    the English caption for an English story), keeping the captions as they are."""
    stream = adapters.story(caption_for_story(caption, caption_en, language), style, length, creativity, language)
    notes = notices_md(stream.notices)
    for text in stream:
        yield text, notes, stream.record.as_dict()


@edge
def revoice(story: str, language: str) -> tuple[str, str]:
    """Read the (possibly edited) story aloud again."""
    speech = adapters.speak(story, language)
    return speech.path, notices_md(speech.notices)


OTHER_PICTURE = ("描述和故事是为上一张图片写的：请先为这张图片生成描述（或亲手改写描述或故事），再下载全部。 / The captions "
                 "and story were written for the previous picture: caption this one (or edit the captions or the story "
                 "yourself) first, then download all.")


def picture_of(image: Any) -> str | None:
    """The picture shown (a raw upload value): the captions and story are marked as written for it."""
    return adapters.file_path(image)


def edited_by_hand(image: Any, story: str, busy: int, made: Any) -> Any:
    """The picture a change of the story marks the texts as written for, unless a step wrote it: one running,
    or one that has ended (the page's changes run behind a stream: one may arrive after the step's end)."""
    record = StoryRecord.from_dict(made)
    return gr.skip() if busy or (record is not None and record.streamed(story or "")) else picture_of(image)


Step = Callable[..., Iterator[tuple[Any, ...]]]


def recording_text(step: Step, story_at: int, made_at: int) -> Step:
    """``step`` with the story it yields (output ``story_at``) kept in its record (output ``made_at``): the
    server knows what a step wrote before the page shows it, and ``story.json`` says if it was edited after."""

    @functools.wraps(step)
    def run(*args: Any) -> Iterator[tuple[Any, ...]]:
        for out in step(*args):
            record = StoryRecord.from_dict(out[made_at])
            if record is not None and isinstance(out[story_at], str):
                out = (*out[:made_at], record.with_text(out[story_at]).as_dict(), *out[made_at + 1:])
            yield out
    return run


def same_picture(image: Any, texts_for: str | None, caption: str, caption_en: str, story: str) -> None:
    """A check for Download all: refuse to pack a picture with the captions and story of another one."""
    if picture_of(image) != texts_for and any((text or "").strip() for text in (caption, caption_en, story)):
        raise gr.Error(OTHER_PICTURE, print_exception=False)


@edge
def download_all(image: Any, caption: str, caption_en: str, story: str, audio: Any, made: Any) -> Any:
    """Pack the picture, captions, story, audio and what wrote the story (not the sliders as they are now: they
    may have moved since) into one zip to download."""
    path = story_bundle(adapters.file_path(image), caption, caption_en, story, adapters.file_path(audio),
                        StoryRecord.from_dict(made))
    return gr.update(value=path, visible=True)


def build() -> None:
    """Lay out the picture-story tab inside the current Blocks."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = PictureInput(type="filepath", image_mode=None, label=t("md_image"), height=280,
                                 elem_id="story-image")
            style = gr.Dropdown([(f"{zh} · {en}", zh) for zh, en in STYLES.items()], value=DEFAULT_STYLE,
                                label=t("md_style"), elem_id="story-style")
            length = gr.Slider(MIN_LENGTH, MAX_LENGTH, value=DEFAULT_LENGTH, step=10, label=t("md_length"), elem_id="story-length")
            creativity = gr.Slider(MIN_CREATIVITY, MAX_CREATIVITY, value=DEFAULT_CREATIVITY, step=1, label=t("md_creativity"), info=t("md_creativity_info"))
            language = gr.Radio(LANGUAGE_CHOICES, value=DEFAULT_LANGUAGE, label=t("md_language"), elem_id="story-language")
            go = gr.Button(t("md_run_all"), variant="primary", size="lg", elem_id="story-run")
            with gr.Row():
                caption_btn = gr.Button(t("md_caption_only"), elem_id="story-caption-only")
                stop = gr.Button(t("md_stop"), variant="stop", elem_id="story-stop")
        with gr.Column(scale=2, min_width=400):
            caption = gr.Textbox(label=t("md_caption_zh"), lines=2, interactive=True, buttons=["copy"],
                                 elem_id="story-caption")
            caption_en = gr.Textbox(label=t("md_caption_en"), lines=1, interactive=True, elem_id="story-caption-en")
            story = gr.Textbox(label=t("md_story"), lines=12, interactive=True, buttons=["copy"], elem_id="story-text")
            with gr.Row():
                rewrite_btn = gr.Button(t("md_rewrite"), elem_id="story-rewrite")
                revoice_btn = gr.Button(t("md_revoice"), elem_id="story-revoice")
            audio = gr.Audio(label=t("md_audio"), type="filepath", interactive=False, buttons=["download"],
                             elem_id="story-audio")
            status = gr.Markdown(elem_id="story-status")
            with gr.Row():
                bundle_btn = gr.Button("📦 下载全部 · Download all", elem_id="story-bundle")
                clear_btn = gr.Button("🗑️ 清空 · Clear", elem_id="story-clear")
            bundle = gr.File(label="图片、描述、故事、音频和 story.json · picture, captions, story, audio, story.json",
                             interactive=False, visible=False, elem_id="story-bundle-file")
    made = gr.State(None)  # what wrote the story shown: its settings, caption, seed and model
    settings = [style, length, creativity, language]
    private = {"api_visibility": "private"}
    # Each run checks its input first: a missing picture or an empty box leaves the captions, story and audio shown.
    # ``busy`` counts the steps running (one at a time: they share the captions, story, audio and status).
    busy = gr.State(0)
    steps = [(go.click, check_picture, [image], {"fn": recording_text(run_all, 2, 5), "inputs": [image, *settings],
              "outputs": [caption, caption_en, story, audio, status, made], "concurrency_id": LLM,
              "concurrency_limit": concurrency_limit(LLM)}),
             (caption_btn.click, check_picture, [image], {"fn": caption_only, "inputs": [image],
              "outputs": [caption, caption_en, status], "concurrency_id": CAPTIONER, "concurrency_limit": 1}),
             (rewrite_btn.click, need_caption, [caption, caption_en, language], {"fn": recording_text(rewrite, 0, 2),
              "inputs": [caption, caption_en, *settings], "outputs": [story, status, made], "concurrency_id": LLM,
              "concurrency_limit": concurrency_limit(LLM)}),
             (revoice_btn.click, need_text("要朗读的文本", "text to read"), [story], {"fn": revoice,
              "inputs": [story, language], "outputs": [audio, status], "concurrency_id": SPEECH,
              "concurrency_limit": concurrency_limit(SPEECH)})]
    runs = [one_step(trigger, check, inputs, busy, BUSY, {**work, **private}) for trigger, check, inputs, work in steps]
    fields = story_saved.StoryFields(image, caption, caption_en, story, audio, *settings, made, status)
    story_saved.build(fields, busy, runs, clear_btn, bundle, lambda n: need_idle(n, BUSY))
    checked(image.upload, check_picture, [image])  # a file that is not a picture is named at once, not at Run
    stop.click(stopped, [status, busy], status, cancels=runs, queue=False, **private)
    gr.on([image.change, caption.change, caption_en.change, story.change, audio.change], None, None, bundle,
          js=HIDE_BUNDLE, queue=False, show_progress="hidden", **private)
    # Which picture the captions and story shown were written for: the one captioned (Generate, captions only:
    # a new caption, or the same one again), the one shown when a caption changes (a captioning step, the user's
    # edit, a restore after a reload) or when the story changes not by a step (the user's edit, a restore; see
    # ``edited_by_hand``). A picture put in later (an upload, an example) is not it: Download all would pack it with the
    # other picture's story. Rewrite does not mark: it writes from the captions shown. Raw values
    # (preprocess=False): the upload's own path, and no error for a file that is not a picture.
    texts_for = gr.State(None)
    mark = {"outputs": texts_for, "preprocess": False, "queue": False, "show_progress": "hidden", **private}
    for run in runs[:2]:
        run.success(picture_of, [image], **mark)
    gr.on([caption.change, caption_en.change], picture_of, [image], **mark)
    story.change(edited_by_hand, [image, story, busy, made], **mark)
    bundle_btn.click(edge(same_picture), [image, texts_for, caption, caption_en, story], None, preprocess=False,
                     show_progress="hidden", **private).success(
        download_all, [image, caption, caption_en, story, audio, made], bundle, **private)
    examples([[os.path.join(EXAMPLE_DIR, f), *rest] for f, *rest in EXAMPLES], [image, *settings],
             ["图片 Picture", "风格 Style", "长度 Length", "创意 Creativity", "语言 Language"])
