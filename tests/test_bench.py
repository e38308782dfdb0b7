"""Every benchmark script runs end to end on the tiny models, so none of them can rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.name != "configs.py")


def test_there_are_benchmarks():
    assert {"concurrent_chats.py", "picture_story_latency.py", "cold_start.py"} <= set(SCRIPTS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_on_tiny_models(script, tmp_path):
    env = {**os.environ, "MODELDECK_BENCH_CACHE": str(tmp_path / "cache"), "MODELDECK_AUDIO_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, script, "--tiny", "--repeats", "1"], cwd=BENCH, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert len(table) >= 3, done.stdout  # a header, a rule and at least one row
