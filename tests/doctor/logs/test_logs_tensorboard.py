"""`doctor logs` on TensorBoard event folders in open_clip's format (written with
torch's SummaryWriter and open_clip's exact tag names)."""

from __future__ import annotations

import math

import pytest

from contrastkit.doctor.logs import diagnose_logs
from helpers.foreign_logs import (
    first_last_fifth,
    geometric,
    linear,
    open_clip_steps,
    write_open_clip_tb,
)

B = 256
STEPS = open_clip_steps(steps_per_epoch=50, epochs=4, log_every=10)  # 24 records


def test_open_clip_scale_falling_to_one_is_logit_scale_toward_one(tmp_path):
    scale = geometric(14.3, 1.02, len(STEPS))
    loss = linear(5.0, 3.0, len(STEPS))  # learning, well below ln 256 = 5.55
    write_open_clip_tb(tmp_path / "run" / "tensorboard", STEPS, scale, loss)
    result = diagnose_logs(tmp_path / "run", batch_size=B)
    assert result.host == "open_clip" and [s.format for s in result.sources] == ["tensorboard"]
    top = result.findings[0]
    assert top.code == "logit_scale_toward_one"
    start, end = first_last_fifth(scale)
    # open_clip's train/scale is already exp(logit_scale), contrastkit's signal too: no conversion
    assert top.evidence["start"] == pytest.approx(start, rel=1e-3)
    assert top.evidence["end"] == pytest.approx(end, rel=1e-3)
    assert top.evidence["steps"] == [STEPS[0], STEPS[-1]]
    # the fix in open_clip's words; the rule's contrastkit keys kept in the evidence
    assert top.fix == {} and "open_clip" in top.fix_note
    assert top.evidence["contrastkit_fix"]["loss.objectives.0.temperature"] == 0.07
    assert [f.code for f in result.findings] == ["logit_scale_toward_one"]


def test_healthy_open_clip_log_is_silent(tmp_path):
    scale = linear(14.3, 40.0, len(STEPS))
    loss = geometric(5.4, 1.5, len(STEPS))
    val = {"image_to_text_R@1": [0.1, 0.2, 0.3, 0.4, 0.45], "clip_val_loss": [3, 2.5, 2, 1.8, 1.7]}
    write_open_clip_tb(tmp_path / "tb", STEPS, scale, loss, val=val)
    result = diagnose_logs(tmp_path / "tb", batch_size=B)
    assert result.findings == []
    assert result.select_metric == "val/image_to_text_R@1"
    # every scalar rule ran: none of them is listed as not run
    scalar = {"loss_at_chance", "loss_nan", "loss_not_decreasing", "lr_zero", "worse_than_start"}
    scalar |= {"temperature_out_of_range", "logit_scale_toward_one", "logit_scale_at_clamp"}
    assert not scalar & {n.rule for n in result.not_run}


def test_newer_logit_scale_tag_reads_like_train_scale(tmp_path):
    scale = geometric(14.3, 1.02, len(STEPS))
    loss = linear(5.0, 3.0, len(STEPS))
    write_open_clip_tb(tmp_path / "a", STEPS, scale, loss)
    write_open_clip_tb(tmp_path / "b", STEPS, scale, loss, scale_tag="train/logit_scale")
    old, new = (diagnose_logs(tmp_path / d, batch_size=B).findings for d in "ab")
    assert [f.to_dict() for f in old] == [f.to_dict() for f in new]


def test_mapped_temperature_is_converted_once(tmp_path):
    """A tag holding tau (--map temperature=TAG) becomes the scale 1/tau; one holding the
    parameter log(1/tau) (--map log_logit_scale=TAG) becomes exp of it."""
    tau = geometric(0.07, 0.98, len(STEPS))
    loss = linear(5.0, 3.0, len(STEPS))
    write_open_clip_tb(tmp_path / "tau", STEPS, tau, loss, scale_tag="train/temp")
    logs = [math.log(1 / t) for t in tau]
    write_open_clip_tb(tmp_path / "log", STEPS, logs, loss, scale_tag="train/log_scale")
    start, end = first_last_fifth([1 / t for t in tau])
    for folder, item in (
        ("tau", "temperature=train/temp"),
        ("log", "log_logit_scale=train/log_scale"),
    ):
        result = diagnose_logs(tmp_path / folder, batch_size=B, maps=[item])
        top = result.findings[0]
        assert top.code == "logit_scale_toward_one"
        assert top.evidence["start"] == pytest.approx(start, rel=1e-3)
        assert top.evidence["end"] == pytest.approx(end, rel=1e-3)


