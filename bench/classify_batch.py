"""Batch classification through the app: the same sentences sent to ``/classify_batch`` with gradio_client,
against ModelDeck's batched path called directly (``classify_texts``, int8 on the CPU: the figure of
``classification.py``) and against one ``/classify`` call per sentence, all measured in one run.

The endpoint adds the row checks (one tokenizer pass to find over-long rows), JSON and HTTP on top of the
batched path; the ratio says what that costs. On a shared machine the figures are noisy: every path is
repeated and the spread (lowest–highest) is printed next to the median.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from _common import CACHE, parser, report, tiny_env
from classification import sentences


def bert_base_classifier() -> Path:
    """A random-weight classifier with the default Chinese classifier's published size, saved once."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    import tiny_models as tm
    from configs import ROBERTA_JD_BINARY_CHINESE

    folder = CACHE / "roberta-jd-random"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        tm.bert_cls(folder, tuple(ROBERTA_JD_BINARY_CHINESE["id2label"].values()))
        BertForSequenceClassification(BertConfig(**ROBERTA_JD_BINARY_CHINESE)).save_pretrained(folder)
    return folder


def timings(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    env = tiny_env() if args.tiny else {}
    os.environ.update(env)
    os.environ["MODELDECK_CLASSIFIER_MODELS"] = (env["MODELDECK_CLASSIFIER_MODELS"] if args.tiny
                                                 else f"BERT-base={bert_base_classifier()}")
    import app
    from gradio_client import Client

    from pipelines import classify_texts, registry

    texts = sentences(64 if args.tiny else 256)
    app.configure_queue(app.demo)
    _, url, _ = app.demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None)
    try:
        client = Client(url, verbose=False)
        direct = classify_texts(texts)  # loads and warms the classifier
        served = client.predict(texts, None, api_name="/classify_batch")
        assert [max(d, key=d.get) for d in direct] == [max(s, key=s.get) for s in served]
        t_direct = timings(lambda: classify_texts(texts), args.repeats)
        t_batch = timings(lambda: client.predict(texts, None, api_name="/classify_batch"), args.repeats)
        few = texts[:32]  # one call per sentence is slow: a slice, scaled per sentence
        t_single = timings(lambda: [client.predict(t, None, api_name="/classify") for t in few], args.repeats)
        dtype = registry.get_model("classifier").dtype
    finally:
        app.demo.close()
    n = len(texts)
    rows = []
    base = n / statistics.median(t_direct)
    for name, times, count in [(f"classify_texts() directly, batched ({dtype})", t_direct, n),
                               ("/classify_batch through gradio_client", t_batch, n),
                               ("/classify through gradio_client, one call per sentence", t_single, len(few))]:
        rates = sorted(count / t for t in times)
        rows.append([name, statistics.median(rates), f"{rates[0]:.3g}–{rates[-1]:.3g}", statistics.median(rates) / base])
    report(f"model: {'tiny' if args.tiny else 'BERT-base-sized random weights'}; {n} sentences of "
           f"{min(map(len, texts))}–{max(map(len, texts))} characters; {args.repeats} runs each",
           ["path", "sentences/s (median)", "spread", "× direct batched"], rows)


if __name__ == "__main__":
    main()
