"""Four OpenAI-API clients and one UI chat at once: total tokens/s through the launched app (HTTP, the /v1 routes,
gradio's queue, one shared continuous batcher) versus the same five requests served one after another; printed
beside bench/concurrent_chats.py's ratio (the batcher alone, measured in the same run)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import machine, parser, qwen_full_vocab, table, tiny_env


def concurrent_chats_ratio(tiny: bool, repeats: int) -> str:
    """bench/concurrent_chats.py's "× sequential" for four chats at once, run as it is."""
    script = Path(__file__).with_name("concurrent_chats.py")
    command = [sys.executable, str(script), "--repeats", str(repeats)] + (["--tiny"] if tiny else [])
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=script.parent).stdout
    last = [line for line in out.splitlines() if line.startswith("| 4 chats at once")][-1]
    return last.strip(" |").split("|")[-1].strip()


def main() -> None:
    args = parser(__doc__).parse_args()
    words, new = (8, 16) if args.tiny else (60, 128)
    if args.tiny:
        os.environ.update(tiny_env())
    else:  # only the chat model runs here; the tokenizer that decodes every id, so the API streams text
        os.environ["MODELDECK_CHAT_MODEL"] = str(qwen_full_vocab())
    os.environ["MODELDECK_MAX_BATCH"] = "5"  # all five in one batch (the default, 4, would make the fifth wait)
    import openai
    from gradio_client import Client

    import app
    from pipelines import registry
    from pipelines.batching import Batcher, batcher_for

    loaded = registry.get_model("chat")
    batcher = batcher_for(loaded)
    batcher.batch.prefixes = None  # the repeats resend the same prompts: measure batching, not reuse
    app.configure_queue(app.demo)
    settings = {**app.launch_settings(), "server_name": "127.0.0.1", "server_port": None}
    _, url, _ = app.demo.launch(prevent_thread_lock=True, quiet=True, **settings)
    api = openai.OpenAI(base_url=url.rstrip("/") + "/v1", api_key="none", max_retries=0, timeout=3600)
    ui = Client(url, verbose=False)
    streams = []
    submit = Batcher.submit

    def counted(self, *a, **kw):
        stream = submit(self, *a, **kw)
        streams.append(stream)
        return stream

    Batcher.submit = counted  # count every request's tokens where they are made
    sentence = "Hello, how are you today? 你好，今天过得怎么样？"
    messages = [f"{i}: " + " ".join([sentence] * words) for i in range(5)]
    model = api.models.list().data[0].id

    def by_api(message: str) -> None:
        for _ in api.chat.completions.create(model=model, messages=[{"role": "user", "content": message}],
                                             max_tokens=new, temperature=0.7, top_p=0.9, seed=1, stream=True):
            pass

    def by_ui(message: str) -> None:
        ui.predict(message, [], "You are a helpful assistant.", 0.7, 0.9, new, api_name="/chat")

    work = [(by_api, m) for m in messages[:4]] + [(by_ui, messages[4])]

    def one_by_one() -> None:
        for fn, message in work:
            fn(message)

    def at_once() -> None:
        threads = [threading.Thread(target=fn, args=(m,)) for fn, m in work]
        [t.start() for t in threads]
        [t.join() for t in threads]

    def measure(fn) -> tuple[int, float]:
        streams.clear()
        started = time.perf_counter()
        fn()
        return sum(s.usage.completion_tokens for s in streams), time.perf_counter() - started

    measure(one_by_one), measure(at_once)  # warm-up: first-call allocations on both paths
    runs = {"one": [], "once": []}
    for _ in range(args.repeats):
        runs["one"].append(measure(one_by_one))
        runs["once"].append(measure(at_once))
    app.demo.close()
    rate = {k: [tokens / seconds for tokens, seconds in v] for k, v in runs.items()}
    ratios = [b / a for a, b in zip(rate["one"], rate["once"])]
    seq, bat = statistics.median(rate["one"]), statistics.median(rate["once"])
    reference = concurrent_chats_ratio(args.tiny, args.repeats)
    rows = [["4 API + 1 UI chat, one after another", runs["one"][0][0], seq, 1.0, "1.0"],
            ["4 API + 1 UI chat at once (one batch)", runs["once"][0][0], bat, bat / seq, reference]]
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights'}, dtype {loaded.dtype}, "
          f"~{words * 14}-word messages, {new} new tokens each, median of {args.repeats}; ratio per run: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; largest batch seen: {batcher.largest_batch}")
    print(machine())
    print(re.sub(r"\s+", " ", f"load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine "
                              "makes these figures noisy)"))
    print(table(["serving", "tokens", "tokens/s", "× one by one", "concurrent_chats.py × (batcher alone, 4)"],
                rows))


if __name__ == "__main__":
    main()
