"""Typed results returned by every loss (the engine logs them, the doctor reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from contrastkit.models.outputs import TermSum

__all__ = ["ContrastiveResult", "LossOutput", "TermSum", "result_stats"]


@dataclass
class ContrastiveResult:
    """Result of one contrastive objective.

    Attributes:
        loss: scalar to minimise (mean of both directions for symmetric losses).
        a_to_b / b_to_a: the per-direction parts (None for one-sided losses like triplet).
        logit_scale: current temperature inverse (CLIP: 1/tau; SigLIP: t), detached.
        logit_bias: SigLIP bias, detached (None for other losses).
        num_positives: positive pairs in the (global) batch, excluding nothing.
        stats: extra scalar statistics (e.g. triplet count, mean margin, share satisfied,
            positive / negative similarity means), all detached floats or 0-dim tensors.
    """

    loss: Tensor
    a_to_b: Tensor | None = None
    b_to_a: Tensor | None = None
    logit_scale: Tensor | None = None
    logit_bias: Tensor | None = None
    num_positives: int = 0
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class LossOutput:
    """Result of the multitask loss for one step.

    Attributes:
        total: weighted sum to back-propagate.
        terms: term name -> raw (unweighted) scalar loss.
        weights: term name -> weight used at this step.
        stats: flat `name/stat` -> float, e.g. `contrastive/logit_scale`.
        results: objective name -> ContrastiveResult.
    """

    total: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, float]
    stats: dict[str, float] = field(default_factory=dict)
    results: dict[str, ContrastiveResult] = field(default_factory=dict)


def result_stats(results: dict[str, ContrastiveResult]) -> dict[str, float]:
    """Flatten each objective's result into `<name>/<stat>` floats (positives count,
    temperature / bias, per-direction parts, extra stats): the one key scheme the engine
    logs and the doctor reads, whatever the accumulation mode."""
    out: dict[str, float] = {}
    for name, r in results.items():
        out[f"{name}/num_positives"] = float(r.num_positives)
        for key in ("logit_scale", "logit_bias", "a_to_b", "b_to_a"):
            value = getattr(r, key)
            if value is not None:
                out[f"{name}/{key}"] = float(value.detach())
        for key, value in r.stats.items():
            out[f"{name}/{key}"] = float(value)
    return out
