"""`not_generalising`: training pairs learned (the fixed train sample) while validation
stays at chance. Rule tests on hand-made evaluation records, then a tiny real run whose
validation pairs are misjoined in the manifest."""

import json
from pathlib import Path

import pytest
import yaml
from bench.recipes import BASE

from contrastkit.app.cli import main
from contrastkit.data.builtin import builtin_manifest
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.rules.context import Context
from contrastkit.doctor.rules.generalisation import rule_not_generalising
from helpers.doctor_toys import make_config


def _eval(step: int, train: tuple[float, float], val: tuple[float, float]) -> dict:
    """One evaluation: train sample of 32 groups (chance 1/32), val of 80 images x 5
    captions (chance 1/80); (text_to_image, image_to_text) R@1 each."""
    rec = {"step": step, "monitor": "eval", "train_sample/groups": 32.0}
    rec["train_sample/split_rows"] = 400.0
    for d, t, v in zip(("text_to_image", "image_to_text"), train, val, strict=True):
        rec |= {
            f"train_sample/{d}/R@1": t,
            f"train_sample/{d}/chance": 1 / 32,
            f"train_sample/{d}/num_queries": 32.0,
            f"val/{d}/R@1": v,
            f"val/{d}/chance": 1 / 80,
            f"val/{d}/num_queries": 400.0 if d == "text_to_image" else 80.0,
        }
    return rec


def _rule(records: list[dict]) -> list:
    return rule_not_generalising(Context(records, make_config(), 32, []))


def test_learned_train_pairs_with_validation_never_above_chance_is_a_misjoin():
    records = [_eval(12, (0.1, 0.1), (0.0, 0.0125)), _eval(36, (0.09375, 0.15625), (0.01, 0.0125))]
    (f,) = _rule(records)
    assert f.code == "not_generalising" and f.severity == "error"
    # pooled over both directions: (3 + 5) / 64 = 0.125, four times chance
    assert f.evidence["train_sample_pooled"][0]["R@1"] == 0.125
    assert f.evidence["val_peak"] is None
    assert f.cause.index("misjoined") < f.cause.index("memorising")  # best supported first
    assert "only 400 train rows" in f.cause
    assert f.fix == {} and "Check the join" in f.fix_note


def test_validation_that_rose_then_fell_is_memorisation():
    records = [_eval(12, (0.2, 0.2), (0.08, 0.06)), _eval(36, (0.6, 0.6), (0.015, 0.0125))]
    (f,) = _rule(records)
    assert f.cause.index("memorising") < f.cause.index("misjoined")
    assert f.evidence["val_peak"] == {"step": 12, "R@1": 0.08}
    assert f.fix == {"train.weight_decay": 0.2}  # 4 x the default 0.05


def test_silent_when_validation_learned_or_train_sample_not_learned():
    # the healthy tiny digits run: val text_to_image 0.05 is 4x chance over 400 queries
    assert _rule([_eval(36, (0.09375, 0.15625), (0.05, 0.0375))]) == []
    # its first evaluation: val 0.0275 / 0.0125 is within noise of chance, but its lift
    # (2.0x pooled) is half the train sample's (4x), not a third
    assert _rule([_eval(12, (0.15625, 0.09375), (0.0275, 0.0125))]) == []
    # nothing learned anywhere: 2 hits in 64 train queries is chance (loss_at_chance's case)
    assert _rule([_eval(36, (0.03125, 0.03125), (0.01, 0.0125))]) == []
    # no train sample recorded (eval.train_sample: 0, or a run from before it existed)
    rec = {k: v for k, v in _eval(36, (0.9, 0.9), (0.0, 0.0)).items() if "train_sample" not in k}
    assert _rule([rec]) == []


def test_not_generalising_explains_the_metric_at_baseline():
    records = [_eval(36, (0.5, 0.5), (0.01, 0.0125))]
    out = diagnose(records, make_config(), batch_size=32)
    assert [f.code for f in out][:2] == ["not_generalising", "metric_at_baseline"]
    assert out[1].evidence["explained_by"] == ["not_generalising"]


def misjoined_manifest(folder: Path, splits: tuple[str, ...]) -> Path:
    """digits-captions with each group of `splits` given the next group's image: every
    caption of those splits describes another digit (a join on the wrong key)."""
    src = builtin_manifest("digits-captions")
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    for r in rows:
        r["image"] = str(src.parent / r["image"])
    for split in splits:
        image = {}
        for r in rows:
            if r["split"] == split:
                image.setdefault(r["group"], r["image"])
        groups = sorted(image)
        shifted = dict(zip(groups, groups[1:] + groups[:1], strict=True))
        for r in rows:
            if r["split"] == split:
                r["image"] = image[shifted[r["group"]]]
    out = folder / f"misjoined_{'_'.join(splits)}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.mark.slow
def test_tiny_run_with_misjoined_val_pairs(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(BASE, sort_keys=False))
    manifest = misjoined_manifest(tmp_path, ("val",))
    run_dir = tmp_path / "run"
    args = ["train", str(config), "--run-dir", str(run_dir), "-o", f"data.manifest={manifest}"]
    assert main(args) == 0
    findings = json.loads((run_dir / "findings.json").read_text())["findings"]
    serious = [f for f in findings if f["severity"] != "info"]
    assert serious[0]["code"] == "not_generalising", [(f["code"], f["severity"]) for f in findings]
    evidence = serious[0]["evidence"]
    assert evidence["train_sample_groups"] == 32 and evidence["val_peak"] is None
    # the sample is recorded at every evaluation, next to val and both chance levels
    evals = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if "train_sample/text_to_image/R@1" in line
    ]
    assert len(evals) == BASE["train"]["epochs"]
    assert all(e["train_sample/text_to_image/chance"] == 1 / 32 for e in evals)
    assert all(e["val/text_to_image/chance"] == 1 / 80 for e in evals)
