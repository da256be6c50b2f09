"""Modules frozen for the whole run at their random init: where the weights came from
(`pretrained/<module>`, the optimizer monitor) and the `frozen_at_random_init` rule."""

from __future__ import annotations

import math

import pytest

from contrastkit.doctor.monitors import OptimizerMonitor, pretrained_share
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.signals import named_parameters
from helpers.doctor_toys import ToyCriterion, ToyModel, make_config, make_state, run_steps

ENCODERS = ("towers.image.encoders.image", "towers.text.encoders.text")
PROJECTIONS = ("towers.image.projection", "towers.text.projection")


def _pretrained_text_model() -> ToyModel:
    model = ToyModel()
    model.towers["text"]["encoders"]["text"].pretrained = True  # as hf_text / minilm set it
    return model


def test_pretrained_share_from_the_modules_flag():
    model, crit = _pretrained_text_model(), ToyCriterion()
    share = pretrained_share(model, named_parameters(model, crit))
    assert share["pretrained/towers.text.encoders.text"] == 1.0
    assert share["pretrained/towers.image.encoders.image"] == 0.0
    assert share["pretrained/towers.text.projection"] == 0.0
    assert share["pretrained/criterion"] == 0.0


def test_init_from_makes_every_model_weight_pretrained():
    model, crit = ToyModel(), ToyCriterion()
    share = pretrained_share(model, named_parameters(model, crit), init_from=True)
    assert all(share[f"pretrained/{g}"] == 1.0 for g in ENCODERS + PROJECTIONS)
    assert share["pretrained/criterion"] == 0.0  # init_from loads the model only


def test_optimizer_monitor_records_it_at_fit_start_only(tmp_path):
    mon = OptimizerMonitor(every=1)
    run_steps([mon], make_state(_pretrained_text_model(), ToyCriterion(), tmp_path), 2)
    starts = [r for r in mon.history if r.get("event") == "fit_start"]
    assert len(starts) == 1 and starts[0]["pretrained/towers.text.encoders.text"] == 1.0
    assert not any("pretrained/criterion" in r for r in mon.history if r.get("event") == "lr")


def _records(trainable: dict[str, list[float]], pretrained: dict[str, float], n: int = 5):
    out = [{"step": 0, "monitor": "optimizer", "event": "fit_start"}]
    out[0].update({f"pretrained/{g}": v for g, v in pretrained.items()})
    for i in range(n):
        rec = {"step": 10 * i, "monitor": "gradients"}
        rec.update({f"trainable/{g}": v[min(i, len(v) - 1)] for g, v in trainable.items()})
        out.append(rec)
    return out


def test_both_encoders_frozen_at_random_init_is_an_error_with_the_freeze_fix():
    cfg = make_config(["train.freeze=[towers.image.encoders, towers.text.encoders, classifier]"])
    sig = _records(
        {**dict.fromkeys(ENCODERS, [0.0]), **dict.fromkeys(PROJECTIONS, [1.0])},
        dict.fromkeys(ENCODERS + PROJECTIONS, 0.0),
    )
    out = diagnose(sig, cfg, batch_size=64)
    f = out[0]
    assert f.code == "frozen_at_random_init" and f.severity == "error"
    assert f.evidence["modules"] == list(ENCODERS)
    # Only the prefixes that froze random modules leave train.freeze.
    assert f.fix == {"train.freeze": ["classifier"]}


def test_a_pretrained_frozen_encoder_is_fine_lit():
    cfg = make_config(["train.freeze=[towers.text.encoders]"])
    sig = _records(
        {"towers.text.encoders.text": [0.0], "towers.image.encoders.image": [1.0]},
        {"towers.text.encoders.text": 1.0, "towers.image.encoders.image": 0.0},
    )
    assert "frozen_at_random_init" not in {f.code for f in diagnose(sig, cfg, batch_size=64)}


def test_frozen_for_one_phase_only_is_not_reported():
    sig = _records({"towers.image.encoders.image": [0.0, 0.0, 1.0]}, dict.fromkeys(ENCODERS, 0.0))
    assert "frozen_at_random_init" not in {
        f.code for f in diagnose(sig, make_config(), batch_size=64)
    }


def test_it_outranks_frozen_backbone_and_the_loss_at_chance():
    cfg = make_config(["train.freeze=[towers.image.encoders, towers.text.encoders]"])
    sig = _records(dict.fromkeys(ENCODERS, [0.0]), dict.fromkeys(ENCODERS, 0.0), n=6)
    for r in sig[1:]:
        r["loss/contrastive"] = math.log(64)
    out = diagnose(sig, cfg, batch_size=64)
    codes = [f.code for f in out]
    assert codes[0] == "frozen_at_random_init"
    backbone, chance = out[codes.index("frozen_backbone")], out[codes.index("loss_at_chance")]
    assert backbone.evidence["explained_by"] == ["frozen_at_random_init"]
    # the loss at chance has two causes; its fix comes from the root of the chain
    assert chance.evidence["explained_by"] == ["frozen_at_random_init", "frozen_backbone"]
    assert backbone.fix == chance.fix == {"train.freeze": []}


@pytest.mark.parametrize("group", PROJECTIONS)
def test_a_random_frozen_projection_is_a_warning(group):
    sig = _records({group: [0.0]}, {group: 0.0})
    (f,) = [
        f for f in diagnose(sig, make_config(), batch_size=64) if f.code == "frozen_at_random_init"
    ]
    assert f.severity == "warning" and f.fix == {}  # frozen by a phase or code, not train.freeze


def test_a_frozen_head_is_out_of_scope():
    sig = _records({"classifier": [0.0]}, {"classifier": 0.0})
    assert not [
        f for f in diagnose(sig, make_config(), batch_size=64) if f.code == "frozen_at_random_init"
    ]
