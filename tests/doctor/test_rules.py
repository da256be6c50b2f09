from __future__ import annotations

import json
import math

import pytest

from contrastkit.doctor.findings import CATALOGUE, Finding, sort_findings
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.rules.causes import CAUSE_SYMPTOMS, explain
from contrastkit.doctor.run import diagnose_run, stop_record, update_run_info
from helpers.doctor_toys import TOWERS, make_config


def history(**series: list[float]) -> list[dict]:
    """One record per index: history(a=[1, 2]) -> [{"step": 0, "a": 1}, {"step": 10, "a": 2}]."""
    n = max(len(v) for v in series.values())
    return [
        {"step": 10 * i, **{k: v[i] for k, v in series.items() if i < len(v)}} for i in range(n)
    ]


def find(findings: list[Finding], code: str) -> Finding | None:
    hits = [f for f in findings if f.code == code]
    return hits[0] if hits else None


LOG64 = math.log(64)
AUX_MODEL = {"towers": TOWERS, "captioning": {"tower": "image"}}


def test_temperature_ten_is_out_of_range_and_at_chance():
    cfg = make_config(
        ["loss.objectives.0.temperature=10.0", "loss.objectives.0.max_logit_scale=100"]
    )
    sig = history(**{"contrastive/logit_scale": [0.1] * 6, "loss/contrastive": [LOG64 - 0.01] * 6})
    out = diagnose(sig, cfg, batch_size=64)
    f = find(out, "temperature_out_of_range")
    assert f.severity == "error" and f.evidence["temperature"] == pytest.approx(10.0)
    assert f.fix == {
        "loss.objectives.0.temperature": 0.07,
        "loss.objectives.0.learnable_temperature": True,
    }
    chance = find(out, "loss_at_chance")
    assert chance.evidence["chance"] == pytest.approx(LOG64, rel=1e-3)
    # the temperature explains the loss at chance: it ranks first and owns the fix
    assert chance.fix == f.fix and chance.evidence["explained_by"] == ["temperature_out_of_range"]
    assert chance.evidence["own_fix"] == {"loss.objectives.0.temperature": 0.07}
    assert out.index(f) < out.index(chance) and chance.severity == "warning"


def test_default_temperature_is_fine():
    sig = history(
        **{"contrastive/logit_scale": [14.3, 15, 16, 17], "loss/contrastive": [4.0, 3.0, 2.0, 1.0]}
    )
    out = diagnose(sig, make_config(), batch_size=64)
    assert not {"temperature_out_of_range", "loss_at_chance", "loss_not_decreasing"} & {
        f.code for f in out
    }


def test_temperature_from_config_without_signals():
    assert find(
        diagnose([], make_config(["loss.objectives.0.temperature=2.0"])), "temperature_out_of_range"
    )


def test_logit_scale_at_clamp_and_toward_one():
    cfg = make_config(["loss.objectives.0.max_logit_scale=50"])
    pinned = diagnose(history(**{"contrastive/logit_scale": [30, 50, 50, 50, 50]}), cfg)
    f = find(pinned, "logit_scale_at_clamp")
    assert f.severity == "warning" and f.fix == {"loss.objectives.0.max_logit_scale": 100.0}
    assert not find(
        diagnose(history(**{"contrastive/logit_scale": [14, 20, 25, 30, 35]}), cfg),
        "logit_scale_at_clamp",
    )
    falling = diagnose(history(**{"contrastive/logit_scale": [14, 10, 6, 3, 2.5]}), make_config())
    assert find(falling, "logit_scale_toward_one").evidence["end"] == 2.5
    assert not find(
        diagnose(history(**{"contrastive/logit_scale": [14, 14, 13, 13]}), make_config()),
        "logit_scale_toward_one",
    )


