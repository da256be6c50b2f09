"""Captioning metrics: corpus BLEU, ROUGE-L, numeric fidelity and numeric error.

Reports often carry the numbers that matter ("ejection fraction 55%", "3.5 mm lesion");
BLEU and ROUGE barely move when such a number is wrong, so two metrics check them
directly: `numeric_fidelity` counts the stated quantities reproduced exactly and
`numeric_error` measures how far off the reported percentage is (a 70% stenosis written
as 60% is a smaller error than one written as 30%, and BLEU scores both the same).
"""

from __future__ import annotations

from collections.abc import Sequence

from contrastkit.errors import DataError
from contrastkit.eval.numbers import first_percentage, parse_quantities


def numeric_fidelity(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of the references' quantities reproduced with the same value(s) and unit.

    Quantities follow the grammar of `eval/numbers.py` (a range "70-80%" is one quantity
    and must be reproduced whole). Each reference quantity can be matched by at most one
    generated quantity (and vice versa). A number without a unit in the generated text
    does not match a number with a unit. Returns NaN when the references hold no number.
    """
    _check_lengths(hypotheses, references)
    wanted = found = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        available = parse_quantities(hyp)
        for quantity in parse_quantities(ref):
            wanted += 1
            hit = next((i for i, c in enumerate(available) if c.same_as(quantity)), None)
            if hit is not None:
                found += 1
                del available[hit]
    return found / wanted if wanted else float("nan")


def numeric_error(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean absolute error, in percentage points, of the reported percentage.

    The reported percentage of a text is its first "%" quantity (a range counts as its
    middle): in a report it is the headline number ("70% stenosis ..."). Only pairs where
    both the generated caption and the reference state one are averaged, so read it with
    `numeric_fidelity`, which counts a missing number as a miss. NaN when no pair has one.
    """
    _check_lengths(hypotheses, references)
    errors = []
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = first_percentage(hyp), first_percentage(ref)
        if h is not None and r is not None:
            errors.append(abs(h - r))
    return sum(errors) / len(errors) if errors else float("nan")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu, 0-100, default 13a tokenisation)."""
    import sacrebleu

    _check_lengths(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, with stemming), 0-1."""
    from rouge_score import rouge_scorer

    _check_lengths(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [
        scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)
    ]
    return sum(scores) / len(scores)


def captioning_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """BLEU, ROUGE-L, numeric fidelity and numeric error of generated captions against one reference each."""
    return {
        "BLEU": bleu(hypotheses, references),
        "ROUGE-L": rouge_l(hypotheses, references),
        "numeric_fidelity": numeric_fidelity(hypotheses, references),
        "numeric_error": numeric_error(hypotheses, references),
    }


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references) or not references:
        raise DataError(
            f"captioning metrics need one reference per generated caption and at least one "
            f"pair; got {len(hypotheses)} captions and {len(references)} references"
        )
