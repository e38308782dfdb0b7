"""Chat through the web app: `python app.py` in one process, `gradio_client` streaming `/chat` from this one,
against the engine's own rate (the same request through `pipelines.chat` in this process, no web server).

Both sides get the same message, settings and seed (``MODELDECK_SEED``), so they produce the same tokens;
prefix reuse is off so every repeat prefills its prompt. They alternate, and each waits while the other
runs: the server process is idle while the engine side runs, and this process's engine is idle while the
client reads the stream. Decode tokens/s is (tokens - 1) / (last update - first update) on each side."""

from __future__ import annotations

import os
import statistics
import sys
import time

from _common import ROOT, machine, parser, qwen_full_vocab, table, tiny_env
from cold_start import start


def main() -> None:
    args = parser(__doc__).parse_args()
    new = 16 if args.tiny else 128
    env = {**(tiny_env() if args.tiny else {"MODELDECK_CHAT_MODEL": str(qwen_full_vocab())}),
           "MODELDECK_SEED": "1", "MODELDECK_PREFIX_CACHE_TOKENS": "0", "MODELDECK_LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    from gradio_client import Client

    import pipelines

    # About 200 prompt tokens once the chat template is applied (the bench tokenizer: ~6 characters a token).
    message = ("Hello, how are you? 你好，我是一个模型。" * 40)[:1000 if not args.tiny else 60]
    settings = {"system_prompt": "You are a helpful assistant.", "temperature": 0.7, "top_p": 0.9,
                "max_new_tokens": new}

    def engine_side() -> tuple[float, float, int]:
        began = time.perf_counter()
        stream = pipelines.chat(message, [], **settings)
        times = [time.perf_counter() for _ in stream]
        made = stream.usage.completion_tokens
        return times[0] - began, (made - 1) / (times[-1] - times[0]), made

    server, url, _ = start([sys.executable, "app.py"], {**os.environ, **env})
    try:
        client = Client(url, verbose=False)

        def web_side(tokens: int) -> tuple[float, float, int]:
            began = time.perf_counter()
            job = client.submit(message, [], *settings.values(), api_name="/chat")
            times = [time.perf_counter() for text in job if text]  # the first update is the empty start
            return times[0] - began, (tokens - 1) / (times[-1] - times[0]), tokens

        tokens = engine_side()[2]  # warm-up (loads the model) on both sides
        web_side(tokens)
        results: dict[str, list[tuple[float, float, int]]] = {"engine": [], "web": []}
        for _ in range(args.repeats):
            results["engine"].append(engine_side())
            results["web"].append(web_side(results["engine"][-1][2]))
    finally:
        server.terminate()
        server.wait(30)
    med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in results.items()}
    spread = {k: f"{min(r[1] for r in v):.3g}–{max(r[1] for r in v):.3g}" for k, v in results.items()}
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights'}; {new} new tokens, "
          f"temperature 0.7, top-p 0.9, seed 1; median of {args.repeats} (app in {ROOT.name}/app.py)")
    print(machine())
    print(table(["path", "first token (s)", "decode tokens/s", "range (tokens/s)", "tokens", "× engine"],
                [["engine (pipelines.chat in-process)", med["engine"][0], med["engine"][1], spread["engine"],
                  med["engine"][2], 1.0],
                 ["web app (gradio_client streaming /chat)", med["web"][0], med["web"][1], spread["web"],
                  med["web"][2], med["web"][1] / med["engine"][1]]]))


if __name__ == "__main__":
    main()
