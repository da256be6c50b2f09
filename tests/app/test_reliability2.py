"""Reliability, second pass (issue 22): each case fails on the code before the fix.

The contract: a user error prints one paragraph naming the key, file, row or argument and
exits 2; a failed command never changes a finished run; a value that makes no sense is
refused. Cases that need a finished run share one tiny digits run (module scope).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

from contrastkit.app.cli import main
from contrastkit.app.rundir import check_run_dir
from helpers.tiny_digits import TINY

TEXT_CONFIG = """
name: one
data: {manifest: m.jsonl, batch_size: 2}
model:
  embed_dim: 8
  tokenizer: {type: builtin, vocab_size: 200, max_length: 12}
  towers:
    doc: {streams: {text: {type: builtin_text, width: 8, depth: 1, heads: 1}}}
    code: {streams: {text_code: {type: builtin_text, width: 8, depth: 1, heads: 1}}}
loss:
  objectives:
    - {name: c, type: clip, towers: [doc, code]}
train: {epochs: 1, progress: none, device: cpu, loggers: {tensorboard: false}}
doctor: {enabled: false}
"""


def _text_run(root: Path, splits: list[str]) -> Path:
    """A doc <-> code manifest with one row per entry of `splits`, and its config."""
    rows = [
        {"id": f"r{i}", "split": s, "text": f"word{i} alpha", "text_code": f"code{i} beta"}
        for i, s in enumerate(splits)
    ]
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "c.yaml").write_text(TEXT_CONFIG)
    return root / "c.yaml"


def _hashes(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rel2")
    (root / "tiny.yaml").write_text(TINY)
    assert main(["train", str(root / "tiny.yaml"), "--run-dir", str(root / "base")]) == 0
    return root / "tiny.yaml", root / "base"


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A private copy of the finished run."""
    return Path(shutil.copytree(finished[1], tmp_path / "run"))


# ---------------------------------------------------------------- group 1: writes before validation


@pytest.mark.slow
def test_resume_with_a_batch_larger_than_the_split_leaves_the_run_identical(
    finished, run, capsys
) -> None:
    """Case 1: config.yaml, run.json and findings.json were rewritten by a failing resume."""
    before = _hashes(run)
    args = ["train", str(finished[0]), "--run-dir", str(run), "--resume", "auto"]
    assert main([*args, "-o", "data.batch_size=500"]) == 2
    assert "fewer than one global batch of 500" in _err(capsys)
    assert _hashes(run) == before


def test_fresh_train_with_too_large_a_batch_writes_nothing(tmp_path, capsys) -> None:
    """Case 2: config.yaml, run.json, tokenizer/ were left behind, and the corrected
    command was then refused as 'already holds a run'."""
    config = _text_run(tmp_path, ["train"] * 3 + ["val"] * 2)
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "-o", "data.batch_size=5"]) == 2
    assert "has 3 rows, fewer than one global batch of 5" in _err(capsys)
    assert not run.exists()


def test_one_train_row_writes_nothing(tmp_path, capsys) -> None:
    config = _text_run(tmp_path, ["train", "val", "val"])
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run)]) == 2
    assert "has 1 rows, fewer than one global batch of 2" in _err(capsys)
    assert not run.exists()


def test_a_global_batch_of_one_row_is_refused(tmp_path, capsys) -> None:
    """A contrastive batch of one row has no negative: loss 0 whatever the weights."""
    config = _text_run(tmp_path, ["train"] * 3 + ["val"] * 2)
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "-o", "data.batch_size=1"]) == 2
    assert "no negatives" in _err(capsys) and not run.exists()


@pytest.mark.parametrize("lock", ['{"pid": "abc", "host": "%s"}', '{"pid": true, "host": "%s"}',
                                  '{"pid": -1, "host": "%s"}', '{"pid": 99999999999, "host": "%s"}',
                                  '{"pid": 1, "host": 5}'])  # fmt: skip
