"""`contrastkit doctor logs PATH`: diagnose a run trained by another tool from its logs.

The diagnosis is the library's (`contrastkit.doctor.logs`); here: the options, the
printed findings and rules not run, and report.html (the application's pages).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated

import typer

from contrastkit.app.commands import console
from contrastkit.doctor.logs import LogsDiagnosis


def _page(result: LogsDiagnosis, out: Path) -> Path:
    """report.html: the findings, the rules not run with what they need, the logs read
    and the doctor's panels drawn from the logs' signals."""
    from contrastkit.app.report.html import figure, findings_section, page
    from contrastkit.app.report.plots import doctor_panels_uri

    not_run = "".join(
        f"<tr><td><b>{html.escape(n.rule)}</b></td><td>{html.escape(n.needs)}</td>"
        f"<td>{n.source}</td></tr>"
        for n in result.not_run
    )
    logs = "".join(
        f"<tr><td>{html.escape(str(s.path))}</td><td>{s.format}</td><td>{s.host}</td></tr>"
        for s in result.sources
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    batch = "unknown (--batch-size)" if result.batch_size is None else str(result.batch_size)
    head = (
        f"<h1>doctor logs</h1><p>host <b>{result.host}</b>, batch size {batch}, "
        f"at-start metric {html.escape(result.select_metric or 'none (no evaluation at step 0)')}</p>"
    )
    sections = [
        ("findings", findings_section(result.findings)),
        (
            "rules not run, and what each needs",
            f"<table><tr><th>rule</th><th>needs</th><th>from</th></tr>{not_run}</table>",
        ),
        ("doctor panels (from the logs)", figure(doctor_panels_uri(result.signals, out), "panels")),
        (
            "logs read",
            f"<table><tr><th>path</th><th>format</th><th>host</th></tr>{logs}</table>"
            + (f"<ul>{notes}</ul>" if notes else ""),
        ),
    ]
    path = out / "report.html"
    path.write_text(page("doctor logs", sections, head), encoding="utf-8")
    return path


def _print_not_run(result: LogsDiagnosis) -> None:
    """The rules not run: each one the log could feed with what it needs; those that need
    the training loop or the dataset on one line each (findings.json has every need)."""
    console.print("not run (what each needs):", markup=False)
    for n in result.not_run:
        if n.source == "log":
            console.print(f"  {n.rule}: {n.needs}", markup=False, highlight=False)
    where = {
        "training": "contrastkit.doctor.attach(model, optimizer, ...) in the training loop",
        "data": "contrastkit doctor data FILE",
    }
    for source, how in where.items():
        rules = [n.rule for n in result.not_run if n.source == source]
        if rules:
            console.print(f"  {', '.join(rules)}: {how}", markup=False, highlight=False)


def doctor_logs_cmd(
    path: Annotated[
        Path,
        typer.Argument(
            help="a log file or folder: TensorBoard, open_clip out.log, trainer_state.json, CSV, JSONL"
        ),
    ],
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="rows per contrastive batch B (chance loss = ln B)"),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", help="NAME=TAG: read TAG as the doctor's NAME (repeatable)"),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="evaluation metric compared with its step-0 value"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (default PATH/doctor)")
    ] = None,
) -> None:
    """Diagnose another tool's run from its logs; writes findings.json and report.html."""
    from contrastkit.doctor.logs import default_out, diagnose_logs, write_outputs
    from contrastkit.doctor.report import print_findings

    result = diagnose_logs(path, batch_size=batch_size, maps=maps or [], metric=metric)
    out = out or default_out(path)
    findings = write_outputs(result, out)
    read = ", ".join(f"{s.path} ({s.format}, {s.host})" for s in result.sources)
    console.print(f"read {read}", markup=False, highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    print_findings(result.findings, console)
    _print_not_run(result)
    console.print(f"wrote {findings} and {_page(result, out)}", markup=False, highlight=False)
