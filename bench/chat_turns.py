"""A long conversation, turn by turn: time to first token of each turn with the earlier turns' keys and
values reused (ModelDeck's prefix cache) versus prefilled again every turn. Each turn adds a message of
250 placeholder words (about 580 tokens with the bench tokenizer) and a 64-token reply, through the
model's chat template, as the chat tab does."""

from __future__ import annotations

import os
import statistics
import time

from _common import machine, parser, qwen_full_vocab, table, tiny_env


def main() -> None:
    args = parser(__doc__).parse_args()
    turns, message_len, reply = (3, 20, 8) if args.tiny else (8, 250, 64)
    os.environ.update(tiny_env() if args.tiny else {"MODELDECK_CHAT_MODEL": str(qwen_full_vocab())})
    from pipelines import registry
    from pipelines.batching import Batcher
    from pipelines.backends.local import LocalChatBackend
    from pipelines.sampling import SamplingParams

    loaded = registry.get_model("chat")
    backend = LocalChatBackend(loaded)
    tokenizer = loaded.processor
    words = tokenizer.decode(list(range(100, 100 + message_len)))
    reusing, fresh = Batcher(loaded), Batcher(loaded)
    fresh.batch.prefixes = None
    params = SamplingParams(max_new_tokens=reply, temperature=0)

    started = iter(range(10**6))

    def conversation(batcher: Batcher) -> list[tuple[int, float]]:
        """(prompt tokens, seconds to the first token) for each turn of a conversation of its own."""
        history, out, run = [], [], next(started)
        for turn in range(turns):
            history.append({"role": "user", "content": f"{run} {turn} {words}"})
            ids = tokenizer(backend.render(history), add_special_tokens=False)["input_ids"]
            began = time.perf_counter()
            stream = batcher.submit(ids, params, [])
            first = None
            for _ in stream:
                first = first or time.perf_counter() - began
            out.append((len(ids), first))
            history.append({"role": "assistant", "content": stream.text})
        return out

    conversation(reusing), conversation(fresh)  # warm-up
    runs = {"reuse": [], "fresh": []}
    for _ in range(args.repeats):  # alternate, so machine noise hits both alike
        runs["reuse"].append(conversation(reusing))
        runs["fresh"].append(conversation(fresh))
    rows = []
    for turn in range(turns):
        length = runs["fresh"][0][turn][0]
        with_reuse = statistics.median(r[turn][1] for r in runs["reuse"])
        without = statistics.median(r[turn][1] for r in runs["fresh"])
        rows.append([turn + 1, length, without, with_reuse, without / with_reuse])
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights'}, dtype {loaded.dtype}; "
          f"{turns} turns, greedy {reply}-token replies; median of {args.repeats}")
    print(machine())
    print(table(["turn", "prompt tokens", "first token, prefilled again (s)", "first token, earlier turns reused (s)",
                 "× sooner"], rows))


if __name__ == "__main__":
    main()
