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
    from contrastkit.data.shards.writer import write_shards

    if on_error not in ("raise", "skip"):
        raise ContrastkitError(f"--on-error must be raise or skip, got {on_error!r}")
    if out.exists() and not out.is_dir():
        raise ContrastkitError(
            f"--out {out} is a file; shards go into a folder, give a folder path"
        )
    if shard_size < 1:
        raise ContrastkitError(f"--shard-size must be at least 1 row, got {shard_size}")
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
    files: Annotated[
        list[Path],
        typer.Argument(
            help="a YAML config, or a dataset of another tool: open_clip .csv/.tsv, COCO "
            "captions .json, .parquet, a datasets.save_to_disk folder (one file per split, or one)"
        ),
    ],
    override: Overrides = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="folder for data_findings.json (a dataset: default .)"),
    ] = None,
    image_col: Annotated[
        str | None, typer.Option("--image-col", help="dataset: image column")
    ] = None,
    text_col: Annotated[str | None, typer.Option("--text-col", help="dataset: text column")] = None,
    pair_col: Annotated[
        str | None,
        typer.Option(
            "--pair-col", help="dataset: first text of a text pair (e.g. anchor; no image)"
        ),
    ] = None,
    split_col: Annotated[str, typer.Option("--split-col", help="dataset: split column")] = "split",
    sep: Annotated[str | None, typer.Option("--sep", help="dataset: CSV separator")] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="dataset: folder of relative image paths")
    ] = None,
    groups: Annotated[
        str, typer.Option("--groups", help="dataset: row (every row its own class) or media")
    ] = "row",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=2, help="dataset: the host's batch size")
    ] = 256,
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="dataset: local HF tokenizer folder")
    ] = None,
    max_length: Annotated[
        int | None, typer.Option("--max-length", min=2, help="dataset: tokens kept per text")
    ] = None,
    image_size: Annotated[
        int, typer.Option("--image-size", min=1, help="dataset: image side after resize")
    ] = 224,
) -> None:
    """Check data before training: a config's manifest, or a dataset another tool trains on."""
    from contrastkit.doctor.report import print_findings

    if len(files) == 1 and files[0].suffix.lower() in (".yaml", ".yml"):
        from contrastkit.config import load_config
        from contrastkit.doctor.run import DATA_FINDINGS_FILE, doctor_data

        target = None if out is None else out / DATA_FINDINGS_FILE
        if target is not None:
            out.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        print_findings(doctor_data(load_config(files[0], override or []), out=target), console)
        if target is not None:
            console.print(f"wrote {target}")
        return
    from contrastkit.doctor.data_checks.foreign import Columns, ForeignOptions, doctor_foreign_data

    if override:
        raise ContrastkitError("-o applies to a YAML config, not to a dataset file")
    if groups not in ("row", "media"):
        raise ContrastkitError(f"--groups must be row or media, got {groups!r}")
    sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep) if sep else None
    opts = ForeignOptions(
        Columns(image_col, text_col, split_col, sep, pair_col),
        root,
        groups,  # type: ignore[arg-type]
        batch_size,
        tokenizer,
        max_length,
        image_size,
    )
    findings, path = doctor_foreign_data(files, opts, out)
    print_findings(findings, console)
    console.print(f"wrote {path}")
