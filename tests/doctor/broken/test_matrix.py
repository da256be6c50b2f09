"""bench/doctor_matrix.py's selection and table, on hand-built outcomes (no training)."""

from __future__ import annotations

import pytest
from bench.broken_runs import VARIANTS, Outcome, Variant
from bench.doctor_matrix import pick, table


def test_quick_picks_the_first_variant_of_every_class():
    quick = pick(quick=True, only=[])
    assert [v.failure for v in quick] == list(dict.fromkeys(v.failure for v in VARIANTS))
    assert quick[0] is VARIANTS[0]
    assert pick(quick=False, only=[]) == list(VARIANTS)


def test_only_names_variants_and_refuses_unknown_ones():
    assert pick(quick=False, only=["own_ids-shapes"])[0].edit == "own_ids"
    with pytest.raises(SystemExit, match="no-such"):
        pick(quick=False, only=["no-such"])


def test_top_found_and_table_rows():
    leak = Variant("split_leakage", "digits", "split_leakage", how="split per row")
    ranked_second = Outcome(
        leak,
        0,
        [
            {"code": "hard_negatives_mined", "severity": "info"},
            {"code": "collapse", "severity": "error"},
            {"code": "split_leakage", "severity": "warning"},
        ],
    )
    assert ranked_second.top == "collapse"
    assert ranked_second.found
    refused = Outcome(Variant("batch_size_1", "pydoc", "refused"), 2)
    assert refused.top == "refused" and refused.found
    silent = Outcome(Variant("healthy", "digits", "none"), 0, [{"code": "x", "severity": "info"}])
    assert silent.top == "none" and silent.found
    rows = table([ranked_second, refused]).splitlines()
    assert rows[2] == (
        "| split_leakage | digits | split per row | `split_leakage` | yes | no | `collapse` |"
    )
    assert rows[3] == "| batch_size_1 | pydoc | - | `refused` | yes | yes | `refused` |"