def test_siglip_bias_off():
    cfg = make_config(loss={"objectives": [{"type": "siglip", "towers": ["image", "text"]}]})
    stuck = history(
        **{
            "contrastive/logit_bias": [-10, -10, -10, -10],
            "loss/contrastive": [1.0, 1.0, 1.0, 1.0],
            "contrastive/logit_scale": [10] * 4,
        }
    )
    f = find(diagnose(stuck, cfg, batch_size=4), "siglip_bias_off")
    assert f.evidence["log_1_over_B"] == pytest.approx(-math.log(4), abs=1e-3)
    assert f.fix["loss.objectives.0.init_logit_bias"] == pytest.approx(-1.39)
    learning = history(
        **{"contrastive/logit_bias": [-10, -8, -6, -4], "loss/contrastive": [1.0, 0.8, 0.5, 0.3]}
    )
    assert not find(diagnose(learning, cfg, batch_size=4), "siglip_bias_off")


def test_loss_not_decreasing():
    flat = diagnose(
        history(**{"loss/total": [2.0, 2.0, 1.99, 2.0, 2.0]}), make_config(), batch_size=64
    )
    f = find(flat, "loss_not_decreasing")
    assert f.evidence["term"] == "total" and f.fix == {"train.lr": pytest.approx(3e-3)}
    assert not find(
        diagnose(history(**{"loss/total": [2.0, 1.5, 1.0, 0.8, 0.7]}), make_config()),
        "loss_not_decreasing",
    )


def test_alignment_negative_and_gap_shrinking():
    neg = find(
        diagnose(history(**{"align/gap": [0.0, -0.05, -0.1]}), make_config()), "alignment_negative"
    )
    assert neg.evidence["gap_end"] == pytest.approx(-0.1)
    shrink = find(
        diagnose(history(**{"align/gap": [0.0, 0.3, 0.3, 0.2, 0.1, 0.05]}), make_config()),
        "gap_shrinking",
    )
    assert shrink.evidence["gap_peak"] == pytest.approx(0.3) and shrink.evidence["peak_step"] == 10
    growing = diagnose(history(**{"align/gap": [0.0, 0.1, 0.2, 0.3]}), make_config())
    assert not {"alignment_negative", "gap_shrinking"} & {f.code for f in growing}


def test_aux_dominates_loss_and_gradient():
    cfg = make_config(model=AUX_MODEL, loss={"captioning": {"weight": 4.0}})
    sig = history(
        **{
            "share/captioning": [0.85] * 4,
            "share/contrastive": [0.15] * 4,
            "grad_share/captioning": [0.9] * 4,
            "grad_share/contrastive": [0.1] * 4,
        }
    )
    out = diagnose(sig, cfg)
    loss = find(out, "aux_dominates_loss")
    assert loss.fix == {"loss.captioning.weight": pytest.approx(4.0 * 0.15 / 0.85, rel=1e-2)}
    assert find(out, "aux_dominates_gradient").evidence["share"] == 0.9
    balanced = history(**{"share/captioning": [0.4] * 4, "share/contrastive": [0.6] * 4})
    assert not find(diagnose(balanced, cfg), "aux_dominates_loss")


def test_gradient_interference():
    towers = {**TOWERS, "text2": {"share": "text"}}
    loss = {
        "objectives": [
            {"name": "a", "type": "clip", "towers": ["image", "text"]},
            {"name": "b", "type": "clip", "towers": ["image", "text2"], "weight": 0.8},
        ]
    }
    cfg = make_config(model={"towers": towers}, loss=loss)
    f = find(
        diagnose(history(**{"grad_cos/a|b": [-0.3, -0.5, -0.2]}), cfg), "gradient_interference"
    )
    assert f.evidence["mean_cosine"] == pytest.approx(-1 / 3, abs=1e-4)
    assert f.fix == {"loss.objectives.1.weight": 0.4}
    # Two contrastive heads on one tower: near-orthogonal gradients already mean two targets.
    weak = find(
        diagnose(history(**{"grad_cos/a|b": [0.05, -0.05, 0.0]}), cfg), "gradient_interference"
    )
    assert "different targets" in weak.cause
    assert not find(
        diagnose(history(**{"grad_cos/a|b": [0.6, 0.5, 0.7]}), cfg), "gradient_interference"
    )


