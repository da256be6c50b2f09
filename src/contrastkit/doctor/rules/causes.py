"""Causes before symptoms: which findings explain which, and how the ranking follows.

A broken run usually shows one cause and several symptoms: a SigLIP bias that makes every
pair look positive (`siglip_bias_off`) collapses the embeddings (`collapse`), leaves the
loss at chance and shrinks the positive-negative gap. The symptoms' own fixes then point
the wrong way (collapse's usual fix is a smaller lr), so the table below says which cause
explains which symptom, and `explain` applies it:

- the cause ranks above every symptom it explains: its severity is raised to the worst of
  theirs, and each symptom it explains drops to the severity below the cause's (findings
  sort by severity first, so this holds whatever the catalogue priorities are);
- the symptom's fix becomes the cause's fix, its own fix is kept in the evidence
  (`own_fix`), and `explained_by` lists every cause found for it.

Causes of severity "info" (a few coincidental duplicates) explain nothing. A symptom can
also be a cause (collapse explains the loss at chance): its fix then comes from the
root of the chain, the first cause that nothing else explains.
"""

from __future__ import annotations

from dataclasses import replace

from contrastkit.doctor.findings import SEVERITY_RANK, Finding, Severity

# What every "the run learns nothing / unlearns" symptom looks like.
# A validation metric at its trivial baseline (rules/baselines.py) is where every such
# run ends, so each cause of a stalled loss explains it too.
_STALLED = ("loss_at_chance", "loss_not_decreasing", "metric_at_baseline")
_UNALIGNED = ("gap_shrinking", "alignment_negative")
# What data that gives the loss nothing to separate looks like in a run.
_DATA_SYMPTOMS = (
    "collapse",
    *_STALLED,
    *_UNALIGNED,
    "logit_scale_toward_one",
    "logit_scale_at_clamp",
)
# The data doctor's input-signal findings (doctor/data_checks/signal.py, truncation.py).
INPUT_CAUSES = (
    "input_nonfinite",
    "input_scaling",
    "input_low_signal",
    "inputs_identical",
    "text_truncated",
)

# Neither the train sample nor validation above chance: the finding of last resort.
RESIDUAL = "pairs_not_learned"

