"""The `contrastkit` command. `main(argv) -> int` so tests call it directly.

User errors (`ContrastkitError`) print one paragraph and exit with code 2; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import errno
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contrastkit import __version__
from contrastkit.errors import ContrastkitError

app = typer.Typer(
    name="contrastkit",
    help="Train, evaluate and diagnose contrastive multimodal models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)
doctor_app = typer.Typer(help="Diagnose data and runs.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(doctor_app, name="doctor")

console = Console()
# Disk full, file too large (ulimit -f), quota, read-only, no permission: the user's
# environment, not a bug; reported in one paragraph like a ContrastkitError.
DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
EXAMPLES_DIR = Path(__file__).parents[1] / "examples"  # src/contrastkit/examples

Overrides = Annotated[
    list[str] | None,
    typer.Option("-o", "--override", help="dotted config override key=value (repeatable)"),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"contrastkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """contrastkit: CLIP / SigLIP-style training with a doctor that says what is wrong."""


def _default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _rank0() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


# --------------------------------------------------------------------------- train / demo


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


@app.command("train")
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


@app.command("demo")
def demo_cmd(
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="run directory")] = None,
    override: Overrides = None,
) -> None:
    """Train a small image-text model on the shipped digits-captions data (same as
    `contrastkit train examples/digits.yaml`)."""
    _train(EXAMPLES_DIR / "digits.yaml", run_dir, override or [], None)


@app.command("shard")
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


# --------------------------------------------------------------------------- config


@config_app.command("show")
def config_show(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    override: Overrides = None,
) -> None:
    """Print the resolved config (defaults + file + overrides), validated."""
    from contrastkit.config import dump_config, load_config

    cfg = load_config(config, override or [])
    typer.echo(dump_config(cfg), nl=False)


@config_app.command("reference")
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


# --------------------------------------------------------------------------- eval / embed / search


@app.command("eval")
def eval_cmd(
    run_dir: Annotated[
        Path, typer.Argument(help="a training run directory, or a config file (untrained model)")
    ],
    split: Annotated[str, typer.Option("--split", help="split to evaluate")] = "test",
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | last | a path")] = "best",
    override: Overrides = None,
) -> None:
    """Evaluate a run's checkpoint on a split; prints a table and writes eval.json.

    Given a config file instead, evaluates the model it describes before any training
    (the pretrained / zero-shot baseline) and prints the table without writing files.
    """
    from contrastkit.eval.evaluate import evaluate
    from contrastkit.pairing import eval_pairs
    from contrastkit.train.checkpoint import load_run

    split = split.lower()  # split names are case-insensitive everywhere
    if run_dir.is_file():
        from contrastkit.app.zero_shot import evaluate_config
        from contrastkit.config import load_config

        metrics = evaluate_config(load_config(run_dir, override or []), split)
        print_summary(metrics, title=f"{run_dir} ({split}, untrained)")
        return
    run = load_run(run_dir, checkpoint=checkpoint)
    dataset = _split(run, split)
    metrics = evaluate(
        run.model,
        dataset,
        run.config.eval,
        split=split,
        pairs=eval_pairs(run.config),
        batch_size=run.config.data.eval_batch_size,
        train_dataset=run.bundle.splits.get(run.config.data.train_split),
    )
    # Print first: on a full or read-only disk the numbers are still shown.
    print_summary(metrics, title=f"{run_dir} ({split}, {run.picked})")
    out = Path(run_dir) / "eval.json"
    try:
        out.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    except OSError as err:
        raise ContrastkitError(
            f"the metrics above are complete but {out} could not be written: {err}"
        ) from err
    console.print(f"wrote {out}")


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory")],
    out: Annotated[Path, typer.Option("--out", help="folder; each text tower goes to OUT/<tower>")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | last | a path")] = "best",
) -> None:
    """Write each Hugging Face text tower (LoRA merged, projection included) as a standalone
    sentence-transformers folder: `SentenceTransformer("OUT/<tower>")`."""
    from contrastkit.app.export import export_run

    for folder in export_run(run_dir, out, checkpoint):
        console.print(f"wrote {folder}")


@app.command("embed")
def embed_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory")],
    out: Annotated[Path, typer.Option("--out", help="output file: .npy or .parquet")],
    split: Annotated[str, typer.Option("--split", help="split to embed")] = "test",
    tower: Annotated[str | None, typer.Option("--tower", help="tower (default: all)")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint")] = "best",
) -> None:
    """Export ids and L2-normalised embeddings of a split (one file per tower)."""
    from contrastkit.eval.evaluate import embed_dataset
    from contrastkit.eval.export import export_embeddings
    from contrastkit.train.checkpoint import load_run

    run = load_run(run_dir, checkpoint=checkpoint)
    dataset = _split(run, split)
    towers = [tower] if tower else list(run.model.tower_names)
    for t in towers:
        _check_tower(run, t)
        ids, emb, _ = embed_dataset(
            run.model, dataset, t, batch_size=run.config.data.eval_batch_size
        )
        path = out if len(towers) == 1 else out.with_name(f"{out.stem}.{t}{out.suffix}")
        export_embeddings(path, ids, emb)
        console.print(f"{t}: {len(ids)} x {emb.shape[1]} -> {path}")


@app.command("search")
def search_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory")],
    query: Annotated[str | None, typer.Argument(help="query text")] = None,
    k: Annotated[int, typer.Option("-k", help="results to show")] = 5,
    split: Annotated[str, typer.Option("--split", help="gallery split")] = "test",
    query_id: Annotated[
        str | None, typer.Option("--query-id", help="use this manifest row as the query")
    ] = None,
    gallery: Annotated[str | None, typer.Option("--gallery", help="gallery tower")] = None,
    examples: Annotated[
        int, typer.Option("--examples", help="show N random test queries with their top-k")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    checkpoint: Annotated[str, typer.Option("--checkpoint")] = "best",
    index: Annotated[
        str | None, typer.Option("--index", help="exact or faiss (default: eval.index)")
    ] = None,
) -> None:
    """Search a split's gallery with a text query, a row's inputs (--query-id) or examples."""
    from contrastkit.app.search import run_search
    from contrastkit.pairing import eval_pairs
    from contrastkit.train.checkpoint import load_run

    if query is None and query_id is None and examples <= 0:
        raise ContrastkitError("give a query text, --query-id ID or --examples N")
    run = load_run(run_dir, checkpoint=checkpoint)
    run_search(
        run,
        _split(run, split),
        index=index,
        query=query,
        query_id=query_id,
        gallery=gallery,
        k=k,
        examples=examples,
        seed=seed,
        pairs=eval_pairs(run.config),
        console=console,
    )


# --------------------------------------------------------------------------- doctor / sweep


@doctor_app.command("data")
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


@doctor_app.command("run")
def doctor_run_cmd(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Diagnose a finished or running run; writes findings.json and training_curves.png."""
    from contrastkit.doctor.report import print_findings
    from contrastkit.doctor.run import doctor_run

    findings = doctor_run(run_dir)
    print_findings(findings, console)
    report_cmd(run_dir)


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (finished or running)")],
    out: Annotated[Path | None, typer.Option("--out", help="default RUN_DIR/report.html")] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="split of the examples (default test)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the random examples")] = 0,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | last | a path")] = "best",
) -> None:
    """Write report.html: metrics, curves, findings, retrieval examples, config (one file)."""
    from contrastkit.app.report import write_report

    path = write_report(run_dir, out=out, split=split, seed=seed, checkpoint=checkpoint)
    console.print(f"wrote {path}")


