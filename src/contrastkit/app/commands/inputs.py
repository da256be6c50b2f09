"""Commands about what a run reads: configs (show, reference) and data (shard, doctor data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from contrastkit.app.commands import Overrides, console
from contrastkit.errors import ContrastkitError


def shard_cmd(
    manifest: Annotated[str, typer.Argument(help="manifest path or builtin:NAME")],
    out: Annotated[Path, typer.Option("--out", help="folder for the shards and index.json")],
    shard_size: Annotated[int, typer.Option("--shard-size", help="rows per shard (about)")] = 10000,
    seed: Annotated[int, typer.Option("--seed", help="shuffle of groups before writing")] = 0,
    root: Annotated[Path | None, typer.Option("--root", help="base folder for media")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="raise or skip")] = "raise",
) -> None:
    """Write MANIFEST as WebDataset shards (one tar sample per match group) for `data.shards`."""
    from contrastkit.data.builtin import BUILTIN_PREFIX, builtin_manifest
    from contrastkit.data.shard_writer import write_shards

    if on_error not in ("raise", "skip"):
        raise ContrastkitError(f"--on-error must be raise or skip, got {on_error!r}")
    path = (
        builtin_manifest(manifest[len(BUILTIN_PREFIX) :])
        if manifest.startswith(BUILTIN_PREFIX)
        else Path(manifest)
    )
    report = write_shards(path, out, shard_size, root=root, seed=seed, on_error=on_error)  # type: ignore[arg-type]
    for row in report.skipped[:10]:
        console.print(
            f"skipped {row.manifest} row {row.line} ({row.id}): {row.column}: {row.reason}"
        )
    shards = ", ".join(f"{split}: {n}" for split, n in sorted(report.shards.items()))
    console.print(
        f"wrote {report.rows} rows in shards ({shards}), {len(report.skipped)} rows skipped; "
        f"index {report.index}"
    )


def config_show(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    override: Overrides = None,
) -> None:
    """Print the resolved config (defaults + file + overrides), validated."""
    from contrastkit.config import dump_config, load_config

    cfg = load_config(config, override or [])
    typer.echo(dump_config(cfg), nl=False)


def config_reference(
    out: Annotated[Path | None, typer.Option("--out", help="write here (docs/config.md)")] = None,
) -> None:
    """Print (or write) the reference of every config key: type, default, description."""
    from contrastkit.app.config_reference import render_reference

    text = render_reference()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


def doctor_data_cmd(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    override: Overrides = None,
) -> None:
    """Check a config's data (match groups, duplicates, leakage) before training."""
    from contrastkit.config import load_config
    from contrastkit.doctor.report import print_findings
    from contrastkit.doctor.run import doctor_data

    findings = doctor_data(load_config(config, override or []))
    print_findings(findings, console)
