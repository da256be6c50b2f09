"""Captioning metrics: corpus BLEU, ROUGE-L and numeric fidelity.

Reports often carry the numbers that matter ("ejection fraction 55%", "3.5 mm lesion");
BLEU and ROUGE barely move when such a number is wrong, so `numeric_fidelity` checks them
directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from contrastkit.errors import DataError

# A number (sign, thousands separators, decimals) optionally followed by a unit: "%",
# or a short alphabetic unit such as "mm", "cm", "ms", "bpm", "kg", "mmHg".
_NUMBER = re.compile(
    r"(?<![\w.])([-+]?\d+(?:[.,]\d+)*)\s*(%|[a-zA-Zµ]{1,5}\b)?",
)
_UNITS = {"%", "mm", "cm", "m", "km", "ms", "s", "min", "h", "kg", "g", "mg", "ml", "l",
          "bpm", "mmhg", "hz", "khz", "mhz", "x", "deg", "px", "µm", "um"}  # fmt: skip


def parse_numbers(text: str) -> list[tuple[float, str]]:
    """(value, unit) for each number in `text`; unit is "" when none is recognised.

    "70 %" and "70%" both give (70.0, "%"); "3.5 mm" gives (3.5, "mm"); "1,200" gives
    1200.0. A word after a number counts as a unit only if it is a known unit, so in
    "2 chambers" the number is 2 with no unit.
    """
    out = []
    for match in _NUMBER.finditer(text):
        raw, unit = match.group(1), (match.group(2) or "").lower()
        if "," in raw and re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", raw):
            raw = raw.replace(",", "")  # thousands separators
        else:
            raw = raw.replace(",", ".")  # decimal comma
        try:
            value = float(raw)
        except ValueError:
            continue
        out.append((value, unit if unit in _UNITS else ""))
    return out


def numeric_fidelity(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of the references' numbers reproduced with the same value and unit.

    Each reference number can be matched by at most one generated number (and vice
    versa). A number without a unit in the generated text does not match a number with a
    unit. Returns NaN when the references hold no number at all.
    """
    _check_lengths(hypotheses, references)
    wanted = found = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        available = parse_numbers(hyp)
        for number in parse_numbers(ref):
            wanted += 1
            for i, candidate in enumerate(available):
                if candidate[1] == number[1] and abs(candidate[0] - number[0]) <= 1e-9 * max(
                    1.0, abs(number[0])
                ):
                    found += 1
                    del available[i]
                    break
    return found / wanted if wanted else float("nan")


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
    """BLEU, ROUGE-L and numeric fidelity of generated captions against one reference each."""
    return {
        "BLEU": bleu(hypotheses, references),
        "ROUGE-L": rouge_l(hypotheses, references),
        "numeric_fidelity": numeric_fidelity(hypotheses, references),
    }


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references) or not references:
        raise DataError(
            f"captioning metrics need one reference per generated caption and at least one "
            f"pair; got {len(hypotheses)} captions and {len(references)} references"
        )
