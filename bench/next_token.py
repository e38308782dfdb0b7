"""The next-token explorer on the chat model: moving a slider re-ranks the cached logits (no forward pass),
and a step feeds one token through the kept KV cache instead of the whole text again. Times are whole
``pipelines.next_token`` calls (chat template, tokenizing, the engine hop, re-ranking, top-N)."""

from __future__ import annotations

import os
import statistics
import time

from _common import machine, parser, qwen_full_vocab, table, tiny_env

SETTINGS = [  # (label, temperature, top_k, top_p, repetition_penalty)
    ("T 0.7", 0.7, 0, 1.0, 1.0), ("T 0.7, top-k 40", 0.7, 40, 1.0, 1.0), ("T 0.7, top-p 0.9", 0.7, 0, 0.9, 1.0),
    ("T 1, top-k 50, top-p 0.95, penalty 1.1", 1.0, 50, 0.95, 1.1),
    ("T 2, top-p 0.95 (flat)", 2.0, 0, 0.95, 1.0),
]


def main() -> None:
    args = parser(__doc__).parse_args()
    os.environ.update(tiny_env() if args.tiny else {"MODELDECK_CHAT_MODEL": str(qwen_full_vocab())})
    import pipelines
    from pipelines import registry
    from pipelines.next_token import CHAT_SUFFIX, explorer

    loaded = registry.get_model("chat")
    model = f"{loaded.spec.name} {CHAT_SUFFIX}"
    prompt = "请用三句话解释温度、top-k 和 top-p 在语言模型采样里的作用。" * (1 if args.tiny else 6)
    state = explorer(loaded)

    def timed(**kwargs: object) -> float:
        began = time.perf_counter()
        pipelines.next_token(prompt, model, **kwargs)
        return time.perf_counter() - began

    first = timed()
    prompt_tokens = pipelines.next_token(prompt, model).prompt_tokens
    forwards = state.forwards
    redraw = {label: [timed(temperature=t, top_k=k, top_p=p, repetition_penalty=r) * 1000
                      for _ in range(max(3, args.repeats))] for label, t, k, p, r in SETTINGS}
    assert state.forwards == forwards, "a redraw ran the model"
    steps = 4 if args.tiny else 8
    reuse, fresh = [], []
    for _ in range(args.repeats):  # alternate, so machine noise hits both alike
        appended: list[int] = []
        state.entries.clear()
        pipelines.next_token(prompt, model)
        for _ in range(steps):  # each step appends the most likely token and looks at the next one
            appended.append(pipelines.next_token(prompt, model, top_n=1, appended=appended).candidates[0].id)
            began, fed = time.perf_counter(), state.fed
            pipelines.next_token(prompt, model, appended=appended)
            reuse.append((time.perf_counter() - began, state.fed - fed))
            state.entries.clear()  # the same step with nothing kept: the whole text again
            began, fed = time.perf_counter(), state.fed
            pipelines.next_token(prompt, model, appended=appended)
            fresh.append((time.perf_counter() - began, state.fed - fed))
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights (151 936 tokens)'}, "
          f"dtype {loaded.dtype}, {prompt_tokens}-token prompt through the chat template; "
          f"first view (one forward pass) {first * 1000:.0f} ms")
    print(machine())
    print(table(["redraw after a slider move", "median (ms)", "min (ms)", "max (ms)", "forward passes"],
                [[label, statistics.median(ms), min(ms), max(ms), 0] for label, ms in redraw.items()]))
    print()
    with_reuse = statistics.median(s for s, _ in reuse) * 1000
    without = statistics.median(s for s, _ in fresh) * 1000
    print(table(["step (append one token, show the next)", "tokens fed", "median (ms)", "spread (ms)", "× faster"],
                [["KV cache kept", statistics.median(n for _, n in reuse), with_reuse,
                  f"{min(s for s, _ in reuse) * 1000:.0f}–{max(s for s, _ in reuse) * 1000:.0f}", without / with_reuse],
                 ["whole text again", statistics.median(n for _, n in fresh), without,
                  f"{min(s for s, _ in fresh) * 1000:.0f}–{max(s for s, _ in fresh) * 1000:.0f}", 1.0]]))


if __name__ == "__main__":
    main()
