"""`train()` wiring: one tiny end-to-end run on the demo data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.config import load_config
from contrastkit.errors import RunDirError

DIGITS = Path(__file__).parents[2] / "src" / "contrastkit" / "examples" / "digits.yaml"


def test_load_run_missing_dir_is_run_dir_error(tmp_path) -> None:
    from contrastkit.train import load_run

    with pytest.raises(RunDirError, match="no config.yaml"):
        load_run(tmp_path / "nothing")


@pytest.mark.slow
def test_tiny_digits_run_end_to_end(tmp_path) -> None:
    pytest.importorskip("sklearn")
    from contrastkit.app.run import train
    from contrastkit.train import load_run

    overrides = [
        "train.epochs=1",
        "train.max_steps=2",
        "train.accumulate=2",
        "data.batch_size=16",
        "data.max_rows=64",
        "train.progress=none",
        "train.loggers.tensorboard=false",
        "eval.splits=[val]",
        f"data.cache_dir={tmp_path / 'cache'}",
        "doctor.every=1",
    ]
    summary = train(load_config(DIGITS, overrides), tmp_path / "run")
    assert summary["train/steps"] == 2 and "val/text_to_image/R@1" in summary
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["val/text_to_image/R@1"] == summary["val/text_to_image/R@1"]
    assert (tmp_path / "run" / "checkpoints" / "best.json").exists()
    loaded = load_run(tmp_path / "run", "best", with_data=False)
    assert loaded.checkpoint.name == "step_000002" and loaded.tokenizer.vocab_size > 0


@pytest.mark.slow
def test_a_run_that_stops_early_still_explains_why(tmp_path) -> None:
    """lr=1e30 blows up every step; the run stops (exit 2 in the CLI) after max_bad_steps,
    and findings.json, written on the way out, names the cause."""
    pytest.importorskip("sklearn")
    from contrastkit.app.run import train
    from contrastkit.train.nonfinite import NonFiniteError

    overrides = [
        "train.epochs=1",
        "train.lr=1e30",
        "train.max_bad_steps=2",
        "data.batch_size=16",
        "data.max_rows=64",
        "train.progress=none",
        "train.loggers.tensorboard=false",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    with pytest.raises(NonFiniteError):
        train(load_config(DIGITS, overrides), tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"].startswith("failed: NonFiniteError")
    assert info["stopped"]["nonfinite"] is True
    findings = json.loads((tmp_path / "run" / "findings.json").read_text())["findings"]
    assert findings[0]["code"] == "loss_nan", [f["code"] for f in findings]
