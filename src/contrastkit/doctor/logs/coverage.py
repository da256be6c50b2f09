"""Which rules a log can feed, and what each rule it cannot feed would need.

A log holds scalars only. The scalar rules run when their inputs are in the log (or
mapped with `--map`); the rest need tensors seen during training (embeddings,
gradients, the optimizer) or the dataset, and are listed with where to get them, so a
silent report never reads as "nothing is wrong".
"""

from __future__ import annotations

from dataclasses import dataclass

from contrastkit.doctor.findings import CATALOGUE
from contrastkit.doctor.logs.records import LogSignals
from contrastkit.doctor.rules.thresholds import MIN_RECORDS

ATTACH = "contrastkit.doctor.attach(model, optimizer, ...) in the training loop"
DATA_CHECKS = "data checks (duplicate_groups, split_leakage, ...)"
MAP_SCALE = "the logit scale: --map logit_scale=TAG (or temperature=TAG, log_logit_scale=TAG)"

# Rules that no scalar log can feed: what they read, and where it comes from.
NEEDS_TRAINING: dict[str, str] = {
    "collapse": f"embeddings (spread, effective rank): {ATTACH}, observe(embeddings=(a, b))",
    "alignment_negative": f"positive / negative cosines: {ATTACH}, observe(embeddings=..., groups=...)",
    "gap_shrinking": f"positive / negative cosines: {ATTACH}, observe(embeddings=..., groups=...)",
    "gradient_interference": f"per-term gradients: {ATTACH}, observe(terms={{...}})",
    "aux_dominates_gradient": f"per-term gradients: {ATTACH}, observe(terms={{...}})",
    "rigidity": f"weight and embedding drift per module: {ATTACH}",
    "frozen_backbone": f"which parameters are frozen: {ATTACH}",
    "params_not_in_optimizer": f"the model and the optimizer's groups: {ATTACH}",
    "frozen_param_gets_grad": f"the model's gradients: {ATTACH}",
    "weight_decay_on_temperature": f"the optimizer's groups: {ATTACH}",
    "temperature_frozen": f"the temperature's own learning rate: {ATTACH}",
    "lr_too_small": f"update-to-weight ratios per module: {ATTACH}",
    "lr_too_large": f"update-to-weight ratios per module: {ATTACH}",
    "lr_never_peaks": f"the scheduled lr per step: {ATTACH}",
    "grad_clip_too_small": f"pre-clip gradient norms and update ratios: {ATTACH}",
    "run_too_short": f"the run's planned optimizer steps: {ATTACH}",
    "embed_dim_too_small": f"the embeddings' dimension: {ATTACH}, observe(embeddings=(a, b))",
    "frozen_at_random_init": f"which modules are frozen and which were pretrained: {ATTACH}",
    "naive_accumulation_no_negatives": f"the accumulation mode and micro-batches: {ATTACH}",
    "not_generalising": "a train-sample retrieval evaluation beside validation: "
    "watcher.evaluate(...) of contrastkit.doctor.attach",
    "pretrained_start_at_chance": "an evaluation before training (at_start/...) and the "
    "towers' encoders: watcher.evaluate(...) before the first step",
    "pairs_not_learned": "a train-sample retrieval evaluation beside validation: "
    "watcher.evaluate(...) of contrastkit.doctor.attach",
    "metric_at_baseline": "validation metrics with their chance baselines: "
    "watcher.evaluate(...) of contrastkit.doctor.attach",
    "init_worse_than_random": f"an evaluation of random weights before training: {ATTACH}, evaluate(...)",
    "run_stopped": f"why the run ended (a log does not say): {ATTACH}",
    DATA_CHECKS: "the dataset: contrastkit doctor data FILE",
}
# Findings of the data doctor (before training): one `not_run` entry stands for them all.
DATA_CODES = frozenset(
    {
        "duplicate_groups",
        "group_id_formats",
        "split_leakage",
        "input_nonfinite",
        "input_scaling",
        "input_low_signal",
        "inputs_identical",
        "text_truncated",
        "rows_skipped",
        "labels_missing",
        "small_groups",
        "retrieval_no_positives",
        "false_negatives",
        "hard_negatives_above_positive",
        "hard_negatives_mined",
    }
)
# Rules a log can feed (`not_run` checks their inputs one by one).
SCALAR_RULES = frozenset(
    {
        "loss_nan",
        "loss_not_decreasing",
        "loss_at_chance",
        "temperature_out_of_range",
        "logit_scale_toward_one",
        "logit_scale_at_clamp",
        "siglip_bias_off",
        "aux_dominates_loss",
        "lr_zero",
        "worse_than_start",
        "zero_gradient",
        "too_few_negatives",
    }
)


