"""Classification throughput: 256 sentences through ModelDeck's batched path (length-sorted dynamic
padding, int8 on the CPU) versus one transformers pipeline call per sentence (float32), with the
label agreement of int8 against float32."""

from __future__ import annotations

import os
import random

from _common import machine, median_time, parser, real_size_env, table, tiny_env

PIECES = ["这家店的服务", "快递", "包装", "质量", "价格", "客服态度", "物流速度", "味道", "屏幕", "电池"]
VERDICTS = ["非常好，下次还来", "太慢了，很失望", "一般般，没什么特别", "超出预期，强烈推荐", "有点贵但是值得",
            "完全不能用，要求退货", "还可以，就是颜色不太喜欢", "比图片上看起来更好"]


def sentences(n: int) -> list[str]:
    rng = random.Random(0)
    return ["，".join(f"{rng.choice(PIECES)}{rng.choice(VERDICTS)}" for _ in range(rng.randint(1, 5))) + "。"
            for _ in range(n)]


def main() -> None:
    args = parser(__doc__).parse_args()
    env = tiny_env() if args.tiny else real_size_env()
    os.environ["MODELDECK_CLASSIFIER_MODELS"] = env["MODELDECK_CLASSIFIER_MODELS"]
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from pipelines import classify_texts, registry
    from pipelines.engine import engine, in_own_thread

    torch.set_grad_enabled(False)
    texts = sentences(64 if args.tiny else 256)
    source = registry.resolve("classifier").source
    one_by_one = in_own_thread(lambda: pipeline(
        "text-classification", model=AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32),
        tokenizer=AutoTokenizer.from_pretrained(source), device="cpu", top_k=None))
    int8 = classify_texts(texts)  # loads and warms ModelDeck's classifier
    # The baseline runs on ModelDeck's engine thread too: a second torch thread would slow both (engine.py).
    engine.call(one_by_one, texts[0])
    t_pipe = median_time(lambda: engine.call(lambda: [one_by_one(t, truncation=True) for t in texts]), args.repeats)
    t_deck = median_time(lambda: classify_texts(texts), args.repeats)
    dtype = registry.get_model("classifier").dtype
    registry.clear()
    os.environ["MODELDECK_QUANTIZE"] = "none"
    floats = classify_texts(texts)
    t_float = median_time(lambda: classify_texts(texts), args.repeats)
    agreement = sum(max(a, key=a.get) == max(b, key=b.get) for a, b in zip(int8, floats)) / len(texts)
    n = len(texts)
    print(f"model: {'tiny' if args.tiny else 'BERT-base-sized random weights'}; {n} sentences of "
          f"{min(map(len, texts))}–{max(map(len, texts))} characters; median of {args.repeats}")
    print(machine())
    print(table(["path", "seconds", "sentences/s", "× per-sentence pipeline"],
                [["pipeline(), one call per sentence (float32)", t_pipe, n / t_pipe, 1.0],
                 ["ModelDeck batched (float32)", t_float, n / t_float, t_pipe / t_float],
                 [f"ModelDeck batched ({dtype})", t_deck, n / t_deck, t_pipe / t_deck]]))
    print(f"\nlabel agreement, int8 against float32: {agreement:.3f} ({n} sentences)")


if __name__ == "__main__":
    main()
