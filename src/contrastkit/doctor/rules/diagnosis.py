"""`diagnose`: run every rule over the signals, then rank each found cause above the
symptoms it explains (`causes.CAUSE_SYMPTOMS`) so the top finding is the one whose fix helps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from contrastkit.config import Config
from contrastkit.doctor.findings import Finding, sort_findings
from contrastkit.doctor.rules.baselines import rule_metric_at_baseline
from contrastkit.doctor.rules.capacity import rule_embed_dim_too_small
from contrastkit.doctor.rules.causes import explain
from contrastkit.doctor.rules.context import Context
from contrastkit.doctor.rules.generalisation import rule_not_generalising, rule_pairs_not_learned
from contrastkit.doctor.rules.lr_scale import rule_lr_scale
from contrastkit.doctor.rules.negatives import rule_negatives
from contrastkit.doctor.rules.objectives import rule_alignment, rule_balance, rule_interference
from contrastkit.doctor.rules.optimisation import (
    rule_loss_nan,
    rule_loss_progress,
    rule_lr_zero,
    rule_optimizer,
    rule_run_stopped,
    rule_zero_gradient,
)
from contrastkit.doctor.rules.representation import (
    rule_backbone,
    rule_collapse,
    rule_frozen_at_random_init,
)
from contrastkit.doctor.rules.start import (
    rule_init_worse_than_random,
    rule_pretrained_start_at_chance,
    rule_temperature_frozen,
    rule_worse_than_start,
)
from contrastkit.doctor.rules.step_limits import (
    rule_grad_clip_too_small,
    rule_lr_never_peaks,
    rule_run_too_short,
)
from contrastkit.doctor.rules.temperature import rule_temperature

RULES: tuple[Callable[[Context], list[Finding]], ...] = (
    rule_loss_nan,
    rule_run_stopped,
    rule_lr_zero,
    rule_lr_scale,
    rule_lr_never_peaks,
    rule_grad_clip_too_small,
    rule_run_too_short,
    rule_optimizer,
    rule_temperature,
    rule_temperature_frozen,
    rule_pretrained_start_at_chance,
    rule_worse_than_start,
    rule_init_worse_than_random,
    rule_not_generalising,
    rule_pairs_not_learned,
    rule_metric_at_baseline,
    rule_loss_progress,
    rule_alignment,
    rule_balance,
    rule_interference,
    rule_collapse,
    rule_embed_dim_too_small,
    rule_backbone,
    rule_frozen_at_random_init,
    rule_zero_gradient,
    rule_negatives,
)


def diagnose(
    signals: list[dict[str, Any]],
    cfg: Config,
    *,
    batch_size: int | None = None,
    data_findings: Iterable[Finding] = (),
) -> list[Finding]:
    """Findings for a run, most important first.

    Args:
        signals: the monitors' records (`signals.jsonl` lines), any order.
        cfg: the run config.
        batch_size: global batch size (default: recorded at fit start, else
            data.batch_size * train.accumulate).
        data_findings: findings of the data doctor, merged in.
    """
    signals = sorted(signals, key=lambda r: r.get("step", 0))
    recorded = [r["batch_size"] for r in signals if r.get("batch_size")]
    b = batch_size or (recorded[0] if recorded else cfg.data.batch_size * cfg.train.accumulate)
    ctx = Context(signals, cfg, int(b), list(data_findings))
    findings = list(ctx.data)
    for rule in RULES:
        findings += rule(ctx)
    return sort_findings(explain(findings))
