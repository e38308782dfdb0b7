"""A long prompt arrives while a chat is streaming: how long that chat stalls, and how soon the newcomer's
first token comes, with the prompt read in one forward pass against ``MODELDECK_PREFILL_CHUNK`` tokens a pass
(the running chat taking a decode step between chunks). Then the long prompt's prefill alone, each way."""

from __future__ import annotations

import os
import statistics
import threading
import time

from _common import machine, parser, qwen_full_vocab, table, tiny_env


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--tokens", type=int, default=2000, help="the long prompt's length (default 2000)")
    args = cli.parse_args()
    if args.tiny:
        os.environ.update(tiny_env())
    else:
        os.environ["MODELDECK_CHAT_MODEL"] = str(qwen_full_vocab())  # every token shows text
    from pipelines import registry
    from pipelines.batching import batcher_for
    from pipelines.decoding import DecodeBatch, Request, prefill_chunk
    from pipelines.engine import engine
    from pipelines.sampling import SamplingParams

    loaded = registry.get_model("chat")
    length = min(args.tokens, 200) if args.tiny else args.tokens
    # One pass, 256 tokens a pass, and this device's own choice (the setting, else 2048 on a GPU) if different.
    settings_tried = [0, 32] if args.tiny else sorted({0, 256, prefill_chunk(loaded.device)})
    base = loaded.processor("Hello, how are you? 你好，我是一个模型。", add_special_tokens=False)["input_ids"]
    running_prompt, long_prompt = (base * 200)[:100], (base * length)[3:length + 3]
    batcher = batcher_for(loaded)
    batcher.batch.prefixes = None  # every round reads the long prompt again: measure reading, not reuse

    def round_(setting: int) -> dict[str, float]:
        """One chat streaming; after its 10th token the long prompt arrives; both run to their end."""
        os.environ["MODELDECK_PREFILL_CHUNK"] = str(setting)
        arrivals: list[float] = []
        running = batcher.submit(running_prompt, SamplingParams(max_new_tokens=1000, temperature=0.7,
                                                                top_p=0.9, seed=1), [])
        consumer = threading.Thread(target=lambda: [arrivals.append(time.perf_counter()) for _ in running])
        consumer.start()
        while len(arrivals) < 10 and consumer.is_alive():
            time.sleep(0.005)
        sent = time.perf_counter()
        newcomer = batcher.submit(long_prompt, SamplingParams(max_new_tokens=4, temperature=0), [])
        texts = iter(newcomer)  # held: a dropped iterator stops its request
        next(texts, None)
        came = time.perf_counter()
        for _ in texts:
            pass
        running.cancel()
        consumer.join()
        during = [t for t in arrivals if sent <= t <= came]
        gaps = [b - a for a, b in zip([sent] + during, during + [came])]  # the first from the arrival
        return {"first": came - sent, "stall": max(gaps), "tokens": len(during), "rate": len(during) / (came - sent)}

    def alone(setting: int) -> float:
        os.environ["MODELDECK_PREFILL_CHUNK"] = str(setting)
        batch = DecodeBatch(loaded)
        began = time.perf_counter()
        batch.admit([Request(rows=[long_prompt], params=SamplingParams(max_new_tokens=1, temperature=0))])
        return time.perf_counter() - began

    round_(settings_tried[-1])  # warm-up
    rounds: dict[int, list[dict[str, float]]] = {s: [] for s in settings_tried}
    prefills: dict[int, list[float]] = {s: [] for s in settings_tried}
    for _ in range(args.repeats):  # interleaved, so that a machine slowing down hits both alike
        for setting in settings_tried:
            rounds[setting].append(round_(setting))
        for setting in settings_tried:
            prefills[setting].append(engine.call(alone, setting))
    os.environ.pop("MODELDECK_PREFILL_CHUNK")

    def med(setting: int, key: str) -> float:
        return statistics.median(r[key] for r in rounds[setting])

    rows = [[("whole prompt, one pass" if s == 0 else f"{s} tokens a pass"), med(s, "stall"), med(s, "tokens"),
             med(s, "rate"), med(s, "first"), statistics.median(prefills[s])] for s in settings_tried]
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights'}, dtype {loaded.dtype}; a chat "
          f"streaming (100-token prompt, top-p 0.9) gets a {len(long_prompt)}-token prompt for company after its "
          f"10th token; medians of {args.repeats} interleaved rounds")
    print(machine())
    print(table(["MODELDECK_PREFILL_CHUNK", "running chat's longest wait for a token (s)",
                 "its tokens meanwhile", "its tokens/s meanwhile", "newcomer's first token (s)",
                 "the long prompt's prefill alone (s)"], rows))
    print("each round's longest wait (s): " + "; ".join(
        f"{s}: " + ", ".join(f"{r['stall']:.2f}" for r in rounds[s]) for s in settings_tried))


if __name__ == "__main__":
    main()
