"""Start-up: `python app.py` until the page answers, ModelDeck's lazy design versus the reference
design (every model loaded before the app starts); then the first request of each tab, lazy versus
MODELDECK_PRELOAD=all (models loading in a background thread after the page is up), with the requests
sent the moment the page answers and once preloading has finished."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from _common import machine, ROOT, parser, real_size_env, table, tiny_env

EAGER = ("import pipelines, runpy; problems = pipelines.preload('all'); assert not problems, problems; "
         "runpy.run_path('app.py', run_name='__main__')")
CAT = str(ROOT / "example_images" / "cat.jpg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], env: dict[str, str], log: Path | None = None) -> tuple[subprocess.Popen, str, float]:
    """Start the app (its log to ``log``); return the process, its URL and the seconds until its page answered."""
    port = free_port()
    env = {**env, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    began = time.perf_counter()
    sink = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sink)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - began < 600:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - began
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{command} exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(command)


def wait_for_preload(log: Path) -> None:
    """Wait until the app logs that its background preloading has finished."""
    deadline = time.perf_counter() + 900
    while "preload finished" not in log.read_text(errors="replace"):
        if time.perf_counter() > deadline:
            raise TimeoutError("preloading did not finish")
        time.sleep(0.2)


def first_requests(url: str) -> dict[str, float]:
    """Seconds for the first call of each tab's endpoint."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    calls = {"chat": (("你好", [], "", 0.7, 0.9, 16), "/chat"),
             "text generation": (("今天", None, 16, 0.8, 50, 0.9, 1.1, 1, 1), "/generate"),
             "classification": (("很好", None), "/classify"),
             "caption": ((handle_file(CAT),), "/caption")}
    out = {}
    for name, (args, api_name) in calls.items():
        began = time.perf_counter()
        client.predict(*args, api_name=api_name)
        out[name] = time.perf_counter() - began
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    env = {**os.environ, **(tiny_env() if args.tiny else real_size_env()), "MODELDECK_TTS": "espeak"}
    page = {"lazy": [], "eager": []}
    first = {"lazy": [], "preload": [], "preloaded": []}
    log = Path(tempfile.mkdtemp(prefix="modeldeck-cold-")) / "app.log"
    for _ in range(args.repeats):  # alternate designs so machine noise hits both alike
        for design, command in (("eager", [sys.executable, "-c", EAGER]), ("lazy", [sys.executable, "app.py"])):
            proc, url, seconds = start(command, env)
            page[design].append(seconds)
            if design == "lazy":
                first["lazy"].append(first_requests(url))
            proc.kill()
            proc.wait()
        for when in ("preload", "preloaded"):  # requests at once, and once preloading has finished
            proc, url, _ = start([sys.executable, "app.py"], {**env, "MODELDECK_PRELOAD": "all"}, log)
            if when == "preloaded":
                wait_for_preload(log)
            first[when].append(first_requests(url))
            proc.kill()
            proc.wait()
    lazy, eager = statistics.median(page["lazy"]), statistics.median(page["eager"])
    print(f"models: {'tiny' if args.tiny else 'default-model sizes, random weights'}; median of {args.repeats}")
    print(machine())
    print(table(["design", "page answers after (s)", "× sooner than eager"],
                [["eager: every model loaded first (reference app)", eager, 1.0],
                 ["ModelDeck: lazy", lazy, eager / lazy]]))
    rows = []
    for tab in first["lazy"][0]:
        lz = statistics.median(r[tab] for r in first["lazy"])
        pre = statistics.median(r[tab] for r in first["preload"])
        done = statistics.median(r[tab] for r in first["preloaded"])
        rows.append([tab, lz, pre, done, lz / done])
    print()
    print(table(["first request of", "lazy (s)", "preload=all, sent at once (s)", "preload=all, after it finished (s)",
                 "× faster once preloaded"], rows))


if __name__ == "__main__":
    main()
