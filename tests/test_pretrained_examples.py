"""The pretrained-MiniLM examples beyond the tiny runs in test_examples.py: the pydoc
recipe works unchanged on a user's own manifest (`-o data.manifest=...`), and the digits
recipe's text tower is locked and read from the frozen-feature cache."""

import json
from pathlib import Path

import pytest

from contrastkit.app.cli import main
from contrastkit.config import load_config

EXAMPLES = Path(__file__).parents[1] / "examples"
COMMON = ["train.epochs=1", "train.progress=none"]

PAIRS = [
    ("Return the sum of two numbers.", "def add(a, b):\n    return a + b"),
    ("Reverse a string.", "def reverse(s):\n    return s[::-1]"),
    ("Open a file and read its lines.", "def lines(p):\n    return open(p).readlines()"),
    ("Square every element of a list.", "def squares(xs):\n    return [x * x for x in xs]"),
]


@pytest.mark.slow
def test_pydoc_minilm_runs_on_a_users_manifest(tmp_path):
    manifest = tmp_path / "pairs.jsonl"
    rows = []
    for split in ("train", "val", "test"):
        for i, (doc, code) in enumerate(PAIRS):
            rows.append({"id": f"{split}{i}", "split": split, "text": doc, "text_code": code})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    args = ["train", str(EXAMPLES / "pydoc_minilm.yaml"), "--run-dir", str(run)]
    for o in [*COMMON, f"data.manifest={manifest}", "data.batch_size=4"]:
        args += ["-o", o]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    # Four distinct pairs: the pretrained model already ranks every docstring's code first.
    assert summary["at_start/test/doc_to_code/R@1"] == 1.0
    assert summary["test/doc_to_code/num_queries"] == 4


def test_digits_minilm_locks_the_text_tower():
    from contrastkit.app.lit import locked_encoders
    from contrastkit.models import build_model
    from contrastkit.models.tokenizer import BuiltinTokenizer

    cfg = load_config(EXAMPLES / "digits_minilm.yaml")
    tok = BuiltinTokenizer.train(["a digit"], vocab_size=20, max_length=8)
    model = build_model(cfg.model, tokenizer=tok, input_specs={"image": (1, 16, 16), "text": ()})
    assert list(locked_encoders(model, cfg)) == ["text"]
