"""Turn the logs' scalars into the doctor's signal records.

The rules read flat records keyed like the monitors' (docs/doctor.md "Signals"): one
record per logged step (monitor `logs`) and one per evaluation (monitor `eval`, an
evaluation at step 0 under `at_start/`, as `eval.at_start` writes it). Several logs of
one run merge: the last log read wins for a (signal, step) they both hold (a Trainer's
event file and its trainer_state.json carry the same numbers).

Per-term shares (`share/<term>`, what `aux_dominates_loss` reads) are |value| / sum of
|values| over the terms logged at a step. Hosts log terms already weighted (open_clip's
CoCa loss multiplies `caption_loss` by `--coca-caption-loss-weight` before logging), so
this is the monitors' weight x loss share.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from contrastkit.doctor.logs.source import LogSource, Series
from contrastkit.doctor.logs.tags import AUX_TERMS, SCALE_TARGETS, VAL, target_of

# Monitor names of the records built here (signals.jsonl's `monitor`).
TRAIN_MONITOR, EVAL_MONITOR = "logs", "eval"
AT_START = "at_start/"


@dataclass
class LogSignals:
    """What the logs hold, by target (host-neutral), before it becomes signal records.

    Attributes:
        train: target -> (step, value) for the training scalars (`loss`, `lr`, ...).
        val: metric name (`val/<name>`) -> (step, value); step 0 is "before training".
        mapped: (log path, tag, target) for every tag used, for the report.
        notes: what the conversion assumed (e.g. epochs turned into steps).
    """

    train: dict[str, Series] = field(default_factory=dict)
    val: dict[str, Series] = field(default_factory=dict)
    mapped: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def has(self, target: str) -> bool:
        """A training scalar with at least one finite value."""
        return any(math.isfinite(v) for _, v in self.train.get(target, []))

    def terms(self) -> list[str]:
        """Auxiliary loss targets present (`caption_loss`, ...), in AUX_TERMS order."""
        return [t for t in AUX_TERMS if t in self.train]


def _merge(into: dict[int, float], points: Series, combine: str) -> None:
    for step, value in points:
        if combine == "max" and step in into and math.isfinite(into[step]):
            value = max(value, into[step]) if math.isfinite(value) else value
        into[step] = value


def _epochs_to_steps(source: LogSource, val: dict[str, Series], last_train: int | None) -> str:
    """open_clip logs `val/*` at the epoch number and each epoch's last batch at step
    epochs_done * steps_per_epoch - 1, so the last train step gives steps_per_epoch
    exactly; returns the note, and keeps epochs when the division is not exact."""
    epochs = max((s for pts in val.values() for s, _ in pts), default=0)
    if not epochs or last_train is None or (last_train + 1) % epochs:
        return f"{source.path}: validation steps are epochs (steps per epoch not derivable)"
    per_epoch = (last_train + 1) // epochs
    for name, pts in val.items():
        val[name] = [(s * per_epoch, v) for s, v in pts]
    return f"{source.path}: validation at epoch e placed at step e x {per_epoch} (steps per epoch)"


def collect(sources: list[LogSource], maps: dict[str, str]) -> LogSignals:
    """Group every source's tags by target (see `tags.target_of`)."""
    out = LogSignals()
    train: dict[str, dict[int, float]] = defaultdict(dict)
    for source in sources:
        out.notes += source.notes
        val: dict[str, Series] = {}
        for tag, points in source.scalars.items():
            target = target_of(tag, source.host, maps)
            if target is None:
                continue
            out.mapped.append((str(source.path), tag, target))
            if target.startswith(VAL):
                val[target] = list(points)
                continue
            if target in SCALE_TARGETS:
                points = [(s, SCALE_TARGETS[target](v)) for s, v in points]
                target = "logit_scale"
            _merge(train[target], points, "max" if target == "lr" else "last")
        if source.val_on_epochs and val:
            steps = [
                s for t, pts in source.scalars.items() if not t.startswith(VAL) for s, _ in pts
            ]
            out.notes.append(_epochs_to_steps(source, val, max(steps) if steps else None))
        for name, points in val.items():
            _merge(train.setdefault(name, {}), points, "last")
    for target, by_step in train.items():
        series = sorted(by_step.items())
        (out.val if target.startswith(VAL) else out.train)[target] = series
    scale = out.train.get("logit_scale")
    # open_clip logs 0.0 as the scale of a model without one (generative-only tasks).
    if scale is not None and all(v == 0 for _, v in scale):
        del out.train["logit_scale"]
        out.notes.append("logit scale logged as 0 at every step: read as 'no logit scale'")
    return out


