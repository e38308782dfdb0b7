"""Every benchmark script runs end to end on the tiny models, so none of them can rot.

The scripts run as subprocesses, two at a time from the module's start (most of their time is spent starting
processes and waiting on sockets, not computing), on tiny models built once for all of them."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.name != "configs.py")
FIRST = ["cold_start.py", "crowd.py"]  # the longest runs start first, so the two workers finish together
AT_ONCE = 2


def test_there_are_benchmarks():
    assert {"concurrent_chats.py", "picture_story_latency.py", "cold_start.py"} <= set(SCRIPTS)


def run_script(script: str, folder: Path, models: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELDECK_BENCH_CACHE": str(folder / "cache"), "MODELDECK_AUDIO_DIR": str(folder),
           "MODELDECK_BENCH_TINY_DIR": str(models)}
    return subprocess.run([sys.executable, script, "--tiny", "--repeats", "1"], cwd=BENCH, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def bench_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future]:
    """Every selected script started on the module's first use; each test waits for its own."""
    sys.path.insert(0, str(BENCH))
    from _common import tiny_env

    models = tmp_path_factory.mktemp("bench-models")
    os.environ["MODELDECK_BENCH_TINY_DIR"] = str(models)
    try:
        tiny_env()  # built once here, before the scripts that read it start
    finally:
        del os.environ["MODELDECK_BENCH_TINY_DIR"]
    chosen = {item.callspec.params["script"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_benchmark_runs_on_tiny_models"}
    order = [s for s in dict.fromkeys([*FIRST, *SCRIPTS]) if s in chosen]
    with ThreadPoolExecutor(AT_ONCE) as pool:
        yield {s: pool.submit(run_script, s, tmp_path_factory.mktemp(s.removesuffix(".py")), models) for s in order}


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_on_tiny_models(script, bench_runs):
    done = bench_runs[script].result()
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert len(table) >= 3, done.stdout  # a header, a rule and at least one row