def test_val_at_epochs_placed_at_steps_and_worse_than_start(tmp_path):
    """open_clip logs val/* at the epoch; the last train step (each epoch's last batch is
    logged) gives 50 steps per epoch, so epoch 4 is step 200."""
    scale = linear(14.3, 20.0, len(STEPS))
    loss = geometric(5.4, 2.0, len(STEPS))
    val = {"imagenet-zeroshot-val-top1": [0.60, 0.55, 0.52, 0.50, 0.48]}
    write_open_clip_tb(tmp_path / "tb", STEPS, scale, loss, val=val)
    result = diagnose_logs(tmp_path / "tb", batch_size=B)
    worse = [f for f in result.findings if f.code == "worse_than_start"]
    assert len(worse) == 1
    assert worse[0].evidence["at_start"] == 0.6 and worse[0].evidence["final"] == 0.48
    assert worse[0].evidence["step"] == 200
    assert any("50 (steps per epoch)" in n for n in result.notes)


def test_open_clip_siglip_fixed_bias_far_from_log_1_over_b(tmp_path):
    """A SigLIP run (train/logit_bias logged) whose bias stays at -10 with a batch of 4:
    the prior log-odds of a positive is log 1/4 = -1.39, 8.6 nats away."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    for i, step in enumerate(STEPS):
        writer.add_scalar("train/logit_scale", 10.0, step)
        writer.add_scalar("train/logit_bias", -10.0, step)
        writer.add_scalar("train/lr", 1e-4, step)
        writer.add_scalar("train/contrastive_loss", 0.69 - 0.0001 * i, step)
        writer.add_scalar("train/loss", 0.69 - 0.0001 * i, step)
    writer.close()
    result = diagnose_logs(tmp_path / "tb", batch_size=4)
    bias = [f for f in result.findings if f.code == "siglip_bias_off"]
    assert len(bias) == 1
    assert bias[0].evidence["logit_bias"] == -10.0
    assert bias[0].evidence["log_1_over_B"] == pytest.approx(-math.log(4), rel=1e-3)


def test_open_clip_params_txt_gives_the_contrastive_batch(tmp_path):
    """open_clip writes its arguments to <logs>/<name>/params.txt (`name: value`, sorted);
    its loss gathers all GPUs' features, so B = batch_size x world_size x accum_freq."""
    run = tmp_path / "logs" / "2026_12_06-run"
    params = {"accum_freq": 1, "batch_size": 128, "lr": 0.0005, "warmup": 10000, "world_size": 2}
    run.mkdir(parents=True)
    (run / "params.txt").write_text("".join(f"{k}: {v}\n" for k, v in sorted(params.items())))
    loss = [math.log(256) - 0.001 * i for i in range(len(STEPS))]  # flat at ln 256
    write_open_clip_tb(run / "tensorboard", STEPS, linear(14.3, 15.0, len(STEPS)), loss)
    result = diagnose_logs(run)
    assert result.batch_size == 256
    assert any("batch_size 128 x world_size 2 x accum_freq 1" in n for n in result.notes)
    chance = [f for f in result.findings if f.code == "loss_at_chance"]
    assert len(chance) == 1 and chance[0].evidence["chance"] == pytest.approx(
        math.log(256), rel=1e-3
    )


def test_scale_pinned_at_open_clips_clamp_is_logit_scale_at_clamp(tmp_path):
    """open_clip clamps exp(t) at 100; a scale there for most of the records is pinned."""
    scale = linear(14.3, 100.0, 6) + [100.0] * (len(STEPS) - 6)
    write_open_clip_tb(tmp_path / "tb", STEPS, scale, geometric(5.4, 0.5, len(STEPS)))
    result = diagnose_logs(tmp_path / "tb", batch_size=B)
    clamp = [f for f in result.findings if f.code == "logit_scale_at_clamp"]
    assert len(clamp) == 1 and clamp[0].severity == "info"
    assert clamp[0].evidence["first_step_at_clamp"] == STEPS[5]
    assert clamp[0].evidence["share_of_records"] == pytest.approx(
        (len(STEPS) - 5) / len(STEPS), rel=1e-3
    )
