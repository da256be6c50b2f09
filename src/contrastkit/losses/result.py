"""Typed results returned by every loss (the engine logs them, the doctor reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


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
class TermSum:
    """A term that averages over its own units (labelled rows, real tokens, masked tokens),
    reported as the SUM over those units and their COUNT.

    The term's value is `total / count` over the whole step batch. Micro-batches (and
    ranks) add their totals and counts before the one division, so accumulation gives the
    full-batch term exactly; averaging per-micro-batch means weighted by rows would not
    (a micro-batch without labels would still take its row share).

    Attributes:
        total: sum of the per-unit losses (carries the graph).
        count: number of units scored, a 0-dim float tensor without gradient.
    """

    total: Tensor
    count: Tensor

    def mean(self) -> Tensor:
        """total / count of this term alone (0, still on the graph, when nothing is scored)."""
        return self.total / self.count.clamp_min(1.0)


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
