"""A crowd: N simultaneous gradio_client visitors (mixed tasks) against `python app.py`: how many are served
and refused, and how long they wait, per task — with ModelDeck's per-task lines against one global bound of
16 waiting requests (gradio's `max_size`, the design before)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from _common import ROOT, machine, parser, real_size_env, table, tiny_env
from cold_start import start

CAT = str(ROOT / "example_images" / "cat.jpg")
# One visitor in eight of each of these, in this order: half of the crowd classifies, a quarter chats.
MIX = ["chat", "classify", "textgen", "classify", "caption", "classify", "chat", "speak"]
BEFORE = {f"MODELDECK_QUEUE_{k}": "100000" for k in ("CHAT", "TEXTGEN", "CLASSIFY", "CAPTION", "SPEECH")}
POLICIES = {"per-task lines (ModelDeck)": {}, "one bound of 16 in all (before)": {**BEFORE,
                                                                                   "MODELDECK_QUEUE_SIZE": "16"}}


def request(task: str, i: int, tokens: int) -> tuple[tuple, str]:
    """The arguments and endpoint of visitor ``i``'s request."""
    from gradio_client import handle_file

    return {"chat": ((f"你好，我是第 {i} 位访客。", [], "", 0.7, 0.9, tokens), "/chat"),
            "classify": ((f"第 {i} 条评论：这家店的服务太好了！", None), "/classify"),
            "textgen": ((f"第 {i} 个故事：从前", None, tokens, 0.8, 50, 0.95, 1.1, 1, i), "/generate"),
            "caption": ((handle_file(CAT),), "/caption"),
            "speak": ((f"你好，第 {i} 位访客。", "zh"), "/speak")}[task]


def visit(client, task: str, i: int, tokens: int, go: threading.Barrier, out: dict) -> None:
    """One visitor: submit at the barrier; record the seconds to the first output and to the answer."""
    from gradio_client.exceptions import AppError

    args, api_name = request(task, i, tokens)
    go.wait()
    began = time.perf_counter()
    first = None
    try:
        for _ in client.submit(*args, api_name=api_name):
            first = first or time.perf_counter() - began
        out.update(task=task, outcome="served", first=first or time.perf_counter() - began,
                   done=time.perf_counter() - began)
    except AppError as exc:
        out.update(task=task, outcome="refused" if "排队" in str(exc) or "very busy" in str(exc) else "failed",
                   reason=str(exc))
    except Exception as exc:  # gradio's own bound: QueueError("Queue is full! ...")
        out.update(task=task, outcome="refused" if "Queue is full" in str(exc) else "failed", reason=repr(exc))


