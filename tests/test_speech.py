"""Speech: gTTS with a deadline, espeak-ng offline fallback, cache, cleanup, clear failures."""

from __future__ import annotations

import os
import time
import wave

import pytest
from PIL import Image

import pipelines as p
from pipelines import speech

needs_espeak = pytest.mark.skipif(speech.espeak_binary() is None, reason="espeak-ng is not installed")


class FailingGTTS:
    """Stands in for gTTS without a network: the same exception gTTS raises offline or on HTTP 429."""

    error = "Failed to connect. Probable cause: Unknown"

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def write_to_fp(self, fp):
        from gtts.tts import gTTSError

        fp.write(b"partial")
        raise gTTSError(self.error)


class WorkingGTTS(FailingGTTS):
    def write_to_fp(self, fp):
        fp.write(b"ID3" + b"\x00" * 64)


class HangingGTTS(FailingGTTS):
    def write_to_fp(self, fp):
        time.sleep(5)


@pytest.fixture
def audio(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELDECK_AUDIO_DIR", str(tmp_path / "audio"))
    monkeypatch.setenv("MODELDECK_TTS", "auto")
    return tmp_path / "audio"


def _wav_seconds(path: str) -> float:
    """The length the header says, checked against the samples in the file (players trust the header)."""
    with wave.open(path) as w:
        assert w.getnframes() * w.getsampwidth() * w.getnchannels() == len(w.readframes(w.getnframes()))
        assert os.path.getsize(path) == 44 + w.getnframes() * w.getsampwidth() * w.getnchannels()
        return w.getnframes() / w.getframerate()


@pytest.fixture
def voices(monkeypatch):
    """The (voice, text) of every espeak-ng run."""
    runs = []
    real = speech.subprocess.run

    def run(args, **kwargs):
        if "--stdout" in args:  # the app's runs, not the test's own phoneme look-ups
            runs.append((args[args.index("-v") + 1], kwargs["input"].decode()))
        return real(args, **kwargs)

    monkeypatch.setattr(speech.subprocess, "run", run)
    return runs


def _phonemes(voice: str, text: str) -> str:
    import subprocess

    return subprocess.run([speech.espeak_binary(), "-q", "-x", "-v", voice, text], capture_output=True,
                          text=True, check=True).stdout


@needs_espeak
def test_chinese_is_read_in_mandarin_and_english_in_english(audio, monkeypatch, voices):
    # espeak-ng 1.51's "cmn" voice spelled the characters' pinyin out in English, tone digits too:
    # 小猫 was read "xiao three mao one"; the switch to English shows as "(en)" in its phonemes.
    monkeypatch.setenv("MODELDECK_TTS", "espeak")
    result = p.synthesize_speech("小猫坐在椅子上。它说：“Hello, my friend!”然后睡着了。", "zh")
    assert [text for _, text in voices] == ["小猫坐在椅子上。它说：“", "Hello, my friend!”", "然后睡着了。"]
    (zh, _), (en, _), (zh_again, _) = voices
    assert zh == zh_again and "(en)" not in _phonemes(zh, "小猫坐在椅子上。")
    assert _phonemes(en, "Hello, my friend!") == _phonemes("en", "Hello, my friend!")
    assert 2 < _wav_seconds(result.path) < 15  # one file, every part in it, its length told right
    voices.clear()
    p.synthesize_speech("The cat sat on the mat. 小猫坐着。", "en")  # the other way round: the Chinese in Mandarin
    assert [(v == zh, text) for v, text in voices] == [(False, "The cat sat on the mat. "), (True, "小猫坐着。")]


@needs_espeak
@pytest.mark.parametrize("error", ["Failed to connect. Probable cause: Unknown",
                                   "429 (Too Many Requests) from TTS API. Probable cause: Unknown"])
def test_gtts_failure_falls_back_to_espeak_with_real_audio(audio, monkeypatch, error):
    monkeypatch.setattr("gtts.gTTS", type("G", (FailingGTTS,), {"error": error}))
    result = p.synthesize_speech("你好，世界。今天天气很好。", "zh")
    assert result.engine == "espeak" and result.notices
    assert open(result.path, "rb").read(4) == b"RIFF"
    assert _wav_seconds(result.path) > 0.5
    assert [f for f in os.listdir(audio) if f.startswith(".tmp")] == []


def test_gtts_success_writes_an_mp3_atomically(audio, monkeypatch):
    monkeypatch.setattr("gtts.gTTS", WorkingGTTS)
    result = p.synthesize_speech("Hello there.", "en")
    assert result.engine == "gtts" and result.path.endswith(".mp3")
    assert open(result.path, "rb").read(3) == b"ID3"
    assert sorted(os.listdir(audio)) == [os.path.basename(result.path)]


def test_the_audio_file_has_a_name_that_says_what_it_is(audio, monkeypatch):
    # its name is what a browser saves it as (the audio player's download): before, 32 bare hex digits
    import re

    monkeypatch.setattr("gtts.gTTS", WorkingGTTS)
    name = os.path.basename(p.synthesize_speech("从前有一只小猫。", "zh").path)
    assert re.fullmatch(r"modeldeck-speech-[0-9a-f]{32}\.mp3", name), name


@needs_espeak
def test_a_hanging_gtts_is_abandoned_at_the_deadline(audio, monkeypatch):
    monkeypatch.setattr("gtts.gTTS", HangingGTTS)
    monkeypatch.setenv("MODELDECK_TTS_TIMEOUT", "1")
    result = p.synthesize_speech("Hello there.", "en")
    assert result.engine == "espeak"


@needs_espeak
def test_identical_requests_are_served_from_the_cache(audio, monkeypatch):
    monkeypatch.setenv("MODELDECK_TTS", "espeak")
    first = p.synthesize_speech("一只猫。", "zh")
    second = p.synthesize_speech("一只猫。", "zh")
    assert second.engine == "cache" and second.path == first.path
    assert p.synthesize_speech("一只猫。", "en").path != first.path


@needs_espeak
def test_espeak_s_file_from_the_cache_says_so_and_gtts_is_tried_again(audio, monkeypatch):
    monkeypatch.setattr("gtts.gTTS", FailingGTTS)
    first = p.synthesize_speech("The cat sleeps.", "en")
    assert first.engine == "espeak" and any("espeak-ng" in n for n in first.notices)
    again = p.synthesize_speech("The cat sleeps.", "en")  # gTTS still down: espeak's file, and the notice again
    assert again.engine == "cache" and again.path == first.path and again.notices == first.notices
    monkeypatch.setattr("gtts.gTTS", WorkingGTTS)  # back: the text is voiced by gTTS, no longer by espeak
    back = p.synthesize_speech("The cat sleeps.", "en")
    assert back.engine == "gtts" and back.path.endswith(".mp3") and not back.notices
    assert p.synthesize_speech("The cat sleeps.", "en").path == back.path


@needs_espeak
def test_long_text_is_one_whole_file(audio, monkeypatch):
    monkeypatch.setenv("MODELDECK_TTS", "espeak")
    result = p.synthesize_speech("这是一个很长的故事。" * 60, "zh")
    assert _wav_seconds(result.path) > 30


def test_cleanup_removes_old_files_then_the_oldest_beyond_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELDECK_AUDIO_MAX_AGE_DAYS", "3")
    monkeypatch.setenv("MODELDECK_AUDIO_MAX_MB", "1")
    now = time.time()
    for name, age_days, size in [("old.mp3", 4, 10), ("a.wav", 1, 600_000), ("b.wav", 0.5, 600_000),
                                 ("c.wav", 0.1, 10)]:
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    assert speech.cleanup(str(tmp_path), now=now) == 2
    assert sorted(os.listdir(tmp_path)) == ["b.wav", "c.wav"]


def test_no_engine_at_all_is_a_clear_error(audio, monkeypatch):
    monkeypatch.setattr("gtts.gTTS", FailingGTTS)
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(p.SpeechUnavailableError) as err:
        p.synthesize_speech("你好。", "zh")
    assert "espeak-ng" in str(err.value)


def test_picture_story_without_speech_still_delivers_the_story(audio, monkeypatch):
    monkeypatch.setenv("MODELDECK_TTS", "off")
    final = list(p.picture_story(Image.new("RGB", (40, 40), "green"), "搞笑", 50, 3, "zh"))[-1]
    assert final.story and final.audio is None
    assert any("no audio" in n for n in final.notices)


def test_unwritable_audio_folder_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("MODELDECK_AUDIO_DIR", str(blocker / "audio"))
    with pytest.raises(p.StorageError) as err:
        p.synthesize_speech("你好。", "zh")
    assert "MODELDECK_AUDIO_DIR" in str(err.value)


@pytest.mark.parametrize("text,language", [("", "zh"), ("。。。！", "zh"), ("hello", "fr")])
def test_bad_speech_requests_are_rejected(audio, text, language):
    with pytest.raises(p.InvalidInputError):
        p.synthesize_speech(text, language)


def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_file(audio, monkeypatch):
    import errno

    monkeypatch.setenv("MODELDECK_TTS", "gtts")
    monkeypatch.setattr("gtts.gTTS", WorkingGTTS)

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(speech.os, "replace", full)
    with pytest.raises(p.StorageError) as err:
        p.synthesize_speech("Hello there.", "en")
    assert "No space left" in str(err.value)
    assert os.listdir(audio) == []


def test_the_status_page_says_how_speech_is_made(monkeypatch):
    from ui.about_tab import status_markdown

    page = status_markdown()  # before, it named no speech engine: robotic audio came with no explanation
    assert "MODELDECK_TTS=espeak" in page and "gTTS" in page and "espeak-ng" in page and "not installed" not in page
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    assert "espeak-ng ❌ 未安装" in status_markdown()
