"""`doctor logs` on open_clip's text log `out.log` (its logging format and f-strings):
the same diagnosis as its TensorBoard events."""

from __future__ import annotations

import math

import pytest

from contrastkit.doctor.logs import diagnose_logs
from helpers.foreign_logs import (
    geometric,
    linear,
    write_open_clip_out_log,
    write_open_clip_tb,
)

EPOCHS, PER_EPOCH, ROWS = 4, 50, 512  # 256 per GPU x 2 GPUs
N = EPOCHS * 6  # logged lines: batches 0, 10, ..., 40 and 49 of each epoch
EVALS = {
    e: {"imagenet-zeroshot-val-top1": v, "epoch": e}
    for e, v in enumerate([0.6, 0.55, 0.5, 0.5, 0.48])
}


def test_out_log_steps_batch_and_scale(tmp_path):
    scale, loss = geometric(14.3, 1.02, N), linear(6.0, 4.0, N)
    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    steps = write_open_clip_out_log(
        run / "out.log", ROWS, PER_EPOCH, EPOCHS, scale, loss, evals=EVALS
    )
    result = diagnose_logs(run)
    assert [s.format for s in result.sources] == ["open_clip_log"]
    assert result.batch_size == ROWS  # the samples of the first logged step
    codes = [f.code for f in result.findings]
    assert codes[:2] == ["worse_than_start", "logit_scale_toward_one"]
    worse = result.findings[0]
    # the last train line is each epoch's last batch: 50 steps per epoch, epoch 4 = step 200
    assert (worse.evidence["at_start"], worse.evidence["final"], worse.evidence["step"]) == (
        0.6,
        0.48,
        200,
    )
    toward = result.findings[1]
    assert toward.evidence["steps"] == [steps[0], steps[-1]] == [0, 199]


def test_out_log_and_event_file_agree(tmp_path):
    scale, loss = geometric(14.3, 1.02, N), linear(6.0, 4.0, N)
    (tmp_path / "text").mkdir()
    steps = write_open_clip_out_log(
        tmp_path / "text" / "out.log", ROWS, PER_EPOCH, EPOCHS, scale, loss
    )
    write_open_clip_tb(tmp_path / "events", steps, scale, loss)
    text = diagnose_logs(tmp_path / "text", batch_size=ROWS).findings
    events = diagnose_logs(tmp_path / "events", batch_size=ROWS).findings
    assert [f.code for f in text] == [f.code for f in events] == ["logit_scale_toward_one"]
    for key in ("start", "end"):  # out.log prints the scale with 3 decimals
        assert text[0].evidence[key] == pytest.approx(events[0].evidence[key], abs=1e-3)


def test_lr_printed_as_zero_is_not_read_as_zero(tmp_path):
    """open_clip prints LR with 6 decimals: 1e-7 shows as 0.000000, which is not lr 0."""
    (tmp_path / "run").mkdir()
    scale, loss = linear(14.3, 15.0, N), linear(5.0, 3.0, N)
    write_open_clip_out_log(
        tmp_path / "run" / "out.log", ROWS, PER_EPOCH, EPOCHS, scale, loss, lr=1e-7
    )
    result = diagnose_logs(tmp_path / "run")
    assert "lr_zero" not in {f.code for f in result.findings}
    assert "lr_zero" in {n.rule for n in result.not_run}
    assert any("0.000000" in n for n in result.notes)
    assert math.isclose(result.batch_size, ROWS)