def crowd(url: str, n: int, tokens: int) -> list[dict]:
    """Send ``n`` visitors at once (clients connected beforehand); return one record per visitor."""
    from gradio_client import Client

    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # connecting is not part of the measurement
        clients = list(pool.map(lambda _: Client(url, verbose=False, httpx_kwargs={"timeout": 300}), range(n)))
    go = threading.Barrier(n)
    records = [{} for _ in range(n)]
    threads = [threading.Thread(target=visit, args=(clients[i], MIX[i % len(MIX)], i, tokens, go, records[i]))
               for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for client in clients:
        client.close()
    return records


def warm_up(url: str, tokens: int) -> None:
    """One request of each task, one after another: every model loaded and timed before the crowd."""
    from gradio_client import Client

    client = Client(url, verbose=False, httpx_kwargs={"timeout": 300})
    for i, task in enumerate(dict.fromkeys(MIX)):
        args, api_name = request(task, i, tokens)
        client.predict(*args, api_name=api_name)
    client.close()


@contextlib.contextmanager
def served_chat(folder: str, tiny: bool) -> Iterator[str]:
    """Serve the chat model with ``transformers serve`` on a free port; yield its model entry."""
    from servers import free_port, running

    port = free_port()
    command = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
               "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    log = Path(tempfile.mkdtemp(prefix="modeldeck-serve-")) / "serve.log"
    with running(command, port, log, env={"HF_HUB_OFFLINE": "1"}) as url:
        yield f"Served chat=openai:{url}/v1#{folder}" + ("#context=512" if tiny else "")


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def rows_for(policy: str, n: int, runs: list[list[dict]]) -> list[list[object]]:
    """Per task (and all together): served / refused / failed per run, median and p95 seconds."""
    rows = []
    for task in [*dict.fromkeys(MIX), "all"]:
        mine = [[r for r in run if task in ("all", r["task"])] for run in runs]
        served = [r for run in mine for r in run if r["outcome"] == "served"]
        count = lambda outcome: statistics.mean(sum(r["outcome"] == outcome for r in run) for run in mine)
        first, done = [r["first"] for r in served], [r["done"] for r in served]
        rows.append([policy, n, task, len(mine[0]), count("served"), count("refused"), count("failed"),
                     statistics.median(first) if first else "-", p95(first) if first else "-",
                     statistics.median(done) if done else "-", p95(done) if done else "-"])
    return rows


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--clients", default=None, help="crowd sizes, comma-separated (default 10,30,60,120; tiny: 10)")
    p.add_argument("--tokens", type=int, default=None, help="new tokens per chat / text generation (default 64)")
    p.add_argument("--remote-chat", default=None, metavar="ENTRY",
                   help="serve chat from a remote OpenAI-compatible backend: a model entry such as "
                        "'openai:http://127.0.0.1:8000/v1#name', or 'serve' to start `transformers serve` "
                        "with the bench's chat model")
    p.set_defaults(repeats=1)
    args = p.parse_args()
    sizes = [int(x) for x in (args.clients or ("10" if args.tiny else "10,30,60,120")).split(",")]
    tokens = args.tokens or (16 if args.tiny else 64)
    env = {**os.environ, **(tiny_env() if args.tiny else real_size_env()), "MODELDECK_TTS": "espeak",
           "MODELDECK_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.remote_chat == "serve":
            folder = env["MODELDECK_CHAT_MODEL"].split("=", 1)[-1]  # "Display name=folder" or a folder
            args.remote_chat = stack.enter_context(served_chat(folder, args.tiny))
        if args.remote_chat:
            env["MODELDECK_CHAT_MODEL"] = args.remote_chat
        rows = measure(args, env, sizes, tokens)
    report(args, sizes, tokens, rows, started)


def measure(args: Any, env: dict[str, str], sizes: list[int], tokens: int) -> list[list[object]]:
    """Every policy × crowd size: the rows of the table."""
    rows = []
    for policy, settings in POLICIES.items():
        proc, url, _ = start([sys.executable, "app.py"], {**env, **settings})
        try:
            warm_up(url, tokens)
            for n in sizes:
                runs = [crowd(url, n, tokens) for _ in range(args.repeats)]
                rows += rows_for(policy, n, runs)
                print(f"done: {policy}, {n} visitors: {rows[-1]}", file=sys.stderr, flush=True)
                for record in (r for run in runs for r in run if r["outcome"] == "failed"):
                    print(f"failed {record['task']}: {record['reason'][:200]}", file=sys.stderr)
        finally:
            proc.kill()
            proc.wait()
    return rows


def report(args: Any, sizes: list[int], tokens: int, rows: list[list[object]], started: float) -> None:
    """Print the tables."""
    chat = f"remote chat backend {args.remote_chat}" if args.remote_chat else "local chat model"
    print(f"models: {'tiny' if args.tiny else 'default-model sizes, random weights'}, {chat}; {tokens} new tokens per "
          f"chat/generation; mix per 8 visitors: {', '.join(MIX)}; {args.repeats} run(s) per size "
          f"({time.perf_counter() - started:.0f} s); seconds from submitting")
    print(machine())
    print(table(["policy", "visitors", "task", "sent", "served", "refused", "failed", "first output median (s)",
                 "first output p95 (s)", "answer median (s)", "answer p95 (s)"], rows))
    lines, before = (list(POLICIES)[0], list(POLICIES)[1])
    served = {(r[0], r[1]): r[4] for r in rows if r[2] == "all"}
    print()
    print(table(["visitors", f"served: {lines}", f"served: {before}", "× served"],
                [[n, served[lines, n], served[before, n], served[lines, n] / max(served[before, n], 1)]
                 for n in sizes]))


if __name__ == "__main__":
    main()
