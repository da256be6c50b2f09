import math

import pytest

from contrastkit.errors import DataError
from contrastkit.eval.captioning import (
    bleu,
    captioning_metrics,
    numeric_fidelity,
    parse_numbers,
    rouge_l,
)


def test_parse_numbers_with_units():
    assert parse_numbers("EF 70 % and a 3.5 mm lesion, 2 chambers, 1,200 ms") == [
        (70.0, "%"),
        (3.5, "mm"),
        (2.0, ""),
        (1200.0, "ms"),
    ]


def test_numeric_fidelity_hand_cases():
    refs = ["ejection fraction 70%, wall 3.5 mm", "2 lesions"]
    hyps = ["ejection fraction 70 % , wall 4 mm", "two lesions"]
    assert numeric_fidelity(hyps, refs) == pytest.approx(1 / 3)
    # A unit must match, and each generated number is used at most once.
    assert numeric_fidelity(["5 5"], ["5 mm 5 5"]) == pytest.approx(2 / 3)
    assert numeric_fidelity(["5"], ["5 5"]) == 0.5
    assert math.isnan(numeric_fidelity(["anything"], ["no numbers here"]))


def test_bleu_and_rouge_identical_and_disjoint():
    refs = ["the heart is normal in size", "no pleural effusion is seen"]
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert rouge_l(refs, refs) == pytest.approx(1.0)
    assert rouge_l(["zebra"], ["the heart"]) == 0.0
    out = captioning_metrics(refs, refs)
    assert set(out) == {"BLEU", "ROUGE-L", "numeric_fidelity"}


def test_length_mismatch_raises():
    with pytest.raises(DataError, match="one reference per generated caption"):
        bleu(["a"], ["a", "b"])