# cause -> the symptoms it explains. Temperature, SigLIP bias, duplicate groups and the
# learning rate (non-finite loss from too large a step, lr 0) each explain a collapse, a
# loss at chance and a shrinking gap; tests/doctor/test_rules.py checks every pair.
CAUSE_SYMPTOMS: dict[str, tuple[str, ...]] = {
    "loss_nan": ("run_stopped", "collapse", *_STALLED, *_UNALIGNED, "logit_scale_toward_one"),
    "lr_zero": ("collapse", *_STALLED, "gap_shrinking", "rigidity", "lr_too_small"),
    # The update-to-weight ratio (monitors/updates.py): steps that barely move the weights
    # leave the loss flat and the backbone "rigid"; steps that rewrite them collapse the
    # embeddings and stall the loss.
    "lr_too_small": (*_STALLED, *_UNALIGNED, "rigidity"),
    "lr_too_large": ("collapse", *_STALLED, *_UNALIGNED, "logit_scale_toward_one"),
    # What shrinks every step besides the lr (rules/step_limits.py): the small steps, and
    # their flat loss, come from the schedule or the clip, so the lr fixes point the wrong way.
    **dict.fromkeys(
        ("lr_never_peaks", "grad_clip_too_small"),
        ("lr_zero", "lr_too_small", *_STALLED, *_UNALIGNED, "rigidity"),
    ),
    # Too few steps: nothing has been learned yet, and the first AdamW steps look "too
    # large" by design, so every learning symptom and its lr fix is premature.
    "run_too_short": (
        *_STALLED,
        *_UNALIGNED,
        "collapse",
        "rigidity",
        "lr_too_small",
        "lr_too_large",
        "metric_at_baseline",
    ),
    # Too few dimensions: the effective rank is capped by the width, so "collapse" and the
    # stalled loss follow from model.embed_dim, not from the lr.
    "embed_dim_too_small": ("collapse", *_STALLED, *_UNALIGNED, "metric_at_baseline"),
    "params_not_in_optimizer": _STALLED,
    # A run that cannot learn the task can still memorise some training pairs; its
    # validation at chance (`not_generalising`) then follows from the cause, not from
    # the split (temperature 10 and captions cut to 4 tokens on pydoc both show it).
    "temperature_out_of_range": ("collapse", *_STALLED, "gap_shrinking", "not_generalising"),
    "siglip_bias_off": ("collapse", *_STALLED, "gap_shrinking", "not_generalising"),
    "duplicate_groups": (*_DATA_SYMPTOMS, "not_generalising"),
    "split_leakage": ("logit_scale_at_clamp",),
    # Inputs the model cannot tell apart (no signal, mis-scaled, NaN, identical after the
    # loader or the tokenizer) leave nothing to align: the run shows the same symptoms as
    # duplicate groups, the learned temperature falls toward 1 (out of range), and
    # retrieval ends at chance.
    **dict.fromkeys(
        INPUT_CAUSES,
        (*_DATA_SYMPTOMS, "temperature_out_of_range", "metric_at_baseline", "not_generalising"),
    ),
    # Frozen random features: the backbone cannot move and holds nothing to align.
    "frozen_at_random_init": (
        "frozen_backbone",
        "rigidity",
        *_STALLED,
        *_UNALIGNED,
        "not_generalising",
    ),
    # Naive accumulation computes the loss per micro-batch: its few negatives are the
    # small contrastive batch (docs/accumulation.md).
    "naive_accumulation_no_negatives": ("too_few_negatives",),
    # A few rows per batch: the loss's push apart (uniformity, Wang & Isola 2020) acts on
    # those few rows, and the in-batch gap and spread are measured on them, so a narrow
    # spread and a shrinking gap follow the batch size (batch 4, 30 steps: effective rank
    # 1.4 of 32 on the 4-row batch).
    # Retrieval over a whole gallery then sits near chance too (shapes at batch 4: val R@1
    # 0.12-0.19 against chance 0.06 on 16-32 queries).
    "too_few_negatives": ("collapse", *_UNALIGNED, "metric_at_baseline"),
    # A one-tower objective over singleton groups has no positive in a batch, and its
    # leave-one-out evaluation none either: the data finding names the cause. With no
    # positive the triplet loss is 0, so no module gets a gradient and the loss stays put.
    "small_groups": ("retrieval_no_positives", "zero_gradient", *_STALLED),
    "zero_gradient": _STALLED,
    "frozen_backbone": _STALLED,
    "rigidity": _STALLED,
    "collapse": (*_STALLED, *_UNALIGNED),
    # "NLP metrics fine, retrieval stuck" (DESIGN.md): a drowned or conflicting objective
    # leaves retrieval at chance.
    "aux_dominates_loss": (*_UNALIGNED, "metric_at_baseline"),
    "aux_dominates_gradient": (*_UNALIGNED, "metric_at_baseline"),
    "gradient_interference": (*_UNALIGNED, "metric_at_baseline"),
    # One pretrained encoder that retrieves at chance before training: its space was lost
    # before the first step (random projections), so nothing after it is the lr's fault.
    "pretrained_start_at_chance": (
        "collapse",
        *_STALLED,
        *_UNALIGNED,
        "worse_than_start",
        "lr_too_large",
        "logit_scale_toward_one",
    ),
    # A model that was good at its start and ended below it was broken by training (a
    # scratch lr on a pretrained model): validation pairs that scored at the start are not
    # misjoined, and the stalled loss of a short run is that damage, not too few steps
    # (MiniLM on pydoc at lr 3e-3: val R@1 0.4 -> chance in 12 steps, train pairs memorised).
    "worse_than_start": (
        "collapse",
        *_STALLED,
        *_UNALIGNED,
        "not_generalising",
        "run_too_short",
        "lr_too_large",
        "logit_scale_toward_one",
    ),
    # An init that scores below random weights is why training from it ends below its start.
    "init_worse_than_random": ("worse_than_start",),
    # Training pairs learned, validation at chance (rules/generalisation.py): that is why
    # validation sits at its baseline and ends below its start, and memorised pairs drive
    # the logit scale to its clamp.
    "not_generalising": ("metric_at_baseline", "logit_scale_at_clamp"),
    # A loss that separates nothing (or embeddings that collapsed) leaves every metric at
    # its trivial baseline; through them the root cause (temperature, lr, data) explains it.
    "loss_at_chance": ("metric_at_baseline",),
    "loss_not_decreasing": ("metric_at_baseline",),
    # Neither train nor val pairs learned (rules/generalisation.py) with no other cause
    # found: the pairs are suspect, and the collapse and the stalled loss follow.
    RESIDUAL: ("collapse", *_STALLED, *_UNALIGNED, "logit_scale_toward_one"),
}


