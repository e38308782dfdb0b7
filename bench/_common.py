"""Shared helpers for the benchmarks: offline set-up, model folders, medians, tables."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from configs import (BLIP_IMAGE_CAPTIONING_BASE, GPT2_CHINESE_CLUECORPUSSMALL, OPUS_MT_EN_ZH,  # noqa: E402
                     QWEN2_5_0_5B_INSTRUCT, ROBERTA_JD_BINARY_CHINESE)

CACHE = Path(os.environ.get("MODELDECK_BENCH_CACHE", ROOT / "bench" / ".cache"))


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the --tiny and --repeats flags every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="use the tiny test models (a smoke run in seconds)")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    return p


def tiny_env() -> dict[str, str]:
    """Build the tiny test models in a temp folder; return the variables that point at them.

    ``MODELDECK_BENCH_TINY_DIR`` names a folder of models built once for many runs (the benchmark tests): its
    ``env.json`` holds the variables, and is written by whoever builds there first."""
    import json

    from tiny_models import build_all

    shared = os.environ.get("MODELDECK_BENCH_TINY_DIR")
    if not shared:
        return build_all(Path(tempfile.mkdtemp(prefix="modeldeck-bench-")))
    kept = Path(shared) / "env.json"
    if not kept.exists():
        env = build_all(Path(shared))
        kept.write_text(json.dumps(env))
    return json.loads(kept.read_text())


def machine() -> str:
    """The processor, its vector extensions that matter here, torch's thread count and any GPU: one line."""
    import torch

    from pipelines.devices import CPU_FEATURES, cpu_flags, cpu_name

    features = "+".join(flag for flag, _ in CPU_FEATURES if flag in cpu_flags()) or "no AVX2"
    gpu = f"; GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"machine: {cpu_name()}, {os.cpu_count()} CPUs ({features}); torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads{gpu}"


def int8_choices() -> str:
    """The int8 kernel this process chose for each product shape, and why: a table, or "" when none was chosen."""
    from pipelines import int8_kernels

    rows = [[f"{c.in_features}→{c.out_features}", c.name, c.prompt_name or c.name, c.reason,
             ", ".join(f"{name} {micros:.0f} µs" for name, micros in c.micros.items())
             or "; ".join(f"{name}: {why}" for name, why in c.rejected.items()),
             ", ".join(f"{name} {micros:.0f} µs" for name, micros in c.prompt_micros.items()) or "-"]
            for c in int8_kernels.choices()]
    return table(["int8 product", "kernel (decode steps)", "kernel (prompts)", "why",
                  "self-test, steps (or kernels left out)", "self-test, prompt"], rows) if rows else ""


def qwen_real_size(folder: Path | None = None) -> Path:
    """A random-weight model with Qwen2.5-0.5B-Instruct's published configuration, saved once.

    Saved in bfloat16 like the real checkpoint, so loading converts to float32 as it does for the real one.
    """
    folder = folder or CACHE / "qwen2.5-0.5b-random-bf16"
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
    from tiny_models import qwen2_chat

    qwen2_chat(folder)  # its tokenizer and chat template; the model is replaced below
    torch.manual_seed(0)
    # The tiny tokenizer's special ids, so that its chat template and the model agree.
    config = Qwen2Config(**{**QWEN2_5_0_5B_INSTRUCT, "eos_token_id": 2, "pad_token_id": 0, "bos_token_id": None})
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=0)
    model.save_pretrained(folder)
    return folder


