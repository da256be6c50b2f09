"""`contrastkit doctor logs`: the files it writes, and exit code 2 with one paragraph
naming the file or argument for every bad input."""

from __future__ import annotations

import json

import pytest

from contrastkit.app.cli import main
from contrastkit.doctor.findings import read_findings
from helpers.foreign_logs import geometric, linear, open_clip_steps, write_open_clip_tb


def test_writes_findings_with_not_run_and_report(tmp_path, capsys):
    steps = open_clip_steps(50, 4, 10)
    write_open_clip_tb(
        tmp_path / "run" / "tb", steps, geometric(14.3, 1.02, len(steps)), linear(5, 3, len(steps))
    )
    assert main(["doctor", "logs", str(tmp_path / "run"), "--batch-size", "256"]) == 0
    out = tmp_path / "run" / "doctor"  # the default --out
    assert [f.code for f in read_findings(out / "findings.json")] == ["logit_scale_toward_one"]
    data = json.loads((out / "findings.json").read_text())
    not_run = {n["rule"]: n["needs"] for n in data["not_run"]}
    assert "contrastkit.doctor.attach" in not_run["collapse"]
    assert "doctor data" in not_run["data checks (duplicate_groups, split_leakage, ...)"]
    assert data["batch_size"] == 256 and data["logs"][0]["host"] == "open_clip"
    page = (out / "report.html").read_text()
    assert "logit_scale_toward_one" in page and "rules not run" in page
    assert (out / "training_curves.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "logit_scale_toward" in printed and "not run" in printed  # the table may cut codes


def _csv_without_step(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("iteration,loss\n0,2.0\n1,1.9\n")
    return [str(path)], "log.csv"


def _bad_jsonl_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "loss": 2.0}\n{"step": 1, "loss": \n')
    return [str(path)], "m.jsonl, line 2"


def _no_logs(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    return [str(tmp_path)], "no log the doctor reads"


def _missing(tmp_path):
    return [str(tmp_path / "nope")], "nope: no such file or folder"


def _map_without_equals(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "loss": 2.0}\n')
    return [str(path), "--map", "logit_scale"], "--map 'logit_scale'"


def _map_unknown_name(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "loss": 2.0}\n')
    return [str(path), "--map", "scale=train/s"], "'scale' is not a signal name"


def _map_tag_not_logged(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "loss": 2.0}\n')
    return [str(path), "--map", "lr=train/lr"], "no tag 'train/lr' in the logs"


def _unknown_metric(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "loss": 2.0, "val/R@1": 0.1}\n')
    return [str(path), "--metric", "R@5"], "--metric 'R@5'"


def _two_runs(tmp_path):
    for run in ("a", "b"):
        write_open_clip_tb(tmp_path / run, [0, 1], [14.3, 14.3], [5.0, 4.0])
    return [str(tmp_path)], "2 TensorBoard logs found"


@pytest.mark.parametrize(
    "case",
    [
        _csv_without_step,
        _bad_jsonl_line,
        _no_logs,
        _missing,
        _map_without_equals,
        _map_unknown_name,
        _map_tag_not_logged,
        _unknown_metric,
        _two_runs,
    ],
)
def test_bad_input_exits_2_naming_it(tmp_path, capsys, case):
    args, named = case(tmp_path)
    assert main(["doctor", "logs", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in " ".join(err.split())
    assert "Traceback" not in err