def _with_residual(table: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """`table` where every cause of a stalled loss or a collapse (the temperature, the lr,
    the inputs, frozen random towers, too short a run, ...) also explains the residual
    cause, so that it comes out on top only when none of them is found."""
    out = dict(table)
    for cause, symptoms in table.items():
        if cause == RESIDUAL or cause in table[RESIDUAL]:
            continue  # its own symptoms (collapse, the stalled loss) must not explain it
        if {"loss_at_chance", "collapse"} & set(symptoms):
            out[cause] = (*symptoms, RESIDUAL)
    return out


CAUSE_SYMPTOMS = _with_residual(CAUSE_SYMPTOMS)

_BY_RANK: tuple[Severity, ...] = ("error", "warning", "info")


def _below(severity: Severity) -> Severity:
    return _BY_RANK[min(SEVERITY_RANK[severity] + 1, len(_BY_RANK) - 1)]


def _worse(a: Severity, b: Severity) -> Severity:
    return a if SEVERITY_RANK[a] <= SEVERITY_RANK[b] else b


def explain(findings: list[Finding]) -> list[Finding]:
    """`findings` with `CAUSE_SYMPTOMS` applied (copies; the inputs are not changed)."""
    findings = [replace(f, evidence=dict(f.evidence), fix=dict(f.fix)) for f in findings]
    present = [f for f in findings if f.severity != "info"]
    causes_of: dict[int, list[Finding]] = {
        id(s): [c for c in present if c is not s and s.code in CAUSE_SYMPTOMS.get(c.code, ())]
        for s in findings
    }

    def root(f: Finding, seen: frozenset[int] = frozenset()) -> Finding:
        parents = [c for c in causes_of[id(f)] if id(c) not in seen]
        if not parents:
            return f
        return root(min(parents, key=Finding.sort_key), seen | {id(f)})

    # Severities first, roots before what they explain, so a chain cause -> symptom ->
    # symptom keeps its order (each step at least one severity below its root).
    explained = [f for f in findings if causes_of[id(f)]]
    roots = {id(f): root(f) for f in explained}
    for f in explained:
        top = roots[id(f)]
        top.severity = _worse(top.severity, f.severity)
    for f in explained:
        top = roots[id(f)]
        if top is f:  # a cycle with no outside root: leave it as found
            continue
        f.evidence = {
            **f.evidence,
            "explained_by": sorted({c.code for c in causes_of[id(f)]}),
            "own_fix": f.fix,
        }
        f.severity = _below(top.severity)
        f.fix = dict(top.fix)
        f.fix_note = f"caused by {top.code}: fix that first. " + (top.fix_note or "")
        f.fix_note = f.fix_note.strip()
    return findings
