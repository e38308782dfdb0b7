"""What ModelDeck adds to a remote chat model: first-token time and time per token streamed through
ModelDeck's web API (``gradio_client``, ``/chat``) against the same server called directly with the
``openai`` client, same prompts, greedy, same number of tokens.

Goals: ModelDeck adds at most 50 ms to the first token and at most 10 % to the time per token.

By default it starts vLLM (``.venv-vllm``, see scripts/setup_vllm.sh) on a random-weight model with
Qwen2.5-0.5B-Instruct's published size, and ``python app.py`` pointed at it. ``--server URL#NAME``
measures an OpenAI-compatible server that is already running instead (``URL`` ends in ``/v1``).
``--tiny`` serves the tiny test model with ``transformers serve`` instead: a smoke run in seconds.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, parser, qwen_full_vocab, table

from servers import Server, free_port, start_vllm, vllm_missing  # tests/servers.py

SYSTEM = "You are a helpful assistant. 你是一个乐于助人的助手。"
PROMPTS = ["你好，介绍一下你自己。", "Write a short poem about the sea.", "用三句话解释什么是机器学习。",
           "What should I cook tonight?", "给我讲一个关于猫的故事。", "List three uses of a paperclip."]


def start_server(tiny: bool, logs: Path) -> tuple[Server, str]:
    """Start a server for the benchmark; return it and its served model name."""
    if tiny:  # a smoke run: transformers serve on the tiny chat model starts in seconds (vLLM: ~35 s)
        from tiny_models import qwen2_chat

        qwen2_chat(logs / "qwen2")
        port = free_port()
        command = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
                   "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
        return (Server("transformers serve", command, port=port, log_path=logs / "serve.log",
                       env={"HF_HUB_OFFLINE": "1"}), str(logs / "qwen2"))
    reason = vllm_missing()
    if reason:
        sys.exit(reason)
    return start_vllm(qwen_full_vocab(), "qwen2.5-0.5b-random", logs), "qwen2.5-0.5b-random"


def direct(client, model: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """(first-token s, total s, completion tokens) calling the server with the openai client."""
    started = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        max_tokens=max_tokens, temperature=0, top_p=0.9, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return first or 0.0, time.perf_counter() - started, tokens


def through_modeldeck(client, prompt: str, max_tokens: int) -> tuple[float, float]:
    """(first-token s, total s) streaming the same request through ModelDeck's ``/chat`` endpoint."""
    started = time.perf_counter()
    first = None
    job = client.submit(prompt, [], SYSTEM, 0.0, 0.9, max_tokens, api_name="/chat")
    for reply in job:
        if first is None and reply:
            first = time.perf_counter() - started
    job.result()
    return first or 0.0, time.perf_counter() - started


def per_token(first: float, total: float, tokens: int) -> float:
    """Seconds per token after the first (the streaming rate a reader sees)."""
    return (total - first) / max(1, tokens - 1)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--server", help="an OpenAI-compatible server already running: http://HOST:PORT/v1#MODEL")
    p.add_argument("--max-tokens", type=int, default=128)
    args = p.parse_args()
    max_tokens = 16 if args.tiny else args.max_tokens
    prompts = PROMPTS[:2] if args.tiny else PROMPTS
    logs = Path(tempfile.mkdtemp(prefix="modeldeck-remote-bench-"))
    servers: list[Server] = []
    try:
        if args.server:
            base, _, model = args.server.partition("#")
            url = base.rstrip("/")
        else:
            server, model = start_server(args.tiny, logs)
            servers.append(server)
            server.wait_healthy()
            url = server.base + "/v1"
        port = free_port()
        env = {"MODELDECK_CHAT_MODEL": f"openai:{url}#{model}", "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_SERVER_PORT": str(port), "MODELDECK_PRELOAD": "", "HF_HUB_OFFLINE": "1",
               "MODELDECK_MAX_NEW_TOKENS": str(max(max_tokens, 1024))}
        app = Server("python app.py", [sys.executable, "app.py"], port=port, log_path=logs / "app.log", env=env,
                     cwd=ROOT)
        servers.append(app)
        app.wait_healthy(timeout=300, path="/")

        from gradio_client import Client
        from openai import OpenAI

        openai_client = OpenAI(base_url=url, api_key=os.environ.get("MODELDECK_OPENAI_API_KEY") or "none",
                               max_retries=0)
        gradio = Client(app.base + "/", verbose=False)
        direct(openai_client, model, "hi", 4)  # warm both paths up: the server's first request is slow
        through_modeldeck(gradio, "hi", 4)

        rows, first_added, token_ratios = [], [], []
        for prompt in prompts:
            runs = []
            for repeat in range(args.repeats):  # alternate the order: drift on a shared machine hits both
                order = [0, 1] if repeat % 2 == 0 else [1, 0]
                result: dict[int, tuple[float, float]] = {}
                tokens = 0
                for which in order:
                    if which == 0:
                        f, t, tokens = direct(openai_client, model, prompt, max_tokens)
                        result[0] = (f, t)
                    else:
                        result[1] = through_modeldeck(gradio, prompt, max_tokens)
                runs.append((result[0], result[1], tokens))
            d_first = statistics.median(r[0][0] for r in runs)
            m_first = statistics.median(r[1][0] for r in runs)
            d_tok = statistics.median(per_token(*r[0], r[2]) for r in runs)
            m_tok = statistics.median(per_token(*r[1], r[2]) for r in runs)
            first_added += [(r[1][0] - r[0][0]) * 1000 for r in runs]
            token_ratios += [per_token(*r[1], r[2]) / per_token(*r[0], r[2]) for r in runs]
            rows.append([prompt[:16], runs[-1][2], d_first * 1000, m_first * 1000, (m_first - d_first) * 1000,
                         1 / d_tok, 1 / m_tok, m_tok / d_tok])
        print(machine())
        print(f"server: {'given ' + url if args.server else servers[0].name}, model {model}; greedy, "
              f"{max_tokens} new tokens at most, {args.repeats} runs per prompt (medians)\n")
        print(table(["prompt", "tokens", "first token, direct (ms)", "via ModelDeck (ms)", "added (ms)",
                     "tokens/s, direct", "via ModelDeck", "time/token ratio"], rows))
        added, ratio = statistics.median(first_added), statistics.median(token_ratios)
        print(f"\nModelDeck adds {added:.0f} ms to the first token (median; spread {min(first_added):.0f}–"
              f"{max(first_added):.0f} ms; goal ≤ 50 ms) and ×{ratio:.3f} to the time per token (spread "
              f"×{min(token_ratios):.3f}–×{max(token_ratios):.3f}; goal ≤ ×1.10).")
    finally:
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    main()
