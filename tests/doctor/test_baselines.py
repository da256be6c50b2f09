"""Every metric against its trivial baseline: the baselines (eval/baselines.py), computed by
hand, and the `metric_at_baseline` rule on hand-made evaluation records."""

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.rules.baselines import near_chance, rule_metric_at_baseline
from contrastkit.doctor.rules.context import Context
from contrastkit.eval.baselines import (
    majority_accuracy,
    numeric_baseline_keys,
    train_baselines,
)
from helpers.doctor_toys import make_config


@dataclass
class Row:
    id: str
    group: str
    values: dict = field(default_factory=dict)


class Split:
    def __init__(self, rows: list[dict], label_index: dict[str, int]) -> None:
        self.rows = [Row(str(i), str(i), v) for i, v in enumerate(rows)]
        self.group_ids = np.arange(len(rows))
        self.label_index = label_index


def test_majority_class_and_most_frequent_headline_by_hand():
    train = Split(
        [
            {"text": "70% stenosis of the LAD.", "label": "LAD"},
            {"text": "50% stenosis of the RCA.", "label": "RCA"},
            {"text": "70% stenosis, 3 mm.", "label": "LAD"},
            {"text": "No significant disease.", "label": "LCx"},
            {"text": "between 40 and 60% of the RCA", "label": "RCA"},  # range: 50
            {"text": "90% stenosis.", "label": "LAD"},
        ],
        {"LAD": 0, "RCA": 1, "LCx": 2},
    )
    base = train_baselines(train)
    assert base.majority_class == 0  # LAD 3, RCA 2, LCx 1
    # headlines 70, 50, 70, -, 50, 90: a tie between 50 and 70 goes to the smaller
    assert base.headline_mode == 50.0
    # always answering LAD on labels [0, 1, 1, -1, 0]: 2 of the 4 labelled
    assert majority_accuracy(torch.tensor([0, 1, 1, -1, 0]), 0) == pytest.approx(0.5)
    assert np.isnan(majority_accuracy(torch.tensor([-1, -1]), 0))


def test_numeric_baseline_is_the_constant_report_scored_like_the_model():
    refs = ["70% stenosis of the LAD.", "50% stenosis.", "90% stenosis, 3 mm."]
    hyps = ["70% stenosis.", "70% stenosis.", "no number"]
    keys = numeric_baseline_keys(hyps, refs, 70.0)
    # "70%" everywhere reproduces 1 of the 4 reference quantities (70%, 50%, 90%, 3 mm)
    assert keys["numeric_fidelity_baseline"] == pytest.approx(1 / 4)
    # headline errors 0, 20, 20 points
    assert keys["numeric_error_baseline"] == pytest.approx(40 / 3)
    # both captions that state a percentage state the mode
    assert keys["numeric_mode_share"] == 1.0 and keys["numeric_mode"] == 70.0
    assert keys["numeric_mode_share_reference"] == pytest.approx(1 / 3)


def test_near_chance_uses_noise_and_a_ratio_floor():
    # 400 queries at chance 1/80: SE 0.0056, three of them 0.0291 above 0.0125
    assert near_chance(0.029, 0.0125, 400) and not near_chance(0.05, 0.0125, 400)
    # many queries: the 2x chance floor
    assert near_chance(0.0006, 1 / 3000, 1e6) and not near_chance(0.0007, 1 / 3000, 1e6)


def _eval(step: int, **values: float) -> dict:
    return {"step": step, "monitor": "eval", **{k.replace("__", "/"): v for k, v in values.items()}}


def _retrieval(t2i: float, i2t: float, *, chance: float = 1 / 80) -> dict[str, float]:
    return {
        "val/text_to_image/R@1": t2i,
        "val/text_to_image/chance": chance,
        "val/text_to_image/num_queries": 400.0,
        "val/image_to_text/R@1": i2t,
        "val/image_to_text/chance": chance,
        "val/image_to_text/num_queries": 80.0,
    }


def _rule(records: list[dict], cfg=None) -> list[Finding]:
    return rule_metric_at_baseline(Context(records, cfg or make_config(), 64, []))


def test_retrieval_at_chance_on_the_selection_metric_is_an_error():
    out = _rule([{"step": 36, "monitor": "eval", **_retrieval(0.01, 0.0125)}])
    assert [f.code for f in out] == ["metric_at_baseline"]
    f = out[0]
    assert f.severity == "error"  # the selection metric (text_to_image R@1) is at chance
    assert [x["direction"] for x in f.evidence["retrieval_at_chance"]] == [
        "image_to_text",
        "text_to_image",
    ]
    assert "text_to_image 0.01 vs 0.0125" in f.cause


