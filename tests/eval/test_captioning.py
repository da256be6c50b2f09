import math

import pytest

from contrastkit.errors import DataError
from contrastkit.eval.captioning import (
    bleu,
    captioning_metrics,
    numeric_error,
    numeric_fidelity,
    rouge_l,
)
from contrastkit.eval.numbers import Quantity, numeral_values, parse_quantities


def q(low, unit="", high=None):
    return Quantity(float(low), float(low if high is None else high), unit)


# One case per form of the grammar in docs/evaluation.md ("Numbers in reports").
GRAMMAR = {
    # units, with or without a space; a word that is not a unit is no unit
    "EF 70 % and a 3.5 mm lesion, 2 chambers": [q(70, "%"), q(3.5, "mm"), q(2)],
    "70% stenosis": [q(70, "%")],
    # ranges are ONE quantity with the unit of either end
    "5-10 mm": [q(5, "mm", 10)],
    "70-80%": [q(70, "%", 80)],
    "70%-80%": [q(70, "%", 80)],
    "5 mm to 10 mm": [q(5, "mm", 10)],
    "60–70 %": [q(60, "%", 70)],
    "between 2 and 3 mm": [q(2, "mm", 3)],
    # lists: each number, the unit shared when compact or closed by and/or
    "1,2,3 vessels": [q(1), q(2), q(3)],
    "1,2,3 mm": [q(1, "mm"), q(2, "mm"), q(3, "mm")],
    "1, 2 and 3 mm": [q(1, "mm"), q(2, "mm"), q(3, "mm")],
    "2 or 3 cm": [q(2, "cm"), q(3, "cm")],
    "70%, 80% and 90%": [q(70, "%"), q(80, "%"), q(90, "%")],
    "segment 6, 70%": [q(6), q(70, "%")],
    "2 lesions and 3 stents": [q(2), q(3)],
    # decimal comma vs thousands separator
    "2,5 mm": [q(2.5, "mm")],
    "0,250 l": [q(0.25, "l")],
    "1,200 ml": [q(1200, "ml")],
    "12,345.6 ms": [q(12345.6, "ms")],
    # multipliers and dimensions
    "stent x 2": [q(2, "x")],
    "x2": [q(2, "x")],
    "2x": [q(2, "x")],
    "3 x 4 mm": [q(3, "mm"), q(4, "mm")],
    # signs, labels and section numbers
    "-5 mm": [q(-5, "mm")],
    "5 mm - 10 cm": [q(5, "mm"), q(10, "cm")],
    "LAD2 70%": [q(70, "%")],
    "section 1.2.3": [],
}


@pytest.mark.parametrize("text", list(GRAMMAR))
def test_grammar_form(text):
    assert parse_quantities(text) == GRAMMAR[text]


def test_numeral_rule_disambiguates_commas():
    assert numeral_values("1,234") == ([1234.0], False)  # 3 digits after: thousands
    assert numeral_values("1,23") == ([1.23], False)  # otherwise one comma: decimal
    assert numeral_values("1,2,3") == ([1.0, 2.0, 3.0], True)  # more: a list
    assert numeral_values("1,234,567") == ([1234567.0], False)
    assert numeral_values("1,2.5") == ([1.0, 2.5], True)  # with a point: not decimal


def test_numeric_fidelity_hand_cases():
    refs = ["ejection fraction 70%, wall 3.5 mm", "2 lesions"]
    hyps = ["ejection fraction 70 % , wall 4 mm", "two lesions"]
    assert numeric_fidelity(hyps, refs) == pytest.approx(1 / 3)
    # A unit must match, and each generated number is used at most once.
    assert numeric_fidelity(["5 5"], ["5 mm 5 5"]) == pytest.approx(2 / 3)
    assert numeric_fidelity(["5"], ["5 5"]) == 0.5
    assert math.isnan(numeric_fidelity(["anything"], ["no numbers here"]))


def test_numeric_fidelity_ranges_and_lists():
    # A range is matched whole: one end right is not the range.
    assert numeric_fidelity(["70% stenosis"], ["70-80% stenosis"]) == 0.0
    assert numeric_fidelity(["70 - 80 %"], ["70-80%"]) == 1.0
    # "5-10 mm" used to read as 5 (no unit) and 10 mm: half right against "10 mm".
    assert numeric_fidelity(["10 mm"], ["5-10 mm"]) == 0.0
    # Each list item counts: 2 of 3 reproduced.
    assert numeric_fidelity(["1 and 3 mm"], ["1,2,3 mm"]) == pytest.approx(2 / 3)


def test_numeric_error_hand_computed():
    refs = ["70% stenosis of the LAD.", "40% stenosis.", "50-60% stenosis.", "no stenosis."]
    hyps = ["60% stenosis of the LAD.", "no number", "80% stenosis, 10% elsewhere", "30%"]
    # pair 1: |60 - 70| = 10; pair 2: hypothesis has none; pair 3: |80 - 55| = 25 (the
    # first percentage, a range's middle); pair 4: reference has none. Mean of 10, 25.
    assert numeric_error(hyps, refs) == pytest.approx(17.5)
    assert math.isnan(numeric_error(["none"], ["70%"]))


def test_bleu_and_rouge_identical_and_disjoint():
    refs = ["the heart is normal in size", "no pleural effusion is seen"]
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert rouge_l(refs, refs) == pytest.approx(1.0)
    assert rouge_l(["zebra"], ["the heart"]) == 0.0
    out = captioning_metrics(refs, refs)
    assert set(out) == {"BLEU", "ROUGE-L", "numeric_fidelity", "numeric_error"}


def test_length_mismatch_raises():
    with pytest.raises(DataError, match="one reference per generated caption"):
        bleu(["a"], ["a", "b"])
    with pytest.raises(DataError, match="one reference per generated caption"):
        numeric_error(["a"], [])
