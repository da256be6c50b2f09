"""`contrastkit export`: a LoRA fine-tune of an hf_text tower becomes a sentence-transformers
folder whose `encode` reproduces contrastkit's embeddings."""

from __future__ import annotations

import json

import pytest
import torch

from contrastkit.config import config_from_dict
from helpers.configs import DOC_CODE_PAIRS
from helpers.hf_toys import tiny_bert

PAIRS = DOC_CODE_PAIRS


@pytest.mark.slow
def test_lora_run_exports_to_sentence_transformers(tmp_path) -> None:
    pytest.importorskip("peft")
    st = pytest.importorskip("sentence_transformers")
    from contrastkit.app.cli import main
    from contrastkit.app.run import train
    from contrastkit.train.checkpoint import load_run
    from contrastkit.train.checkpoint.files import load_checkpoint
    from contrastkit.train.checkpoint.folder import resolve_checkpoint

    folder = tiny_bert(tmp_path / "bert")
    rows = [
        {"id": f"{s}{i}", "split": s, "text": d, "text_code": c}
        for s in ("train", "val")
        for i, (d, c) in enumerate(PAIRS)
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    enc = {"type": "hf_text", "pretrained": str(folder), "options": {"max_length": 32}}
    cfg = config_from_dict(
        {
            "data": {
                "manifest": str(tmp_path / "pairs.jsonl"),
                "batch_size": 4,
                "test_split": None,
            },
            "model": {
                "embed_dim": 16,
                "towers": {
                    "doc": {"streams": {"text": enc}},
                    "code": {"streams": {"text_code": enc}},
                },
            },
            "train": {
                "epochs": 2,
                "lr": 0.01,
                "lora": {"targets": ["query", "value"], "r": 4, "alpha": 8},
                "layer_decay": 0.8,
                "progress": "none",
                "loggers": {"tensorboard": False},
            },
            "eval": {"splits": ["val"]},
            "doctor": {"enabled": False},
        }
    )
    run_dir = tmp_path / "run"
    train(cfg, run_dir)
    tensors, meta = load_checkpoint(resolve_checkpoint(run_dir, "best"))
    assert not any("base_layer" in k for k in tensors)  # only what was trained
    assert any("lora_B" in k for k in tensors)
    assert meta["base_weights"]["towers.doc.encoders.text"]["path"] == str(folder)

    assert main(["export", str(run_dir), "--out", str(tmp_path / "export")]) == 0
    run = load_run(run_dir, with_data=False)
    texts = [d for d, _ in PAIRS]
    codes = [c for _, c in PAIRS]
    with torch.no_grad():
        out = run.model({"text": texts, "text_code": codes})
    lora_b = [v for k, v in tensors.items() if "lora_B" in k]
    assert max(float(v.abs().max()) for v in lora_b) > 0  # the adapters did train
    for tower, inputs in (("doc", texts), ("code", codes)):
        model = st.SentenceTransformer(str(tmp_path / "export" / tower), device="cpu")
        got = torch.as_tensor(model.encode(inputs, convert_to_numpy=True))
        torch.testing.assert_close(got, out.towers[tower].embedding, atol=1e-5, rtol=0)