def test_aux_term_near_orthogonal_is_not_interference():
    cfg = make_config(
        model={"towers": TOWERS, "captioning": {"tower": "image"}},
        loss={"captioning": {"weight": 0.5}},
    )
    signals = history(**{"grad_cos/contrastive|captioning": [0.05, -0.05, 0.0]})
    assert not find(diagnose(signals, cfg), "gradient_interference")
    signals = history(**{"grad_cos/contrastive|captioning": [-0.3, -0.4, -0.2]})
    assert find(diagnose(signals, cfg), "gradient_interference")


def test_collapse_rule():
    collapsed = history(
        **{
            "collapse/text/std_ratio": [0.9, 0.3, 0.01],
            "collapse/text/effective_rank": [20, 5, 1.1],
            "collapse/text/dim": [64] * 3,
        }
    )
    f = find(diagnose(collapsed, make_config()), "collapse")
    assert f.evidence["tower"] == "text" and f.fix == {"train.lr": pytest.approx(1e-4)}
    healthy = history(
        **{
            "collapse/text/std_ratio": [0.9] * 3,
            "collapse/text/effective_rank": [20] * 3,
            "collapse/text/dim": [64] * 3,
        }
    )
    assert not find(diagnose(healthy, make_config()), "collapse")


def test_collapse_rank_is_judged_against_what_the_batch_can_span():
    # 8 rows of a 384-d MiniLM embedding reach rank <= 8; 2% of 384 (7.7) would call an
    # evenly spread batch collapsed. Judged on the 8 rows, rank 6 is healthy, rank 1.2 not.
    def rank_run(rank: float) -> list:
        return history(
            **{
                "collapse/text/std_ratio": [0.9] * 3,
                "collapse/text/effective_rank": [rank] * 3,
                "collapse/text/dim": [384] * 3,
                "collapse/text/rows": [8] * 3,
            }
        )

    assert not find(diagnose(rank_run(6.0), make_config()), "collapse")
    assert (
        find(diagnose(rank_run(1.2), make_config()), "collapse").evidence["effective_rank"] == 1.2
    )
    # Without the row count (older signals) the rule keeps judging on the width.
    older = [{k: v for k, v in r.items() if not k.endswith("/rows")} for r in rank_run(6.0)]
    assert find(diagnose(older, make_config()), "collapse") is not None


def test_rigidity_and_frozen_backbone():
    g = "towers.image.encoders.image"
    stuck = history(
        **{
            f"param_drift/{g}": [0.0, 1e-4, 2e-4, 3e-4],
            "embed_drift/image/drift": [0, 0.001, 0.002, 0.002],
            f"trainable/{g}": [1.0] * 4,
            "loss/contrastive": [3.0, 3.0, 2.99, 2.98],
        }
    )
    f = find(diagnose(stuck, make_config()), "rigidity")
    assert f.fix["train.lr_scale"] == {g: 10.0}
    assert f.fix["train.phases"][0]["freeze"] == [g]
    moving = history(
        **{
            f"param_drift/{g}": [0.0, 0.01, 0.02, 0.03],
            f"trainable/{g}": [1.0] * 4,
            "loss/contrastive": [3.0, 3.0, 2.99, 2.98],
        }
    )
    assert not find(diagnose(moving, make_config()), "rigidity")
    frozen = history(**{f"trainable/{g}": [0.0] * 4, "loss/contrastive": [3.0] * 4})
    fb = find(
        diagnose(frozen, make_config(["train.freeze=[towers.image.encoders.image]"])),
        "frozen_backbone",
    )
    assert fb.fix["train.freeze"] == [] and fb.fix["train.phases"][1]["unfreeze"] == [g]
    learning = history(**{f"trainable/{g}": [0.0] * 4, "loss/contrastive": [3.0, 2.0, 1.5, 1.0]})
    assert not find(diagnose(learning, make_config()), "frozen_backbone")


