"""What a run writes while it trains: `metrics.jsonl`, the loggers, the progress display.

Also the per-step scalars the loggers get (`train/loss`, each term raw and weighted, the
loss's own statistics). `signals.jsonl` belongs to the doctor's monitors; the engine only
truncates it on resume, together with `metrics.jsonl`.
"""

from __future__ import annotations

from pathlib import Path

from contrastkit.config import TrainConfig
from contrastkit.losses.result import LossOutput
from contrastkit.train.loggers import Loggers, build_loggers, truncate_jsonl
from contrastkit.train.progress import Progress

METRICS_FILE = "metrics.jsonl"
SIGNALS_FILE = "signals.jsonl"  # written by the doctor's monitors; truncated on resume here


def truncate_outputs(run_dir: Path, step: int, *, drop_evals_at_step: bool) -> None:
    """Drop the metrics and signals lines after `step` (and torn lines)."""
    truncate_jsonl(run_dir / METRICS_FILE, step, drop_evals_at_step=drop_evals_at_step)
    truncate_jsonl(run_dir / SIGNALS_FILE, step)


def open_outputs(
    cfg: TrainConfig,
    run_dir: Path,
    total_steps: int,
    *,
    name: str,
    config: dict,
    is_main: bool,
) -> tuple[Loggers, Progress]:
    """The loggers `train.loggers` asks for and the progress display."""
    loggers = build_loggers(
        cfg.loggers,
        run_dir,
        is_main=is_main,
        name=name,
        config=config,
    )
    progress = Progress(cfg.progress, total_steps, cfg.log_every, is_main=is_main)
    return loggers, progress


def close_outputs(loggers: Loggers | None, progress: Progress | None) -> None:
    """Flush and close whichever of the two was opened."""
    if loggers is not None:
        loggers.close()
    if progress is not None:
        progress.close()


def step_metrics(
    loss: LossOutput,
    lr: float,
    grad_norm: float,
    samples_per_s: float,
    *,
    epoch: int,
    phase: int,
) -> dict[str, float]:
    """The scalars logged for one optimizer step."""
    m: dict[str, float] = {
        "epoch": float(epoch),
        "phase": float(phase),
        "train/lr": lr,
        "train/loss": float(loss.total.detach()),
        "train/grad_norm": grad_norm,
        "train/samples_per_s": samples_per_s,
    }
    for term, value in loss.terms.items():
        m[f"train/{term}"] = float(value.detach())
        m[f"train/{term}_weighted"] = float(loss.weights.get(term, 0.0)) * float(value.detach())
    m.update({f"train/{k}": float(v) for k, v in loss.stats.items()})
    return m
