"""docs/config.md is the generated reference of every config key, and it is current."""

from __future__ import annotations

from pathlib import Path

from contrastkit.app.cli import main
from contrastkit.app.config_reference import render_reference, rows, undescribed
from contrastkit.config import Config, TrainConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_docs_config_md_is_current():
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        "docs/config.md is stale: run `contrastkit config reference --out docs/config.md`"
    )


def test_a_changed_description_makes_the_doc_stale(monkeypatch):
    before = render_reference()
    monkeypatch.setattr(TrainConfig.model_fields["lr"], "description", "a new description")
    after = render_reference()
    assert before != after and "| `train.lr` | float | `0.001` | a new description |" in after


def test_reference_lists_nested_keys_with_types_and_defaults():
    table = {key: (tp, default) for key, tp, default, _ in rows(Config, "")}
    assert table["train.lr"] == ("float", "`0.001`")
    assert table["data.sampler.type"] == ("random \\| groups", '`"random"`')
    assert table["model.towers.<tower>.streams.<stream>.type"] == ("str", "required")
    assert table["loss.objectives.N (type: clip).temperature"][1] == "`0.07`"
    assert "loss.objectives.N (type: siglip).init_logit_bias" in table


def test_every_config_key_has_a_description():
    assert undescribed() == []


def test_config_reference_command_writes_the_file(tmp_path):
    out = tmp_path / "config.md"
    assert main(["config", "reference", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_reference()