@app.command("compare")
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

    runs: list[tuple[str | None, Path]] = [(None, Path(p)) for p in run_dirs or []]
    if study is not None:
        runs += study_run_dirs(study, study_name, run_root)
    if len(runs) < 2:
        raise ContrastkitError("compare needs two or more run directories (or --study URL)")
    views = load_views(runs)
    print_comparison(views, console)
    console.print(f"wrote {write_compare_html(views, out)}")


@app.command("sweep")
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


# --------------------------------------------------------------------------- helpers


def _split(run, split: str):
    """The split's dataset; split names are case-insensitive, as in manifests and config."""
    splits = run.bundle.splits
    if split.lower() not in splits:
        raise ContrastkitError(f"split {split!r} not in the manifest; splits: {sorted(splits)}")
    return splits[split.lower()]


def _check_tower(run, tower: str) -> None:
    if tower not in run.model.tower_names:
        raise ContrastkitError(f"no tower {tower!r}; towers: {list(run.model.tower_names)}")


def print_summary(metrics: dict[str, float], title: str = "") -> None:
    """Rank metrics as a table: one row per split and direction."""
    columns = ["R@1", "R@5", "R@10", "median_rank", "class_R@1"]
    rows: dict[str, dict[str, float]] = {}
    other: dict[str, float] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and "_to_" in parts[1] and parts[2] in columns:
            rows.setdefault(f"{parts[0]}  {parts[1]}", {})[parts[2]] = value
        else:
            other[key] = value
    table = Table(title=title or None)
    table.add_column("split  direction")
    present = [c for c in columns if any(c in r for r in rows.values())]
    for c in present:
        table.add_column(c, justify="right")
    for name, r in rows.items():
        table.add_row(name, *[_fmt(r.get(c)) for c in present])
    if rows:
        console.print(table)
    suffixes = (
        "/knn_accuracy",
        "/zero_shot_accuracy",
        "/linear_probe_accuracy",
        "captioning/BLEU",
        "captioning/ROUGE-L",
        "captioning/numeric_fidelity",
        "captioning/numeric_error",
    )
    for key in suffixes:
        for k, v in other.items():
            if k.endswith(key):
                console.print(f"{k}: {_fmt(v)}")


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if abs(v) >= 2 else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="contrastkit", standalone_mode=False)
    except ContrastkitError as err:
        if debug:
            traceback.print_exc()
        Console(stderr=True).print(f"error: {err}", style="bold red", markup=False, highlight=False)
        return 2
    except typer.Exit as ex:
        return ex.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        if debug:
            traceback.print_exc()
        where = f" ({err.filename})" if err.filename else ""
        Console(stderr=True).print(
            f"error: {err.strerror or err}{where}: the disk is full, read-only or not writable "
            "here; free space or pick another --run-dir (finished checkpoints are intact)",
            style="bold red",
            markup=False,
            highlight=False,
        )
        return 2
    except Exception as err:
        # Usage errors of the argument parser (typer vendors click) carry show/exit_code.
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            return int(err.exit_code)
        if type(err).__name__ == "Abort":
            return 130
        raise
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
