"""With `model.init_from`, the at-start evaluation also scores the random weights the
model had before the init loaded (`at_random/`, validation split): the numbers equal a
scratch run's own at-start evaluation, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.app.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"
TINY = [
    "data.max_rows=96",
    "data.batch_size=32",
    "train.epochs=1",
    "train.progress=none",
    "doctor.enabled=false",
]


def _train(run_dir: Path, *overrides: str) -> dict:
    args = ["train", str(EXAMPLES / "digits.yaml"), "--run-dir", str(run_dir)]
    for o in [*TINY, *overrides]:
        args += ["-o", o]
    assert main(args) == 0
    return json.loads((run_dir / "at_start.json").read_text())


@pytest.mark.slow
def test_random_reference_equals_a_scratch_runs_start(tmp_path) -> None:
    pre = tmp_path / "pre"
    args = ["train", str(EXAMPLES / "digits.yaml"), "--run-dir", str(pre)]
    for o in [*TINY, "train.seed=7"]:  # other weights than the runs below start from
        args += ["-o", o]
    assert main(args) == 0
    initialised = _train(tmp_path / "init", f"model.init_from={pre}")
    scratch = _train(tmp_path / "scratch", "eval.at_start=true")
    random_keys = sorted(k for k in initialised if k.startswith("at_random/"))
    assert random_keys and all(k.startswith("at_random/val/") for k in random_keys)
    for key in random_keys:
        assert initialised[key] == scratch[key.replace("at_random/", "at_start/")], key
    # The init's own at-start numbers are another model's: they differ from random.
    assert any(
        initialised[k.replace("at_random/", "at_start/")] != initialised[k] for k in random_keys
    )
    assert not any(k.startswith("at_random/") for k in scratch)  # no init, no reference