def test_zero_gradient():
    sig = history(
        **{
            "grad_norm/classifier": [0.0] * 3,
            "grad_norm/towers.image.projection": [1.0, 0.5, 0.2],
            "trainable/classifier": [1.0] * 3,
        }
    )
    f = find(diagnose(sig, make_config()), "zero_gradient")
    assert f.evidence["modules"] == ["classifier"] and f.severity == "warning"
    frozen = history(**{"grad_norm/classifier": [0.0] * 3, "trainable/classifier": [0.0] * 3})
    assert not find(diagnose(frozen, make_config()), "zero_gradient")


def test_lr_zero_after_warmup_only():
    cfg = make_config(["train.warmup_steps=10"])
    assert find(diagnose(history(**{"lr/max": [0.0, 0.0, 0.0]}), cfg), "lr_zero")
    warm = history(**{"lr/max": [0.0, 1e-3, 5e-4, 0.0]})  # warm-up from 0 and cosine to 0: fine
    assert not find(diagnose(warm, cfg), "lr_zero")


def test_loss_nan_and_optimizer_records():
    sig = [
        {
            "step": 0,
            "event": "fit_start",
            "not_in_optimizer": 2,
            "not_in_optimizer_names": ["x", "y"],
            "temperature_groups": [{"param": "logit_scale", "group": 0, "weight_decay": 0.0}],
        },
        {"step": 5, "nonfinite_steps": 3, "frozen_with_grad": 0},
    ]
    out = diagnose(sig, make_config(["train.amp=fp16", "train.device=cuda"]))
    assert find(out, "loss_nan").fix == {
        "train.lr": pytest.approx(1e-4),
        "train.grad_clip": 1.0,
        "train.amp": "bf16",
    }
    assert find(out, "params_not_in_optimizer").evidence["names"] == ["x", "y"]
    assert not find(out, "weight_decay_on_temperature") and not find(out, "frozen_param_gets_grad")
    assert out[0].code == "loss_nan"  # errors first, by catalogue priority


def test_data_findings_are_merged_and_sorted():
    data = Finding("rows_skipped", "warning", {"rows_skipped": 1}, "c")
    dup = Finding("duplicate_groups", "error", {"rows_affected": 5}, "c")
    out = diagnose([], make_config(), data_findings=[data, dup])
    assert [f.code for f in out] == ["duplicate_groups", "rows_skipped"]


def test_chance_is_not_reported_twice():
    sig = history(**{"loss/total": [LOG64] * 5, "loss/contrastive": [LOG64] * 5})
    codes = [f.code for f in diagnose(sig, make_config(), batch_size=64)]
    assert codes.count("loss_at_chance") == 1 and "loss_not_decreasing" not in codes


# ----------------------------------------------------------------- causes before symptoms

PAIRS = [(c, s) for c, symptoms in CAUSE_SYMPTOMS.items() for s in symptoms]


def test_cause_table_names_catalogue_codes():
    assert {c for c, _ in PAIRS} | {s for _, s in PAIRS} <= set(CATALOGUE)
    # the causes the issue names explain the three symptoms it names
    for cause in ("temperature_out_of_range", "siglip_bias_off", "duplicate_groups", "loss_nan"):
        assert {"collapse", "loss_at_chance", "gap_shrinking"} <= set(CAUSE_SYMPTOMS[cause])


