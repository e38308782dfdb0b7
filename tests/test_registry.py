"""Model specs from the environment, lazy once-only loading, clear failures."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines import ConfigError, InvalidInputError, ModelUnavailableError
from pipelines.errors import WrongModelError
from pipelines.devices import device_and_dtype_names
from pipelines.registry import DISPLAY_NAMES, ROLES


def test_importing_pipelines_loads_no_model_and_no_torch():
    code = ("import sys, pipelines; print('torch' in sys.modules, 'transformers' in sys.modules, "
            "len(pipelines.registry._cache))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "False", "0"]


def test_real_defaults_are_the_published_models(monkeypatch):
    from pipelines import registry

    for role in ROLES:
        monkeypatch.delenv(ROLES[role].variable, raising=False)
    assert registry.resolve("chat").source == "Qwen/Qwen2.5-0.5B-Instruct"
    assert registry.resolve("story") == registry.specs("story")[0]
    assert registry.resolve("story").key == registry.resolve("chat").key
    assert [s.source for s in registry.specs("textgen")] == ["uer/gpt2-chinese-cluecorpussmall", "openai-community/gpt2"]
    assert registry.specs("classifier")[0].source == "uer/roberta-base-finetuned-jd-binary-chinese"
    assert registry.resolve("captioner").source == "Salesforce/blip-image-captioning-base"
    assert registry.resolve("translator").source == "Helsinki-NLP/opus-mt-en-zh"
    assert all(s.name == DISPLAY_NAMES[s.source] for role in ROLES for s in registry.specs(role))


def test_entries_take_a_name_and_a_revision(monkeypatch):
    from pipelines import registry

    monkeypatch.setenv("MODELDECK_TEXTGEN_MODELS", "Mine=org/model@v1.0, other/thing")
    first, second = registry.specs("textgen")
    assert (first.name, first.source, first.revision) == ("Mine", "org/model", "v1.0")
    assert (second.name, second.source, second.revision) == ("thing", "other/thing", None)


@pytest.mark.parametrize("name", ["../../etc", "/etc/passwd", "gpt2", "org/unknown"])
def test_a_request_can_only_name_configured_models(name):
    from pipelines import registry

    with pytest.raises(InvalidInputError) as err:
        registry.resolve("textgen", name)
    assert "Tiny GPT-2" in str(err.value)


def test_concurrent_first_calls_load_once(fresh_registry):
    results, barrier = [], threading.Barrier(6)

    def ask():
        barrier.wait()
        results.append(fresh_registry.get_model("classifier"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len({id(r) for r in results}) == 1
    assert fresh_registry.load_count[fresh_registry.resolve("classifier").key] == 1


def test_story_shares_the_chat_model(fresh_registry):
    assert fresh_registry.get_model("story") is fresh_registry.get_model("chat")
    rows = fresh_registry.loaded_models()
    assert len(rows) == 1 and set(rows[0]["roles"]) >= {"chat", "story"}
    device, dtype = device_and_dtype_names()  # follows MODELDECK_TEST_DEVICE
    assert rows[0]["device"] == device and rows[0]["dtype"].startswith(dtype) and rows[0]["memory_mib"] > 0


def test_missing_model_is_a_clear_error_and_is_retried(fresh_registry, monkeypatch, tmp_path):
    good = fresh_registry.resolve("captioner").source
    monkeypatch.setenv("MODELDECK_CAPTION_MODEL", "nobody/no-such-model")
    with pytest.raises(ModelUnavailableError) as err:
        fresh_registry.get_model("captioner")
    assert "nobody/no-such-model" in str(err.value) and "MODELDECK_CAPTION_MODEL" in str(err.value)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    monkeypatch.setenv("MODELDECK_CAPTION_MODEL", str(corrupt))
    with pytest.raises(ModelUnavailableError):
        fresh_registry.get_model("captioner")
    monkeypatch.setenv("MODELDECK_CAPTION_MODEL", good)
    assert fresh_registry.get_model("captioner").model is not None  # the failure was not cached


def test_a_model_of_the_wrong_kind_is_refused_not_run_with_random_layers(fresh_registry, monkeypatch):
    """A chat model set as a classifier loads with a random ``score`` layer, and a BERT classifier set as a text
    generator with a random LM head: both are refused, naming the missing weights and the variable. A captioner
    set as a text generator cannot load at all: the message names its architecture, not the network."""
    chat, classifier = fresh_registry.resolve("chat").source, fresh_registry.resolve("classifier").source
    caption = fresh_registry.resolve("captioner").source
    cases = [("MODELDECK_CLASSIFIER_MODELS", "classifier", chat, "score.weight"),
             ("MODELDECK_TEXTGEN_MODELS", "textgen", classifier, "cls.predictions"),
             ("MODELDECK_TEXTGEN_MODELS", "textgen", caption, "architecture is Blip")]
    for variable, role, source, words in cases:
        monkeypatch.setenv(variable, source)
        with pytest.raises(WrongModelError) as err:
            fresh_registry.get_model(role)
        message = str(err.value)
        assert words in message and variable in message and "network" not in message, message
        assert not fresh_registry.is_loaded(role)
    monkeypatch.setenv("MODELDECK_CLASSIFIER_MODELS", classifier)
    assert fresh_registry.get_model("classifier").model is not None  # a real classifier still loads


def test_device_and_dtype_follow_the_environment(monkeypatch):
    from pipelines.devices import _resolve, device_and_dtype_names

    _resolve.cache_clear()
    monkeypatch.setenv("MODELDECK_DEVICE", "cpu")
    monkeypatch.setenv("MODELDECK_DTYPE", "bf16")
    assert device_and_dtype_names() == ("cpu", "bfloat16")
    monkeypatch.setenv("MODELDECK_DTYPE", "int3")
    with pytest.raises(ConfigError, match="MODELDECK_DTYPE"):
        device_and_dtype_names()
    monkeypatch.delenv("MODELDECK_DTYPE")
    assert device_and_dtype_names() == ("cpu", "float32")
    _resolve.cache_clear()


def test_first_loads_of_different_models_in_parallel_threads(fresh_registry):
    """Regression: parallel first loads once failed (half-imported transformers, meta tensors)."""
    code = ("import threading, pipelines\n"
            "from pipelines import registry\n"
            "errors = []\n"
            "def load(role):\n"
            "    try: registry.get_model(role)\n"
            "    except Exception as exc: errors.append(repr(exc))\n"
            "threads = [threading.Thread(target=load, args=(r,)) for r in ('captioner', 'story', 'classifier', 'translator')]\n"
            "[t.start() for t in threads]; [t.join() for t in threads]\n"
            "print(errors)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True,
                         text=True, timeout=300).stdout.strip().splitlines()
    assert out[-1] == "[]"


def test_cpu_language_models_and_classifiers_are_int8_by_default(fresh_registry, monkeypatch):
    import torch

    monkeypatch.delenv("MODELDECK_QUANTIZE", raising=False)
    device, dtype = device_and_dtype_names()
    if device != "cpu":  # on a GPU the same models stay in their float dtype
        assert fresh_registry.get_model("chat").dtype == dtype
        pytest.skip("int8 is the CPU default only; checked that this device kept float weights")
    chat = fresh_registry.get_model("chat")
    assert chat.dtype == "float32 + int8"
    assert not any(type(m) is torch.nn.Linear for m in chat.model.modules())
    assert fresh_registry.get_model("classifier").dtype == "float32 + int8"
    assert fresh_registry.get_model("captioner").dtype == "float32"  # vision and translation stay float
    int8_bytes = chat.memory_bytes
    fresh_registry.clear()
    monkeypatch.setenv("MODELDECK_QUANTIZE", "none")
    plain = fresh_registry.get_model("chat")
    assert plain.dtype == "float32" and any(type(m) is torch.nn.Linear for m in plain.model.modules())
    assert int8_bytes < plain.memory_bytes
    monkeypatch.setenv("MODELDECK_QUANTIZE", "int4")
    from pipelines.devices import quantization

    with pytest.raises(ConfigError, match="MODELDECK_QUANTIZE"):
        quantization("cpu")
    monkeypatch.setenv("MODELDECK_QUANTIZE", "int8")
    assert quantization("cuda") == "none"
    assert quantization("cpu", "bfloat16") == "none"


def test_half_precision_on_the_cpu_runs_unquantised(monkeypatch, fresh_registry):
    import pipelines as p

    monkeypatch.setenv("MODELDECK_DTYPE", "bfloat16")  # int8 here used to break every chat with a RuntimeError
    assert isinstance(p.chat("你好", max_new_tokens=4).collect(), str)
    assert fresh_registry.get_model("chat").dtype == "bfloat16"
    assert p.classify_text("很好")


def test_a_request_during_preloading_waits_for_one_load_at_most(fresh_registry, monkeypatch):
    import threading

    from gates import DEADLINE, wait_until

    order, loading, go_on = [], threading.Event(), threading.Event()
    real = fresh_registry._load

    def held_load(spec):  # the first preload holds the loading lock until the visitor waits for it
        order.append(spec.role)
        if len(order) == 1:
            loading.set()
            assert go_on.wait(DEADLINE), "the test never let the first load finish"
        return real(spec)

    monkeypatch.setattr(fresh_registry, "_load", held_load)
    preloading = threading.Thread(target=fresh_registry.preload, args=(["classifier", "captioner", "textgen"],))
    preloading.start()
    assert loading.wait(DEADLINE)
    visitor = threading.Thread(target=fresh_registry.get_model, args=("translator",))  # while the classifier loads
    visitor.start()
    wait_until(lambda: fresh_registry._requests_waiting == 1, "the visitor to wait for the load in progress")
    go_on.set()
    visitor.join(DEADLINE)
    preloading.join(DEADLINE)
    assert order[:2] == ["classifier", "translator"]
    assert set(order[2:]) == {"classifier", "captioner", "textgen"}


def test_preloading_waits_while_the_engine_generates(fresh_registry, monkeypatch):
    import threading
    import time

    from pipelines.engine import engine

    loads = []
    real = fresh_registry._load
    monkeypatch.setattr(fresh_registry, "_load", lambda spec: loads.append(time.monotonic()) or real(spec))

    class Busy:  # a generation that takes 0.5 s
        finished = False
        until = time.monotonic() + 0.5

        def ready_in(self, now):
            return 0

        def step(self):
            time.sleep(0.05)
            self.finished = time.monotonic() >= self.until

        def fail(self, error):
            raise AssertionError(error)

    busy = Busy()
    engine.add(busy)
    preloading = threading.Thread(target=fresh_registry.preload, args=(["classifier"],))
    preloading.start()
    preloading.join()
    assert loads and min(loads) >= busy.until