def test_a_pair_with_one_learned_direction_is_not_at_chance():
    # The tiny healthy digits run: image_to_text 0.0375 over 80 queries is within noise
    # of 1/80, but text_to_image 0.05 over 400 queries is 6.8 SE above it.
    assert _rule([{"step": 36, "monitor": "eval", **_retrieval(0.05, 0.0375)}]) == []


def test_only_the_last_evaluation_counts():
    early = {"step": 12, "monitor": "eval", **_retrieval(0.01, 0.01)}
    late = {"step": 36, "monitor": "eval", **_retrieval(0.2, 0.2)}
    assert _rule([early, late]) == []


def test_accuracy_at_the_majority_class():
    rec = {
        "step": 10,
        "monitor": "eval",
        **_retrieval(0.3, 0.3),
        "val/image/zero_shot_accuracy": 0.16,
        "val/image/knn_accuracy": 0.6,
        "val/image/majority_accuracy": 0.1,
    }
    out = _rule([rec])
    # 0.16 < 0.1 + max(0.02, 0.1 * 0.9) = 0.19; the k-NN's 0.6 is clearly above
    assert out[0].severity == "warning"
    assert out[0].evidence["accuracy_at_majority"] == [
        {"metric": "image/zero_shot_accuracy", "value": 0.16, "majority_class": 0.1}
    ]
    rec["val/image/zero_shot_accuracy"] = 0.2
    assert _rule([rec]) == []


def _captions(fidelity: float, error: float, share: float) -> dict[str, float]:
    return {
        "val/captioning/ROUGE-L": 0.62,
        "val/captioning/numeric_fidelity": fidelity,
        "val/captioning/numeric_fidelity_baseline": 0.1,
        "val/captioning/numeric_error": error,
        "val/captioning/numeric_error_baseline": 22.0,
        "val/captioning/numeric_mode": 70.0,
        "val/captioning/numeric_mode_share": share,
    }


CAPTIONING = make_config(
    ["loss.captioning={weight: 0.5}", "train.epochs=15"],
    model={"captioning": {"tower": "image"}},
)


def test_report_numbers_at_the_train_mode_say_the_decoder_writes_it():
    rec = {"step": 90, "monitor": "eval", **_retrieval(0.3, 0.3), **_captions(0.078, 21.8, 0.8)}
    (f,) = _rule([rec], CAPTIONING)
    assert f.severity == "warning"
    assert f.evidence["numbers"]["numeric_mode_share"] == 0.8
    assert "writes the train split's most frequent value (70%): 80% of" in f.cause
    assert f.fix == {"train.epochs": 30, "loss.captioning.weight": 1.0}
    # A decoder that states other values, as wrong as the mode: no "writes the mode".
    rec.update(_captions(0.078, 21.8, 0.2))
    (f,) = _rule([rec], CAPTIONING)
    assert "states other numbers" in f.cause
    # A mode written four times as often as it is right is "writes the mode" too (angio).
    rec.update(
        {**_captions(0.135, 31.7, 0.49), "val/captioning/numeric_mode_share_reference": 0.12}
    )
    (f,) = _rule([rec], CAPTIONING)
    assert "that mode (the references state it in 12%)" in f.cause


def test_report_numbers_clearly_above_the_mode_are_fine():
    rec = {"step": 90, "monitor": "eval", **_retrieval(0.3, 0.3), **_captions(0.6, 5.0, 0.1)}
    assert _rule([rec], CAPTIONING) == []
    # fidelity above, but the headline error no better than the constant report's
    rec.update({"val/captioning/numeric_error": 21.0})
    assert _rule([rec], CAPTIONING)[0].code == "metric_at_baseline"


def test_a_loss_at_chance_explains_metrics_at_baseline():
    records = [{"step": 10 * i, "loss/total": 4.15, "loss/contrastive": 4.15} for i in range(6)]
    records.append({"step": 50, "monitor": "eval", **_retrieval(0.01, 0.01)})
    out = diagnose(records, make_config(), batch_size=64)
    codes = [f.code for f in out]
    assert codes.index("loss_at_chance") < codes.index("metric_at_baseline")
    at = next(f for f in out if f.code == "metric_at_baseline")
    assert at.evidence["explained_by"] == ["loss_at_chance"]
