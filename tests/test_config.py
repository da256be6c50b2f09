"""Config: defaults, overrides, and one clear message per kind of bad input."""

from pathlib import Path

import pytest
import yaml

from contrastkit.config import apply_override, config_from_dict, dump_config, load_config
from contrastkit.errors import ConfigError
from helpers.configs import minimal_config

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))

BASE = minimal_config()


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
        ("loss.objectives.0.temperature=-1", "loss.objectives.0.temperature: Input should be"),
        ("loss.objectives.0.temperature=0.001", "above max_logit_scale"),
        ("loss.objectives.0.weight=0", "loss weights sum to zero"),
        ("loss.objectives.0.towers=[image, audio]", "names no tower 'audio'"),
        ("loss.objectives.0.type=softmax", "unknown loss 'softmax'; registered: clip, siglip"),
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


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.lr=.inf", "train.lr: Input should be a finite number"),
        ("train.lr=inf", "train.lr: Input should be a finite number"),
        ("train.lr=.nan", "train.lr: Input should be a finite number"),
        ("train.lr=0", "train.lr: Input should be greater than 0"),
        (
            "train.weight_decay=-0.1",
            "train.weight_decay: Input should be greater than or equal to 0",
        ),
        ("train.betas=[0.9, 1.0]", "Adam betas must each be in [0, 1), got [0.9, 1.0]"),
        ("train.betas=[-0.1, 0.9]", "Adam betas must each be in [0, 1)"),
        ("train.betas=[0.9, .nan]", "train.betas.1: Input should be a finite number"),
        ("train.eps=.inf", "train.eps: Input should be a finite number"),
        ("train.grad_clip=.inf", "train.grad_clip: Input should be a finite number"),
        ("train.lr_scale={backbone: .nan}", "train.lr_scale.backbone: Input should be a finite"),
        ("loss.objectives.0.temperature=.nan", "temperature: Input should be a finite number"),
        ("train.device=tpu", "train.device: String should match pattern"),
        ("train.device=cuda:x", "train.device: String should match pattern"),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_rejected(override, fragment):
    data = _with(loss={"objectives": [{"type": "clip", "towers": ["image", "text"]}]})
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, source="cfg.yaml", overrides=[override])
    assert fragment in str(err.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices(device):
    assert config_from_dict(BASE, overrides=[f"train.device={device}"]).train.device == device


def test_config_file_not_utf8_names_the_byte(tmp_path, capsys):
    from contrastkit.app.cli import main

    text = yaml.safe_dump({**BASE, "name": "caf\u00e9"}, allow_unicode=True).encode("latin-1")
    path = tmp_path / "c.yaml"
    path.write_bytes(text)
    offset = text.index(b"\xe9")
    line = text[:offset].count(b"\n") + 1
    with pytest.raises(
        ConfigError, match=rf"not UTF-8 text \(byte 0xe9 at byte offset {offset}, line {line}\)"
    ):
        load_config(path)
    assert main(["config", "show", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    path.write_bytes(b"\xef\xbb\xbf" + text.decode("latin-1").encode())  # UTF-8 with a BOM
    assert load_config(path).name == "caf\u00e9"


def test_lone_surrogate_in_config_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE) + 'name: "run \\ud800"\n')
    with pytest.raises(ConfigError, match=r"name: text is not valid Unicode"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"data.root: text is not valid Unicode"):
        config_from_dict(BASE, overrides=['data.root="\\udc80"'])


def test_split_names_are_lowercased():
    cfg = config_from_dict(
        BASE, overrides=["data.train_split=Train", "data.val_split=VAL", "eval.splits=[Test]"]
    )
    assert (cfg.data.train_split, cfg.data.val_split, cfg.eval.splits) == ("train", "val", ["test"])


def test_config_written_by_v0_1_still_loads() -> None:
    """Run directories keep the resolved config of the version that wrote them; v0.1 wrote
    every absent head as `null` (`model.captioning: null`, `loss.classifier`-era keys)."""
    from contrastkit.config import config_from_dict

    old = {
        "data": {"manifest": "m.jsonl"},
        "model": {
            "towers": {
                "image": {"streams": {"image": {"type": "cnn"}}},
                "text": {"streams": {"text": {"type": "builtin_text"}}},
            },
            "captioning": None,
            "masked": None,
            "classifier": None,
        },
        "loss": {
            "objectives": [{"type": "clip", "towers": ["image", "text"]}],
            "captioning": None,
            "masked": None,
            "classification": None,
        },
    }
    cfg = config_from_dict(old)
    assert cfg.model.heads == {} and cfg.loss.heads == {}
