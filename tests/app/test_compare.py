"""contrastkit compare: differing config keys, final metrics with the best marked (lower
for ranks), overlaid curves, and sweep trials read from an Optuna study."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contrastkit.app.cli import main
from contrastkit.app.compare import best_indices, config_differences, flatten, load_views
from contrastkit.config import config_from_dict, dump_config

BASE = {
    "data": {"manifest": "builtin:digits-captions"},
    "model": {"towers": {"image": {"streams": {"image": {"type": "cnn"}}},
                         "text": {"streams": {"text": {"type": "builtin_text"}}}}},
    "loss": {"objectives": [{"type": "clip", "towers": ["image", "text"]}]},
}  # fmt: skip


def write_run(folder: Path, lr: float, r1: float, median: float) -> Path:
    folder.mkdir(parents=True)
    cfg = config_from_dict(BASE, overrides=[f"train.lr={lr}"])
    (folder / "config.yaml").write_text(dump_config(cfg))
    summary = {"test/text_to_image/R@1": r1, "test/text_to_image/median_rank": median}
    (folder / "summary.json").write_text(json.dumps(summary))
    records = [{"step": s, "epoch": 0.0, "train/loss": 4.0 - lr * s} for s in range(5)]
    records.append({"step": 4, "epoch": 0.0, "val/text_to_image/R@1": r1})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_flatten_keeps_lists_of_scalars_and_indexes_lists_of_sections():
    data = {"a": {"b": 1, "c": [1, 2]}, "o": [{"t": "clip"}, {"t": "siglip"}]}
    assert flatten(data) == {"a.b": 1, "a.c": [1, 2], "o.0.t": "clip", "o.1.t": "siglip"}


def test_best_is_highest_recall_and_lowest_rank_ties_all_marked():
    assert best_indices("test/text_to_image/R@1", [0.2, 0.5, None]) == {1}
    assert best_indices("test/text_to_image/median_rank", [3.0, 1.0, 2.0]) == {1}
    assert best_indices("test/text_to_image/R@1", [0.5, 0.2, 0.5]) == {0, 2}
    assert best_indices("test/text_to_image/R@1", [0.2, 0.2]) == set()  # all tie: none
    assert best_indices("test/text_to_image/R@1", [0.2, None]) == set()


def test_config_differences_name_only_the_keys_that_differ(tmp_path):
    views = load_views(
        [(None, write_run(tmp_path / "a" / "run", 0.001, 0.2, 3)),
         (None, write_run(tmp_path / "b" / "run", 0.01, 0.3, 2))]
    )  # fmt: skip
    assert config_differences(views) == {"train.lr": [0.001, 0.01]}
    # Two folders called `run`: labelled by their paths.
    assert [v.label for v in views] == [str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]


def test_compare_command_prints_tables_and_writes_the_page(tmp_path, capsys):
    a = write_run(tmp_path / "lr_small", 0.001, 0.2, 3)
    b = write_run(tmp_path / "lr_big", 0.01, 0.3, 2)
    out = tmp_path / "compare.html"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"train\.lr\s*│\s*0\.001\s*│\s*0\.01", printed)
    assert re.search(r"R@1\s*│\s*0\.200\s*│\s*0\.300 \*", printed)
    assert re.search(r"median_rank\s*│\s*3\.0\s*│\s*2\.0 \*", printed)
    page = out.read_text()
    assert "<td class='num best'>0.300 ★</td>" in page and "<td class='num'>0.200</td>" in page
    assert page.count("src='data:image/png;base64,") == 1


def test_compare_needs_two_runs(tmp_path):
    a = write_run(tmp_path / "a", 0.001, 0.2, 3)
    assert main(["compare", str(a)]) == 2


def test_compare_reads_the_trials_of_a_study(tmp_path):
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    runs = tmp_path / "sweep"
    for i, lr in enumerate((0.001, 0.01)):
        write_run(runs / f"trial_{i:03d}", lr, 0.1 * (i + 1), 3 - i)

    def objective(trial):
        return 0.1 * (trial.number + 1)

    study.optimize(objective, n_trials=2)  # no run_dir attribute: found under --run-root
    out = tmp_path / "c.html"
    assert main(["compare", "--study", storage, "--run-root", str(runs), "--out", str(out)]) == 0
    assert "trial_000 (complete)" in out.read_text() and "trial_001 (complete)" in out.read_text()
    # Without the right --run-root the trial folders are not found: a user error.
    assert main(["compare", "--study", storage, "--run-root", str(tmp_path / "nope")]) == 2