def qwen_full_vocab() -> Path:
    """The real-size Qwen model with a tokenizer whose every id decodes to text, so streams show text.

    The tiny tokenizer knows 297 tokens; the model samples from 151 936. Placeholder tokens ("词123")
    fill the gap. They make this tokenizer load in ~7 s (Qwen's real one: ~1 s).
    """
    folder = CACHE / "qwen2.5-0.5b-random-bf16-fullvocab"
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoTokenizer

    source = qwen_real_size()
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.add_tokens([f"词{i}" for i in range(151936 - len(tokenizer))])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (folder / name).symlink_to(source / name)
    return folder


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``fn`` over ``repeats`` runs."""
    return statistics.median(seconds(fn) for _ in range(repeats))


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    def cell(x: object) -> str:
        return f"{x:.3g}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def report(setup: str, headers: list[str], rows: list[list[object]]) -> None:
    """Print what was measured, the machine it ran on, and the results as a Markdown table."""
    print(setup)
    print(machine())
    print(table(headers, rows))


def _save_once(name: str, build: Callable[[Path], None]) -> Path:
    folder = CACHE / name
    if not (folder / "config.json").exists():
        build(folder)
    return folder


def real_size_env(*, streamed_text: bool = False) -> dict[str, str]:
    """Random-weight models with the default models' published sizes (tiny tokenizers); their variables.

    ``streamed_text`` gives the chat model the full-vocabulary tokenizer (see ``qwen_full_vocab``).

    The weights' values do not change compute cost, so timings match the real models'; outputs are
    noise. Built once into ``bench/.cache`` (about 4 GB).
    """
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, BlipConfig, BlipForConditionalGeneration,
                              GPT2Config, GPT2LMHeadModel, MarianConfig, MarianMTModel)
    import tiny_models as tm

    torch.manual_seed(0)

    def gpt2(folder: Path) -> None:
        tm.gpt2_zh(folder)
        GPT2LMHeadModel(GPT2Config(**{**GPT2_CHINESE_CLUECORPUSSMALL, "bos_token_id": 2, "eos_token_id": 3,
                                       "pad_token_id": 0})).save_pretrained(folder)

    def bert(folder: Path) -> None:
        tm.bert_cls(folder, tuple(ROBERTA_JD_BINARY_CHINESE["id2label"].values()))
        BertForSequenceClassification(BertConfig(**ROBERTA_JD_BINARY_CHINESE)).save_pretrained(folder)

    def blip(folder: Path) -> None:
        tm.blip(folder)
        from transformers import BlipProcessor
        from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

        processor = BlipProcessor.from_pretrained(folder)
        processor.image_processor = BlipImageProcessorPil(size={"height": 384, "width": 384})
        processor.save_pretrained(folder)
        # The tiny tokenizer's special ids, so that captions end where its vocabulary says.
        text = {**BLIP_IMAGE_CAPTIONING_BASE["text_config"], "bos_token_id": 5, "eos_token_id": 3, "sep_token_id": 3,
                "pad_token_id": 0}
        model = BlipForConditionalGeneration(BlipConfig(**{**BLIP_IMAGE_CAPTIONING_BASE, "text_config": text}))
        # Only ids the tiny tokenizer can decode may come out; the compute is the same.
        model.text_decoder.cls.predictions.bias.data[len(processor.tokenizer):] = -1e9
        model.save_pretrained(folder)

    def marian(folder: Path) -> None:
        tm.marian(folder)
        from transformers import MarianTokenizer

        known = len(MarianTokenizer.from_pretrained(folder))
        # The tiny tokenizer's pad id (2) where the real one has 65000.
        model = MarianMTModel(MarianConfig(**{**OPUS_MT_EN_ZH, "pad_token_id": 2, "decoder_start_token_id": 2}))
        model.final_logits_bias[:, known:] = -1e9  # only ids the tiny tokenizer can decode; same compute
        model.save_pretrained(folder)

    return {
        "MODELDECK_CHAT_MODEL": str(qwen_full_vocab() if streamed_text else qwen_real_size()),
        "MODELDECK_TEXTGEN_MODELS": str(_save_once("gpt2-random", gpt2)),
        "MODELDECK_CLASSIFIER_MODELS": str(_save_once("bert-base-random", bert)),
        "MODELDECK_CAPTION_MODEL": str(_save_once("blip-base-random", blip)),
        "MODELDECK_TRANSLATE_MODEL": str(_save_once("marian-random", marian)),
    }
