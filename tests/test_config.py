"""Config: defaults, overrides, and one clear message per kind of bad input."""

from pathlib import Path

import pytest
import yaml

from contrastkit.config import apply_override, config_from_dict, dump_config, load_config
from contrastkit.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))

BASE = {
    "data": {"manifest": "m.jsonl"},
    "model": {
        "towers": {
            "image": {"streams": {"image": {"type": "cnn"}}},
            "text": {"streams": {"text": {"type": "builtin_text"}}},
        }
    },
}


def _with(**sections):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in sections.items():
        data[key] = value
    return data


def test_defaults_give_safe_clip_objective():
    cfg = config_from_dict(BASE)
    (obj,) = cfg.loss.objectives
    assert obj.type == "clip"
    assert obj.towers == ["image", "text"]
    assert obj.temperature == pytest.approx(0.07)
    assert obj.max_logit_scale == 100.0
    assert cfg.train.grad_clip == 1.0


def test_siglip_defaults():
    cfg = config_from_dict(
        _with(loss={"objectives": [{"type": "siglip", "towers": ["image", "text"]}]})
    )
    obj = cfg.loss.objectives[0]
    assert obj.init_logit_scale == pytest.approx(2.302585, rel=1e-6)  # log 10
    assert obj.init_logit_bias == -10.0


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.batch_sise=3", "data.batch_sise: unknown key"),
        ("data.batch_size=many", "data.batch_size: Input should be a valid integer"),
        ("data.batch_size=0", "data.batch_size: Input should be greater than or equal to 1"),
        ("loss.objectives.0.temperature=-1", "loss.objectives.0.clip.temperature"),
        ("loss.objectives.0.temperature=0.001", "above max_logit_scale"),
        ("loss.objectives.0.weight=0", "loss weights sum to zero"),
        ("loss.objectives.0.towers=[image, audio]", "names no tower 'audio'"),
        ("loss.objectives.0.type=softmax", "does not match any of the expected tags"),
        ("train.amp=fp8", "train.amp: Input should be 'none', 'bf16' or 'fp16'"),
        ("data.on_error=ignore", "data.on_error: Input should be 'raise' or 'skip'"),
        ("model.towers.text2={share: audio}", "towers.text2.share names no tower 'audio'"),
        ("train.phases=[{freeze: [x]}, {}]", "only the last phase may omit"),
    ],
)
def test_bad_values_name_the_key(override, fragment):
    data = _with(loss={"objectives": [{"type": "clip", "towers": ["image", "text"]}]})
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, source="cfg.yaml", overrides=[override])
    assert fragment in str(err.value)
    assert "cfg.yaml" in str(err.value)


def test_aux_term_without_head_is_rejected():
    with pytest.raises(ConfigError, match="loss.captioning is set but model.captioning"):
        config_from_dict(_with(loss={"captioning": {"weight": 0.5}}))


def test_phase_weights_must_name_terms():
    with pytest.raises(ConfigError, match=r"train.phases.0.weights.captioning: no such term"):
        config_from_dict(_with(train={"phases": [{"weights": {"captioning": 0.0}}]}))


def test_override_parsing_types_and_lists():
    data = {"a": {"b": 1, "c": [{"d": 1}]}}
    apply_override(data, "a.b=0.5")
    apply_override(data, "a.c.0.d=[1, 2]")
    apply_override(data, "a.new.x=true")
    assert data == {"a": {"b": 0.5, "c": [{"d": [1, 2]}], "new": {"x": True}}}
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        apply_override(data, "a.b")
    with pytest.raises(ConfigError, match="not an index"):
        apply_override(data, "a.c.3.d=1")


def test_dump_round_trip(tmp_path):
    cfg = config_from_dict(BASE, overrides=["train.lr=0.01"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert again.train.lr == 0.01
    assert again.model_dump() == {**cfg.model_dump(), "data": again.data.model_dump()}


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(bad)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_validates(path):
    cfg = load_config(path)
    assert sum(cfg.loss.term_weights().values()) > 0
