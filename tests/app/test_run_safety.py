"""A failed command never damages a finished run; damaged files give clear errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from contrastkit.app.cli import main
from helpers.tiny_digits import TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("safety")
    (root / "tiny.yaml").write_text(TINY)
    assert main(["train", str(root / "tiny.yaml"), "--run-dir", str(root / "base")]) == 0
    return root / "tiny.yaml", root / "base"


def _hashes(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "already holds a run"),
        (["--resume", "atuo"], "atuo"),
        (["--resume", "auto", "-o", "data.manifest=/nope/m.jsonl"], "/nope/m.jsonl"),
        (["--resume", "auto", "-o", "model.embed_dim=16"], "model.embed_dim"),
        (["--resume", "auto", "--overwrite"], "not both"),
    ],
    ids=["no-flag", "resume-typo", "bad-manifest", "shape-change", "both-flags"],
)
def test_failed_train_leaves_a_finished_run_byte_identical(
    finished, tmp_path, capsys, args, message
) -> None:
    config, base = finished
    run = Path(shutil.copytree(base, tmp_path / "run"))
    before = _hashes(run)
    assert main(["train", str(config), "--run-dir", str(run), *args]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert _hashes(run) == before


def test_overwrite_moves_the_old_run_aside(finished, tmp_path) -> None:
    config, base = finished
    run = Path(shutil.copytree(base, tmp_path / "run"))
    before = _hashes(run)
    code = main(["train", str(config), "--run-dir", str(run), "--overwrite",
                 "-o", "train.max_steps=1"])  # fmt: skip
    assert code == 0
    (old,) = tmp_path.glob("run.old-*")
    assert _hashes(old) == before
    assert json.loads((run / "summary.json").read_text())["train/steps"] == 1.0


def test_eval_with_damaged_best_json_says_it_used_the_last(finished, tmp_path, capsys) -> None:
    _, base = finished
    run = Path(shutil.copytree(base, tmp_path / "run"))
    (run / "checkpoints" / "best.json").write_text('{"checkpoint": ')
    assert main(["eval", str(run), "--split", "val"]) == 0
    out = capsys.readouterr().out
    out = " ".join(out.split())  # rich wraps long lines
    assert "last (step_000006; no valid best.json)" in out
    assert "(val, best" not in out


@pytest.mark.parametrize("damaged", ["model_spec.json", "tokenizer/tokenizer.json"])
def test_damaged_run_files_are_clear_errors(finished, tmp_path, capsys, damaged) -> None:
    _, base = finished
    run = Path(shutil.copytree(base, tmp_path / "run"))
    target = next(run.glob(damaged)) if "*" in damaged else run / damaged
    if not target.exists():  # the tokenizer's file name is its own business
        target = next((run / "tokenizer").iterdir())
    target.write_text('{"input_specs": [1, 2')
    assert main(["eval", str(run), "--split", "val"]) == 2
    err = capsys.readouterr().err
    err = " ".join(err.split())  # rich wraps long lines
    assert "damaged" in err and "Traceback" not in err


def test_huge_learning_rate_ends_in_a_clear_error(finished, tmp_path, capsys) -> None:
    config, _ = finished
    run = tmp_path / "run"
    code = main(["train", str(config), "--run-dir", str(run), "-o", "train.lr=1e30",
                 "-o", "train.max_bad_steps=2", "-o", "train.epochs=4"])  # fmt: skip
    err = capsys.readouterr().err
    err = " ".join(err.split())  # rich wraps long lines
    assert code == 2 and "non-finite" in err and "Traceback" not in err
