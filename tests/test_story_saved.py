"""The picture story kept in the browser: what is kept, and what a kept (and possibly edited) record may
bring back after a reload."""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import pytest

from ui import story_saved
from ui.story_saved import AUDIO_GONE, RESTORED, restore, save

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("科幻", 200, 7, "en")
# What wrote the story: other settings than the sliders' (they moved after it was written).
MADE = {"style": "温馨", "length": 50, "creativity": 3.0, "language": "zh", "caption": "一只猫", "seed": 1234,
        "model": "Qwen/Qwen2.5-0.5B-Instruct", "written": "从前有一只猫。"}


@pytest.fixture
def files(tmp_path):
    """A picture and an audio file where the app keeps uploads and outputs (the temp folder)."""
    picture = tmp_path / "cat.jpg"
    shutil.copy(ROOT / "example_images" / "cat.jpg", picture)
    sound = tmp_path / "story.wav"
    sound.write_bytes(b"RIFF....WAVE")
    return str(picture), str(sound)


def restored(store, *, flag=False, busy=0, shown=(None, "", "", "", None)):
    return restore(store, flag, busy, *shown)


def test_a_kept_story_comes_back_whole(files):
    picture, sound = files
    store = save(picture, "一只猫", "a cat", "从前有一只猫。", sound, *SETTINGS, MADE)
    image, caption, caption_en, story, audio, style, length, creativity, language, made, status, flag = \
        restored(store)
    assert (image, audio) == (str(Path(picture).resolve()), str(Path(sound).resolve()))
    assert (caption, caption_en, story) == ("一只猫", "a cat", "从前有一只猫。")
    assert (style, length, creativity, language, made) == (*SETTINGS, MADE)
    assert RESTORED in status and AUDIO_GONE not in status and flag is True


def test_an_empty_tab_keeps_nothing():
    assert save(None, "", " ", None, None, *SETTINGS, None) == {}
    assert restored({}) == (gr.skip(),) * 12  # nothing to bring back: every output left as it is


def test_nothing_is_restored_over_a_tab_in_use_twice_or_while_a_step_runs(files):
    picture, sound = files
    store = save(picture, "一只猫", "a cat", "故事", sound, *SETTINGS, MADE)
    skipped = restored({})
    assert restored(store, flag=True) == skipped  # once per page: a later save must not show it again
    assert restored(store, busy=1) == skipped
    assert restored(store, shown=(None, "", "", "我正在写的故事", None)) == skipped
    assert restored(store, shown=(picture, "", "", "", None)) == skipped


def test_a_file_from_elsewhere_or_of_the_wrong_kind_is_never_shown(files, tmp_path):
    picture, sound = files
    notes = tmp_path / "notes.txt"
    notes.write_text("secret")
    store = save(picture, "一只猫", "a cat", "故事", sound, *SETTINGS, MADE)
    for image, audio in (("/etc/passwd", "/etc/passwd"), (str(notes), str(notes)), (sound, picture)):
        shown = restored({**store, "image": image, "audio": audio})
        assert shown[0] is None and shown[4] is None
        assert shown[3] == "故事"  # the texts still come back


def test_audio_that_was_cleaned_up_is_named(files):
    picture, sound = files
    store = save(picture, "一只猫", "a cat", "故事", sound, *SETTINGS, MADE)
    Path(sound).unlink()
    shown = restored(store)
    assert shown[4] is None and AUDIO_GONE in shown[10] and shown[3] == "故事"


def test_edited_settings_and_texts_are_brought_back_within_bounds():
    store = {"story": "字" * (story_saved.MAX_KEPT_CHARS + 50), "caption": 12, "style": "不存在", "length": 10 ** 9,
             "creativity": "很高", "language": "fr", "made": {**MADE, "length": 10 ** 9}}
    _, caption, _, story, _, style, length, creativity, language, made, _, _ = restored(store)
    assert len(story) == story_saved.MAX_KEPT_CHARS and caption == ""
    assert (style, length, creativity, language, made) == ("温馨", 1000, 5, "zh", None)
    for edited in ({**MADE, "seed": True}, {**MADE, "style": "不存在"}, {**MADE, "caption": None}, "温馨", None):
        assert restored({"story": "故事", "made": edited})[9] is None  # never a record the app did not write
    assert restored({"story": "故事", "seed": 7})[9] is None  # a story kept before records: what wrote it is unknown
    assert restored({"style": "科幻", "length": 200}) == restored({})  # settings alone are not a story


def test_a_kept_upload_that_is_not_a_picture_is_not_shown_again(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("just some text, not a picture")
    shown = restored(save({"path": str(fake)}, "一只猫", "", "", None, *SETTINGS, None))
    assert shown[0] is None and shown[1] == "一只猫"
