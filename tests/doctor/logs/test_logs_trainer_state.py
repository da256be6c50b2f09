"""`doctor logs` on a Hugging Face Trainer's trainer_state.json (written by the real
`transformers.TrainerState.save_to_json`)."""

from __future__ import annotations

import math

import pytest

from contrastkit.doctor.logs import diagnose_logs
from helpers.foreign_logs import linear

B = 32


def write_state(path, history, train_batch_size=None):
    from transformers import TrainerState

    path.mkdir(parents=True, exist_ok=True)
    state = TrainerState(log_history=history, train_batch_size=train_batch_size)
    state.save_to_json(str(path / "trainer_state.json"))
    return path / "trainer_state.json"


def flat_at_chance(n=10):
    """Trainer.log entries of an MNRL run whose loss sits at ln B from start to end."""
    return [
        {
            "epoch": i / n,
            "grad_norm": 0.5,
            "learning_rate": 2e-5,
            "loss": math.log(B) - 0.001 * i,
            "step": 10 * (i + 1),
        }
        for i in range(n)
    ] + [
        {
            "epoch": 1.0,
            "step": 10 * n,
            "total_flos": 0.0,
            "train_loss": math.log(B),
            "train_runtime": 9.0,
        }
    ]


def test_loss_flat_at_ln_b_is_loss_at_chance(tmp_path):
    write_state(tmp_path / "out" / "checkpoint-100", flat_at_chance())
    result = diagnose_logs(tmp_path / "out", batch_size=B)
    chance = [f for f in result.findings if f.code == "loss_at_chance"]
    assert len(chance) == 1
    assert chance[0].evidence["chance"] == pytest.approx(math.log(B), rel=1e-3)
    assert chance[0].evidence["batch_size"] == B
    assert result.host == "hf_trainer"


def test_without_batch_size_chance_is_listed_as_not_run(tmp_path):
    write_state(tmp_path / "out", flat_at_chance())
    result = diagnose_logs(tmp_path / "out")
    assert "loss_at_chance" not in {f.code for f in result.findings}
    needs = {n.rule: n.needs for n in result.not_run}
    assert "--batch-size" in needs["loss_at_chance"]
    # the flat total loss is still judged: progress needs no batch size
    assert "loss_not_decreasing" in {f.code for f in result.findings}


def test_recorded_train_batch_size_is_used(tmp_path):
    write_state(tmp_path / "out", flat_at_chance(), train_batch_size=B)
    result = diagnose_logs(tmp_path / "out")
    assert result.batch_size == B
    assert "loss_at_chance" in {f.code for f in result.findings}


def test_latest_checkpoint_state_is_read(tmp_path):
    """Each checkpoint-N holds the history so far: only the latest one is read."""
    history = flat_at_chance()
    write_state(tmp_path / "out" / "checkpoint-50", history[:5])
    write_state(tmp_path / "out" / "checkpoint-100", history)
    result = diagnose_logs(tmp_path / "out", batch_size=B)
    assert [s.path.parent.name for s in result.sources] == ["checkpoint-100"]


def test_eval_at_step_0_then_below_is_worse_than_start(tmp_path):
    """eval_on_start logs eval_* at step 0; a later eval below it is worse_than_start,
    and the logged peak lr 1e-3 (a from-scratch rate) is named with the host's words."""
    train = [
        {"epoch": i / 10, "learning_rate": 1e-3, "loss": v, "step": 10 * (i + 1)}
        for i, v in enumerate(linear(2.0, 1.0, 10))
    ]
    evals = [
        {"epoch": 0.0, "eval_ndcg@10": 0.62, "eval_runtime": 1.5, "step": 0},
        {"epoch": 0.5, "eval_ndcg@10": 0.51, "eval_runtime": 1.4, "step": 50},
        {"epoch": 1.0, "eval_ndcg@10": 0.47, "eval_runtime": 1.4, "step": 100},
    ]
    write_state(tmp_path / "out", evals[:1] + train[:5] + evals[1:2] + train[5:] + evals[2:])
    result = diagnose_logs(tmp_path / "out", batch_size=B)
    assert result.select_metric == "val/ndcg@10"
    worse = [f for f in result.findings if f.code == "worse_than_start"]
    assert len(worse) == 1
    assert (worse[0].evidence["at_start"], worse[0].evidence["final"]) == (0.62, 0.47)
    assert worse[0].evidence["step"] == 100
    assert worse[0].evidence["contrastkit_fix"] == {"train.lr": 5e-5}
    assert "TrainingArguments(learning_rate=5e-05)" in worse[0].fix_note


def test_trainer_event_file_and_state_merge_into_the_same_diagnosis(tmp_path):
    """An HF output folder holds the TensorBoardCallback's event file (tags rewritten as
    train/loss, train/learning_rate, train/grad_norm) and checkpoint-N/trainer_state.json
    with the same numbers: read together they give what the state alone gives."""
    from torch.utils.tensorboard import SummaryWriter

    history = flat_at_chance()
    write_state(tmp_path / "out" / "checkpoint-100", history)
    writer = SummaryWriter(str(tmp_path / "out" / "runs" / "Dec06_20-00-00_host"))
    for entry in history[:-1]:
        for key in ("loss", "learning_rate", "grad_norm"):
            writer.add_scalar(f"train/{key}", entry[key], entry["step"])
    writer.close()
    both = diagnose_logs(tmp_path / "out", batch_size=B)
    alone = diagnose_logs(tmp_path / "out" / "checkpoint-100" / "trainer_state.json", batch_size=B)
    assert sorted(s.format for s in both.sources) == ["tensorboard", "trainer_state"]
    assert {s.host for s in both.sources} == {"hf_trainer"}
    assert [f.to_dict() for f in both.findings] == [f.to_dict() for f in alone.findings]
    assert "loss_at_chance" in {f.code for f in both.findings}
