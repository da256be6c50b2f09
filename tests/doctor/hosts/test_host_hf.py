"""The doctor in a real Hugging Face `Trainer`: a tiny CLIPModel whose logit scale starts at 0."""

from __future__ import annotations

import json

import pytest
import torch

from contrastkit.doctor.hosts.library import host_library
from contrastkit.errors import ConfigError

transformers = pytest.importorskip("transformers")

TEXT = {
    "vocab_size": 20,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 8,
}
VISION = {
    "image_size": 8,
    "patch_size": 4,
    "num_channels": 1,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}


def digit_rows(n: int = 96) -> list[dict]:
    """scikit-learn's real digits with a 3-token caption naming the digit ("<s> seven </s>")."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return [
        {
            "pixel_values": torch.tensor(d.images[i] / 16.0, dtype=torch.float32)[None],
            "input_ids": torch.tensor([1, 2 + int(d.target[i]), 12]),
        }
        for i in range(n)
    ]


def collate(rows: list[dict]) -> dict:
    return {
        "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
        "input_ids": torch.stack([r["input_ids"] for r in rows]),
        "return_loss": True,
    }


def train_tiny_clip(out, logit_scale_init: float, *, every: int = 2):
    from transformers import CLIPConfig, CLIPModel, Trainer, TrainingArguments

    from contrastkit.doctor.hosts.hf import DoctorCallback

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=TEXT,
        vision_config=VISION,
        projection_dim=8,
        logit_scale_init_value=logit_scale_init,
    )
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=16,
        num_train_epochs=2,
        learning_rate=5e-4,
        logging_steps=4,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    doctor = DoctorCallback(every=every, print_findings=False)
    trainer = Trainer(
        model=CLIPModel(cfg),
        args=args,
        train_dataset=digit_rows(),
        data_collator=collate,
        callbacks=[doctor],
    )
    trainer.train()
    return doctor


@pytest.mark.slow
def test_trainer_clip_with_logit_scale_0_gets_the_temperature_finding(tmp_path):
    doctor = train_tiny_clip(tmp_path, 0.0)
    top = doctor.findings[0]
    assert top.code == "temperature_out_of_range" and top.severity == "error"
    # exp(0) = 1: temperature 1, read from the model's logit_scale at the first step.
    assert top.evidence["temperature"] == 1.0
    assert "CLIPConfig(logit_scale_init_value=log(1/0.07))" in top.fix_note
    run = tmp_path / "doctor"
    signals = [json.loads(x) for x in (run / "signals.jsonl").read_text().splitlines()]
    steps = sorted({r["step"] for r in signals if r["monitor"] == "gradients"})
    assert steps == list(range(0, 12, 2))  # 96 rows / 16 = 6 steps x 2 epochs, every 2
    scales = [r["contrastive/logit_scale"] for r in signals if "contrastive/logit_scale" in r]
    assert scales[0] == pytest.approx(1.0)
    assert any(k.startswith("align/") for r in signals for k in r)  # image_embeds/text_embeds
    assert json.loads((run / "findings.json").read_text())["findings"][0]["code"] == top.code


def test_missing_host_library_names_the_extra():
    with pytest.raises(ConfigError, match=r"pip install contrastkit\[lightning\]"):
        host_library("no_such_lightning_module", "lightning")
