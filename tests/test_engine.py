"""Every model call runs on the one engine thread; models load on threads that end."""

from __future__ import annotations

import threading

import pytest

import pipelines as p
from pipelines import registry
from pipelines.engine import Engine, engine, in_own_thread


def test_model_work_of_every_tab_runs_on_the_engine_thread(fresh_registry, tmp_path):
    from PIL import Image

    threads: list[str] = []
    roles = ["chat", "textgen", "classifier", "captioner", "translator"]
    hooks = [registry.get_model(role).model.register_forward_pre_hook(
        lambda *_: threads.append(threading.current_thread().name)) for role in roles]
    try:
        p.chat("你好", max_new_tokens=3).collect()
        p.generate_text("天气", max_new_tokens=3).collect()
        p.classify_texts(["很好", "太差了"])
        Image.new("RGB", (64, 48), "red").save(tmp_path / "red.png")
        p.caption_image(str(tmp_path / "red.png"))
    finally:
        for hook in hooks:
            hook.remove()
    assert threads and set(threads) == {"modeldeck-engine"}


def test_models_load_on_threads_that_have_ended(fresh_registry, monkeypatch):
    seen = []
    real = registry._load
    monkeypatch.setattr(registry, "_load", lambda spec: seen.append(threading.current_thread()) or real(spec))
    registry.get_model("classifier")
    assert [t.name for t in seen] == ["modeldeck-load"] and not seen[0].is_alive()


def test_a_failing_call_raises_in_the_caller_and_the_engine_goes_on():
    local = Engine("modeldeck-test-engine")

    def boom():
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        local.call(boom)
    assert local.call(lambda: threading.current_thread().name) == "modeldeck-test-engine"
    assert local.call(lambda: local.call(lambda: 7)) == 7, "a call made on the engine thread runs inline"


def test_in_own_thread_returns_and_raises():
    assert in_own_thread(lambda: threading.current_thread().name) == "modeldeck-load"
    with pytest.raises(KeyError):
        in_own_thread(lambda: {}["missing"])


def test_the_shared_engine_is_one_thread():
    names = {engine.call(lambda: threading.current_thread().ident) for _ in range(3)}
    assert len(names) == 1


def test_stopping_lets_the_step_in_progress_finish_and_ends_the_thread():
    import time

    local = Engine("modeldeck-test-stop")

    class Slow:
        finished = False
        steps = 0
        completed = 0

        def ready_in(self, now):
            return 0

        def step(self):
            self.steps += 1
            time.sleep(0.2)
            self.completed += 1

        def fail(self, error):
            raise AssertionError(error)

    slow = Slow()
    local.add(slow)
    while not slow.steps:
        time.sleep(0.01)
    local.stop()
    assert not local.thread.is_alive()
    assert slow.completed == slow.steps, "a step was cut off"
    with pytest.raises(RuntimeError, match="shutting down"):
        local.call(lambda: None)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_gets_an_engine_of_its_own():
    import os
    import signal

    assert engine.call(lambda: 1) == 1  # the parent's engine thread exists
    with engine._wake:  # fork while the engine's lock is held: the child must not inherit it held
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)  # a child stuck on an inherited lock dies instead of hanging the test
            code = 0 if engine.call(lambda: threading.current_thread().name) == "modeldeck-engine" else 1
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
