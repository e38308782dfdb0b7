"""Published configurations of ModelDeck's default models, for random-weight benchmark models.

Only shapes matter for timing and memory: the values below are copied from each model's
``config.json`` on the Hugging Face Hub (the weights are built at run time and never committed).
"""

from __future__ import annotations

from typing import Any

# Qwen/Qwen2.5-0.5B-Instruct: the chat and story model.
QWEN2_5_0_5B_INSTRUCT: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "pad_token_id": 151643,
}

# uer/roberta-base-finetuned-jd-binary-chinese: a BERT-base classifier (BertForSequenceClassification).
ROBERTA_JD_BINARY_CHINESE: dict[str, Any] = {
    "vocab_size": 21128,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "id2label": {0: "negative (stars 1, 2 and 3)", 1: "positive (stars 4 and 5)"},
    "label2id": {"negative (stars 1, 2 and 3)": 0, "positive (stars 4 and 5)": 1},
}

# uer/gpt2-chinese-cluecorpussmall: GPT-2 small with a 21 128-entry BERT vocabulary (text generation).
GPT2_CHINESE_CLUECORPUSSMALL: dict[str, Any] = {
    "vocab_size": 21128,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
}

# Salesforce/blip-image-captioning-base: ViT-B/16 at 384 px and a BERT-base text decoder.
BLIP_IMAGE_CAPTIONING_BASE: dict[str, Any] = {
    "text_config": {"vocab_size": 30524},
    "vision_config": {"image_size": 384, "patch_size": 16},
}

# Helsinki-NLP/opus-mt-en-zh: a transformer-base Marian model, 6 + 6 layers, 65 001 tokens.
OPUS_MT_EN_ZH: dict[str, Any] = {
    "vocab_size": 65001,
    "d_model": 512,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_ffn_dim": 2048,
    "max_position_embeddings": 512,
    "pad_token_id": 65000,
    "eos_token_id": 0,
    "decoder_start_token_id": 65000,
    "forced_eos_token_id": 0,
}