@dataclass(frozen=True)
class NotRun:
    """A rule the diagnosis could not run, and the input it needs."""

    rule: str
    needs: str
    # Where the input comes from: "log" (a tag, --map, --batch-size), "training"
    # (contrastkit.doctor.attach in the loop) or "data" (contrastkit doctor data).
    source: str = "log"

    def to_dict(self) -> dict[str, str]:
        """`{"rule", "needs", "source"}` as findings.json's `not_run` lists it."""
        return {"rule": self.rule, "needs": self.needs, "source": self.source}


def not_run(logs: LogSignals, *, batch_size: int | None, siglip: bool) -> list[NotRun]:
    """The rules this log cannot feed (scalar rules first, then the rest)."""
    out = []
    losses = [t for t in ("loss", "contrastive_loss", *logs.terms()) if logs.has(t)]
    if not losses:
        out.append(NotRun("loss_nan", "a loss: --map loss=TAG"))
    if max((len(logs.train[t]) for t in losses), default=0) < MIN_RECORDS:
        out.append(NotRun("loss_not_decreasing", f"a loss logged at >= {MIN_RECORDS} steps"))
    single = not logs.terms() and logs.has("loss")
    if not (logs.has("contrastive_loss") or single):
        out.append(
            NotRun("loss_at_chance", "the contrastive term's loss: --map contrastive_loss=TAG")
        )
    elif batch_size is None:
        out.append(NotRun("loss_at_chance", "--batch-size B (chance level is ln B)"))
    if not logs.has("logit_scale"):
        for rule in ("temperature_out_of_range", "logit_scale_toward_one", "logit_scale_at_clamp"):
            out.append(NotRun(rule, MAP_SCALE))
    if not siglip:
        out.append(NotRun("siglip_bias_off", "a SigLIP run's bias: --map logit_bias=TAG"))
    elif batch_size is None:
        out.append(NotRun("siglip_bias_off", "--batch-size B (the bias is judged against log 1/B)"))
    if not (logs.has("contrastive_loss") and logs.terms()):
        out.append(
            NotRun(
                "aux_dominates_loss",
                "per-term losses: --map contrastive_loss=TAG --map caption_loss=TAG (only "
                "with auxiliary terms)",
            )
        )
    if not logs.has("lr"):
        out.append(NotRun("lr_zero", "the learning rate: --map lr=TAG"))
    if not any(s == 0 for pts in logs.val.values() for s, _ in pts):
        out.append(
            NotRun(
                "worse_than_start",
                "an evaluation before training (a val metric at step 0) and one after",
            )
        )
    if not logs.has("grad_norm"):
        out.append(NotRun("zero_gradient", f"gradient norms: --map grad_norm=TAG, or {ATTACH}"))
    if batch_size is None:
        out.append(NotRun("too_few_negatives", "--batch-size B (B - 1 negatives per query)"))
    out += [
        NotRun(rule, needs, "data" if rule == DATA_CHECKS else "training")
        for rule, needs in NEEDS_TRAINING.items()
    ]
    # A rule added to the catalogue later is not silently taken for "ran".
    listed = SCALAR_RULES | DATA_CODES | set(NEEDS_TRAINING)
    out += [
        NotRun(code, f"inputs a log does not hold: {ATTACH}", "training")
        for code in CATALOGUE
        if code not in listed
    ]
    return out