def negatives_record(step: int, batch_size: int) -> dict[str, Any]:
    """The negatives monitor's record for a host whose loss treats every row of a batch
    of `batch_size` as its own class (open_clip, MNRL, HF CLIP): B - 1 negatives per
    query. Duplicates in the data lower that; `contrastkit doctor data` counts them."""
    return {
        "step": step,
        "monitor": "negatives",
        "negatives/mean": float(batch_size - 1),
        "negatives/min": float(batch_size - 1),
        "negatives/contrastive_batch": batch_size,
        "negatives/loss_floor": math.log(batch_size),
    }


def signal_records(
    logs: LogSignals, objective: str, *, objective_loss: bool, at_start_metrics: bool = True
) -> list[dict[str, Any]]:
    """The records `diagnose` reads.

    Args:
        logs: the collected scalars.
        objective: the contrastive objective's name in the config (`loss/<objective>`).
        objective_loss: write the contrastive term's loss under `loss/<objective>` (the
            rules judge chance level from it, so it is withheld when the batch size is
            unknown). A log with one loss and no per-term losses has the total as that
            term.
        at_start_metrics: write step-0 evaluations as `at_start/<metric>`.
    """
    by_step: dict[int, dict[str, Any]] = defaultdict(dict)
    keys = {
        "loss": "loss/total",
        "logit_scale": f"{objective}/logit_scale",
        "logit_bias": f"{objective}/logit_bias",
        "lr": "lr/max",
        "grad_norm": "grad_norm/model",
    }
    for target, key in keys.items():
        for step, value in logs.train.get(target, []):
            by_step[step][key] = value
    terms = {"contrastive_loss": objective, **AUX_TERMS}
    contrastive = "contrastive_loss" if "contrastive_loss" in logs.train else None
    if contrastive is None and not logs.terms() and "loss" in logs.train:
        contrastive = "loss"  # one loss, no per-term losses: the total is the contrastive term
    for target, term in terms.items():
        source = contrastive if target == "contrastive_loss" else target
        if source is None or (target == "contrastive_loss" and not objective_loss):
            continue
        for step, value in logs.train.get(source, []):
            by_step[step][f"loss/{term}"] = value
    _shares(logs, by_step, terms)
    records = [{"step": s, "monitor": TRAIN_MONITOR, **v} for s, v in sorted(by_step.items())]
    for name, points in logs.val.items():
        for step, value in points:
            key = AT_START + name if step == 0 and at_start_metrics else name
            records.append({"step": step, "monitor": EVAL_MONITOR, key: value})
    return records


def _shares(logs: LogSignals, by_step: dict[int, dict[str, Any]], terms: dict[str, str]) -> None:
    """`share/<term>` at every step where the contrastive term and an auxiliary term are
    both logged (a share needs every term of the sum)."""
    if "contrastive_loss" not in logs.train or not logs.terms():
        return
    values: dict[int, dict[str, float]] = defaultdict(dict)
    for target in ("contrastive_loss", *logs.terms()):
        for step, value in logs.train[target]:
            values[step][terms[target]] = value
    wanted = 1 + len(logs.terms())
    for step, parts in values.items():
        total = sum(abs(v) for v in parts.values())
        if len(parts) == wanted and math.isfinite(total) and total > 0:
            for term, v in parts.items():
                by_step[step][f"share/{term}"] = abs(v) / total
