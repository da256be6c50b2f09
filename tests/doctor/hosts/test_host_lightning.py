"""The doctor in a real Lightning `Trainer`: batch 4 -> too few negatives."""

from __future__ import annotations

import json

import pytest
import torch
from bench.watcher import TwoTower, clip_loss, digits_views
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")


class ClipModule(pl.LightningModule):
    """The plain two-tower CLIP model of bench/watcher.py as a LightningModule."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.model = TwoTower()
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        a, b = self.model(x, y)
        scale = self.model.logit_scale.exp()
        loss = clip_loss(a, b, scale)
        # The one line the doctor needs: return what the loss was computed from.
        return {"loss": loss, "embeddings": (a, b), "logit_scale": scale}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.0)


def fit(tmp_path, batch_size: int, steps: int = 24):
    from contrastkit.doctor.hosts.lightning import DoctorCallback

    torch.manual_seed(0)
    x, noisy, _ = digits_views()
    loader = DataLoader(TensorDataset(x[:400], noisy[:400]), batch_size=batch_size, shuffle=True)
    doctor = DoctorCallback(towers=("image", "view"), every=4, print_findings=False)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[doctor],
    )
    trainer.fit(ClipModule(), loader)
    return doctor


@pytest.mark.slow
def test_lightning_batch_4_has_too_few_negatives(tmp_path):
    doctor = fit(tmp_path, batch_size=4)
    top = doctor.findings[0]
    assert top.code == "too_few_negatives"
    assert top.evidence["negatives_per_query"] == 3  # 4 rows, each its own positive
    assert top.evidence["contrastive_batch"] == 4
    assert top.fix_note.startswith("In your code: a larger DataLoader batch_size")
    assert doctor.watcher.step == 24
    run = tmp_path / "doctor"
    signals = [json.loads(x) for x in (run / "signals.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in signals if r["monitor"] == "gradients"}) == [
        0,
        4,
        8,
        12,
        16,
        20,
    ]
    assert (run / "findings.json").is_file() and (run / "training_curves.png").is_file()
