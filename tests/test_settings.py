"""Every MODELDECK_* setting is parsed by one set of rules; a malformed one names itself and shows an example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import ConfigError, registry, settings
from pipelines.settings import parse_model_entry

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name,value", [
    ("MODELDECK_MAX_BATCH", "four"), ("MODELDECK_MAX_BATCH", "0"), ("MODELDECK_QUEUE_SIZE", "-3"),
    ("MODELDECK_TTS", "loud"), ("MODELDECK_REMOTE_TIMEOUT", "soon"), ("MODELDECK_SEED", "-1"),
    ("MODELDECK_PRELOAD", "chat,everything"), ("MODELDECK_TRUST_REMOTE_CODE", "maybe"),
    ("MODELDECK_DEVICE", "tpu"), ("MODELDECK_CHAT_MODEL", "openai:127.0.0.1:8000/v1#m"),
    ("MODELDECK_CHAT_MODEL", "openai:http://127.0.0.1:8000/v1"), ("MODELDECK_TEXTGEN_MODELS", "a, hf:bad id"),
    ("MODELDECK_CHAT_MODEL", "openai:http://user:sk-secret@host/v1#m"),
    ("MODELDECK_CHAT_MODEL", "openai:http://host/v1?api_key=sk-secret#m"),
    ("MODELDECK_CHAT_MODEL", "openai:http://host/v1#m#colour=red"),
    ("MODELDECK_CHAT_MODEL", "openai:http://host/v1#m#api_key=sk-secret"),  # a key as an option: not echoed
    ("MODELDECK_CHAT_MODEL", "openai:http://host/v1#m#key_env=sk-secret"),  # a key where its variable's name goes
    ("MODELDECK_CHAT_MODEL", "hf:https://host/v1#key_env=sk-secret"),  # a key where its variable's name goes
])
def test_a_malformed_value_names_the_variable_and_shows_an_example(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        settings.check_all()
    message = str(err.value)
    assert name in message and f"{name}={settings.SETTINGS[name].example}" in message
    assert "sk-secret" not in message  # a key written into a URL is not repeated


def test_a_number_out_of_range_says_its_range_in_both_languages(monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_INPUT_CHARS", "-1")
    with pytest.raises(ConfigError) as err:
        settings.check_all()
    assert "无效：应不小于 1。" in str(err.value) and "not valid: it must be ≥ 1." in str(err.value)


def test_every_setting_has_a_row_in_the_readme_s_configuration_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [name for name in settings.SETTINGS if f"\n| `{name}` |" not in readme] == []


def test_values_are_read_when_asked_not_at_import(monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_BATCH", "7")
    assert settings.get("MODELDECK_MAX_BATCH") == 7
    monkeypatch.setenv("MODELDECK_MAX_BATCH", " ")
    assert settings.get("MODELDECK_MAX_BATCH") == 4  # empty means the default
    monkeypatch.setenv("MODELDECK_DTYPE", "BF16")
    assert settings.get("MODELDECK_DTYPE") == "bfloat16"


def test_a_secret_is_never_echoed(monkeypatch):
    monkeypatch.setitem(settings.SETTINGS, "MODELDECK_OPENAI_API_KEY", settings.Setting(
        "MODELDECK_OPENAI_API_KEY", settings.integer(), "", "sk-…", secret=True))  # force a parse error
    monkeypatch.setenv("MODELDECK_OPENAI_API_KEY", "sk-VerySecret")
    with pytest.raises(ConfigError) as err:
        settings.get("MODELDECK_OPENAI_API_KEY")
    assert "sk-VerySecret" not in str(err.value)


def test_model_entries_local_openai_and_hf():
    local = parse_model_entry("Mine=org/model@v1.0")
    assert (local.name, local.source, local.revision, local.remote) == ("Mine", "org/model", "v1.0", False)
    served = parse_model_entry("Big Qwen=openai:http://gpu:8000/v1?x=1#Qwen/Qwen2.5-7B-Instruct#context=8192")
    assert served.name == "Big Qwen" and served.scheme == "openai"
    assert served.source == "http://gpu:8000/v1?x=1" and served.model == "Qwen/Qwen2.5-7B-Instruct"
    assert served.option("context") == "8192"
    # An "=" after "://" belongs to the URL, not to a display name.
    unnamed = parse_model_entry("openai:http://gpu:8000/v1?region=eu#m")
    assert unnamed.name == "m" and unnamed.source == "http://gpu:8000/v1?region=eu"
    hf = parse_model_entry("hf:meta-llama/Llama-3.1-8B-Instruct:together")
    assert (hf.scheme, hf.source, hf.provider, hf.name) == ("hf", "meta-llama/Llama-3.1-8B-Instruct", "together",
                                                            "Llama-3.1-8B-Instruct")
    endpoint = parse_model_entry("E=hf:https://xyz.endpoints.huggingface.cloud#tgi")
    assert endpoint.source == "https://xyz.endpoints.huggingface.cloud" and endpoint.model == "tgi"
    # A "#option=" of a Hub id entry (no "://") is an option, not the end of a display name.
    for written, name in (("hf:org/model:together#context=8192", "model"), ("Big=hf:org/model#context=8192", "Big")):
        entry = parse_model_entry(written)
        assert (entry.scheme, entry.source, entry.name, entry.option("context")) == ("hf", "org/model", name, "8192")


def test_a_role_mixes_local_and_remote_entries(monkeypatch):
    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", "Here=some/local, There=openai:http://127.0.0.1:9/v1#m")
    specs = registry.specs("textgen")
    assert [s.name for s in specs] == ["Here", "There"]
    assert [s.is_remote for s in specs] == [False, True]
    from ui.common import model_choices

    labels = dict((name, label) for label, name in model_choices("textgen"))
    assert "remote" in labels["There"] and "remote" not in labels["Here"]


def test_the_app_stops_at_start_up_with_the_message(tmp_path):
    env = {**os.environ, "MODELDECK_MAX_BATCH": "lots", "GRADIO_SERVER_PORT": "1"}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "MODELDECK_MAX_BATCH='lots'" in done.stderr and "MODELDECK_MAX_BATCH=4" in done.stderr
    assert "Traceback" not in done.stderr
