"""`doctor logs` on metric tables: Lightning's CSVLogger metrics.csv (the real logger),
plain JSONL / CSV files, and `--map`."""

from __future__ import annotations

import csv
import json
import math

import pytest

from contrastkit.doctor.logs import diagnose_logs
from helpers.foreign_logs import first_last_fifth, linear


@pytest.mark.slow  # importing lightning takes ~5-15 s
def test_lightning_csv_with_lr_zero_is_lr_zero(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path), name="clip")
    for i, loss in enumerate(linear(3.0, 2.9, 8)):
        # LearningRateMonitor's key for an AdamW optimizer; lr 0 all run long
        logger.log_metrics({"train_loss": loss, "lr-AdamW": 0.0, "epoch": i // 4}, step=10 * i)
    logger.log_metrics({"val_loss": 2.9, "epoch": 1}, step=70)
    logger.save()
    result = diagnose_logs(tmp_path / "clip")
    assert [(s.format, s.host) for s in result.sources] == [("lightning_csv", "lightning")]
    top = result.findings[0]
    assert top.code == "lr_zero"
    assert top.evidence["max_lr_after_warmup"] == 0.0 and top.evidence["records"] == 8
    assert "configure_optimizers" in top.fix_note


@pytest.mark.slow  # importing lightning takes ~5-15 s
def test_lightning_tensorboard_logger_is_read_with_lightnings_names(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(str(tmp_path), name="clip")
    logger.log_hyperparams({"lr": 0.0})
    for i, loss in enumerate(linear(3.0, 2.9, 8)):
        logger.log_metrics({"train_loss": loss, "lr-AdamW": 0.0, "epoch": 0}, step=10 * i)
    logger.finalize("success")
    result = diagnose_logs(tmp_path / "clip")
    assert [(s.format, s.host) for s in result.sources] == [("tensorboard", "lightning")]
    assert [f.code for f in result.findings][:1] == ["lr_zero"]


def test_jsonl_nan_loss_is_loss_nan(tmp_path):
    path = tmp_path / "metrics.jsonl"
    losses = [2.0, 1.9, 1.8, float("nan"), float("nan")]
    path.write_text(
        "".join(json.dumps({"step": 5 * i, "loss": v}) + "\n" for i, v in enumerate(losses))
    )
    result = diagnose_logs(path)
    top = result.findings[0]
    assert top.code == "loss_nan" and top.evidence["first_step"] == 15
    assert top.evidence["records"] == 2
    # no lr in the log: the lr fix is relative to the default 1e-3, and a note says so
    assert top.evidence["contrastkit_fix"] == {"train.lr": 1e-4, "train.grad_clip": 1.0}
    assert any("learning rate is not in the logs" in n for n in result.notes)


def test_csv_caption_loss_dominating_is_aux_dominates_loss(tmp_path):
    contrastive = linear(4.0, 3.0, 10)
    caption = linear(9.0, 8.5, 10)
    path = tmp_path / "log.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "contrastive_loss", "caption_loss"])
        for i, (c, t) in enumerate(zip(contrastive, caption, strict=True)):
            w.writerow([i * 20, c + t, c, t])
    result = diagnose_logs(path, batch_size=64)
    dom = [f for f in result.findings if f.code == "aux_dominates_loss"]
    assert len(dom) == 1 and dom[0].evidence["term"] == "captioning"
    shares = [t / (c + t) for c, t in zip(contrastive, caption, strict=True)]
    assert dom[0].evidence["share"] == pytest.approx(first_last_fifth(shares)[1], rel=1e-3)
    assert dom[0].evidence["contrastive_share"] == pytest.approx(
        1 - first_last_fifth(shares)[1], rel=1e-3
    )


def test_map_names_other_columns(tmp_path):
    """Columns the doctor does not know are ignored until --map names them."""
    path = tmp_path / "run.jsonl"
    rows = [{"step": 10 * i, "total": math.log(128) - 0.001 * i, "inv_tau": 14.3} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(Exception, match="no scalar the doctor reads"):
        diagnose_logs(path, batch_size=128)
    result = diagnose_logs(path, batch_size=128, maps=["loss=total", "logit_scale=inv_tau"])
    chance = [f for f in result.findings if f.code == "loss_at_chance"]
    assert len(chance) == 1 and chance[0].evidence["chance"] == pytest.approx(
        math.log(128), rel=1e-3
    )
    # a fixed scale of 14.3 is read as a fixed temperature 1/14.3: in range, nothing said
    assert "temperature_out_of_range" not in {f.code for f in result.findings}
    assert "temperature_out_of_range" not in {n.rule for n in result.not_run}


def _loss_only(tmp_path, n=8):
    path = tmp_path / "loss.jsonl"
    path.write_text(
        "".join(json.dumps({"step": i, "loss": 1.0 - 0.05 * i}) + "\n" for i in range(n))
    )
    return path


def test_batch_of_4_is_too_few_negatives(tmp_path):
    path = _loss_only(tmp_path)
    result = diagnose_logs(path, batch_size=4)
    few = [f for f in result.findings if f.code == "too_few_negatives"]
    assert len(few) == 1
    assert few[0].evidence["negatives_per_query"] == 3 and few[0].evidence["contrastive_batch"] == 4
    # without a batch size the rule has no input: listed, with what it needs
    result = diagnose_logs(path)
    assert "too_few_negatives" not in {f.code for f in result.findings}
    assert "--batch-size" in {n.rule: n.needs for n in result.not_run}["too_few_negatives"]


def test_every_rule_runs_or_is_listed_as_not_run(tmp_path):
    """A loss-only log feeds loss_nan and loss_not_decreasing; every other run-level code
    of the catalogue is listed in not_run (the data codes under one data-checks entry)."""
    from contrastkit.doctor.findings import CATALOGUE
    from contrastkit.doctor.logs.coverage import DATA_CHECKS, DATA_CODES

    result = diagnose_logs(_loss_only(tmp_path))
    listed = [n.rule for n in result.not_run]
    assert len(listed) == len(set(listed))
    expected = set(CATALOGUE) - DATA_CODES - {"loss_nan", "loss_not_decreasing"}
    assert set(listed) == expected | {DATA_CHECKS}


def test_wandb_history_of_an_open_clip_run(tmp_path):
    """open_clip's wandb.log rows as a W&B history export gives them (`_step`,
    `_runtime`, `_timestamp`; train rows also carry open_clip's own `step`, val rows do
    not): read as open_clip, its val at the real step, step 0 as the start."""
    scale, loss = [14.3 * (1.02 / 14.3) ** (i / 19) for i in range(20)], linear(5.0, 3.0, 20)
    rows = [
        {"_step": 10 * i, "_runtime": 3.0 * i, "_timestamp": 1.7e9 + i, "step": 10 * i,
         "train/loss": v, "train/contrastive_loss": v, "train/scale": s, "train/lr": 5e-4}
        for i, (s, v) in enumerate(zip(scale, loss, strict=True))
    ]  # fmt: skip
    rows.insert(0, {"_step": 0, "val/image_to_text_R@1": 0.40, "epoch": 0})
    rows.append({"_step": 190, "val/image_to_text_R@1": 0.31, "epoch": 1})
    path = tmp_path / "wandb-history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = diagnose_logs(path, batch_size=256)
    assert result.host == "open_clip"
    codes = [f.code for f in result.findings]
    assert codes == ["worse_than_start", "logit_scale_toward_one"]
    assert result.findings[0].evidence["step"] == 190
    assert result.findings[1].evidence["start"] == pytest.approx(
        first_last_fifth(scale)[0], rel=1e-3
    )


def test_fixed_temperature_10_is_out_of_range_and_explains_chance(tmp_path):
    """A CSV whose `temperature` column (tau, converted to the scale 1/tau) stays at 10:
    a softmax that cannot leave ln B, and the loss sits there."""
    path = tmp_path / "log.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "temperature"])
        for i in range(10):
            w.writerow([10 * i, math.log(64) - 0.001 * i, 10.0])
    result = diagnose_logs(path, batch_size=64)
    top, chance = result.findings[0], [f for f in result.findings if f.code == "loss_at_chance"][0]
    assert top.code == "temperature_out_of_range" and top.severity == "error"
    assert top.evidence["temperature"] == pytest.approx(10.0)
    assert chance.evidence["explained_by"] == ["temperature_out_of_range"]
