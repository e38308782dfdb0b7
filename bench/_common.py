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
CACHE = Path(os.environ.get("MODELDECK_BENCH_CACHE", ROOT / "bench" / ".cache"))


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the --tiny and --repeats flags every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="use the tiny test models (a smoke run in seconds)")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    return p


def tiny_env() -> dict[str, str]:
    """Build the tiny test models in a temp folder; return the variables that point at them."""
    from tiny_models import build_all

    return build_all(Path(tempfile.mkdtemp(prefix="modeldeck-bench-")))


def qwen_real_size(folder: Path | None = None) -> Path:
    """A random-weight model with Qwen2.5-0.5B-Instruct's published configuration, saved once."""
    folder = folder or CACHE / "qwen2.5-0.5b-random"
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
    from tiny_models import qwen2_chat

    qwen2_chat(folder)  # its tokenizer and chat template; the model is replaced below
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1_000_000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
                         eos_token_id=2, pad_token_id=0)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=0)
    model.save_pretrained(folder)
    return folder


def qwen_full_vocab() -> Path:
    """The real-size Qwen model with a tokenizer whose every id decodes to text, so streams show text.

    The tiny tokenizer knows 297 tokens; the model samples from 151 936. Placeholder tokens ("词123")
    fill the gap. They make this tokenizer load in ~7 s (Qwen's real one: ~1 s).
    """
    folder = CACHE / "qwen2.5-0.5b-random-fullvocab"
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


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``fn`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    def cell(x: object) -> str:
        return f"{x:.3g}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


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
        GPT2LMHeadModel(GPT2Config(vocab_size=21128, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                                   bos_token_id=2, eos_token_id=3, pad_token_id=0)).save_pretrained(folder)

    def bert(folder: Path) -> None:
        tm.bert_cls(folder, ("negative (stars 1, 2 and 3)", "positive (stars 4 and 5)"))
        BertForSequenceClassification(BertConfig(
            vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            id2label={0: "negative (stars 1, 2 and 3)", 1: "positive (stars 4 and 5)"},
            label2id={"negative (stars 1, 2 and 3)": 0, "positive (stars 4 and 5)": 1})).save_pretrained(folder)

    def blip(folder: Path) -> None:
        tm.blip(folder)
        from transformers import BlipProcessor
        from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

        processor = BlipProcessor.from_pretrained(folder)
        processor.image_processor = BlipImageProcessorPil(size={"height": 384, "width": 384})
        processor.save_pretrained(folder)
        model = BlipForConditionalGeneration(BlipConfig(  # blip-image-captioning-base: ViT-B/16, 384 px, BERT-base
            text_config=dict(vocab_size=30524, bos_token_id=5, eos_token_id=3, sep_token_id=3, pad_token_id=0),
            vision_config=dict(image_size=384, patch_size=16)))
        # Only ids the tiny tokenizer can decode may come out; the compute is the same.
        model.text_decoder.cls.predictions.bias.data[len(processor.tokenizer):] = -1e9
        model.save_pretrained(folder)

    def marian(folder: Path) -> None:
        tm.marian(folder)
        from transformers import MarianTokenizer

        known = len(MarianTokenizer.from_pretrained(folder))
        model = MarianMTModel(MarianConfig(  # opus-mt-en-zh: transformer-base, 6 + 6 layers, 65 001 tokens
            vocab_size=65001, d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
            decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512,
            pad_token_id=2, eos_token_id=0, decoder_start_token_id=2, forced_eos_token_id=0))
        model.final_logits_bias[:, known:] = -1e9  # only ids the tiny tokenizer can decode; same compute
        model.save_pretrained(folder)

    return {
        "MODELDECK_CHAT_MODEL": str(qwen_full_vocab() if streamed_text else qwen_real_size()),
        "MODELDECK_TEXTGEN_MODELS": str(_save_once("gpt2-random", gpt2)),
        "MODELDECK_CLASSIFIER_MODELS": str(_save_once("bert-base-random", bert)),
        "MODELDECK_CAPTION_MODEL": str(_save_once("blip-base-random", blip)),
        "MODELDECK_TRANSLATE_MODEL": str(_save_once("marian-random", marian)),
    }