@pytest.mark.parametrize(("cause", "symptom"), PAIRS)
@pytest.mark.parametrize("symptom_severity", ["error", "warning"])
def test_every_cause_ranks_above_its_symptom_and_owns_the_fix(cause, symptom, symptom_severity):
    c = Finding(cause, "warning", {"n": 1}, "the cause", {"cause.key": 1}, "cause note")
    s = Finding(symptom, symptom_severity, {"n": 2}, "the symptom", {"symptom.key": 2})
    out = sort_findings(explain([s, c]))
    assert [f.code for f in out] == [cause, symptom]
    top, low = out
    # the cause takes the symptom's severity (a cause of an error is an error), the
    # symptom drops one level below it
    assert top.severity == symptom_severity
    assert low.severity == {"error": "warning", "warning": "info"}[symptom_severity]
    assert low.fix == {"cause.key": 1}
    assert low.evidence == {"n": 2, "explained_by": [cause], "own_fix": {"symptom.key": 2}}
    assert low.fix_note.startswith(f"caused by {cause}")
    assert s.fix == {"symptom.key": 2} and s.severity == symptom_severity  # inputs unchanged


@pytest.mark.parametrize(("cause", "symptom"), PAIRS)
def test_an_info_cause_explains_nothing(cause, symptom):
    c = Finding(cause, "info", {}, "c", {"cause.key": 1})
    s = Finding(symptom, "error", {}, "s", {"symptom.key": 2})
    low = next(f for f in explain([c, s]) if f.code == symptom)
    assert low.severity == "error" and low.fix == {"symptom.key": 2}


def test_chain_points_every_symptom_at_the_root():
    # siglip bias -> collapse -> loss at chance: both symptoms take the bias's fix.
    bias = Finding("siglip_bias_off", "warning", {}, "c", {"bias": 0})
    collapse = Finding("collapse", "error", {}, "c", {"train.lr": 1e-4})
    chance = Finding("loss_at_chance", "error", {}, "c", {})
    out = sort_findings(explain([chance, collapse, bias]))
    assert [f.code for f in out] == ["siglip_bias_off", "collapse", "loss_at_chance"]
    assert [f.severity for f in out] == ["error", "warning", "warning"]
    assert out[1].fix == out[2].fix == {"bias": 0}
    assert out[2].evidence["explained_by"] == ["collapse", "siglip_bias_off"]


def test_siglip_fixed_bias_collapse_ranks_the_bias_first():
    # A SigLIP run whose fixed bias (+10) makes every pair look positive collapses: the
    # bias is the cause, and collapse's own fix (lr / 10) would not help.
    cfg = make_config(
        ["loss.objectives.0.learnable=false", "loss.objectives.0.init_logit_bias=10.0"],
        loss={"objectives": [{"type": "siglip", "towers": ["image", "text"]}]},
    )
    sig = history(
        **{
            "contrastive/logit_bias": [10.0] * 5,
            "contrastive/logit_scale": [10.0] * 5,
            "loss/contrastive": [0.7, 0.69, 0.69, 0.69, 0.69],
            "collapse/text/std_ratio": [0.9, 0.3, 0.02, 0.01, 0.01],
            "collapse/text/effective_rank": [20, 5, 1.2, 1.1, 1.1],
            "collapse/text/dim": [64] * 5,
        }
    )
    out = diagnose(sig, cfg, batch_size=32)
    assert out[0].code == "siglip_bias_off" and out[0].severity == "error"
    collapse = find(out, "collapse")
    assert out.index(collapse) > 0 and collapse.severity == "warning"
    assert collapse.fix == {
        "loss.objectives.0.init_logit_bias": pytest.approx(-math.log(32), abs=0.01),
        "loss.objectives.0.learnable": True,
    }
    assert collapse.evidence["own_fix"] == {"train.lr": pytest.approx(1e-4)}


def test_duplicate_groups_explain_loss_at_chance_through_diagnose():
    dup = Finding("duplicate_groups", "warning", {"rows_affected": 5}, "c", fix_note="regroup")
    sig = history(**{"loss/contrastive": [LOG64] * 5})
    out = diagnose(sig, make_config(), batch_size=64, data_findings=[dup])
    assert [f.code for f in out][:2] == ["duplicate_groups", "loss_at_chance"]
    assert out[0].severity == "error" and out[1].severity == "warning"
    assert out[1].fix_note == "caused by duplicate_groups: fix that first. regroup"
    assert dup.severity == "warning"  # the caller's finding is not modified


