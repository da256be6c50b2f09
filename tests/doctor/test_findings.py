from __future__ import annotations

import json
import math

import pytest

from contrastkit.doctor.findings import (
    CATALOGUE,
    Finding,
    read_findings,
    should_fail,
    sort_findings,
    write_findings,
)


def test_unknown_code_or_severity_raises():
    with pytest.raises(ValueError, match="unknown finding code"):
        Finding("nope", "error", {}, "c")
    with pytest.raises(ValueError, match="severity"):
        Finding("collapse", "fatal", {}, "c")


def test_order_errors_first_then_priority():
    fs = [
        Finding("gap_shrinking", "warning", {}, "c"),
        Finding("collapse", "error", {}, "c"),
        Finding("loss_nan", "error", {}, "c"),
        Finding("logit_scale_at_clamp", "info", {}, "c"),
        Finding("duplicate_groups", "warning", {}, "c"),
    ]
    assert [f.code for f in sort_findings(fs)] == [
        "loss_nan",
        "collapse",
        "duplicate_groups",
        "gap_shrinking",
        "logit_scale_at_clamp",
    ]


def test_should_fail():
    fs = [Finding("collapse", "warning", {}, "c")]
    assert (
        not should_fail(fs, "never") and not should_fail(fs, "error") and should_fail(fs, "warning")
    )


def test_findings_json_schema_and_round_trip(tmp_path):
    f = Finding(
        "loss_at_chance",
        "error",
        {"loss_end": math.nan, "steps": (0, 10)},
        "why",
        {"train.lr": 0.01},
        "note",
    )
    path = write_findings(
        [Finding("gap_shrinking", "warning", {}, "c"), f], tmp_path / "findings.json"
    )
    data = json.loads(path.read_text())
    first = data["findings"][0]
    assert {"code", "severity", "evidence", "cause", "fix"} <= set(first)
    assert first["code"] == "loss_at_chance" and first["evidence"] == {
        "loss_end": "nan",
        "steps": [0, 10],
    }
    assert first["fix"] == {"train.lr": 0.01} and first["fix_note"] == "note"
    back = read_findings(path)
    assert [b.code for b in back] == ["loss_at_chance", "gap_shrinking"] and back[
        0
    ].fix_note == "note"
    assert read_findings(tmp_path / "absent.json") == []


def test_catalogue_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "doctor.md").read_text()
    missing = [code for code in CATALOGUE if f"`{code}`" not in doc]
    assert not missing
