"""Four simultaneous conversations: total tokens/s through ModelDeck's continuous batcher versus the same
four requests served one after another (what a one-request-at-a-time Gradio app does)."""

from __future__ import annotations

import os
import statistics
import threading
import time

from _common import int8_choices, machine, parser, qwen_real_size, seconds, table, tiny_env


def main() -> None:
    args = parser(__doc__).parse_args()
    p_len, new = (20, 16) if args.tiny else (200, 128)
    if args.tiny:
        os.environ.update(tiny_env())
    else:
        os.environ["MODELDECK_CHAT_MODEL"] = str(qwen_real_size())
    from pipelines import registry
    from pipelines.batching import batcher_for, stream_generate
    from pipelines.sampling import SamplingParams

    loaded = registry.get_model("chat")
    tokenizer = loaded.processor
    base = tokenizer("Hello, how are you? 你好，我是一个模型。", add_special_tokens=False)["input_ids"]
    prompts = [((base * p_len)[i:i + p_len]) for i in range(4)]  # four different 200-token prompts
    params = SamplingParams(max_new_tokens=new, temperature=0.7, top_p=0.9, seed=1)
    batcher = batcher_for(loaded)
    batcher.batch.prefixes = None  # the repeats send the same prompts again: measure batching, not reuse
    produced = {"sequential": 0, "batched": 0}

    def sequential() -> None:
        import torch

        for prompt in prompts:
            ids = torch.tensor([prompt])
            stream = stream_generate(loaded, ids, torch.ones_like(ids), params)
            stream.collect()
            produced["sequential"] = produced.get("sequential", 0) + stream.usage.completion_tokens

    def batched() -> None:
        streams = []

        def one(prompt: list[int]) -> None:
            stream = batcher.submit(prompt, params, [])
            stream.collect()
            streams.append(stream)

        threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
        [t.start() for t in threads]
        [t.join() for t in threads]
        produced["batched"] = produced.get("batched", 0) + sum(s.usage.completion_tokens for s in streams)

    sequential()  # warm-up (first-call allocations) for both paths
    batched()
    produced.update(sequential=0, batched=0)
    started = time.perf_counter()
    rounds = []  # (sequential, batched) seconds: interleaved, so that a machine slowing down hits both alike
    for _ in range(args.repeats):
        rounds.append((seconds(sequential), seconds(batched)))
    t_seq = statistics.median(s for s, _ in rounds)
    t_bat = statistics.median(b for _, b in rounds)
    tokens_seq = produced["sequential"] / args.repeats
    tokens_bat = produced["batched"] / args.repeats
    rows = [["4 chats one after another", round(tokens_seq), t_seq, tokens_seq / t_seq, 1.0],
            ["4 chats at once (continuous batching)", round(tokens_bat), t_bat, tokens_bat / t_bat,
             (tokens_bat / t_bat) / (tokens_seq / t_seq)]]
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights'}, dtype {loaded.dtype}, "
          f"{p_len}-token prompts, {new} new tokens each, median of {args.repeats} interleaved rounds "
          f"({time.perf_counter() - started:.0f} s); largest batch seen: {batcher.largest_batch}")
    print(machine())
    print(table(["serving", "tokens", "seconds", "tokens/s", "× sequential"], rows))
    print("each round's ratio (one after another / at once, same tokens): "
          + ", ".join(f"{s / b:.2f}" for s, b in rounds))
    print()
    print(breakdown(loaded, prompts, params, new, args.repeats))
    if choices := int8_choices():
        print()
        print(choices)


def breakdown(loaded, prompts: list[list[int]], params, new: int, repeats: int) -> str:
    """Where the ratio comes from: the prefills (no faster together) and one- and four-row decode steps.

    With ``P`` the four prefills and ``t1``, ``t4`` the step times, the ratio is about
    ``(P + 4·(n-1)·t1) / (P + (n-1)·t4)``; the last line is that bound if a step of four rows cost no more
    than one (``t4 = t1``). The steps are timed around the middle of a reply, at its average context length:
    attention over each row's keys and values grows with it (timed right after the prefill, four rows' steps
    came out ~10 % quicker than over a whole reply, and the implied ratio too high).
    """
    from pipelines.decoding import DecodeBatch, Request
    from pipelines.engine import engine

    def measure(rows: int) -> tuple[float, float]:
        prefills, steps = [], []
        for _ in range(repeats):
            batch = DecodeBatch(loaded)
            start = time.perf_counter()
            batch.admit([Request(rows=[p], params=params) for p in prompts[:rows]])
            prefills.append(time.perf_counter() - start)
            for _ in range(max(0, new // 2 - 8)):  # to the middle of a reply
                batch.step()
            for _ in range(16):
                start = time.perf_counter()
                batch.step()
                steps.append(time.perf_counter() - start)
            batch.fail(RuntimeError("measured"))
        return statistics.median(prefills), statistics.median(steps)

    (p1, t1), (p4, t4) = engine.call(measure, 1), engine.call(measure, 4)
    n = new - 1  # the first token comes from the prefill
    model = (4 * p1 + 4 * n * t1) / (p4 + n * t4)
    ceiling = (4 * p1 + 4 * n * t1) / (p4 + n * t1)
    rows = [["prefill: one prompt ×4 / four together (s)", round(4 * p1, 3), round(p4, 3)],
            ["decode step: one row / four rows (ms)", round(t1 * 1e3, 1), round(t4 * 1e3, 1)],
            ["× sequential from these: as measured / if four rows cost one", round(model, 2), round(ceiling, 2)]]
    return table(["breakdown (DecodeBatch directly)", "one", "four"], rows)


if __name__ == "__main__":
    main()