# ----------------------------------------------------------------- runs that stop early


def test_exploding_run_signals_give_loss_nan():
    # What an exploding run records before it dies: finite losses, then an infinite
    # gradient norm and a logit scale that underflowed to 0 (the next 1 / scale divides
    # by zero). No loss was ever logged as NaN.
    sig = history(
        **{
            "loss/contrastive": [4.1, 3.9, 3.95],
            "grad_norm/towers.image.encoders.image": [1.0, 50.0, math.inf],
            "contrastive/logit_scale": [14.3, 3.0, 0.0],
        }
    )
    f = find(diagnose(sig, make_config(["train.lr=10.0"])), "loss_nan")
    assert f.evidence["first_step"] == 20 and f.evidence["records"] == 2
    assert f.evidence["signals"] == [
        "contrastive/logit_scale",
        "grad_norm/towers.image.encoders.image",
    ]
    assert f.fix == {"train.lr": 1.0, "train.grad_clip": 1.0}


def test_stop_on_nonfinite_steps_is_loss_nan():
    stop = {"step": 40, "monitor": "run", "event": "stopped", "nonfinite": True, "error": "x"}
    sig = [*history(**{"loss/contrastive": [4.1, 3.9]}), stop]
    out = diagnose(sig, make_config())
    assert out[0].code == "loss_nan" and out[0].evidence["stopped_at_step"] == 40
    assert "run stopped" in out[0].cause and not find(out, "run_stopped")


def test_stop_for_another_reason_is_run_stopped_unless_explained():
    stop = {"step": 7, "monitor": "run", "event": "stopped", "error": "OSError: disk full"}
    (f,) = diagnose([stop], make_config())
    assert f.code == "run_stopped" and f.severity == "error"
    assert f.evidence == {"step": 7, "error": "OSError: disk full"}
    # the same crash after the loss went NaN: the NaN is the cause, ranked first
    nan = {"step": 5, "loss/contrastive": math.nan}
    out = diagnose(
        [nan, {**stop, "error": "ZeroDivisionError: float division by zero"}], make_config()
    )
    assert [f.code for f in out] == ["loss_nan", "run_stopped"]
    assert out[1].evidence["explained_by"] == ["loss_nan"] and out[1].fix == out[0].fix


def test_diagnose_run_explains_an_early_stop(tmp_path):
    # On disk, as the engine and app/run.py leave a run stopped by non-finite steps:
    # skipped steps in metrics.jsonl (finite loss, non-finite gradient) and the stop.
    cfg = make_config()
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "train/loss": 4.0, "train/bad_step": 1.0}) for s in (3, 4))
        + "\n"
    )
    update_run_info(tmp_path, stopped=stop_record(4, NonFinite("10 bad steps"), nonfinite=True))
    findings = diagnose_run(tmp_path, cfg)
    assert findings[0].code == "loss_nan"
    assert findings[0].evidence["first_step"] == 3 and findings[0].evidence["stopped_at_step"] == 4
    written = json.loads((tmp_path / "findings.json").read_text())["findings"]
    assert written[0]["code"] == "loss_nan"


class NonFinite(RuntimeError):
    pass


def test_lr_zero_reads_the_models_groups_not_the_temperatures():
    # lr_scale 0 on every tower: the temperature's group keeps lr/max and lr/base above 0
    cfg = make_config(["train.warmup_steps=0"])
    towers_zero = history(**{"lr/max": [3e-3] * 3, "lr/base": [1e-3] * 3, "lr/model": [0.0] * 3})
    f = find(diagnose(towers_zero, cfg), "lr_zero")
    assert f is not None and f.evidence["max_lr_after_warmup"] == 0.0
    moving = history(**{"lr/max": [3e-3] * 3, "lr/base": [1e-3] * 3, "lr/model": [1e-3] * 3})
    assert not find(diagnose(moving, cfg), "lr_zero")


