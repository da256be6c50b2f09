"""The doctor's false-positive sweep: every shipped example, at its own seed and two
others, ends with no warning or error except the findings the docs document
(`charts_triplet`: `init_worse_than_random`, and the symptoms it explains, and
`gradient_interference`; `pydoc_minilm`: `hard_negatives_above_positive`; `angio`:
`metric_at_baseline`, see docs/doctor.md).

The full examples take 11 s to 8.5 min each, so the sweep runs them shrunk: fewer rows
and epochs, `doctor.every` lowered so a short run still gives the rules as many records
as a full one. A shrink is only kept when it draws no finding that the full run does not
(docs/doctor.md, "How the doctor is tested for generality", says which and how much)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.app.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"
SEEDS = (0, 1, 2)  # 0 is every example's own seed (train.seed's default)
COMMON = ["train.progress=none", "train.loggers={tensorboard: false}", "doctor.every=2"]

# Per example: the shrinking overrides. Each keeps the example's batch size (negatives
# per query, a doctor finding, depend on it) and about a quarter of its optimizer steps or
# more; the short ones (charts, sign) run at full size.
SHRINK: dict[str, list[str]] = {
    "digits": ["data.max_rows=1536"],  # 12 steps x 8 epochs (full: 42 x 8)
    # SigLIP's first phase (bias pushes every pair apart, the image embeddings gather at
    # one point: effective rank 1.2 at step 32) lasts ~100 steps on this data, so the
    # shrink keeps 216 steps (9 x 24) of the full 630: at 72 (9 x 8) every seed ended
    # inside it and drew collapse / pairs_not_learned, which the full run does not.
    "digits_siglip": ["data.max_rows=1536", "train.epochs=24"],  # 9 x 24 (full: 42 x 15)
    "digits_minilm": ["data.max_rows=1024", "train.epochs=6"],  # 8 x 6 (full: 42 x 8)
    "angio": ["data.builtin_options={n_studies: 300}", "train.epochs=10",
              "eval.max_caption_samples=32"],  # 5 x 10 (full: 11 x 15)
    "sign": [],
    "pydoc": ["data.max_rows=3000"],  # 23 x 5 (full: 40 x 5)
    "pydoc_minilm": ["data.max_rows=512"],  # 16 x 1 (full: 158 x 1)
    "charts_pretrain": [],
    "charts_triplet": [],
}  # fmt: skip
# The documented findings, and the examples they belong to. angio's is the third: issue 20
# asked for it (fluent reports with the wrong stenosis numbers), and docs/doctor.md
# ("metric_at_baseline") quotes it on the full run; the shrunk run draws it too (test
# numeric_fidelity 0.031 against 0.062 for always writing the train mode).
# charts_triplet's second: its triplet term takes negatives of the same label
# (`same_label_negatives`) while the classification term pulls one label together, so on
# the shared backbone they conflict at some seeds (seed 1: mean gradient cosine -0.13,
# threshold -0.1; seeds 0 and 2 stay above it): the example's own story.
DOCUMENTED = {
    "angio": {"metric_at_baseline"},
    "charts_triplet": {"init_worse_than_random", "gradient_interference"},
    "pydoc_minilm": {"hard_negatives_above_positive"},
}


def train_example(name: str, seed: int, run_dir: Path, extra: list[str] = ()) -> list[dict]:
    """Train the shrunk example `name` at `seed`; its findings."""
    args = ["train", str(EXAMPLES / f"{name}.yaml"), "--run-dir", str(run_dir)]
    for o in [*COMMON, *SHRINK[name], f"train.seed={seed}", *extra]:
        args += ["-o", o]
    assert main(args) == 0
    return json.loads((run_dir / "findings.json").read_text())["findings"]


def undocumented(name: str, findings: list[dict]) -> list[tuple[str, str]]:
    """Warnings and errors other than `name`'s documented findings and the symptoms those
    explain (`evidence.explained_by`)."""
    allowed = DOCUMENTED.get(name, set())
    extra = []
    for f in findings:
        causes = set(f.get("evidence", {}).get("explained_by", []))
        if f["severity"] == "info" or f["code"] in allowed or (causes and causes <= allowed):
            continue
        extra.append((f["code"], f["severity"]))
    return extra


@pytest.fixture(scope="session", name="chart_pretrain")
def chart_pretrain_fixture(tmp_path_factory):
    """charts_pretrain per seed, trained once: it is swept itself and starts charts_triplet."""
    runs: dict[int, tuple[Path, list[dict]]] = {}

    def get(seed: int) -> tuple[Path, list[dict]]:
        if seed not in runs:
            run_dir = tmp_path_factory.mktemp(f"charts_pretrain_{seed}") / "run"
            runs[seed] = (run_dir, train_example("charts_pretrain", seed, run_dir))
        return runs[seed]

    return get


def test_undocumented_keeps_only_the_documented_findings_and_their_symptoms():
    findings = [
        {"code": "init_worse_than_random", "severity": "error", "evidence": {}},
        {"code": "worse_than_start", "severity": "warning",
         "evidence": {"explained_by": ["init_worse_than_random"]}},
        {"code": "loss_not_decreasing", "severity": "warning",
         "evidence": {"explained_by": ["init_worse_than_random", "collapse"]}},
        {"code": "hard_negatives_mined", "severity": "info", "evidence": {}},
    ]  # fmt: skip
    assert undocumented("charts_triplet", findings) == [("loss_not_decreasing", "warning")]
    assert undocumented("digits", findings[:1]) == [("init_worse_than_random", "error")]


def test_every_shipped_example_is_swept():
    assert set(SHRINK) == {p.stem for p in EXAMPLES.glob("*.yaml")}


# Measured (seed 0) and not yet silent, with what the doctor says; strict, so a fix shows.
NOT_YET: dict[tuple[str, int], str] = {}


def _case(name: str, seed: int):
    reason = NOT_YET.get((name, seed))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(name, seed, id=f"{name}-{seed}", marks=marks)


@pytest.mark.slow
@pytest.mark.matrix
@pytest.mark.parametrize(("name", "seed"), [_case(n, s) for n in sorted(SHRINK) for s in SEEDS])
def test_example_draws_only_its_documented_findings(name, seed, tmp_path, chart_pretrain):
    if name == "charts_pretrain":
        findings = chart_pretrain(seed)[1]
    elif name == "charts_triplet":
        pretrained = chart_pretrain(seed)[0]
        findings = train_example(name, seed, tmp_path / "run", [f"model.init_from={pretrained}"])
    else:
        findings = train_example(name, seed, tmp_path / "run")
    assert undocumented(name, findings) == []
