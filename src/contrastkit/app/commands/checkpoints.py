"""Commands that load a run's checkpoint: eval, export, embed and search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from contrastkit.app.commands import Overrides, console
from contrastkit.app.commands.summary import print_summary
from contrastkit.errors import ContrastkitError


def eval_cmd(
    run_dir: Annotated[
        Path, typer.Argument(help="a training run directory, or a config file (untrained model)")
    ],
    split: Annotated[str, typer.Option("--split", help="split to evaluate")] = "test",
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="best (default) | last | a path")
    ] = None,
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

        if checkpoint is not None:  # else the untrained model would be scored in its place
            raise ContrastkitError(
                f"--checkpoint {checkpoint}: {run_dir} is a config file, whose untrained model "
                "eval scores; to evaluate a checkpoint pass its run directory: "
                f"contrastkit eval RUN_DIR --checkpoint {checkpoint}"
            )

        metrics = evaluate_config(load_config(run_dir, override or []), split)
        print_summary(metrics, title=f"{run_dir} ({split}, untrained)")
        return
    run = load_run(run_dir, checkpoint=checkpoint or "best")
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


def embed_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory")],
    out: Annotated[Path, typer.Option("--out", help="output file: .npy or .parquet")],
    split: Annotated[str, typer.Option("--split", help="split to embed")] = "test",
    tower: Annotated[str | None, typer.Option("--tower", help="tower (default: all)")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint")] = "best",
) -> None:
    """Export ids and L2-normalised embeddings of a split (one file per tower)."""
    from contrastkit.eval.export import export_embeddings
    from contrastkit.eval.tower_embeddings import embed_dataset
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


def _split(run, split: str):
    """The split's dataset; split names are case-insensitive, as in manifests and config."""
    splits = run.bundle.splits
    if split.lower() not in splits:
        raise ContrastkitError(f"split {split!r} not in the manifest; splits: {sorted(splits)}")
    return splits[split.lower()]


def _check_tower(run, tower: str) -> None:
    if tower not in run.model.tower_names:
        raise ContrastkitError(f"no tower {tower!r}; towers: {list(run.model.tower_names)}")
