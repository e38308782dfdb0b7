"""Nothing a user made is lost when a later step fails; every model reads within its real window."""

from __future__ import annotations

import contextlib
import importlib

import pytest
from PIL import Image

import pipelines as p
from pipelines import registry
from pipelines.inputs import LANGUAGES
from pipelines.windows import input_window, model_window
from tiny_models import marian

picture_story_module = importlib.import_module("pipelines.picture_story")  # the package's name is the function
PICTURE = Image.new("RGB", (48, 48), "orange")


@pytest.fixture(autouse=True)
def short_stories(monkeypatch):
    """Stories of at most 16 tokens: these tests are about what is kept, not about length."""
    monkeypatch.setenv("MODELDECK_MAX_NEW_TOKENS", "16")


@contextlib.contextmanager
def failing(role: str, error: Exception):
    """Make ``role``'s model raise ``error`` on every forward pass while the block runs."""
    def hook(*_):
        raise error

    handle = registry.get_model(role).model.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@pytest.mark.parametrize("role,window", [("chat", 512), ("textgen", 128), ("classifier", 128), ("captioner", 64),
                                         ("translator", 64)])
def test_every_role_knows_its_real_window(role, window):
    assert model_window(registry.get_model(role)) == window
    assert input_window(registry.get_model(role), room_for_output=10) == window - 10


def test_the_tokenizer_limit_counts_when_it_is_the_smaller(monkeypatch):
    loaded = registry.get_model("classifier")
    monkeypatch.setattr(loaded.processor, "model_max_length", 40)
    assert model_window(loaded) == 40
    scores = p.classify_text("好" * 300)  # longer than 40 tokens: cut, not an error
    assert abs(sum(scores.values()) - 1) < 1e-5


def test_a_translator_with_a_short_window_translates_long_text(tmp_path, monkeypatch, fresh_registry):
    short = tmp_path / "marian16"
    marian(short, max_positions=16)
    monkeypatch.setenv("MODELDECK_TRANSLATE_MODEL", str(short))
    text = "the dog is sitting on a red chair " * 20  # far more than 16 tokens
    assert isinstance(p.translate_to_chinese(text), str)


def test_a_failed_translation_keeps_the_english_caption_and_the_story_goes_on():
    with failing("translator", RuntimeError("translator broke")):
        caption = p.caption_image(PICTURE)
        assert caption.en and not caption.zh and caption.best == caption.en
        assert any("translation failed" in n for n in caption.notices)
        updates = list(p.picture_story(PICTURE, "童话", 50, 5, "zh", speak=False))
    final = updates[-1]
    assert final.stage == "done" and final.caption.en and final.story
    assert any("translation failed" in n for n in final.notices)


def test_a_failed_story_keeps_the_caption():
    with failing("story", RuntimeError("story model broke")):
        updates = list(p.picture_story(PICTURE, "童话", 50, 5, "zh"))
    final = updates[-1]
    assert final.stage == "done" and final.caption.en and final.caption.zh
    assert final.audio is None
    assert any("the caption is kept" in n and "RuntimeError" in n for n in final.notices)


def test_a_failed_voice_keeps_the_story(monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError("sound card on fire")

    monkeypatch.setattr(picture_story_module, "synthesize_speech", broken)
    final = list(p.picture_story(PICTURE, "童话", 50, 5, "en"))[-1]
    assert final.story and final.audio is None
    assert any("no audio" in n and "OSError" in n for n in final.notices)


@pytest.mark.parametrize("kwargs", [{"style": "赛博朋克"}, {"language": "fr"}, {"length": "long"},
                                    {"creativity": "wild"}, {"seed": -3}])
def test_picture_story_checks_every_argument_before_the_first_model(kwargs, monkeypatch):
    def must_not_run(*_args, **_kwargs):
        raise AssertionError("the captioner ran before the arguments were checked")

    monkeypatch.setattr(picture_story_module, "english_caption", must_not_run)
    args = {"style": "温馨", "length": 50, "creativity": 5, "language": "zh", **kwargs}
    with pytest.raises(p.InvalidInputError):
        next(p.picture_story(PICTURE, **args))


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_one_language_table_for_story_speech_and_picture_story(name, monkeypatch):
    expected = LANGUAGES[name]
    seen = {}

    def record(caption, *args, settings=None, **kwargs):
        seen["caption"], seen["language"] = caption, settings.language
        raise p.InvalidInputError("停", "stop here")

    assert p.synthesize_speech("Hello, 你好.", name).path  # accepted by speech
    p.write_story("a cat", "温馨", 50, 5, name, seed=1).close()  # accepted by story
    monkeypatch.setattr(picture_story_module, "write_story", record)
    final = list(p.picture_story(PICTURE, "温馨", 50, 5, name, speak=False))[-1]
    assert seen["language"] == expected
    assert seen["caption"] == (final.caption.zh if expected == "zh" else final.caption.en)


def test_the_endpoint_and_the_tab_show_the_same_caption_when_translation_fails(url, tmp_path):
    from gradio_client import Client, handle_file

    from ui import story_tab

    picture = tmp_path / "orange.png"
    PICTURE.save(picture)
    client = Client(url, verbose=False, download_files=str(tmp_path))
    with failing("translator", RuntimeError("translator broke")):
        shown, english = client.predict(handle_file(str(picture)), api_name="/caption")
        in_tab, english_in_tab, notes = story_tab.caption_only(str(picture))
    assert shown and shown == english == in_tab == english_in_tab  # the English caption, not an empty one
    assert "translation failed" in notes


def test_the_picture_story_endpoint_keeps_the_caption_when_the_story_fails(url, tmp_path):
    from gradio_client import Client, handle_file

    picture = tmp_path / "orange.png"
    PICTURE.save(picture)
    client = Client(url, verbose=False, download_files=str(tmp_path))
    with failing("story", RuntimeError("story model broke")):
        caption, story, audio = client.predict(handle_file(str(picture)), "童话", 50, 5, "zh",
                                               api_name="/picture_story")
    assert caption and story == "" and audio is None  # no error: the caption is delivered
