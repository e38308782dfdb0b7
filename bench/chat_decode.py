"""Chat decoding: time to first token and tokens/s for a 200-token prompt and 128 new tokens,
plain float32 ``model.generate`` versus ModelDeck's path (int8 weights, its own sampler, the batcher),
with the numeric cost of int8 against float32 on the same prompts. On a GPU (``MODELDECK_DEVICE=cuda``, or
found by itself) both run there, plain ``generate`` in ModelDeck's dtype (bfloat16 or float16, also with
``MODELDECK_DTYPE`` on the CPU), and the numeric cost is that dtype's against float32
(``scripts/device_check.sh`` runs it on a lent GPU)."""

from __future__ import annotations

import os
import statistics
import time

import threading

from _common import int8_choices, machine, parser, qwen_full_vocab, table, tiny_env


class FirstToken:
    """A streamer that notes when generate hands over its first new token."""

    def __init__(self) -> None:
        self.calls, self.first = 0, None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def main() -> None:
    args = parser(__doc__).parse_args()
    p_len, new = (20, 16) if args.tiny else (200, 128)
    os.environ.update(tiny_env() if args.tiny else {"MODELDECK_CHAT_MODEL": str(qwen_full_vocab())})
    import torch
    from transformers import AutoModelForCausalLM

    from pipelines import registry
    from pipelines.batching import batcher_for
    from pipelines.engine import engine, in_own_thread
    from pipelines.sampling import SamplingParams

    torch.set_grad_enabled(False)
    source = registry.resolve("chat").source
    deck = registry.get_model("chat")  # int8 on the CPU by default; bfloat16 or float16 on a GPU
    device = deck.device
    dtype = getattr(torch, deck.dtype.split()[0])  # "float32 + int8": the float32 model it was quantised from

    def load(as_dtype: torch.dtype) -> torch.nn.Module:
        return in_own_thread(lambda: AutoModelForCausalLM.from_pretrained(source, dtype=as_dtype).to(device).eval())

    plain = load(dtype)  # the baseline: transformers' own generate, on the same device
    reference = plain if dtype == torch.float32 else load(torch.float32)  # what the numeric cost is measured against
    plain_name = f"plain {str(dtype).removeprefix('torch.')} generate"
    tokenizer = deck.processor
    base = tokenizer("Hello, how are you? 你好，我是一个模型。", add_special_tokens=False)["input_ids"]
    prompts = [(base * p_len)[i:i + p_len] for i in range(args.repeats + 1)]
    params = SamplingParams(max_new_tokens=new, temperature=0.7, top_p=0.9, seed=1)
    eos = plain.generation_config.eos_token_id

    def run_plain(prompt: list[int]) -> tuple[float, float, int]:
        # On ModelDeck's engine thread too: torch work on a second thread would slow both (see engine.py).
        return engine.call(plain_generate, prompt)

    def plain_generate(prompt: list[int]) -> tuple[float, float, int]:
        ids = torch.tensor([prompt], device=device)
        streamer = FirstToken()
        began = time.perf_counter()
        out = plain.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                             do_sample=True, temperature=0.7, top_p=0.9, streamer=streamer, pad_token_id=eos)
        made = out.shape[1] - ids.shape[1]
        return streamer.first - began, (made - 1) / (time.perf_counter() - streamer.first), made

    def run_deck(prompt: list[int]) -> tuple[float, float, int]:
        began = time.perf_counter()
        stream = batcher_for(deck).submit(prompt, params, [])
        reader = threading.Thread(target=stream.collect)  # the consumer a UI or client would be
        reader.start()
        while stream.usage.completion_tokens == 0 and reader.is_alive():
            time.sleep(0.001)
        first = time.perf_counter()
        reader.join()
        made = stream.usage.completion_tokens
        return first - began, (made - 1) / (time.perf_counter() - first), made

    batch = batcher_for(deck).batch
    batch.prefixes = None  # a prompt runs twice below (lean decode on and off): time its prefill both times
    lean = batch.lean  # ModelDeck's lean decode step (lean_decode.py); also timed with the model's own forward

    def run_deck_own_forward(prompt: list[int]) -> tuple[float, float, int]:
        batch.lean = False
        try:
            return run_deck(prompt)
        finally:
            batch.lean = True

    run_plain(prompts[0]), run_deck(prompts[0])  # warm-up
    results = {"plain": [], "deck": []} | ({"own": []} if lean else {})
    for prompt in prompts[1:]:  # alternate, so machine noise hits every path alike
        results["plain"].append(run_plain(prompt))
        results["deck"].append(run_deck(prompt))
        if lean:
            results["own"].append(run_deck_own_forward(prompt))
    med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in results.items()}
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights'}; {p_len}-token prompt, "
          f"{new} new tokens, temperature 0.7, top-p 0.9; median of {args.repeats}")
    print(machine())
    print(table(["path", "first token (s)", "decode tokens/s", "tokens", "decode × plain", "first token × plain"],
                [[plain_name, med["plain"][0], med["plain"][1], med["plain"][2], 1.0, 1.0],
                 [f"ModelDeck ({deck.dtype})", med["deck"][0], med["deck"][1], med["deck"][2],
                  med["deck"][1] / med["plain"][1], med["plain"][0] / med["deck"][0]]]
                + ([[f"ModelDeck, the model's own forward each step (MODELDECK_LEAN_DECODE=0)", med["own"][0],
                     med["own"][1], med["own"][2], med["own"][1] / med["plain"][1], med["plain"][0] / med["own"][0]]]
                   if lean else [])))
    # The numeric cost of int8 (or half precision): next-token logits at every prompt position, against float32.
    agree, errors = [], []
    for prompt in prompts:
        ids = torch.tensor([prompt], device=device)
        f = engine.call(lambda: reference(ids).logits.float())
        q = engine.call(lambda: deck.model(ids).logits.float())
        agree.append((f.argmax(-1) == q.argmax(-1)).float().mean().item())
        errors.append(((q - f).norm() / f.norm()).item())
    print()
    print(table([f"{deck.dtype} against float32", "top-1 token agreement", "relative logit error"],
                [[f"{len(prompts) * p_len} positions", statistics.mean(agree), statistics.mean(errors)]]))
    if choices := int8_choices():
        print()
        print(choices)


if __name__ == "__main__":
    main()
