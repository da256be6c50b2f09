"""Deliberately broken small runs on the shipped digits data, one per failure in
DESIGN.md's table: the doctor's top finding must name the failure. A healthy run of the
same size must produce no warning or error."""

import json
from pathlib import Path

import pytest
import yaml

from contrastkit.app.cli import main
from contrastkit.data.builtin import builtin_manifest

BASE = {
    "name": "broken",
    "data": {
        "manifest": "builtin:digits-captions",
        "batch_size": 32,
        "max_rows": 400,
        "image": {"size": 8, "channels": 1},
    },
    "model": {
        "embed_dim": 32,
        "tokenizer": {"type": "builtin", "vocab_size": 200, "max_length": 24},
        "towers": {
            "image": {"streams": {"image": {"type": "cnn", "width": 32, "depth": 1}}},
            "text": {
                "streams": {"text": {"type": "builtin_text", "width": 32, "depth": 1, "heads": 2}}
            },
        },
    },
    "loss": {"objectives": [{"name": "contrastive", "type": "clip", "towers": ["image", "text"]}]},
    "train": {
        "epochs": 3,
        "lr": 0.002,
        "log_every": 5,
        "progress": "none",
        "loggers": {"tensorboard": False},
        "checkpoint": {"keep_last": 1},
    },
    "doctor": {"every": 2, "probe_size": 16},
    "eval": {"splits": ["val"], "ks": [1, 5]},
}

CLIP = {"name": "contrastive", "type": "clip", "towers": ["image", "text"]}


@pytest.fixture(scope="module")
def own_id_manifest(tmp_path_factory) -> Path:
    """digits-captions with every caption given its own group (the classic bug)."""
    src = builtin_manifest("digits-captions")
    out = tmp_path_factory.mktemp("own_ids") / "manifest.jsonl"
    with out.open("w") as f:
        for line in src.read_text().splitlines():
            row = json.loads(line)
            row["group"] = row["id"]
            row["image"] = str(src.parent / row["image"])
            f.write(json.dumps(row) + "\n")
    return out


def _run(tmp_path: Path, overrides: list[str]) -> list[dict]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(BASE, sort_keys=False))
    run_dir = tmp_path / "run"
    args = ["train", str(config), "--run-dir", str(run_dir)]
    for o in overrides:
        args += ["-o", o]
    assert main(args) == 0
    return json.loads((run_dir / "findings.json").read_text())["findings"]


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
    "projector_collapse_huge_lr": (["train.lr=5", "train.grad_clip=null"], "collapse"),
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
