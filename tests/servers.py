"""Real serving engines for tests: started on a free loopback port in their own process group,
polled for health, stopped with the whole group.

vLLM's CPU build lives in its own venv (``scripts/setup_vllm.sh`` makes ``.venv-vllm``; it pins an older
transformers than the app). Without that venv the vLLM tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_venv() -> Path:
    """The venv that holds vLLM (``MODELDECK_VLLM_VENV``, else ``.venv-vllm`` in the repository)."""
    return Path(os.environ.get("MODELDECK_VLLM_VENV", ROOT / ".venv-vllm")).resolve()


def wait_for_vllm_setup(timeout: float = 1800.0) -> None:
    """When ``MODELDECK_VLLM_SETUP`` names a file (``.ci/run`` makes the venv while the tests run), wait until
    ``scripts/setup_vllm.sh`` has written its exit status there; raise with its log's tail if it failed."""
    status = os.environ.get("MODELDECK_VLLM_SETUP")
    if not status:
        return
    path, deadline = Path(status), time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"scripts/setup_vllm.sh did not finish within {timeout:.0f} s")
        time.sleep(1)
    code = path.read_text().strip()
    if code != "0":
        log = path.with_name("log")
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"scripts/setup_vllm.sh exited with {code}:\n{tail}")


def vllm_missing() -> str | None:
    """Why vLLM cannot run here, or None when its venv is ready (waiting first for a setup under way)."""
    wait_for_vllm_setup()
    venv = vllm_venv()
    if not (venv / "bin" / "python").exists() or not (venv / "lib" / "libiomp5.so").exists():
        return f"vLLM is not installed in {venv}: run scripts/setup_vllm.sh (CI does) or deselect with -m 'not vllm'"
    return None


class Server:
    """One server process (and its children) in its own process group, logging to a file."""

    def __init__(self, name: str, command: list[str], *, port: int, log_path: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output (for failure messages)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    @contextlib.contextmanager
    def children_paused(self) -> Iterator[None]:
        """Suspend every process the server started (vLLM's engine core) while the block runs: the server
        itself still answers and takes requests, but nothing is generated until the block ends."""
        import psutil

        children = psutil.Process(self.process.pid).children(recursive=True)
        assert children, f"{self.name} runs no child process to pause"
        for child in children:
            child.suspend()
        try:
            yield
        finally:
            for child in children:
                child.resume()

    def wait_healthy(self, timeout: float = 900.0, path: str = "/health") -> "Server":
        """Return once ``path`` answers 200; raise with the log's tail if the process dies or never answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + path, timeout=5) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the whole process group; kill it if it has not gone after 30 s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
            except ProcessLookupError:
                pass
        try:  # children that outlived their parent (vLLM's engine core) are in the same group
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()


@contextlib.contextmanager
def running(command: list[str], port: int, log: Path, *, env: dict[str, str] | None = None,
            health: str = "/health", ready_within: float = 180) -> Iterator[str]:
    """Start ``command`` (which listens on ``port``); yield its base URL once ``health`` answers 200; stop it after."""
    server = Server(command[0], command, port=port, log_path=log, env=env)
    try:
        server.wait_healthy(ready_within, health)
        yield server.base
    finally:
        server.stop()


def vllm_dtype() -> str:
    """bfloat16, or float32 on a CPU with AMX: there vLLM 0.32 picks its AMX attention kernel for bfloat16, which
    died with an illegal instruction in its worker on a 2-vCPU Intel Xeon (the kernel does not ask Linux for
    the AMX tile state, oneDNN does; seen on 2026-12-02). In float32 it takes its AVX-512 kernel."""
    from pipelines.devices import cpu_flags

    return "float32" if "amx_tile" in cpu_flags() else "bfloat16"


def start_vllm(model_dir: Path, served_name: str, log_dir: Path, *, pooling: bool = False) -> Server:
    """Start vLLM's OpenAI server on ``model_dir`` (CPU, ``vllm_dtype()``, 512 positions, 1 GiB KV cache); not yet
    ready."""
    venv = vllm_venv()
    command = [str(venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", served_name, "--host", "127.0.0.1", "--port", "{port}",
               "--max-model-len", "512", "--dtype", vllm_dtype(), "--enforce-eager",
               "--enable-log-requests"]  # "Aborted request" lines: a test waits for one
    if pooling:
        command += ["--runner", "pooling"]
    port = free_port()
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
           "LD_PRELOAD": str(venv / "lib" / "libiomp5.so"), "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
           "PYTHONUNBUFFERED": "1"}
    return Server(f"vLLM ({served_name})", [c.replace("{port}", str(port)) for c in command], port=port,
                  log_path=log_dir / f"vllm-{served_name}.log", env=env)


class VllmServers:
    """The session's vLLM servers, one per model kind, all started at once on first use (startup is the slow part)."""

    KINDS = {"chat": ("qwen2", "tiny-qwen2-vllm", False), "textgen": ("gpt2_zh", "tiny-gpt2-vllm", False),
             "classifier": ("cls", "tiny-bert-cls-vllm", True)}

    def __init__(self, root: Path) -> None:
        from tiny_models import build_for_vllm

        self.models = build_for_vllm(root / "models")
        self.servers = {kind: start_vllm(self.models[folder], name, root / "logs", pooling=pooling)
                        for kind, (folder, name, pooling) in self.KINDS.items()}

    def ready(self, kind: str) -> Server:
        """The server of ``kind``, once healthy."""
        return self.servers[kind].wait_healthy()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
