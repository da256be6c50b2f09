"""Findings: what the doctor concluded, with the numbers behind it and the config change
that fixes it.

Every finding has a stable `code` from `CATALOGUE` (documented in docs/doctor.md) so
scripts and CI can key on it; `severity` orders what to look at first; `evidence` holds
the measured numbers and the steps they come from; `fix` maps dotted config keys to the
suggested value (what `-o key=value` would take), `fix_note` says what a config key
cannot (a manifest edit, a code bug).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
SEVERITY_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}

# code -> (priority, one-line title). Lower priority is shown first within a severity:
# causes that make every other signal meaningless (NaN, no learning rate, broken data)
# come before the symptoms they produce (loss at chance, no alignment).
CATALOGUE: dict[str, tuple[int, str]] = {
    "loss_nan": (0, "loss is NaN or infinite"),
    "run_stopped": (0, "the run stopped before its last step"),
    "lr_zero": (1, "learning rate is zero after warm-up"),
    "lr_too_small": (2, "learning rate far too small: steps barely move the weights"),
    "lr_too_large": (2, "learning rate far too large: steps rewrite the weights"),
    "lr_never_peaks": (1, "the lr schedule never reaches train.lr (warm-up longer than the run)"),
    "grad_clip_too_small": (1, "gradient clipping, not the lr, sets the step size"),
    "run_too_short": (1, "too few optimizer steps to leave chance"),
    "embed_dim_too_small": (13, "embedding dimension too small to tell a batch apart"),
    "params_not_in_optimizer": (2, "trainable parameters missing from the optimizer"),
    "frozen_param_gets_grad": (3, "frozen parameters receive gradients"),
    "duplicate_groups": (4, "identical media or text filed under different groups"),
    "group_id_formats": (4, "one numeric group id written two ways"),
    "split_leakage": (5, "the same media or text in train and evaluation splits"),
    # Before duplicate_groups: NaN or mis-scaled files make the rest of the data checks
    # misleading (images rounded to all-black are byte-identical "duplicates").
    "input_nonfinite": (3, "input files hold NaN or Inf values"),
    "input_scaling": (3, "input pixels stored at the wrong scale"),
    "input_low_signal": (5, "input items blank or near-constant"),
    "inputs_identical": (5, "different inputs identical after the loader's preprocessing"),
    "text_truncated": (5, "texts cut by the tokenizer (distinct texts become identical)"),
    "rows_skipped": (6, "manifest rows skipped by on_error: skip"),
    "labels_missing": (7, "rows without the label / attributes a head needs"),
    "small_groups": (8, "too few in-batch positives for the objective"),
    "retrieval_no_positives": (8, "leave-one-out retrieval has no query with a positive"),
    "false_negatives": (9, "near-duplicate texts under different groups"),
    "temperature_out_of_range": (10, "temperature outside the working range"),
    "weight_decay_on_temperature": (11, "weight decay applied to temperature / bias"),
    "frozen_at_random_init": (12, "a module frozen at its random init"),
    "zero_gradient": (12, "a trainable module receives no gradient"),
    "naive_accumulation_no_negatives": (13, "naive accumulation adds no negatives"),
    "too_few_negatives": (13, "too few negatives per query"),
    "frozen_backbone": (13, "backbone frozen while the loss does not improve"),
    "collapse": (14, "embeddings collapsed"),
    "aux_dominates_loss": (15, "an auxiliary term dominates the weighted loss"),
    "aux_dominates_gradient": (16, "an auxiliary term dominates the shared gradient"),
    "gradient_interference": (17, "objectives' gradients conflict on shared parameters"),
    "rigidity": (18, "the pretrained backbone does not move"),
    "siglip_bias_off": (19, "SigLIP bias far from the batch's prior"),
    "logit_scale_at_clamp": (20, "logit scale pinned at its clamp"),
    "logit_scale_toward_one": (21, "logit scale drifting toward 1"),
    "loss_at_chance": (22, "contrastive loss stuck at chance"),
    "loss_not_decreasing": (23, "loss not decreasing"),
    "alignment_negative": (24, "positives less similar than negatives"),
    "gap_shrinking": (25, "positive-negative gap shrinking"),
    "hard_negatives_above_positive": (9, "most mined hard negatives score above their positive"),
    "hard_negatives_mined": (26, "mined hard negatives: score gap to the positive"),
    "pretrained_start_at_chance": (0, "towers of one pretrained encoder start at chance"),
    "worse_than_start": (3, "the trained model scores below the untrained one"),
    "temperature_frozen": (20, "a learnable temperature never moved"),
    "init_worse_than_random": (3, "model.init_from scores below random weights"),
    "not_generalising": (5, "training pairs learned, validation at chance"),
    "pairs_not_learned": (5, "neither training nor validation pairs above chance"),
    "metric_at_baseline": (26, "a metric is not clearly above its trivial baseline"),
}


@dataclass
class Finding:
    """One diagnosis.

    Attributes:
        code: stable identifier from `CATALOGUE`.
        severity: "error" (the run cannot learn), "warning" (it learns badly), "info".
        evidence: measured numbers and the steps they come from (JSON-serialisable).
        cause: one sentence: why this happens.
        fix: dotted config key -> suggested value.
        fix_note: what to change when no config key covers it (manifest, code).
    """

    code: str
    severity: Severity
    evidence: dict[str, Any]
    cause: str
    fix: dict[str, Any] = field(default_factory=dict)
    fix_note: str = ""

    def __post_init__(self) -> None:
        if self.code not in CATALOGUE:
            raise ValueError(f"unknown finding code {self.code!r}; known: {sorted(CATALOGUE)}")
        if self.severity not in SEVERITY_RANK:
            raise ValueError(
                f"severity must be one of {list(SEVERITY_RANK)}, got {self.severity!r}"
            )

    @property
    def title(self) -> str:
        """The code's short title from the catalogue."""
        return CATALOGUE[self.code][1]

    def sort_key(self) -> tuple[int, int, str]:
        """Most severe first, then catalogue order."""
        return (SEVERITY_RANK[self.severity], CATALOGUE[self.code][0], self.code)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (findings.json), the title included."""
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "evidence": _jsonable(self.evidence),
            "cause": self.cause,
            "fix": _jsonable(self.fix),
        }
        if self.fix_note:
            out["fix_note"] = self.fix_note
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Read back what `to_dict` wrote."""
        return cls(
            code=data["code"],
            severity=data["severity"],
            evidence=dict(data.get("evidence", {})),
            cause=data.get("cause", ""),
            fix=dict(data.get("fix", {})),
            fix_note=data.get("fix_note", ""),
        )


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; within a severity by catalogue priority."""
    return sorted(findings, key=Finding.sort_key)


def should_fail(findings: Iterable[Finding], fail_on: str) -> bool:
    """True when a finding reaches `doctor.fail_on` ("never" | "warning" | "error")."""
    if fail_on == "never":
        return False
    limit = SEVERITY_RANK[fail_on]
    return any(SEVERITY_RANK[f.severity] <= limit for f in findings)


def write_findings(findings: Iterable[Finding], path: str | Path) -> Path:
    """Write `{"findings": [...]}` to `path`, most important first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"findings": [f.to_dict() for f in sort_findings(findings)]}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_findings(path: str | Path) -> list[Finding]:
    """Read a file written by `write_findings` (an absent file gives no findings)."""
    path = Path(path)
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return [Finding.from_dict(d) for d in data.get("findings", [])]


def _jsonable(value: Any) -> Any:
    """Plain JSON types: tensors / numpy scalars to floats, NaN and inf to strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | str | int) or value is None:
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return value if isinstance(value, int | float | bool | str) else str(value)