def test_loss_at_chance_is_judged_on_the_contrastive_batch():
    # Naive accumulation: global batch 32, each loss over a micro-batch of 4 (ln 4 = 1.386).
    flat = history(
        **{
            "loss/contrastive": [1.39, 1.39, 1.38, 1.39, 1.38],
            "negatives/contrastive_batch": [4] * 5,
            "negatives/mean": [3.0] * 5,
            "negatives/min": [3.0] * 5,
        }
    )
    f = find(diagnose(flat, make_config(), batch_size=32), "loss_at_chance")
    assert f is not None and f.evidence["chance"] == pytest.approx(math.log(4), abs=1e-3)
    # Without negatives records the global batch is chance: 1.39 is far below ln 32 = 3.47.
    plain = [{k: v for k, v in r.items() if not k.startswith("negatives/")} for r in flat]
    assert not find(diagnose(plain, make_config(), batch_size=32), "loss_at_chance")


def _sample_and_val(step: int, train_r1: float, val_r1: float) -> dict:
    """An evaluation of 32 train-sample groups (chance 1/32) and 80 val images (1/80)."""
    rec: dict = {"step": step, "monitor": "eval", "train_sample/groups": 32.0}
    for d in ("text_to_image", "image_to_text"):
        rec |= {
            f"train_sample/{d}/R@1": train_r1,
            f"train_sample/{d}/chance": 1 / 32,
            f"train_sample/{d}/num_queries": 32.0,
            f"val/{d}/R@1": val_r1,
            f"val/{d}/chance": 1 / 80,
            f"val/{d}/num_queries": 80.0,
        }
    return rec


def test_pairs_not_learned_when_train_sample_and_val_sit_at_chance():
    collapsed = {"collapse/image/std_ratio": 0.02, "collapse/image/effective_rank": 1.5}
    records = [
        {"step": 0, "loss/contrastive": 3.6, **collapsed},
        {"step": 30, "loss/contrastive": 3.46, **collapsed},
        _sample_and_val(36, 1 / 32, 0.0125),
    ]
    out = diagnose(records, make_config(), batch_size=32)
    assert out[0].code == "pairs_not_learned" and out[0].severity == "error"
    assert "joined to the wrong partner" in out[0].cause and "Check the join" in out[0].fix_note
    # its symptoms point at it, their lr fixes kept as evidence only
    assert find(out, "collapse").evidence["explained_by"] == ["pairs_not_learned"]
    # the train sample learned (0.25 = 8x chance): not_generalising's case, not this one
    learned = [*records[:2], _sample_and_val(36, 0.25, 0.0125)]
    codes = [f.code for f in diagnose(learned, make_config(), batch_size=32)]
    assert "pairs_not_learned" not in codes and codes[0] == "not_generalising"
    # validation above chance (0.1 = 8x over 80 queries) with the sample at chance: silent
    assert not find(
        diagnose([_sample_and_val(36, 1 / 32, 0.1)], make_config()), "pairs_not_learned"
    )
    # only an evaluation at step 0 (before training): nothing to judge yet
    assert not find(diagnose([_sample_and_val(0, 0.0, 0.0)], make_config()), "pairs_not_learned")


def test_a_known_cause_outranks_pairs_not_learned():
    # The same evaluations under a softmax at tau 10: the temperature is why nothing is learned.
    records = [
        {"step": 0, "loss/contrastive": 3.47, "contrastive/logit_scale": 0.1},
        {"step": 30, "loss/contrastive": 3.46, "contrastive/logit_scale": 0.1},
        _sample_and_val(36, 1 / 32, 0.0125),
    ]
    out = diagnose(records, make_config(["loss.objectives.0.temperature=10"]), batch_size=32)
    assert out[0].code == "temperature_out_of_range"
    residual = find(out, "pairs_not_learned")
    assert residual.evidence["explained_by"] == ["temperature_out_of_range"]
    assert residual.fix == out[0].fix


