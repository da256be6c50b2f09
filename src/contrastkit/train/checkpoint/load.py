"""A trained run, loaded: rebuild model, loss and tokenizer from a run directory and load a
checkpoint's weights (`load_run`, the public entry point for eval / embed / search / export).

How checkpoints are written and found is `files.py` and `folder.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from contrastkit.errors import RunDirError
from contrastkit.train.checkpoint.files import load_checkpoint
from contrastkit.train.checkpoint.folder import best_checkpoint, resolve_checkpoint
from contrastkit.train.checkpoint.state_tensors import sub_state

if TYPE_CHECKING:
    from contrastkit.models.model import ContrastiveModel


@dataclass
class LoadedRun:
    """A trained run ready for eval / embed / search."""

    config: Any
    model: ContrastiveModel
    criterion: nn.Module
    tokenizer: Any
    bundle: Any
    checkpoint: Path
    picked: str = ""  # what was loaded, in words: "best (step_000120)", "last (...)"


def load_run(
    run_dir: str | Path, checkpoint: str | Path = "best", *, with_data: bool = True
) -> LoadedRun:
    """Rebuild model, loss and tokenizer from a run directory and load a checkpoint's weights.

    Args:
        run_dir: a folder written by `train` (config.yaml, tokenizer/, checkpoints/).
        checkpoint: `best` (falls back to the newest), `last`, or a checkpoint folder.
        with_data: also build the datasets (needed for eval; embed may skip it).

    Raises:
        RunDirError: the folder, its config, tokenizer or checkpoint is missing.
    """
    from contrastkit.config import load_config
    from contrastkit.data import build_datasets
    from contrastkit.losses import build_loss
    from contrastkit.models import build_model, load_tokenizer
    from contrastkit.train.lora import apply_train_lora, check_base

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(
            f"{run_dir} is not a run directory (no config.yaml); pass the folder `train` wrote"
        )
    if not (run_dir / "tokenizer").is_dir():
        raise RunDirError(
            f"{run_dir} has no tokenizer/ folder; was training interrupted before it started?"
        )
    path = resolve_checkpoint(run_dir, checkpoint)
    cfg = load_config(run_dir / "config.yaml")
    try:
        tokenizer = load_tokenizer(run_dir / "tokenizer")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise RunDirError(
            f"{run_dir / 'tokenizer'} is damaged ({type(err).__name__}: {err}); copy it from a "
            "backup or retrain"
        ) from err
    try:
        spec = json.loads((run_dir / "model_spec.json").read_text())
        input_specs = {k: tuple(v) for k, v in spec["input_specs"].items()}
        num_classes = spec["num_classes"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise RunDirError(
            f"{run_dir / 'model_spec.json'} is missing or damaged ({type(err).__name__}: {err}); "
            "it records the input shapes the model was built with; retrain, or restore the file"
        ) from err
    bundle = build_datasets(cfg.data) if with_data else None
    model = build_model(
        cfg.model, tokenizer=tokenizer, input_specs=input_specs, num_classes=num_classes
    )
    apply_train_lora(model, cfg.train)
    criterion = build_loss(cfg.loss)
    tensors, meta = load_checkpoint(path)
    check_base(meta.get("base_weights"), model, str(path))
    _load_weights(model, sub_state(tensors, "model"), run_dir, path)
    criterion.load_state_dict(sub_state(tensors, "criterion"))
    model.eval()
    return LoadedRun(
        cfg, model, criterion, tokenizer, bundle, path, picked_label(run_dir, checkpoint, path)
    )


def _load_weights(model: Any, state: dict, run_dir: Path, path: Path) -> None:
    """`model.load_state_dict(state)`; a checkpoint of another model (often another run's,
    given by `--checkpoint`) is a RunDirError naming both runs and the tensors that differ.

    Raises:
        RunDirError: shapes or names differ.
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        saved = {k: tuple(v.shape) for k, v in state.items()}
        diffs = [
            f"{k}: checkpoint {saved.get(k, 'absent')}, model {wanted.get(k, 'absent')}"
            for k in sorted(set(wanted) | set(saved))
            if saved.get(k) != wanted.get(k)
        ]
        more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
        detail = "; ".join(diffs[:3]) + more if diffs else str(err).splitlines()[0]
        raise RunDirError(
            f"checkpoint {path} (of the run in {path.parent.parent}) does not fit the model of "
            f"the run in {run_dir}: {detail}. Pass a checkpoint of that run (best, last or "
            "one of its checkpoints/ folders)"
        ) from None


def picked_label(run_dir: Path, which: str | Path, path: Path) -> str:
    """What `resolve_checkpoint(run_dir, which)` returned, in words for a table title."""
    if str(which) != "best":
        return f"{which} ({path.name})"
    if best_checkpoint(Path(run_dir) / "checkpoints") == path:
        return f"best ({path.name})"
    return f"last ({path.name}; no valid best.json)"