def test_a_damaged_lock_is_stale_not_a_traceback(tmp_path, lock) -> None:
    """Case 3: `{"pid": "abc"}` raised ValueError in `_live_owner`."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(lock.replace("%s", socket.gethostname()))
    check_run_dir(run, resume=None, overwrite=False)  # no live owner; a lock alone is no run


# ---------------------------------------------------------------- group 2: files read back


@pytest.mark.slow
def test_resume_with_metrics_jsonl_a_directory_names_it(finished, run, capsys) -> None:
    """Case 4: IsADirectoryError once training had started writing."""
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    before = _hashes(run)
    assert main(["train", str(finished[0]), "--run-dir", str(run), "--resume", "auto"]) == 2
    assert "metrics.jsonl is not a file" in _err(capsys)
    assert _hashes(run) == before and (run / "metrics.jsonl").is_dir()


@pytest.mark.slow
def test_non_utf8_bytes_in_metrics_jsonl_cost_that_line_only(run, tmp_path, capsys, caplog) -> None:
    """Case 5: UnicodeDecodeError in report, doctor run and compare."""
    with (run / "metrics.jsonl").open("ab") as f:
        f.write(b'{"step": 99, "train/loss": 1.0, "x": "\xff\xfe"}\n')
    other = Path(shutil.copytree(run, tmp_path / "other"))
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert main(["doctor", "run", str(run)]) == 0
    assert main(["compare", str(run), str(other), "--out", str(tmp_path / "c.html")]) == 0
    _err(capsys)  # no traceback
    assert "skipped 1 damaged line(s)" in caplog.text


@pytest.mark.slow
def test_a_state_json_that_is_a_list_is_a_damaged_checkpoint(run, capsys) -> None:
    """Case 6: AttributeError in eval (`.get` outside the guarded read)."""
    for state in (run / "checkpoints").glob("step_*/state.json"):
        state.write_text("[1, 2]")
    assert main(["eval", str(run), "--split", "val"]) == 2
    assert "holds no complete checkpoint" in _err(capsys)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [('{"val/text_to_image/R@1": 0.', "is not valid JSON"), ("[1, 2]", "holds list, not a JSON object"),
     ('{"val/text_to_image/R@1": "high"}', "not a number")],
    ids=["truncated", "list", "string-value"],
)  # fmt: skip
def test_a_damaged_summary_json_is_named_by_report_and_compare(
    run, tmp_path, capsys, content, message
) -> None:
    """Case 7: JSONDecodeError / TypeError in compare, AttributeError in report."""
    other = Path(shutil.copytree(run, tmp_path / "other"))
    (run / "summary.json").write_text(content)
    assert main(["compare", str(other), str(run), "--out", str(tmp_path / "c.html")]) == 2
    err = _err(capsys)
    assert "summary.json" in err and message in err
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    assert message in _err(capsys)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["report", "doctor", "compare"])
def test_metrics_jsonl_a_directory_is_said_not_skipped(run, tmp_path, capsys, command) -> None:
    """Case 8: report, doctor run and compare succeeded silently with no curves."""
    other = Path(shutil.copytree(run, tmp_path / "other"))
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    args = {
        "report": ["report", str(run), "--out", str(tmp_path / "r.html")],
        "doctor": ["doctor", "run", str(run)],
        "compare": ["compare", str(other), str(run), "--out", str(tmp_path / "c.html")],
    }[command]
    assert main(args) == 2
    assert "metrics.jsonl is a directory, not a file" in _err(capsys)


# ---------------------------------------------------------------- group 3: other subcommands


@pytest.mark.slow
def test_eval_with_another_models_checkpoint_names_shapes_and_runs(run, tmp_path, capsys) -> None:
    """Case 9: a state_dict size-mismatch traceback."""
    from safetensors.torch import load_file, save_file

    other = Path(shutil.copytree(run, tmp_path / "other"))
    ckpt = next((other / "checkpoints").glob("step_*"))
    tensors = load_file(ckpt / "tensors.safetensors")
    key = next(k for k in tensors if k.startswith("model.") and tensors[k].dim() == 2)
    tensors[key] = torch.zeros(tensors[key].shape[0] + 8, tensors[key].shape[1])
    save_file(tensors, ckpt / "tensors.safetensors")
    assert main(["eval", str(run), "--split", "val", "--checkpoint", str(ckpt)]) == 2
    err = _err(capsys)
    shape = tuple(tensors[key].shape)
    assert f"{key.removeprefix('model.')}: checkpoint {shape}" in err
    assert str(other) in err and str(run) in err


def test_eval_of_a_config_with_a_checkpoint_is_refused(tmp_path, capsys) -> None:
    """Case 10: the untrained model was evaluated silently in the checkpoint's place."""
    config = _text_run(tmp_path, ["train"] * 3 + ["test"] * 2)
    assert main(["eval", str(config), "--checkpoint", "/nonexistent"]) == 2
    assert "--checkpoint /nonexistent" in _err(capsys)


@pytest.mark.slow
def test_report_split_and_checkpoint_are_checked(run, tmp_path, capsys) -> None:
    """Case 11: exit 0 with the error only inside the page; `--split VAL` found nothing."""
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out), "--split", "nosuch"]) == 2
    assert "--split nosuch" in _err(capsys) and not out.exists()
    assert main(["report", str(run), "--out", str(out), "--checkpoint", "/nonexistent"]) == 2
    assert "/nonexistent" in _err(capsys) and not out.exists()
    assert main(["report", str(run), "--out", str(out), "--split", "VAL"]) == 0
    assert "Retrieval examples: val," in out.read_text()


