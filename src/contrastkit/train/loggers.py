"""Metric sinks: metrics.jsonl (always), TensorBoard, W&B (offline), MLflow (sqlite).

Only rank 0 logs. `metrics.jsonl` holds one JSON object per logged step or evaluation,
flushed at once so a killed run keeps everything it logged. Optional trackers are skipped
with one warning when their package is missing, never failing the run.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from contrastkit.config import LoggersConfig

log = logging.getLogger(__name__)


class MetricSink(Protocol):
    """A destination for logged metrics: `log` per step, `close` once at the end."""

    def log(self, metrics: Mapping[str, object], step: int) -> None:
        """Record `metrics` at optimizer step `step` (non-numbers reach metrics.jsonl only)."""

    def close(self) -> None:
        """Flush and release the destination."""


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class JsonlSink:
    """Appends `{"step": ..., **metrics}` lines to `path`."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def log(self, metrics: Mapping[str, object], step: int) -> None:
        """Append one line and flush it (the durable record of a killed run)."""
        self.file.write(json.dumps({"step": step, **metrics}, allow_nan=True) + "\n")
        self.file.flush()

    def close(self) -> None:
        """Close the file."""
        self.file.close()


def truncate_jsonl(path: Path, step: int, *, drop_evals_at_step: bool = False) -> None:
    """Drop lines logged after `step` (a resumed run logs those steps again), atomically.

    Torn or unreadable lines (a disk filled up, a kill mid-write) are dropped with a warning.
    With `drop_evals_at_step`, evaluation records at `step` go too (a pending evaluation is
    redone); they are the records at that step without `train/loss`.
    """
    if not path.exists():
        return
    kept, torn = [], 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            at = int(rec.get("step", 0))
        except (ValueError, TypeError, AttributeError):
            torn += bool(line.strip())
            continue
        if at > step or (drop_evals_at_step and at == step and "train/loss" not in rec):
            continue
        kept.append(line)
    if torn:
        log.warning("%s: dropped %d torn or unreadable line(s) on resume", path, torn)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in kept))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class TensorBoardSink:
    """Writes the finite scalars to TensorBoard event files in the run directory."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # Flushed every 30 s and on close (flushing per step costs ~10% of a small model's
        # step); metrics.jsonl is the durable record of a killed run.
        self.writer = SummaryWriter(log_dir=str(run_dir), flush_secs=30)

    def log(self, metrics: Mapping[str, object], step: int) -> None:
        """Add every finite metric as a scalar at `step`."""
        for k, v in metrics.items():
            if (f := _number(v)) is not None:
                self.writer.add_scalar(k, f, step)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


class WandbSink:
    """Logs the finite scalars to a Weights & Biases run."""

    def __init__(
        self,
        run_dir: Path,
        project: str,
        mode: Literal["offline", "online", "disabled"],
        name: str,
        config: dict,
    ) -> None:
        import wandb

        self.run = wandb.init(
            project=project, mode=mode, dir=str(run_dir), name=name, config=config, reinit=True
        )

    def log(self, metrics: Mapping[str, object], step: int) -> None:
        """Log every finite metric at `step`."""
        self.run.log({k: f for k, v in metrics.items() if (f := _number(v)) is not None}, step=step)

    def close(self) -> None:
        """Finish the W&B run."""
        self.run.finish()


class MlflowSink:
    """Logs the finite scalars to an MLflow run (a SQLite store in the run directory by default)."""

    def __init__(self, run_dir: Path, uri: str | None, name: str, config: dict) -> None:
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri or f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
        mlflow.set_experiment(name)
        self.run = mlflow.start_run(run_name=run_dir.name)
        flat = {k: str(v)[:250] for k, v in _flatten(config).items()}
        if flat:
            mlflow.log_params(dict(list(flat.items())[:100]))

    def log(self, metrics: Mapping[str, object], step: int) -> None:
        """Log every finite metric at `step` (`@` becomes `_at_`: MLflow rejects it in names)."""
        clean = {
            k.replace("@", "_at_"): f for k, v in metrics.items() if (f := _number(v)) is not None
        }
        self.mlflow.log_metrics(clean, step=step)

    def close(self) -> None:
        """End the MLflow run."""
        self.mlflow.end_run()


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Loggers:
    """Fans one `log` call out to every sink; a no-op off rank 0."""

    def __init__(self, sinks: list[MetricSink]) -> None:
        self.sinks = sinks

    def log(self, metrics: Mapping[str, object], step: int) -> None:
        """Send `metrics` to every sink."""
        for sink in self.sinks:
            sink.log(metrics, step)

    def close(self) -> None:
        """Close every sink; later calls log nothing."""
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def build_loggers(
    cfg: LoggersConfig,
    run_dir: Path,
    *,
    is_main: bool = True,
    name: str = "run",
    config: dict | None = None,
) -> Loggers:
    """The sinks `cfg` asks for; optional ones whose package is missing are skipped with a warning."""
    if not is_main:
        return Loggers([])
    run_dir.mkdir(parents=True, exist_ok=True)
    sinks: list[MetricSink] = [JsonlSink(run_dir / "metrics.jsonl")]
    optional: list[tuple[bool, str, Callable[[], MetricSink]]] = [
        (cfg.tensorboard, "tensorboard", lambda: TensorBoardSink(run_dir)),
        (
            cfg.wandb and cfg.wandb_mode != "disabled",
            "wandb",
            lambda: WandbSink(run_dir, cfg.wandb_project, cfg.wandb_mode, name, config or {}),
        ),
        (
            cfg.mlflow,
            "mlflow",
            lambda: MlflowSink(run_dir, cfg.mlflow_tracking_uri, name, config or {}),
        ),
    ]
    for enabled, package, make in optional:
        if not enabled:
            continue
        try:
            sinks.append(make())
        except ImportError:
            log.warning(
                "train.loggers.%s is on but %s is not installed; skipping it", package, package
            )
    return Loggers(sinks)
