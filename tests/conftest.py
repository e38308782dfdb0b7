"""Offline test harness: tiny models built once per run, the registry pointed at them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before anything imports huggingface_hub (it reads these once): never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402

from tiny_models import build_all  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Build every tiny model once and point the MODELDECK_* variables at them."""
    root = tmp_path_factory.mktemp("models")
    env = build_all(root)
    env["MODELDECK_AUDIO_DIR"] = str(tmp_path_factory.mktemp("audio"))
    env["MODELDECK_TTS"] = "espeak"  # gTTS needs the network; tests that exercise it fake it
    env["MODELDECK_SEED"] = "0"  # random tiny models: the same outputs every run
    env["MODELDECK_DEVICE"] = os.environ.get("MODELDECK_TEST_DEVICE", "cpu")
    os.environ.update(env)
    return env


@pytest.fixture
def fresh_registry():
    """Forget loaded models before and after a test that changes the configuration."""
    from pipelines import registry
    from pipelines.devices import _resolve

    registry.clear()
    _resolve.cache_clear()
    yield registry
    registry.clear()
    _resolve.cache_clear()


@pytest.fixture(scope="session")
def app_module(tiny_models):
    """The app module, imported only once the registry points at the tiny models."""
    import app

    return app


@pytest.fixture(scope="session")
def url(app_module):
    """A running ModelDeck on a free loopback port, with the production queue and launch settings."""
    app_module.configure_queue(app_module.demo)
    settings = {**app_module.launch_settings(), "server_name": "127.0.0.1", "server_port": None}
    _, local_url, _ = app_module.demo.launch(prevent_thread_lock=True, quiet=True, **settings)
    yield local_url
    app_module.demo.close()


@pytest.fixture(scope="session")
def vllm_servers(tmp_path_factory: pytest.TempPathFactory):
    """vLLM on CPU serving tiny chat, GPT-2 and classifier models, all started on first use, stopped at the end.

    Skips (with the reason) when vLLM's venv is missing: ``scripts/setup_vllm.sh`` makes it; ``.ci/run`` does.
    """
    from servers import VllmServers, vllm_missing

    reason = vllm_missing()
    if reason:
        pytest.skip(reason)
    servers = VllmServers(tmp_path_factory.mktemp("vllm"))
    _vllm.append(servers)
    yield servers
    servers.stop()


_vllm: list = []  # the session's vLLM servers, once started


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the vLLM servers after the last vLLM test (they run one after another): idle, they hold ~8 GB and
    a few percent of a CPU for the rest of the run."""
    if _vllm and _group(item) == "vllm" and (nextitem is None or _group(nextitem) != "vllm"):
        _vllm.pop().stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "browser: drives headless Chromium")
    config.addinivalue_line("markers", "vllm: runs against vLLM servers from .venv-vllm (scripts/setup_vllm.sh); "
                                       "skipped when that venv is missing")


# Under pytest-xdist (pytest.ini: -n 2 --dist loadgroup), each module runs whole on one worker (its module-scoped
# fixtures, a browser or the benchmark runs, start once), the two vLLM modules together (their servers are one
# session fixture). The benchmark runs and the vLLM modules go first: they are the longest, and the vLLM ones
# mostly wait (for .ci/run's venv, then for the servers' start) while the other worker runs the benchmarks.
FIRST_GROUPS = ("test_bench", "vllm")


def _group(item: pytest.Item) -> str:
    name = item.path.stem
    return "vllm" if name.startswith("test_vllm") else name


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    rank = {group: i for i, group in enumerate(FIRST_GROUPS)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable: each module keeps its order
