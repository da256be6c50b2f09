"""The run-directory commands end to end on one small trained digits run: eval, embed,
search, doctor; plus the data doctor and a sweep through the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from contrastkit.app.cli import main
from contrastkit.eval.export import load_embeddings
from contrastkit.eval.probes import linear_probe_accuracy
from contrastkit.train.checkpoint import load_run
from helpers.brute_force import brute_force_r1, brute_force_zero_shot, unique_embeddings

EXAMPLE = Path(__file__).parents[2] / "examples" / "digits.yaml"
TINY = [
    "data.max_rows=120",
    "data.batch_size=40",
    "train.epochs=2",
    "train.progress=none",
    "train.loggers.tensorboard=false",
]


def _args(*args: str, overrides=TINY) -> list[str]:
    out = list(args)
    for o in overrides:
        out += ["-o", o]
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(_args("train", str(EXAMPLE), "--run-dir", str(run))) == 0
    return run


@pytest.mark.slow
def test_train_prints_table_and_findings(tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [*TINY, "train.epochs=1"]
    assert main(_args("train", str(EXAMPLE), "--run-dir", str(run), overrides=overrides)) == 0
    out = capsys.readouterr().out
    assert "text_to_image" in out and "R@1" in out
    assert "doctor" in out.lower()  # the findings table, or "doctor: no findings"


@pytest.mark.slow
def test_run_dir_contents(run_dir):
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "findings.json"):
        assert (run_dir / name).is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in (
        "test/text_to_image/R@1",
        "test/image_to_text/R@1",
        "test/text_to_image/median_rank",
    ):
        assert key in summary
    r1 = ["test/text_to_image/R@1", "test/image_to_text/R@1"]
    assert brute_force_r1(run_dir, r1) == pytest.approx({k: summary[k] for k in r1}, abs=1e-6)
    # The digits example turns on both probes: image tower against the class prompts, and
    # a logistic regression fit on the train split's image embeddings. Zero-shot is
    # recomputed by brute force from the best checkpoint (float64, prompt ensembling).
    prompts = ["a {label}", "the digit {label}"]  # examples/digits.yaml eval.zero_shot_prompt
    zero_shot = brute_force_zero_shot(run_dir, "test", "image", "text", prompts)
    assert zero_shot == pytest.approx(summary["test/image/zero_shot_accuracy"], abs=1e-6)
    # The probe's fit is the library's own (L-BFGS); what is checked here is what it is fed:
    # the best checkpoint's unique train images to fit, the unique test images to score.
    loaded = load_run(run_dir, "best", with_data=True)
    (tr, _, tr_labels), (te, _, te_labels) = (
        unique_embeddings(loaded, split, "image") for split in ("train", "test")
    )
    probe = linear_probe_accuracy(
        *(
            torch.from_numpy(x)
            for x in (tr.astype(np.float32), tr_labels, te.astype(np.float32), te_labels)
        )
    )
    assert probe == pytest.approx(summary["test/image/linear_probe_accuracy"], abs=1e-6)
    assert "test/text/zero_shot_accuracy" not in summary
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["max_rows"] == 120


@pytest.mark.slow
def test_eval_writes_eval_json_matching_summary(run_dir, capsys):
    assert main(["eval", str(run_dir), "--split", "test"]) == 0
    metrics = json.loads((run_dir / "eval.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    # Same checkpoint (best), same data: the numbers must agree exactly.
    assert metrics["test/text_to_image/R@1"] == summary["test/text_to_image/R@1"]
    # One pairing policy: training's final evaluation and `contrastkit eval` name every
    # statistic alike (both directions, `text_image` statistics; once `image_text` vs
    # `text_image`, and no `image_to_text` in eval.json).
    assert set(metrics) == {k for k in summary if k.startswith("test/")}
    assert "test/image_to_text/R@1" in metrics and "test/text_image/alignment" in metrics
    key = "test/image/zero_shot_accuracy"
    assert metrics[key] == summary[key]
    out = capsys.readouterr().out
    assert "text_to_image" in out and "zero_shot_accuracy" in out


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_embed_exports_unique_items(run_dir, tmp_path, suffix):
    out = tmp_path / f"emb{suffix}"
    assert main(["embed", str(run_dir), "--split", "test", "--out", str(out)]) == 0
    img_ids, img = load_embeddings(out.with_name(f"emb.image{suffix}"))
    txt_ids, txt = load_embeddings(out.with_name(f"emb.text{suffix}"))
    # 5 captions per image: the image file holds each image once, the text file each caption.
    assert len(txt_ids) == 5 * len(img_ids)
    assert len(set(img_ids)) == len(img_ids)
    assert np.allclose(np.linalg.norm(np.asarray(img), axis=1), 1.0, atol=1e-5)
    assert txt.shape[1] == img.shape[1]


@pytest.mark.slow
def test_search_text_query_and_examples(run_dir, capsys):
    assert main(["search", str(run_dir), "a thick seven leaning right", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("images/") == 3  # three gallery images listed with their paths
    assert main(["search", str(run_dir), "--examples", "2", "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "true match in the top 5:" in out


@pytest.mark.slow
@pytest.mark.parametrize("query", ["", "   "])
def test_search_empty_query_is_an_error(run_dir, capsys, query):
    assert main(["search", str(run_dir), query]) == 2
    err = capsys.readouterr().err
    assert "query text is empty" in err and "Traceback" not in err


@pytest.mark.slow
def test_search_by_query_id(run_dir, tmp_path, capsys):
    out = tmp_path / "t.npy"
    assert main(["embed", str(run_dir), "--tower", "text", "--out", str(out)]) == 0
    query_id = load_embeddings(out)[0][0]
    assert main(["search", str(run_dir), "--query-id", query_id, "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert query_id in printed and "true match in the top 3:" in printed
    assert main(["search", str(run_dir), "--query-id", "no-such-row"]) == 2
    assert "not a row of this split" in capsys.readouterr().err


@pytest.mark.slow
def test_doctor_run_and_data(run_dir, capsys):
    assert main(["doctor", "run", str(run_dir)]) == 0
    assert (run_dir / "training_curves.png").is_file()
    assert main(_args("doctor", "data", str(EXAMPLE))) == 0


def test_missing_run_dir_is_a_user_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


@pytest.mark.slow
def test_sweep_three_trials_on_demo_data(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump({"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    )
    args = _args(
        "sweep",
        str(EXAMPLE),
        "--space",
        str(space),
        "--trials",
        "3",
        "--storage",
        f"sqlite:///{tmp_path / 'study.db'}",
        "--run-root",
        str(tmp_path / "trials"),
        overrides=[*TINY, "train.epochs=1", "eval.splits=[val]"],
    )
    assert main(args) == 0
    best = yaml.safe_load((tmp_path / "trials" / "best_config.yaml").read_text())
    assert 1e-4 <= best["train"]["lr"] <= 1e-2
    assert len(list((tmp_path / "trials").glob("trial_*"))) == 3


@pytest.mark.slow
def test_skipped_rows_are_counted_in_log_metrics_and_findings(tmp_path):
    from contrastkit.data.builtin import builtin_manifest

    src = builtin_manifest("digits-captions")
    rows = [json.loads(line) for line in src.read_text().splitlines()[:300]]
    for r in rows:
        r["image"] = str(src.parent / r["image"])
    rows[3]["image"] = str(tmp_path / "missing.npy")  # one bad row
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    overrides = [*TINY, f"data.manifest={manifest}", "data.on_error=skip", "train.epochs=1"]
    assert main(_args("train", str(EXAMPLE), "--run-dir", str(run), overrides=overrides)) == 0
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 0, "data/rows_skipped": 1} in records
    assert json.loads((run / "summary.json").read_text())["data/rows_skipped"] == 1.0
    codes = [f["code"] for f in json.loads((run / "findings.json").read_text())["findings"]]
    assert "rows_skipped" in codes
    # `doctor run` re-diagnoses from the same files, so the data findings survive it
    # (it once read a data_findings.json that nothing wrote, and dropped them).
    assert main(["doctor", "run", str(run)]) == 0
    again = [f["code"] for f in json.loads((run / "findings.json").read_text())["findings"]]
    assert again == codes
    # Raise mode stops before training, naming the manifest, row and column.
    overrides[-2] = "data.on_error=raise"
    assert (
        main(_args("train", str(EXAMPLE), "--run-dir", str(tmp_path / "r2"), overrides=overrides))
        == 2
    )
