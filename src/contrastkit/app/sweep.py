"""Hyper-parameter sweeps with Optuna: one `train()` per trial, pruned on the val metric.

SPACE.yaml maps dotted config keys to distributions::

    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    train.warmup_steps: {type: int, low: 0, high: 200}
    loss.objectives.0.temperature: {type: categorical, choices: [0.03, 0.07, 0.1]}

Unknown keys are rejected before any trial runs. With a shared `storage` (sqlite or any
SQL URL) several workers can run `sweep` on the same study at once (`load_if_exists`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from typing_extensions import override

from contrastkit.config import Config, dump_config, load_config
from contrastkit.errors import ConfigError, RunDirError
from contrastkit.events import Callback, State
from contrastkit.pairing import select_metric
from contrastkit.run_io import load_yaml, read_text

TrainFn = Callable[..., dict]
_MISSING = object()
_INSTALL_HINT = "pip install contrastkit[sweep]"


def import_optuna() -> Any:
    """The optuna module (an optional extra).

    Raises:
        ConfigError: optuna is not installed; says how to install it.
    """
    try:
        import optuna
    except ImportError as err:
        raise ConfigError(
            f"sweeps use Optuna, which is not installed ({err}): {_INSTALL_HINT}"
        ) from None
    return optuna


def open_study(optuna: Any, storage: str | None, create: bool, **kw: Any) -> Any:
    """`optuna.create_study(load_if_exists=True)` or `load_study`, with storage errors
    (a folder that does not exist, a bad URL, a missing study) as one ConfigError.

    Raises:
        ConfigError: the storage or study cannot be opened.
    """
    if storage and storage.startswith("sqlite:///"):
        file = Path(storage[len("sqlite:///") :])
        if not file.parent.is_dir():
            raise ConfigError(f"--storage {storage}: the folder {file.parent} does not exist")
        if not create and not file.is_file():  # sqlite would create an empty database
            raise ConfigError(f"--study {storage}: no such database file {file}")
    storage_errors: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError, ImportError)
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # optuna's RDB storage needs it; without it only in-memory studies
        pass
    else:
        storage_errors = (*storage_errors, SQLAlchemyError)
    try:
        if create:
            return optuna.create_study(storage=storage, load_if_exists=True, **kw)
        return optuna.load_study(storage=storage, **kw)
    except storage_errors as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--storage {storage}: cannot open the study: {first}") from None


def _lookup(data: Any, keys: list[str]) -> Any:
    for key in keys:
        if isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        elif isinstance(data, dict) and key in data:
            data = data[key]
        else:
            return _MISSING
    return data


def load_space(path: str | Path, cfg: Config) -> dict[str, dict[str, Any]]:
    """Read and check SPACE.yaml against the resolved config.

    Raises:
        ConfigError: unreadable file, unknown key path or malformed distribution.
    """
    path = Path(path)
    try:
        space = load_yaml(read_text(path), f"search space {path}") or {}
    except RunDirError as err:  # missing, unreadable, not UTF-8 or YAML, an alias bomb
        raise ConfigError(str(err)) from None
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {path} must map dotted config keys to distributions")
    dumped = cfg.model_dump(mode="json")
    for key, spec in space.items():
        value = _lookup(dumped, key.split("."))
        if value is _MISSING or isinstance(value, dict):
            raise ConfigError(
                f"search space {path}: {key!r} is not a config value (check the key path)"
            )
        kind = spec.get("type") if isinstance(spec, dict) else None
        needed = {
            "float": ("low", "high"),
            "int": ("low", "high"),
            "categorical": ("choices",),
        }.get(kind if isinstance(kind, str) else "")
        if needed is None or any(k not in spec for k in needed):
            raise ConfigError(
                f"search space {path}: {key}: needs type float|int (with low, high) or categorical (with choices)"
            )
        _check_distribution(path, key, spec)
    return space


def _check_distribution(path: Path, key: str, spec: dict[str, Any]) -> None:
    """Values Optuna would fail on mid-sweep, refused before the first trial."""
    where = f"search space {path}: {key}"
    if spec["type"] == "categorical":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}"[:300])
        return
    number = int if spec["type"] == "int" else (int, float)
    low, high = spec["low"], spec["high"]
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number):
            raise ConfigError(
                f"{where}: {name} must be a{'n int' if number is int else ' number'}, got {value!r}"[
                    :300
                ]
            )
    if low > high:
        raise ConfigError(f"{where}: low ({low}) is above high ({high})")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0, got {low}")


def suggest(trial: Any, key: str, spec: dict[str, Any]) -> Any:
    """Draw one value for `key` from its SPACE.yaml distribution."""
    if spec["type"] == "float":
        return trial.suggest_float(key, spec["low"], spec["high"], log=bool(spec.get("log", False)))
    if spec["type"] == "int":
        return trial.suggest_int(key, spec["low"], spec["high"], log=bool(spec.get("log", False)))
    return trial.suggest_categorical(key, spec["choices"])


class PruningCallback(Callback):
    """Reports the selection metric to Optuna after each evaluation; prunes bad trials."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    @override
    def on_eval_end(self, state: State) -> None:
        import optuna

        if self.metric not in state.eval_metrics:
            return
        self.trial.report(float(state.eval_metrics[self.metric]), state.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {state.epoch}")


def _overrides(params: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in params.items()]


def sweep(
    cfg_path: str | Path,
    space_path: str | Path,
    *,
    trials: int,
    storage: str | None = None,
    study_name: str | None = "contrastkit",
    run_root: str | Path = "sweeps",
    direction: Literal["maximize", "minimize"] = "maximize",
    overrides: Sequence[str] = (),
    train_fn: TrainFn | None = None,
) -> dict[str, Any]:
    """Run `trials` trials (this worker's share of the study) and write `best_config.yaml`.

    Returns:
        {"value", "params", "trial", "config"} of the study's best trial so far.
    """
    optuna = import_optuna()
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if train_fn is None:
        from contrastkit.app.run import train as default_train

        train_fn = default_train
    fit: TrainFn = train_fn
    base = load_config(cfg_path, list(overrides))
    space = load_space(space_path, base)
    monitor = select_metric(base)
    if monitor is None:
        raise ConfigError(
            "sweep needs train.select_metric (or a val split and an objective) to compare trials"
        )
    study = open_study(
        optuna,
        storage,
        True,
        study_name=study_name,
        direction=direction,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    run_root = Path(run_root)
    run_root.mkdir(parents=True, exist_ok=True)

    def objective(trial: Any) -> float:
        params = {key: suggest(trial, key, spec) for key, spec in space.items()}
        cfg = load_config(cfg_path, [*overrides, *_overrides(params)])
        run_dir = run_root / f"trial_{trial.number:03d}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))  # for `contrastkit compare --study`
        summary = fit(cfg, run_dir, callbacks=[PruningCallback(trial, monitor)])
        if monitor not in summary:
            raise ConfigError(f"trial {trial.number}: metric {monitor!r} missing from the summary")
        return float(summary[monitor])

    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    best_cfg = load_config(cfg_path, [*overrides, *_overrides(best.params)])
    out = run_root / "best_config.yaml"
    out.write_text(dump_config(best_cfg))
    return {"value": best.value, "params": best.params, "trial": best.number, "config": str(out)}
