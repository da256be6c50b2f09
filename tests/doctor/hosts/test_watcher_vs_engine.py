"""Side by side: the same broken configuration trained by contrastkit's engine and by a
plain PyTorch loop with the watcher attached; both doctors must name the same top cause.

The contrastkit runs are the tiny digits-captions runs of bench/recipes.py (as in
tests/doctor/test_broken_runs.py); the plain loop is bench/watcher.py's two MLP towers on
the same real digits with a hand-written CLIP loss: nothing of contrastkit's model, loss
or engine, only `attach`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.recipes import BASE, CAPTION, CLIP
from bench.watcher import train_plain

from helpers.run_findings import train_findings

# case -> (contrastkit -o overrides, train_plain arguments, the expected top cause)
CASES: dict[str, tuple[list[str], dict, str]] = {
    "softmax temperature 10": (
        [f"loss.objectives=[{json.dumps({**CLIP, 'temperature': 10.0})}]"],
        {"temperature": 10.0},
        "temperature_out_of_range",
    ),
    "learning rate 1e-12": (["train.lr=1e-12"], {"lr": 1e-12}, "lr_zero"),
    "learning rate 1e-7": (["train.lr=1e-7"], {"lr": 1e-7, "steps": 40}, "lr_too_small"),
    "auxiliary term at weight 4": (
        [*CAPTION, "loss.captioning={weight: 4.0}"],
        {"aux_weight": 4.0},
        "aux_dominates_loss",
    ),
    # The plain loop's lr drops with its batch (1e-2 at 32 -> 1e-3 at 4), as one would.
    "batch of 4": (
        ["data.batch_size=4", "train.epochs=1"],
        {"batch_size": 4, "lr": 1e-3},
        "too_few_negatives",
    ),
    # One loss per micro-batch of 4, 8 per optimizer step: the watcher counts the
    # observe() calls per step, the engine reads train.accumulation.
    "naive accumulation of 8 x 4": (
        ["data.batch_size=4", "train.accumulate=8", "train.accumulation=naive"],
        {"batch_size": 4, "accumulate": 8, "lr": 1e-3},
        "naive_accumulation_no_negatives",
    ),
    "learning rate 5 without clipping": (
        ["train.lr=5", "train.grad_clip=null"],
        {"lr": 5.0, "steps": 40},  # 20 steps would be run_too_short's before the lr's
        "lr_too_large",
    ),
}


def _top(findings: list[dict]) -> str:
    serious = [f for f in findings if f["severity"] != "info"]
    return serious[0]["code"] if serious else "none"


def _contrastkit_run(tmp_path: Path, overrides: list[str]) -> list[dict]:
    return train_findings(tmp_path, BASE, overrides)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_watcher_and_engine_find_the_same_top_cause(case, tmp_path):
    overrides, plain_args, expected = CASES[case]
    engine = _top(_contrastkit_run(tmp_path / "engine", overrides))
    watcher = _top(train_plain(tmp_path / "plain", write=False, **{"steps": 20, **plain_args}))
    assert (engine, watcher) == (expected, expected), f"{case}: engine {engine}, watcher {watcher}"
