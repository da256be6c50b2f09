from __future__ import annotations

import json

import pytest

import contrastkit.data
from contrastkit.config import dump_config
from contrastkit.doctor.findings import Finding, write_findings
from contrastkit.doctor.run import doctor_data, doctor_run
from contrastkit.errors import RunDirError
from helpers.doctor_toys import bundle, make_config, row


def _run_dir(tmp_path, signals, metrics=()):
    (tmp_path / "config.yaml").write_text(
        dump_config(make_config(["loss.objectives.0.temperature=10.0"]))
    )
    (tmp_path / "signals.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in signals) + '{"torn'
    )
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return tmp_path


def test_doctor_run_writes_outputs(tmp_path):
    signals = [
        {
            "step": 10 * i,
            "monitor": "loss",
            "contrastive/logit_scale": 0.1,
            "loss/contrastive": 1.386,
        }
        for i in range(5)
    ]
    signals.append(
        {"step": 0, "monitor": "loss", "contrastive/logit_scale": 0.1, "loss/contrastive": 1.386}
    )  # resumed duplicate
    run = _run_dir(tmp_path, signals, [{"step": 7, "train/loss": float("nan")}])
    write_findings(
        [Finding("rows_skipped", "warning", {"rows_skipped": 2}, "c")], run / "data_findings.json"
    )
    findings = doctor_run(run)
    codes = [f.code for f in findings]
    assert codes[:2] == ["loss_nan", "temperature_out_of_range"]
    # The symptom stays listed, demoted below the causes that explain it.
    chance = findings[codes.index("loss_at_chance")]
    assert chance.severity == "warning"
    assert "temperature_out_of_range" in chance.evidence["explained_by"]
    assert "rows_skipped" in codes
    saved = json.loads((run / "findings.json").read_text())["findings"]
    assert [f["code"] for f in saved] == codes
    assert (run / "training_curves.png").is_file()


def test_doctor_run_needs_a_run_dir(tmp_path):
    with pytest.raises(RunDirError, match="config.yaml"):
        doctor_run(tmp_path / "missing")


def test_doctor_data_builds_and_checks(tmp_path, monkeypatch):
    rows = [row(i, f"g{i}", text="same caption") for i in range(3)]
    seen = {}

    def fake_build(cfg_data):
        seen["manifest"] = cfg_data.manifest
        return bundle(rows)

    monkeypatch.setattr(contrastkit.data, "build_datasets", fake_build, raising=False)
    out = tmp_path / "data_findings.json"
    findings = doctor_data(make_config(), out=out)
    assert [f.code for f in findings] == ["duplicate_groups"] and seen["manifest"] == "m.jsonl"
    assert json.loads(out.read_text())["findings"][0]["code"] == "duplicate_groups"
