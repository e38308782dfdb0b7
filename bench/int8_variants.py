"""The chat model's weight formats side by side: prefill and decode speed of the bare model, and what
each lossy format costs against float32 on the same prompts (top-1 token agreement and relative logit
error at every prompt position). The candidates: float32, bfloat16, and torch's dynamic int8 with
per-channel or per-tensor weight scales, with or without the 152k-row output layer."""

from __future__ import annotations

import os
import statistics
import time

from _common import machine, parser, qwen_real_size, table, tiny_env

VARIANTS = [  # (label, dtype, int8 settings or None)
    ("float32", "float32", None),
    ("bfloat16", "bfloat16", None),
    ("int8 per-channel, every layer (ModelDeck default)", "float32", {"per_channel": True, "include_lm_head": True}),
    ("int8 per-tensor, every layer", "float32", {"per_channel": False, "include_lm_head": True}),
    ("int8 per-channel, float32 output layer", "float32", {"per_channel": True, "include_lm_head": False}),
]


def main() -> None:
    args = parser(__doc__).parse_args()
    p_len, steps = (20, 8) if args.tiny else (200, 64)
    os.environ["MODELDECK_CHAT_MODEL"] = tiny_env()["MODELDECK_CHAT_MODEL"] if args.tiny else str(qwen_real_size())
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    from pipelines import registry
    from pipelines.engine import engine, in_own_thread
    from pipelines.quantize import quantize_int8, weight_bytes

    source = registry.resolve("chat").source
    torch.set_grad_enabled(False)
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 250 if args.tiny else 150_000, (1, p_len), generator=generator)
               for _ in range(args.repeats + 1)]

    def load(dtype: str, int8: dict | None):
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype)).eval()
        return quantize_int8(model, **int8) if int8 else model

    def measure(model, reference: dict | None) -> dict:
        """On the engine thread, as in the app: prefill, greedy decode steps, logits against ``reference``.

        Every torch call of this benchmark runs on that one thread: see pipelines/engine.py for why.
        """
        prefill, step, logits = [], [], []
        for ids in prompts:
            logits.append(model(ids).logits[0].float())
            cache = DynamicCache(config=model.config)
            began = time.perf_counter()
            token = model(ids, past_key_values=cache, logits_to_keep=1).logits[:, -1:].argmax(-1)
            prefill.append(time.perf_counter() - began)
            for _ in range(steps):
                began = time.perf_counter()
                token = model(token, past_key_values=cache).logits[:, -1:].argmax(-1)
                step.append(time.perf_counter() - began)
        reference = reference or {"logits": logits}
        pairs = list(zip(logits, reference["logits"]))
        return {"prefill": statistics.median(prefill[1:]), "step": statistics.median(step[len(step) // 4:]),
                "logits": logits,
                "agree": statistics.mean((q.argmax(-1) == f.argmax(-1)).float().mean().item() for q, f in pairs),
                "error": statistics.mean(((q - f).norm() / f.norm()).item() for q, f in pairs)}

    rows, reference = [], None
    for label, dtype, int8 in VARIANTS:
        model = in_own_thread(load, dtype, int8)
        result = engine.call(measure, model, reference)
        reference = reference or result
        rows.append([label, result["prefill"], 1000 * result["step"], 1 / result["step"],
                     reference["step"] / result["step"], result["agree"], result["error"],
                     round(weight_bytes(model) / 2**20)])
        del model, result
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights'}; {p_len}-token prompts, "
          f"{steps} greedy steps each; medians over {args.repeats} prompts (+1 warm-up)")
    print(machine())
    print(table(["weights", "prefill (s)", "decode ms/token", "tokens/s", "decode × float32",
                 "top-1 agreement", "relative logit error", "weights (MiB)"], rows))


if __name__ == "__main__":
    main()
