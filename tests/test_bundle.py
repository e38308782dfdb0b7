"""The picture-story zip: every piece inside, the settings and models in story.json, only served files read,
and the zip kept where the audio cleanup bounds disk use."""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest

import pipelines as p
from pipelines import speech
from pipelines.bundle import story_bundle
from pipelines.errors import InvalidInputError
from pipelines.story import StoryRecord

CAT = Path(__file__).resolve().parent.parent / "example_images" / "cat.jpg"
SETTINGS = StoryRecord("科幻", 300, 7.0, "zh", "一只猫", 1234, "Qwen/Qwen2.5-0.5B-Instruct")


@pytest.fixture
def upload(tmp_path):
    """A picture where gradio keeps uploads (under the temp folder)."""
    path = tmp_path / "upload" / "cat.jpg"
    path.parent.mkdir()
    shutil.copy(CAT, path)
    return str(path)


def test_the_zip_holds_picture_captions_story_audio_and_settings(upload):
    audio = speech.synthesize_speech("一只猫在窗台上晒太阳。", "zh").path if speech.espeak_binary() else None
    path = story_bundle(upload, "一只猫", "a cat", "从前有一只猫。", audio, SETTINGS)
    assert os.path.dirname(path) == speech.audio_dir() and path.endswith(".zip")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        record = json.loads(archive.read("story.json"))
        assert archive.read("picture.jpg") == CAT.read_bytes()
        assert archive.read("story.txt").decode() == "从前有一只猫。"
        assert archive.read("caption_zh.txt").decode() == "一只猫" and archive.read("caption_en.txt") == b"a cat"
    assert {"picture.jpg", "caption_zh.txt", "caption_en.txt", "story.txt", "story.json"} <= names
    assert {k: record[k] for k in ("style", "length", "creativity", "language", "seed", "written_from")} == {
        "style": "科幻", "length": 300, "creativity": 7.0, "language": "zh", "seed": 1234, "written_from": "一只猫"}
    assert set(record["models"]) >= {"captioner", "translator", "story"}
    assert record["models"]["story"] == "Qwen/Qwen2.5-0.5B-Instruct"  # the model that wrote it, as recorded
    if audio:
        assert "story.wav" in names and record["models"]["speech"] == "espeak-ng"


def test_files_outside_the_served_folders_are_never_read(tmp_path, monkeypatch):
    # Only the temp and audio folders are served; point the temp folder elsewhere, since a checkout (this one
    # included) may itself lie under /tmp.
    monkeypatch.setattr("pipelines.bundle.tempfile.gettempdir", lambda: str(tmp_path / "served"))
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    path = story_bundle(str(CAT), "c", "c", "s", "/etc/passwd", SETTINGS)  # the repository is not served
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["caption_en.txt", "caption_zh.txt", "story.json", "story.txt"]


def test_no_story_no_zip(upload):
    with pytest.raises(InvalidInputError, match="no story"):
        story_bundle(upload, "一只猫", "a cat", "  ", None, SETTINGS)


def test_the_audio_cleanup_removes_old_zips(upload):
    path = story_bundle(upload, "一只猫", "a cat", "故事。", None, SETTINGS)
    assert speech.cleanup(now=time.time() + 30 * 86400) >= 1
    assert not os.path.exists(path)


def test_picture_story_reports_the_seed_that_made_the_story():
    *_, done = p.picture_story(str(CAT), "温馨", 50, 5, "zh", speak=False, seed=4321)
    assert done.stage == "done" and done.seed == 4321 and done.story


def test_a_story_typed_by_hand_has_no_settings_to_claim(upload):
    path = story_bundle(upload, "一只猫", "a cat", "我自己写的故事。", None, None)
    with zipfile.ZipFile(path) as archive:
        record = json.loads(archive.read("story.json"))
    assert {k: record[k] for k in ("style", "length", "creativity", "language", "seed", "written_from")} == dict.fromkeys(
        ("style", "length", "creativity", "language", "seed", "written_from"))
    assert "story" not in record["models"] and record["models"]["captioner"]


def test_a_story_keeps_the_record_of_what_wrote_it():
    stream = p.write_story("a cat on a red chair", "科幻", 50, 6, "english", seed=77)
    stream.close()
    assert stream.record == StoryRecord("科幻", 50, 6.0, "en", "a cat on a red chair", 77,
                                        p.registry.resolve("story").source)
    assert StoryRecord.from_dict(stream.record.as_dict()) == stream.record
    *_, done = p.picture_story(str(CAT), "寓言", 50, 2, "zh", speak=False, seed=5)
    assert done.record == StoryRecord("寓言", 50, 2.0, "zh", done.caption.zh or done.caption.en, 5,
                                      p.registry.resolve("story").source)


def test_story_json_says_whether_the_story_was_edited_after_the_model_wrote_it(upload):
    def record_of(story: str, made: StoryRecord | None) -> dict:
        with zipfile.ZipFile(story_bundle(upload, "一只猫", "a cat", story, None, made)) as archive:
            return json.loads(archive.read("story.json"))

    written = SETTINGS.with_text("从前有一只猫。\r它很乖。")
    assert record_of("从前有一只猫。\n它很乖。\n", written)["edited_by_hand"] is False  # as a text box shows it
    assert record_of("从前有一只猫。它改过了。", written)["edited_by_hand"] is True
    assert record_of("我自己写的故事。", None)["edited_by_hand"] is True  # typed by hand: no model wrote it
    assert record_of("从前有一只猫。", SETTINGS)["edited_by_hand"] is None  # a record kept before texts were
    assert StoryRecord.from_dict(written.as_dict()) == written  # kept across a reload with the rest


def test_a_record_knows_the_text_its_model_streamed():
    written = SETTINGS.with_text("从前有一只猫。\r它很乖。")
    assert written.streamed("从前有一只猫。\n它很乖。") and written.streamed("从前有一只猫。\n它")  # shown mid-stream
    assert not written.streamed("从前有一只狗。") and not SETTINGS.streamed("从前有一只猫。")
