"""Tiny broken digits runs for the invariant checks (issue 20 items 3-5): the lr scale from
the update-to-weight ratio, modules frozen at random init, and the negatives per query.
Each must put its cause on top; the healthy run of the same size stays silent (checked in
test_broken_runs.py::test_healthy_run_has_no_warning)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.recipes import BASE

from helpers.run_findings import train_findings


def _run(tmp_path: Path, overrides: list[str]) -> list[dict]:
    return train_findings(tmp_path, BASE, overrides)


def _serious(findings: list[dict]) -> list[dict]:
    return [f for f in findings if f["severity"] != "info"]


@pytest.mark.slow
def test_lr_1e7_is_lr_too_small_and_explains_the_loss_at_chance(tmp_path):
    findings = _serious(_run(tmp_path, ["train.lr=1e-7"]))
    top = findings[0]
    assert top["code"] == "lr_too_small", [f["code"] for f in findings]
    assert top["evidence"]["update_ratio_max"] < 1e-6
    (chance,) = [f for f in findings if f["code"] == "loss_at_chance"]
    assert "lr_too_small" in chance["evidence"]["explained_by"]
    assert chance["fix"] == top["fix"] and chance["fix"]["train.lr"] > 1e-5


@pytest.mark.slow
def test_both_encoders_frozen_at_random_init(tmp_path):
    findings = _serious(
        _run(tmp_path, ["train.freeze=[towers.image.encoders, towers.text.encoders]"])
    )
    top = findings[0]
    assert (top["code"], top["severity"]) == ("frozen_at_random_init", "error")
    assert top["fix"] == {"train.freeze": []}


@pytest.mark.slow
def test_batch_4_has_too_few_negatives(tmp_path):
    findings = _serious(_run(tmp_path, ["data.batch_size=4", "train.max_steps=30"]))
    top = findings[0]
    assert top["code"] == "too_few_negatives", [f["code"] for f in findings]
    assert top["evidence"]["negatives_per_query"] <= 3 and top["evidence"]["contrastive_batch"] == 4
    assert top["fix"]["train.accumulation"] == "cached"
    assert top["fix"]["train.accumulate"] * 4 >= 256


@pytest.mark.slow
def test_naive_accumulation_of_batch_4_adds_no_negatives(tmp_path):
    overrides = ["data.batch_size=4", "train.accumulate=8", "train.accumulation=naive"]
    findings = _serious(_run(tmp_path, overrides))
    top = findings[0]
    assert top["code"] == "naive_accumulation_no_negatives", [f["code"] for f in findings]
    assert top["evidence"]["contrastive_batch"] == 4 and top["evidence"]["global_batch"] == 32
    assert top["fix"] == {"train.accumulation": "cached"}
