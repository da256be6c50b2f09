"""Optuna sweep: space validation, trials on the toy engine, best config written."""

from __future__ import annotations

import pytest
import yaml

from contrastkit.errors import ConfigError
from helpers.train_toys import toy_engine

optuna = pytest.importorskip("optuna")

from contrastkit.app.sweep import PruningCallback, sweep  # noqa: E402

CONFIG = {
    "data": {"manifest": "builtin:toy", "batch_size": 8},
    "model": {
        "towers": {
            "a": {"streams": {"x_a": {"type": "mlp"}}},
            "b": {"streams": {"x_b": {"type": "mlp"}}},
        }
    },
    "train": {
        "epochs": 2,
        "progress": "none",
        "loggers": {"tensorboard": False},
        "device": "cpu",
        "select_metric": "val/a_to_b/R@1",
    },
}


def _toy_train(cfg, run_dir, *, callbacks=()):
    engine = toy_engine(run_dir, cfg.train, callbacks=callbacks, n=16, batch=8)
    engine.fit()
    return {**engine.parts.evaluate(engine.model), "lr": cfg.train.lr}


def _files(tmp_path, space):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    return tmp_path / "cfg.yaml", tmp_path / "space.yaml"


@pytest.mark.slow
def test_three_trials_share_sqlite_study_and_write_best(tmp_path) -> None:
    space = {
        "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        "train.lr_schedule": {"type": "categorical", "choices": ["cosine", "constant"]},
        "train.warmup_steps": {"type": "int", "low": 0, "high": 2},
    }
    cfg, sp = _files(tmp_path, space)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    best = sweep(
        cfg, sp, trials=2, storage=storage, run_root=tmp_path / "runs", train_fn=_toy_train
    )
    best = sweep(
        cfg, sp, trials=1, storage=storage, run_root=tmp_path / "runs", train_fn=_toy_train
    )
    study = optuna.load_study(study_name="contrastkit", storage=storage)
    assert len(study.trials) == 3  # a second worker joined the same study
    saved = yaml.safe_load((tmp_path / "runs" / "best_config.yaml").read_text())
    assert saved["train"]["lr"] == pytest.approx(best["params"]["train.lr"])
    assert (tmp_path / "runs" / "trial_000" / "metrics.jsonl").exists()


def test_unknown_key_is_rejected_before_any_trial(tmp_path) -> None:
    cfg, sp = _files(tmp_path, {"train.learning_rate": {"type": "float", "low": 0.1, "high": 1.0}})
    calls = []
    with pytest.raises(ConfigError, match="'train.learning_rate' is not a config value"):
        sweep(
            cfg, sp, trials=1, run_root=tmp_path / "runs", train_fn=lambda *a, **k: calls.append(1)
        )
    assert calls == []


def test_pruning_callback_raises_trial_pruned() -> None:
    class Trial:
        reported: list = []

        def report(self, value, step):
            self.reported.append((value, step))

        def should_prune(self):
            return True

    class S:
        eval_metrics = {"val/m": 0.25}
        epoch = 3

    trial = Trial()
    with pytest.raises(optuna.TrialPruned):
        PruningCallback(trial, "val/m").on_eval_end(S())
    assert trial.reported == [(0.25, 3)]
