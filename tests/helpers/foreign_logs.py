"""Writers of real logs in other tools' formats, for the `doctor logs` tests
(tests/doctor/logs/)."""

from __future__ import annotations

import json
from pathlib import Path


def open_clip_steps(steps_per_epoch: int, epochs: int, log_every: int) -> list[int]:
    """The steps open_clip's train_one_epoch logs at: every `log_every` batches and each
    epoch's last batch (step = steps_per_epoch * epoch + i)."""
    out = []
    for e in range(epochs):
        for i in range(steps_per_epoch):
            if i % log_every == 0 or i == steps_per_epoch - 1:
                out.append(steps_per_epoch * e + i)
    return out


def write_open_clip_tb(
    folder: Path,
    steps: list[int],
    scale: list[float],
    loss: list[float],
    *,
    lr: float = 5e-4,
    val: dict[str, list[float]] | None = None,
    scale_tag: str = "train/scale",
) -> Path:
    """An event folder with open_clip's exact tags (open_clip_train/train.py's log_data,
    prefixed "train/", written by add_scalar at the global step; val/* at the epoch)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    for step, s, v in zip(steps, scale, loss, strict=True):
        writer.add_scalar("train/data_time", 0.01, step)
        writer.add_scalar("train/batch_time", 0.2, step)
        writer.add_scalar("train/samples_per_second", 1280.0, step)
        writer.add_scalar("train/samples_per_second_per_gpu", 1280.0, step)
        writer.add_scalar(scale_tag, s, step)
        writer.add_scalar("train/lr", lr, step)
        writer.add_scalar("train/contrastive_loss", v, step)
        writer.add_scalar("train/loss", v, step)
    for name, values in (val or {}).items():
        for epoch, v in enumerate(values):
            writer.add_scalar(f"val/{name}", v, epoch)
            writer.add_scalar("val/epoch", epoch, epoch)
    writer.close()
    return folder


def geometric(start: float, end: float, n: int) -> list[float]:
    """n values from start to end at a constant ratio."""
    return [start * (end / start) ** (i / (n - 1)) for i in range(n)]


def linear(start: float, end: float, n: int) -> list[float]:
    """n values from start to end in equal steps."""
    return [start + (end - start) * i / (n - 1) for i in range(n)]


def first_last_fifth(values: list[float]) -> tuple[float, float]:
    """Mean of the first and last fifth, computed here (not by the doctor)."""
    n = max(len(values) // 5, 1)
    return sum(values[:n]) / n, sum(values[-n:]) / n


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_open_clip_out_log(
    path: Path,
    rows_per_step: int,
    steps_per_epoch: int,
    epochs: int,
    scale: list[float],
    loss: list[float],
    *,
    lr: float = 5e-4,
    log_every: int = 10,
    evals: dict[int, dict[str, float]] | None = None,
) -> list[int]:
    """An open_clip `out.log`: its logging format and train_one_epoch's / evaluate's
    f-strings, one value of `scale` / `loss` per logged line; returns the global steps
    of the lines (what the event file would have used)."""
    import logging

    logger = logging.getLogger(f"open_clip_test_{path}")
    handler = logging.FileHandler(path)
    handler.setFormatter(
        logging.Formatter("%(asctime)s | %(levelname)s | %(message)s", datefmt="%Y-%m-%d,%H:%M:%S")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    per_epoch = rows_per_step * steps_per_epoch
    digits = len(str(per_epoch))
    steps = []
    for epoch in range(epochs):
        for i in range(steps_per_epoch):
            if i % log_every and i != steps_per_epoch - 1:
                continue
            k = len(steps)
            seen = (i + 1) * rows_per_step
            percent = 100.0 * (i + 1) / steps_per_epoch
            losses = f"Contrastive_loss: {loss[k]:#.5g} ({loss[k]:#.5g}) Loss: {loss[k]:#.5g} ({loss[k]:#.5g})"
            logger.info(
                f"Train Epoch: {epoch} [{seen:>{digits}}/{per_epoch} ({percent:.0f}%)] "
                f"Data (t): 0.012 Batch (t): 0.250, {rows_per_step / 0.25:#g}/s, {rows_per_step / 0.5:#g}/s/gpu "
                f"LR: {lr:5f} Logit Scale: {scale[k]:.3f} " + losses
            )
            steps.append(steps_per_epoch * epoch + i)
        for e, metrics in (evals or {}).items():
            if e == epoch + 1 or (e == 0 and epoch == 0):
                logger.info(f"Eval Epoch: {e} [{rows_per_step} / 10000]\tClip Loss: 2.000000\t")
                logger.info(
                    f"Eval Epoch: {e} "
                    + "\t".join(f"{k}: {round(v, 4):.4f}" for k, v in metrics.items())
                )
    logger.removeHandler(handler)
    handler.close()
    return steps
