"""Checkpoints: one `.safetensors` of tensors + one JSON of everything else, written atomically.

Layout: `checkpoints/step_000123/{tensors.safetensors, state.json}` and `checkpoints/best.json`
(a pointer to the best checkpoint by the monitored metric). A checkpoint is first written to
a hidden temporary folder, its files and the folder are fsynced, the JSON (whose
`"complete": true` is the last thing written) closes it, and only then is the folder renamed
into place: a crash leaves either the old set of checkpoints or the new one, never a half
one under a `step_*` name. `--resume auto` still validates every candidate, newest first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from contrastkit.errors import RunDirError

if TYPE_CHECKING:
    from contrastkit.models.model import ContrastiveModel

log = logging.getLogger(__name__)

TENSORS = "tensors.safetensors"
META = "state.json"
BEST = "best.json"
PREFIX = "step_"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_tensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    # Clones break storage sharing (tied weights), which safetensors refuses.
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(path))
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _write_meta(path: Path, meta: Mapping[str, Any]) -> None:
    text = json.dumps({**meta, "complete": True}, indent=1)
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint at `step` (zero-padded so names sort by step)."""
    return f"{PREFIX}{step:06d}"


def save_checkpoint(
    root: Path, step: int, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> Path:
    """Write `root/step_<step>` atomically (replacing one of the same step) and return it."""
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_tensors(tmp / TENSORS, tensors)
        _write_meta(tmp / META, meta)
        _fsync_dir(tmp)
    except (OSError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back; older checkpoints stay
        raise RunDirError(
            f"could not write checkpoint {final} ({err}); the disk is full, read-only or over "
            f"a file-size limit. The previous checkpoints in {root} are intact: free space and "
            "run again with --resume auto"
        ) from err
    old = root / f".old-{final.name}-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    _fsync_dir(root)
    shutil.rmtree(old, ignore_errors=True)
    return final


def read_meta(path: Path) -> dict[str, Any] | None:
    """The checkpoint's JSON if the checkpoint is complete and its tensor file opens, else None."""
    try:
        meta = json.loads((path / META).read_text())
        with safe_open(str(path / TENSORS), framework="pt") as f:
            f.keys()
    except (OSError, ValueError, RuntimeError, Exception):  # noqa: BLE001 - any damage = invalid
        return None
    return meta if meta.get("complete") is True else None


def list_checkpoints(root: Path) -> list[Path]:
    """`step_*` folders under `root`, oldest first (by step number)."""
    if not root.is_dir():
        return []
    dirs = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()
    ]
    return sorted(dirs, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest valid checkpoint (skipping damaged or incomplete ones), or None."""
    for path in reversed(list_checkpoints(root)):
        if read_meta(path) is not None:
            return path
        log.warning("skipping incomplete or damaged checkpoint %s", path)
    return None


def auto_resume_checkpoint(root: Path) -> Path | None:
    """What `--resume auto` loads: the newest valid checkpoint, None when there is none at all.

    Raises:
        RunDirError: checkpoints exist but every one is damaged (restarting from step 0
            would silently throw the run away).
    """
    found = latest_checkpoint(root)
    candidates = list_checkpoints(root)
    if found is None and candidates:
        names = ", ".join(p.name for p in candidates)
        raise RunDirError(
            f"--resume auto: every checkpoint under {root} is damaged or incomplete ({names}); "
            "refusing to restart from step 0 over them. Move the run directory aside (or pass "
            "--overwrite) to start again."
        )
    return found


def load_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, meta) of a checkpoint folder.

    Raises:
        RunDirError: the folder is not a complete checkpoint.
    """
    meta = read_meta(path)
    if meta is None:
        raise RunDirError(
            f"{path} is not a complete checkpoint (needs {TENSORS} and {META} with complete: true)"
        )
    return load_file(str(path / TENSORS)), meta


def set_best(root: Path, path: Path, metric: str, value: float, step: int) -> None:
    """Point `best.json` at `path` (atomic replace)."""
    tmp = root / f".{BEST}.tmp"
    tmp.write_text(
        json.dumps({"checkpoint": path.name, "metric": metric, "value": value, "step": step})
    )
    os.replace(tmp, root / BEST)


def best_checkpoint(root: Path) -> Path | None:
    """The checkpoint `best.json` points at, if `best.json` and that checkpoint are valid."""
    try:
        path = root / json.loads((root / BEST).read_text())["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path if read_meta(path) is not None else None


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints, sparing the best one."""
    best = best_checkpoint(root)
    for path in list_checkpoints(root)[:-keep_last]:
        if best is None or path.name != best.name:
            shutil.rmtree(path, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        if not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)


def resolve_checkpoint(run_dir: Path, which: str | Path = "best") -> Path:
    """`best` (falls back to last), `last`/`auto`, or an explicit folder.

    Raises:
        RunDirError: with what was looked for.
    """
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    if str(which) not in ("best", "last", "auto"):
        path = Path(which)
        if not path.exists():
            raise RunDirError(
                f"no checkpoint {path}: give best, last, auto or a checkpoint folder "
                f"(run_dir/checkpoints/step_NNNNNN)"
            )
        if read_meta(path) is None:
            raise RunDirError(f"checkpoint {path} is incomplete or damaged")
        return path
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    found = best_checkpoint(root) if which == "best" else None
    if which == "best" and found is None and (root / BEST).exists():
        log.warning(
            "%s is damaged or points at a damaged checkpoint; using the newest "
            "valid checkpoint instead of the best one",
            root / BEST,
        )
    found = found or latest_checkpoint(root)
    if found is None:
        raise RunDirError(
            f"run directory {run_dir} holds no complete checkpoint under checkpoints/"
        )
    return found


# --------------------------------------------------------------------------- state <-> tensors


def module_tensors(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    """`module`'s state as `prefix.key` tensors, without the frozen pretrained tensors it
    lists in `base_keys` (LoRA: they are rebuilt from the model folder)."""
    skip = set(getattr(module, "base_keys", ()) or ())
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items() if k not in skip}


def sub_state(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under `prefix.`, with the prefix removed (one module's state dict)."""
    p = prefix + "."
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def split_tensors(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """A JSON-able copy of `obj` whose tensors move into `tensors` (key `prefix.path`).

    Used for callback `state_dict`s, which may hold reference snapshots (drift monitors).
    """
    if isinstance(obj, Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {str(k): split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return obj


def join_tensors(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Inverse of `split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (`optimizer.<param>.<name>`) and JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of `optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in sub_state(tensors, "optimizer").items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


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
    model.load_state_dict(sub_state(tensors, "model"))
    criterion.load_state_dict(sub_state(tensors, "criterion"))
    model.eval()
    return LoadedRun(
        cfg, model, criterion, tokenizer, bundle, path, picked_label(run_dir, checkpoint, path)
    )


def picked_label(run_dir: Path, which: str | Path, path: Path) -> str:
    """What `resolve_checkpoint(run_dir, which)` returned, in words for a table title."""
    if str(which) != "best":
        return f"{which} ({path.name})"
    if best_checkpoint(Path(run_dir) / "checkpoints") == path:
        return f"best ({path.name})"
    return f"last ({path.name}; no valid best.json)"
