"""The multitask loss: contrastive objectives + auxiliary terms, weighted per step.

`build_loss(cfg.loss)` is the only place that reads the loss config. The engine calls
`forward` for plain steps. Accumulation calls `contrastive` on the embeddings of the
terms that couple rows (objectives and distillation; for cached accumulation, on the
concatenated micro-batches) and `auxiliary` per micro-batch for the per-unit terms,
which come back as sums and counts so that the step divides once by the global count.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.config import LossConfig
from contrastkit.errors import ConfigError, DataError
from contrastkit.losses.auxiliary import distillation_loss
from contrastkit.losses.distributed import world
from contrastkit.losses.reduction import add_counts, global_counts, global_means, share_of_mean
from contrastkit.losses.result import ContrastiveResult, LossOutput, TermSum, result_stats
from contrastkit.models.outputs import ModelOutput
from contrastkit.registry import HEADS


class MultitaskLoss(nn.Module):
    """One loss module per objective (in `objectives`, keyed by objective name) plus the
    configured auxiliary terms.

    Temperature / bias parameters are named `objectives.<name>.logit_scale` (log space)
    and `objectives.<name>.logit_bias`, so the optimiser can keep them out of weight decay.
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.objectives = nn.ModuleDict()
        self.towers: dict[str, list[str]] = {}
        for obj in cfg.objectives:
            self.objectives[obj.name] = obj.build()
            self.towers[obj.name] = list(obj.towers)

    @torch.no_grad()
    def clamp_parameters_(self) -> None:
        """Clamp every objective's bounded parameters (temperatures) in place; the engine
        calls this after each optimiser step (see `losses/bounds.py`)."""
        for module in self.objectives.values():
            clamp = getattr(module, "clamp_parameters_", None)
            if callable(clamp):
                clamp()

    @property
    def auxiliary_names(self) -> tuple[str, ...]:
        """Configured head terms (those `auxiliary` returns as sums and counts)."""
        return tuple(self.cfg.heads)

    def contrastive(
        self,
        embeddings: dict[str, Tensor],
        batch: dict[str, Any],
        teachers: dict[str, Tensor] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, ContrastiveResult]]:
        """Every term that couples the rows of the batch, on (possibly concatenated)
        embeddings: the contrastive objectives, and distillation when `teachers` (tower ->
        teacher embedding) are given.

        Uses only `group_ids`, `label` and `attributes` from the batch.
        """
        terms: dict[str, Tensor] = {}
        results: dict[str, ContrastiveResult] = {}
        if self.cfg.objectives and "group_ids" not in batch:
            raise DataError("batch has no `group_ids`; contrastive objectives need them")
        for i, (name, module) in enumerate(self.objectives.items()):
            towers = self.towers[name]
            missing = [t for t in towers if t not in embeddings]
            if missing:
                raise ConfigError(
                    f"loss.objectives.{i}.towers: no embeddings for {missing} in this batch; "
                    f"available: {sorted(embeddings)}"
                )
            a = embeddings[towers[0]]
            b = embeddings[towers[1]] if len(towers) == 2 else None
            result = module(
                a,
                b,
                batch["group_ids"],
                attributes=batch.get("attributes"),
                labels=batch.get("label"),
            )
            terms[name], results[name] = result.loss, result
        if self.cfg.distillation is not None and teachers:
            term = self._distillation(embeddings, teachers)
            if term is not None:
                terms["distillation"] = term
        return terms, results

    def auxiliary(self, output: ModelOutput, batch: dict[str, Any]) -> dict[str, TermSum]:
        """Head terms of one micro-batch as sums and counts, each computed by the `loss` of
        the head registered under its name; a configured term whose head produced nothing
        (e.g. captioning on a batch without text) is left out."""
        terms: dict[str, TermSum] = {}
        for term, term_cfg in self.cfg.heads.items():
            outputs = output.heads.get(term)
            if outputs is not None:
                terms[term] = HEADS.get(term).loss(outputs, batch, term_cfg)
        return terms

    def _distillation(
        self, embeddings: dict[str, Tensor], teachers: dict[str, Tensor]
    ) -> Tensor | None:
        """Mean distillation over objectives whose towers both have teacher embeddings."""
        assert self.cfg.distillation is not None  # forward calls this only when configured
        temperature = self.cfg.distillation.temperature
        values = []
        for towers in self.towers.values():
            if len(towers) == 2 and all(t in teachers and t in embeddings for t in towers):
                a, b = towers
                values.append(
                    distillation_loss(
                        embeddings[a], embeddings[b], teachers[a], teachers[b], temperature
                    )
                )
        return torch.stack(values).mean() if values else None

    def forward(
        self, output: ModelOutput, batch: dict[str, Any], weights: dict[str, float] | None = None
    ) -> LossOutput:
        """All terms of one step, weighted (default: the config's base weights).

        A term with weight 0 is still computed and reported raw (detached) but does not
        enter `total`. Per-unit terms are divided by their count over all ranks.
        """
        weights = dict(self.cfg.term_weights() if weights is None else weights)
        terms, results = self.contrastive(output.embeddings, batch, teacher_embeddings(output))
        sums = self.auxiliary(output, batch)
        counts = global_counts(add_counts([sums]))
        distributed = world()[1] > 1
        means = global_means({k: v.total for k, v in sums.items()}, counts) if distributed else {}
        for name, term in sums.items():
            value = share_of_mean(term, counts[name])
            if distributed:  # report the global mean; keep this rank's gradient
                value = value + (means[name] - value.detach())
            terms[name] = value
        total: Tensor | None = None
        for name, value in terms.items():
            w = float(weights.get(name, 0.0))
            if w == 0.0:
                terms[name] = value.detach()
                continue
            total = w * value if total is None else total + w * value
        if total is None:
            anchor = next(iter(terms.values()), None)
            total = anchor.new_zeros(()) if anchor is not None else torch.zeros(())
        return LossOutput(
            total=total, terms=terms, weights=weights, stats=result_stats(results), results=results
        )


def teacher_embeddings(output: ModelOutput) -> dict[str, Tensor]:
    """Tower -> teacher embedding, from the `teacher:<tower>` extras (distillation)."""
    prefix = "teacher:"
    return {k[len(prefix) :]: v for k, v in output.extras.items() if k.startswith(prefix)}


def build_loss(cfg: LossConfig) -> MultitaskLoss:
    """The multitask loss described by `cfg` (objectives by registered `type`)."""
    return MultitaskLoss(cfg)