def test_small_groups_explains_zero_gradient():
    assert "zero_gradient" in CAUSE_SYMPTOMS["small_groups"]
    small = Finding("small_groups", "warning", {}, "no positives in a batch")
    zero = Finding("zero_gradient", "error", {}, "no gradient")
    out = sorted(explain([zero, small]), key=Finding.sort_key)
    assert [f.code for f in out] == ["small_groups", "zero_gradient"]
    assert out[0].severity == "error" and out[1].evidence["explained_by"] == ["small_groups"]


def _start_eval(r1: float, chance: float = 1 / 64) -> dict:
    rec: dict = {"step": 0, "monitor": "eval"}
    for d in ("doc_to_code", "code_to_doc"):
        rec |= {
            f"at_start/val/{d}/R@1": r1,
            f"at_start/val/{d}/chance": chance,
            f"at_start/val/{d}/num_queries": 64.0,
        }
    return rec


def _minilm_pair(projection: dict | None = None) -> dict:
    tower = {"streams": {"text": {"type": "minilm"}}}
    code = {"streams": {"text_code": {"type": "minilm"}}}
    if projection:
        tower["projection"] = code["projection"] = projection
    return {"towers": {"doc": tower, "code": code}}


def test_one_pretrained_encoder_at_chance_before_training():
    loss = {"objectives": [{"type": "clip", "towers": ["doc", "code"]}]}
    cfg = make_config(model=_minilm_pair({"type": "linear", "init": "random"}), loss=loss)
    out = diagnose([_start_eval(0.0), {"step": 6, "loss/contrastive": 3.47}], cfg, batch_size=32)
    f = find(out, "pretrained_start_at_chance")
    assert f is not None and f.severity == "error" and out[0] is f
    assert f.evidence["towers"] == ["code", "doc"]
    assert f.fix == {
        "model.towers.doc.projection.init": "identity",
        "model.towers.code.projection.init": "identity",
    }
    # Zero-shot MiniLM on pydoc starts at R@1 ~0.4 (64 queries): far above chance, silent.
    fine = make_config(model=_minilm_pair(), loss=loss)
    assert not find(diagnose([_start_eval(0.4)], fine), "pretrained_start_at_chance")
    # Two unrelated encoders (a scratch text tower beside MiniLM) start unaligned: silent.
    mixed = _minilm_pair()
    mixed["towers"]["code"] = {"streams": {"text_code": {"type": "builtin_text"}}}
    cfg_mixed = make_config(model=mixed, loss=loss)
    assert not find(diagnose([_start_eval(0.0)], cfg_mixed), "pretrained_start_at_chance")


def test_rigidity_when_every_step_is_under_the_healthy_band_though_the_loss_fell():
    # MiniLM at lr 1e-6 (matrix variant rigidity-minilm): loss -7% in 9 steps from noise,
    # weights moved 5e-5 of their norm, steps of ~9e-6.
    g = "towers.doc.encoders.text"
    still = {
        f"param_drift/{g}": [1e-5, 2e-5, 3e-5, 4e-5, 5e-5],
        "embed_drift/doc/drift": [1e-5, 4e-5, 1e-4, 2e-4, 2.7e-4],
        f"trainable/{g}": [1.0] * 5,
        "loss/contrastive": [1.515, 1.46, 1.49, 1.41, 1.40],
    }
    tiny = history(**still, **{f"update_ratio/{g}": [1.1e-5, 9.6e-6, 8.8e-6, 7.6e-6, 6e-6]})
    f = find(diagnose(tiny, make_config()), "rigidity")
    assert f is not None and f.evidence["flat_terms"] == []
    assert f.evidence["update_ratio_max"] == pytest.approx(8.8e-6)
    assert "train.lr" in f.fix  # the lr that brings the ratio to ~1e-3
    # The same still backbone with healthy steps and a falling loss is not rigid.
    healthy = history(**still, **{f"update_ratio/{g}": [1e-3] * 5})
    assert not find(diagnose(healthy, make_config()), "rigidity")
