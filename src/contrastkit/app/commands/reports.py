"""Commands that read runs and write pages: doctor run, report and compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from contrastkit.app.commands import console
from contrastkit.errors import ContrastkitError


def doctor_run_cmd(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Diagnose a finished or running run; writes findings.json and training_curves.png."""
    from contrastkit.doctor.report import print_findings
    from contrastkit.doctor.run import doctor_run

    findings = doctor_run(run_dir)
    print_findings(findings, console)
    report_cmd(run_dir)


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (finished or running)")],
    out: Annotated[Path | None, typer.Option("--out", help="default RUN_DIR/report.html")] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="split of the examples (default test)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the random examples")] = 0,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="best (default) | last | a path")
    ] = None,
) -> None:
    """Write report.html: metrics, curves, findings, retrieval examples, config (one file)."""
    from contrastkit.app.report import write_report

    path = write_report(run_dir, out=out, split=split, seed=seed, checkpoint=checkpoint)
    console.print(f"wrote {path}")


def compare_cmd(
    run_dirs: Annotated[list[Path] | None, typer.Argument(help="run directories")] = None,
    out: Annotated[Path, typer.Option("--out", help="HTML page")] = Path("compare.html"),
    study: Annotated[
        str | None,
        typer.Option("--study", help="Optuna storage of a sweep, e.g. sqlite:///study.db"),
    ] = None,
    study_name: Annotated[str | None, typer.Option("--study-name")] = None,
    run_root: Annotated[
        Path, typer.Option("--run-root", help="the sweep's --run-root (trial folders)")
    ] = Path("runs/sweep"),
) -> None:
    """Compare runs: config keys that differ, final metrics (best marked), curves overlaid."""
    from contrastkit.app.compare import (
        load_views,
        print_comparison,
        study_run_dirs,
        write_compare_html,
    )
    from contrastkit.app.report.output import check_out

    check_out(out)  # before the runs are read
    runs: list[tuple[str | None, Path]] = [(None, Path(p)) for p in run_dirs or []]
    if study is not None:
        runs += study_run_dirs(study, study_name, run_root)
    if len(runs) < 2:
        raise ContrastkitError("compare needs two or more run directories (or --study URL)")
    views = load_views(runs)
    print_comparison(views, console)
    console.print(f"wrote {write_compare_html(views, out)}")
