"""Commands that train: train, demo (the shipped example) and sweep (many trainings)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from contrastkit.app.commands import Overrides, console
from contrastkit.app.commands.summary import print_summary

EXAMPLES_DIR = Path(__file__).parents[2] / "examples"  # src/contrastkit/examples


def _default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _rank0() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _train(
    config: Path,
    run_dir: Path | None,
    overrides: list[str],
    resume: str | None,
    overwrite: bool = False,
) -> None:
    from contrastkit.app.run import train
    from contrastkit.config import load_config

    cfg = load_config(config, overrides)
    if run_dir is None:
        run_dir = _default_run_dir(cfg.name)
    summary = train(cfg, run_dir, resume=resume, overwrite=overwrite)
    if _rank0():
        from contrastkit.doctor.findings import read_findings
        from contrastkit.doctor.report import print_findings

        print_summary(summary, title=f"{cfg.name}: {run_dir}")
        if cfg.doctor.enabled:
            print_findings(read_findings(Path(run_dir) / "findings.json"), console)


def train_cmd(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="run directory")] = None,
    override: Overrides = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="'auto' (newest valid checkpoint) or a path")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="move a non-empty --run-dir aside (<dir>.old-<time>)"),
    ] = False,
) -> None:
    """Train a model from CONFIG; writes config.yaml, metrics.jsonl, checkpoints, summary.json.

    A non-empty run directory is refused unless --resume or --overwrite is given."""
    _train(config, run_dir, override or [], resume, overwrite)


def demo_cmd(
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="run directory")] = None,
    override: Overrides = None,
) -> None:
    """Train a small image-text model on the shipped digits-captions data (same as
    `contrastkit train examples/digits.yaml`)."""
    _train(EXAMPLES_DIR / "digits.yaml", run_dir, override or [], None)


def sweep_cmd(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    space: Annotated[Path, typer.Option("--space", help="search space YAML")],
    trials: Annotated[int, typer.Option("--trials", help="trials for this worker")] = 10,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage, e.g. sqlite:///study.db")
    ] = None,
    study_name: Annotated[str | None, typer.Option("--study-name")] = None,
    run_root: Annotated[Path, typer.Option("--run-root", help="folder for trial runs")] = Path(
        "runs/sweep"
    ),
    override: Overrides = None,
) -> None:
    """Optuna search over config keys; several workers can share one storage."""
    from contrastkit.app.sweep import sweep

    best = sweep(
        config,
        space,
        trials=trials,
        storage=storage,
        study_name=study_name,
        run_root=run_root,
        overrides=override or [],
    )
    console.print(best)
