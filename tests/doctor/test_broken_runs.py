"""Deliberately broken small runs on the shipped digits data, one per failure in
DESIGN.md's table: the doctor's top finding must name the failure. A healthy run of the
same size must produce no warning or error."""

import json
from pathlib import Path

import pytest
from bench.recipes import BASE, CLIP, own_id_manifest

from helpers.run_findings import train_findings


# The tiny digits-captions run and the own-ids manifest that bench/recipes.py measures for
# docs/recipes.md: the doctor is tested on exactly the runs the recipes quote.
@pytest.fixture(scope="module", name="own_id_manifest")
def own_id_manifest_fixture(tmp_path_factory) -> Path:
    """digits-captions with every caption given its own group (the classic bug)."""
    return own_id_manifest(tmp_path_factory.mktemp("own_ids"))


def _run(tmp_path: Path, overrides: list[str]) -> list[dict]:
    return train_findings(tmp_path, BASE, overrides)


def _top(findings: list[dict]) -> str:
    serious = [f for f in findings if f["severity"] != "info"]
    return serious[0]["code"] if serious else "none"


BROKEN = {
    "softmax_at_temperature_10": (
        [f"loss.objectives=[{json.dumps({**CLIP, 'temperature': 10.0})}]"],
        "temperature_out_of_range",
    ),
    "captioning_weight_4x": (
        [
            "model.captioning={tower: image, width: 32, depth: 1, heads: 2}",
            "loss.captioning={weight: 4.0}",
        ],
        "aux_dominates_loss",
    ),
    "second_head_on_shared_text_tower": (
        [
            "model.towers.text2={share: text}",
            f"loss.objectives=[{json.dumps(CLIP)}, "
            '{"name": "second", "type": "clip", "towers": ["image", "text2"]}]',
        ],
        "gradient_interference",
    ),
    # The same conflict under cached accumulation, where the step's terms arrive detached:
    # the doctor measures it on the probe batch instead (as large as the global batch).
    "second_head_on_shared_text_tower_accumulated": (
        [
            "model.towers.text2={share: text}",
            f"loss.objectives=[{json.dumps(CLIP)}, "
            '{"name": "second", "type": "clip", "towers": ["image", "text2"]}]',
            "data.batch_size=16",
            "train.accumulate=2",
            "doctor.probe_size=32",
        ],
        "gradient_interference",
    ),
    "backbone_refuses_to_move": (["train.lr=0.000001"], "rigidity"),
    # lr 5 without clipping: the update ratio (38 per step at its peak) is the cause, and the
    # collapse it produces is ranked below it (lr_too_large explains collapse).
    "projector_collapse_huge_lr": (["train.lr=5", "train.grad_clip=null"], "lr_too_large"),
    "lr_stuck_at_zero": (["train.lr=1e-12"], "lr_zero"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_run_top_finding(case, tmp_path):
    overrides, expected = BROKEN[case]
    findings = _run(tmp_path, overrides)
    assert _top(findings) == expected, [(f["code"], f["severity"]) for f in findings]


@pytest.mark.slow
def test_every_caption_its_own_group(tmp_path, own_id_manifest):
    findings = _run(tmp_path, [f"data.manifest={own_id_manifest}"])
    assert _top(findings) == "duplicate_groups"
    assert findings[0]["severity"] == "error"


@pytest.mark.slow
def test_healthy_run_has_no_warning(tmp_path):
    findings = _run(tmp_path, [])
    assert _top(findings) == "none", [(f["code"], f["severity"]) for f in findings]
