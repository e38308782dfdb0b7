"""Tiny random-weight models of every real architecture ModelDeck uses, built offline in seconds.

Shapes and tokenizers follow the real models (Qwen2 with a chat template and a byte-level BPE,
GPT-2 with a BERT-style Chinese vocabulary, BERT classifiers with id2label, BLIP with its processor,
Marian with sentencepiece); the weights are random, so tests assert behaviour, never prose.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("的一是我你他好天猫狗") + list("abcdefghijklmnopqrstuvwxyz.,!?，。")
CHINESE = list("的一是我你他好天猫狗今气很们起去了不在有这个人大中上来说，。")


def bert_tok(words: list[str] = CHARS, **kw):
    from transformers import BertTokenizer

    return BertTokenizer({w: i for i, w in enumerate(SPECIAL + list(words))}, **kw)  # a dict, never vocab_file=


def gpt2_zh(d: Path, positions: int = 128, width: int = 32, words: list[str] = CHARS) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = bert_tok(words)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=positions, n_embd=width, n_layer=2, n_head=2,
                               bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                               pad_token_id=tok.pad_token_id, tokenizer_class="BertTokenizer")).save_pretrained(d)
    tok.save_pretrained(d)


def bert_cls(d: Path, labels: tuple[str, ...] = ("negative", "positive"), positions: int = 128,
             width: int = 32) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    tok = bert_tok()
    BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=width, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=positions, id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)})).save_pretrained(d)
    tok.save_pretrained(d)


def qwen2_chat(d: Path, max_positions: int = 512, width: int = 32, heads: int = 4) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(["Hello, how are you?", "你好，我是一个模型。"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tmpl = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  chat_template=tmpl)
    m = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tok), hidden_size=width, intermediate_size=64, num_hidden_layers=2, num_attention_heads=heads,
        num_key_value_heads=2, max_position_embeddings=max_positions, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True))
    m.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    m.save_pretrained(d)
    tok.save_pretrained(d)


def blip(d: Path) -> None:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tok = bert_tok("a the dog cat on red".split() + list("abcdefghijklmnopqrstuvwxyz"), bos_token="[DEC]")
    tok.add_special_tokens({"bos_token": "[DEC]"})
    proc = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tok)
    BlipForConditionalGeneration(BlipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.sep_token_id, sep_token_id=tok.sep_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=32, image_text_hidden_size=32)).save_pretrained(d)
    proc.save_pretrained(d)


def marian(d: Path, max_positions: int = 64, language_codes: tuple[str, ...] = ()) -> None:
    import sentencepiece as spm
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    os.makedirs(d, exist_ok=True)
    for name, line, n in [("source", "the dog is sitting on a red chair", 40), ("target", "狗坐在红色的椅子上", 30)]:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([line] * 30), model_prefix=f"{d}/{name}", vocab_size=n, model_type="unigram",
            character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1, hard_vocab_limit=False,
            minloglevel=2)
        os.replace(f"{d}/{name}.model", f"{d}/{name}.spm")
        os.remove(f"{d}/{name}.vocab")
    pieces = ["</s>", "<unk>", "<pad>", *language_codes]  # codes such as >>cmn_Hans<< pick a target language
    for name in ("source", "target"):
        sp = spm.SentencePieceProcessor(model_file=f"{d}/{name}.spm")
        pieces += [p for p in map(sp.id_to_piece, range(sp.get_piece_size())) if p not in pieces]
    with open(f"{d}/vocab.json", "w", encoding="utf-8") as f:
        json.dump({p: i for i, p in enumerate(pieces)}, f, ensure_ascii=False)
    tok = MarianTokenizer(f"{d}/source.spm", f"{d}/target.spm", f"{d}/vocab.json", source_lang="en",
                          target_lang="zh")
    MarianMTModel(MarianConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=max_positions,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
        forced_eos_token_id=tok.eos_token_id)).save_pretrained(d)
    tok.save_pretrained(d)


def sample_by_default(d: Path) -> None:
    """Set ``do_sample: true`` in a saved model's generation_config (servers such as ``transformers serve``
    sample only then)."""
    path = Path(d) / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**config, "do_sample": True}))


def build_all(root: Path) -> dict[str, str]:
    """Build every tiny model under ``root``; return the MODELDECK_* variables that point at them."""
    import torch

    torch.manual_seed(0)
    paths = {name: root / name for name in ("qwen2", "gpt2_zh", "gpt2_zh_b", "cls_en", "cls_zh", "blip", "marian",
                                            "qwen2_b")}
    qwen2_chat(paths["qwen2"])
    gpt2_zh(paths["gpt2_zh"])
    gpt2_zh(paths["gpt2_zh_b"])
    bert_cls(paths["cls_en"], ("NEGATIVE", "POSITIVE"))
    bert_cls(paths["cls_zh"], ("negative (stars 1, 2 and 3)", "positive (stars 4 and 5)"))
    blip(paths["blip"])
    marian(paths["marian"])
    qwen2_chat(paths["qwen2_b"])  # last: the models above keep the weights they had before it was added
    return {
        "MODELDECK_CHAT_MODEL": f"Tiny Qwen2={paths['qwen2']},Tiny Qwen2 B={paths['qwen2_b']}",
        "MODELDECK_TEXTGEN_MODELS": f"Tiny GPT-2 中文={paths['gpt2_zh']},Tiny GPT-2 B={paths['gpt2_zh_b']}",
        "MODELDECK_CLASSIFIER_MODELS": f"Tiny 中文情感={paths['cls_zh']},Tiny English sentiment={paths['cls_en']}",
        "MODELDECK_CAPTION_MODEL": f"Tiny BLIP={paths['blip']}",
        "MODELDECK_TRANSLATE_MODEL": f"Tiny Marian={paths['marian']}",
    }


def never_greedy_special(d: Path, embedding: str, special_ids: list[int]) -> None:
    """Zero the special tokens' (tied) output rows: their logits are 0, below the top of the others.

    Greedy replies then never end and never loop on an invisible token: they run to ``max_tokens`` with
    visible text, so a test that stops one early knows it was cut.
    """
    from safetensors.torch import load_file, save_file

    weights = load_file(d / "model.safetensors")
    weights[embedding][special_ids] = 0
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})


def build_for_vllm(root: Path) -> dict[str, Path]:
    """Tiny models vLLM's CPU attention accepts (head_dim 32, 512 positions): chat, GPT-2 中文, classifier."""
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    paths = {name: root / name for name in ("qwen2", "gpt2_zh", "cls")}
    qwen2_chat(paths["qwen2"], width=64, heads=2)
    never_greedy_special(paths["qwen2"], "model.embed_tokens.weight", AutoTokenizer.from_pretrained(
        paths["qwen2"]).convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    gpt2_zh(paths["gpt2_zh"], positions=512, width=64, words=CHINESE)  # only Chinese out: WordPiece spaces show
    never_greedy_special(paths["gpt2_zh"], "transformer.wte.weight", list(range(len(SPECIAL))))
    bert_cls(paths["cls"], ("NEGATIVE", "POSITIVE"), positions=512, width=64)
    return paths