@pytest.mark.slow
def test_report_and_compare_out_paths_are_checked_first(run, tmp_path, capsys) -> None:
    """Case 12: tracebacks, and a 209 KB .tmp left behind."""
    other = Path(shutil.copytree(run, tmp_path / "other"))
    folder = tmp_path / "folder"
    folder.mkdir()
    missing = tmp_path / "missing" / "parent" / "r.html"
    assert main(["report", str(run), "--out", str(folder)]) == 2
    assert "is a folder" in _err(capsys)
    assert main(["report", str(run), "--out", str(missing)]) == 2
    assert "does not exist" in _err(capsys)
    assert main(["compare", str(run), str(other), "--out", str(folder)]) == 2
    assert "is a folder" in _err(capsys)
    assert list(folder.iterdir()) == [] and not list(tmp_path.rglob("*.tmp"))


def test_shard_out_an_existing_file(tmp_path, capsys) -> None:
    """Case 13: FileExistsError."""
    _text_run(tmp_path, ["train"] * 3)
    (tmp_path / "f").write_text("x")
    assert main(["shard", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in _err(capsys)
    assert (tmp_path / "f").read_text() == "x"


SPACE = "train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"


@pytest.mark.parametrize(
    ("space", "extra", "message"),
    [(SPACE, ["--trials", "0"], "--trials must be at least 1"),
     ("train.lr: {type: float, low: 0.1, high: 0.01}\n", [], "low (0.1) is above high (0.01)"),
     ("train.lr: {type: categorical, choices: []}\n", [], "choices must be a non-empty list"),
     ("train.lr: {type: float, low: abc, high: 0.1}\n", [], "low must be a number, got 'abc'"),
     ("train.epochs: {type: int, low: 1.5, high: 3}\n", [], "low must be an int"),
     (SPACE, ["--storage", "sqlite:////no/such/dir/s.db"], "the folder /no/such/dir does not exist")],
    ids=["trials-0", "low-above-high", "no-choices", "low-abc", "int-float", "storage-dir"],
)  # fmt: skip
def test_sweep_arguments_and_space_are_checked(tmp_path, capsys, space, extra, message) -> None:
    """Case 14: tracebacks for each of these, before any trial ran."""
    config = _text_run(tmp_path, ["train"] * 4 + ["val"] * 2)
    (tmp_path / "space.yaml").write_text(space)
    args = ["sweep", str(config), "--space", str(tmp_path / "space.yaml"), *extra]
    assert main([*args, "--run-root", str(tmp_path / "sweep")]) == 2
    assert message in _err(capsys)
    assert not (tmp_path / "sweep").exists()


def test_sweep_and_compare_study_without_optuna_say_how_to_install(
    tmp_path, capsys, monkeypatch
) -> None:
    """Case 14: ModuleNotFoundError; faiss and transformers already had a hint."""
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    config = _text_run(tmp_path, ["train"] * 4 + ["val"] * 2)
    (tmp_path / "space.yaml").write_text(SPACE)
    assert main(["sweep", str(config), "--space", str(tmp_path / "space.yaml")]) == 2
    assert "pip install contrastkit[sweep]" in _err(capsys)
    assert main(["compare", "--study", "sqlite:///s.db", "--out", str(tmp_path / "c.html")]) == 2
    assert "pip install contrastkit[sweep]" in _err(capsys)
    monkeypatch.delitem(sys.modules, "optuna")
    if importlib.util.find_spec("optuna") is not None:  # with optuna: a missing database
        db = tmp_path / "none.db"
        assert (
            main(["compare", "--study", f"sqlite:///{db}", "--out", str(tmp_path / "c.html")]) == 2
        )
        assert "no such database file" in _err(capsys) and not db.exists()


@pytest.mark.slow
def test_search_with_only_unknown_tokens_warns(run, capsys) -> None:
    """Case 15: confident scores for a query the model cannot read."""
    assert main(["search", str(run), "🐱🐶 ｒｅｄ 猫", "--split", "val"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "none of the" in out and "is in the run's vocabulary" in out
    assert main(["search", str(run), "a 3", "--split", "val"]) == 0
    assert "vocabulary" not in capsys.readouterr().out


# ---------------------------------------------------------------- group 4: config values, YAML


@pytest.mark.parametrize(
    ("override", "message"),
    [("eval.ks=[0,-5,1,1]", "every k must be 1 or more, got [0, -5]"),
     ("eval.ks=[1,5,5]", "each k once"),
     ("loss.objectives.0.towers.0.x=1", "loss.objectives.0.towers.0 is a value, not a section"),
     ("loss.objectives.0.towers=[doc,doc]", "[doc, doc] pairs a tower with itself")],
    ids=["ks-not-positive", "ks-repeated", "path-into-a-string", "same-tower-twice"],
)  # fmt: skip
def test_nonsense_config_values_are_refused(tmp_path, capsys, override, message) -> None:
    """Cases 16, 18 and 20 (towers [a, a]): trained and reported R@0 / R@-5; TypeError."""
    config = _text_run(tmp_path, ["train"] * 4 + ["val"] * 2)
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "-o", override]) == 2
    assert message in _err(capsys) and not run.exists()


BOMB = "".join(
    f"{a}: &{a} [{', '.join([f'*{b}'] * 9) if b else ', '.join(['lol'] * 9)}]\n"
    for a, b in zip("abcdefghi", ["", *"abcdefgh"], strict=True)
)


@pytest.mark.parametrize("text", [BOMB, "train: &t {lr: *t}\n"], ids=["alias-bomb", "self-alias"])
def test_yaml_aliases_are_bounded(tmp_path, capsys, text) -> None:
    """Case 17: 14 s and an 8 MB message for a 258-byte bomb; RecursionError for a self-alias."""
    (tmp_path / "c.yaml").write_text(text)
    start = time.perf_counter()
    assert main(["config", "show", str(tmp_path / "c.yaml")]) == 2
    err = _err(capsys)
    assert time.perf_counter() - start < 2.0 and len(err) < 600
    assert ("once its aliases" in err) if text == BOMB else ("refers to the node" in err)


def test_an_alias_bomb_in_an_override_is_refused(tmp_path, capsys) -> None:
    config = _text_run(tmp_path, ["train"] * 4)
    value = "[" + ", ".join(["&x [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"] + ["*x"] * 3) + "]"
    assert main(["config", "show", str(config), "-o", f"eval.ks={value}"]) == 2
    assert "eval.ks" in _err(capsys)  # a small alias list is fine YAML, the value is checked
    bomb = BOMB.replace("\n", ", ").rstrip(", ")
    assert main(["config", "show", str(config), "-o", f"name={{{bomb}}}"]) == 2
    err = _err(capsys)
    assert "once its aliases" in err and len(err) < 800


@pytest.mark.slow
def test_a_one_row_val_split_never_picks_the_checkpoint(tmp_path, caplog) -> None:
    """Case 19: val R@1 = 1.0 by construction, and best.json picked that step."""
    config = _text_run(tmp_path, ["train"] * 4 + ["val"] + ["test"] * 3)
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "-o", "train.epochs=2"]) == 0
    assert "R@1 is 1.0 by construction" in caplog.text
    assert "R@k for k in [5, 10, 50] is 1.0" in caplog.text  # the 3-group test split
    assert not (run / "checkpoints" / "best.json").exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert not any(k.startswith("val/") for r in map(json.loads, lines) for k in r)


