"""metrics.jsonl, resume truncation, optional trackers (skipped when not installed)."""

from __future__ import annotations

import json

import pytest

from contrastkit.config import LoggersConfig
from contrastkit.train.loggers import build_loggers, truncate_jsonl
from contrastkit.train.progress import Progress


def test_jsonl_always_written_and_truncated_on_resume(tmp_path) -> None:
    loggers = build_loggers(LoggersConfig(tensorboard=False), tmp_path)
    for step in (1, 2, 3):
        loggers.log({"train/loss": 1.0 / step}, step)
    loggers.close()
    truncate_jsonl(tmp_path / "metrics.jsonl", 2)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "train/loss": 1.0}, {"step": 2, "train/loss": 0.5}]


def test_off_main_rank_logs_nothing(tmp_path) -> None:
    loggers = build_loggers(LoggersConfig(), tmp_path / "r1", is_main=False)
    loggers.log({"x": 1.0}, 1)
    assert not (tmp_path / "r1").exists()


def test_tensorboard_event_file(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    loggers = build_loggers(LoggersConfig(tensorboard=True), tmp_path)
    loggers.log({"train/loss": 0.5, "note": "text is skipped"}, 1)
    loggers.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_wandb_offline(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = build_loggers(
        LoggersConfig(tensorboard=False, wandb=True), tmp_path, config={"train": {"lr": 0.1}}
    )
    loggers.log({"train/loss": 0.5}, 1)
    loggers.close()
    assert list((tmp_path / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_mlflow_sqlite(tmp_path) -> None:
    mlflow = pytest.importorskip("mlflow")
    loggers = build_loggers(
        LoggersConfig(tensorboard=False, mlflow=True), tmp_path, name="t", config={"a": 1}
    )
    loggers.log({"val/x_to_y/R@1": 0.75}, 3)
    loggers.close()
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("t").experiment_id])[0]
    assert run.data.metrics["val/x_to_y/R_at_1"] == 0.75


def test_plain_progress_prints_every_log_every(capsys) -> None:
    progress = Progress("plain", total_steps=4, log_every=2)
    for step in range(1, 5):
        progress.update(
            step, {"train/loss": 0.5, "train/lr": 1e-3, "contrastive/logit_scale": 14.3}
        )
    out = capsys.readouterr().out.splitlines()
    assert (
        len(out) == 2 and "step 2" in out[0] and "loss 0.5000" in out[0] and "scale 14.30" in out[0]
    )
    Progress("none", 4, 1).update(1, {})
    assert capsys.readouterr().out == ""