def test_an_unreadable_config_is_not_blamed_on_the_disk(tmp_path, capsys, monkeypatch) -> None:
    """Case 20: exit 2, but the message blamed a full or read-only disk (run as root, so
    the permission error is raised where the file is read)."""
    config = _text_run(tmp_path, ["train"] * 4)
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "c.yaml":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert main(["config", "show", str(config)]) == 2
    err = _err(capsys)
    assert "c.yaml cannot be read (Permission denied)" in err and "disk" not in err


@pytest.mark.slow
def test_a_vocab_size_below_the_character_set_warns(tmp_path, caplog) -> None:
    """Case 20: `tokenizer.vocab_size` 60 learned no words and said nothing."""
    config = _text_run(tmp_path, ["train"] * 4)
    run = tmp_path / "run"
    args = ["train", str(config), "--run-dir", str(run), "-o", "model.tokenizer.vocab_size=60"]
    assert main([*args, "-o", "train.max_steps=1"]) == 0
    assert "model.tokenizer.vocab_size 60 is not above the" in caplog.text
    caplog.clear()
    assert main([*args[:3], str(tmp_path / "run2"), "-o", "train.max_steps=1"]) == 0
    assert "learned no words" not in caplog.text  # vocab_size 200: words fit


@pytest.mark.slow
def test_a_no_op_resume_keeps_the_training_time(finished, run) -> None:
    """Case 20: summary train/seconds became the 0.05 s of the no-op resume."""
    meta = json.loads((run / "checkpoints" / "step_000006" / "state.json").read_text())
    assert main(["train", str(finished[0]), "--run-dir", str(run), "--resume", "auto"]) == 0
    seconds = json.loads((run / "summary.json").read_text())["train/seconds"]
    assert meta["train_seconds"] <= seconds < meta["train_seconds"] + 5.0
    assert meta["train_seconds"] > 0.1
