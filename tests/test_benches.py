"""Every bench's quick mode, run as its user runs it: a subprocess whose last line is
`RESULT {json}` with the bench's keys. The benches import the library's internals (engine
parts, accumulation, monitors, loaders), so an API change that breaks one fails here
instead of silently (three benches had crashed that way)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BENCH = ROOT / "bench"

# bench file -> (extra arguments after --quick, keys the RESULT must hold).
QUICK: dict[str, tuple[list[str], set[str]]] = {
    "doctor.py": ([], {"doctor_overhead", "step_ms_with", "step_ms_without", "model"}),
    "engine.py": ([], {"logging_overhead", "accum8_peak_mem_vs_full"}),
    "gpu.py": ([], {"samples_per_s", "vs_bare_loop", "compiled", "device"}),
    "lit_cache.py": ([], {"lit_epoch_speedup", "epoch1_s", "epoch2_s", "encoded_inputs"}),
    "loader.py": ([], {"pil_rows_per_s", "loader_rows_per_s", "shards_rows_per_s"}),
    "logging_demo.py": ([], {"logging_overhead_demo", "steps"}),
    "losses.py": ([], {"clip_time_vs_bound", "siglip_time_vs_bound", "clip_time_vs_open_clip"}),
    "quality.py": ([], {"r1_contrastkit", "r1_tfidf", "r1_bm25", "failed"}),
    "recipes.py": ([], {"recipes", "variants"}),
    "report.py": ([], {"rows", "seconds", "megabytes", "unique_queries", "gallery"}),
    "retrieval.py": ([], {"time_vs_matmul_50k", "speedup_vs_torchmetrics"}),
    "retrieval_1m.py": ([], {"n_gallery", "metrics_seconds", "R@1", "faiss"}),
    "watcher.py": ([], {"watcher_overhead", "plain_step_ms", "watched_step_ms"}),
}
# Modules in bench/ that other benches and tests import, with no entry point of their own.
LIBRARIES = {"broken_runs.py", "__init__.py"}
# Benches with a quick mode of minutes, not seconds: smoke-run by their own tests instead.
OWN_TESTS = {"doctor_matrix.py": "tests/doctor/broken/ (its variants, one by one)"}


def run_quick(name: str, args: list[str], cwd: Path) -> tuple[dict, str]:
    """Run `bench/<name> --quick`; returns the RESULT json and the whole output."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), "--quick", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT {"), out[-4000:]
    return json.loads(last.removeprefix("RESULT ")), out


def test_every_bench_has_a_quick_run_here() -> None:
    """A new bench is listed above (or named as a library), so its quick mode is tested."""
    scripts = {p.name for p in BENCH.glob("*.py")}
    assert scripts - LIBRARIES == set(QUICK) | set(OWN_TESTS)
    for name in scripts - LIBRARIES:
        assert "--quick" in (BENCH / name).read_text(encoding="utf-8"), name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(QUICK))
def test_quick_mode_ends_with_its_result(name: str, tmp_path: Path) -> None:
    args, keys = QUICK[name]
    if name == "quality.py":
        args = [*args, "--out", str(tmp_path / "quality")]
    result, out = run_quick(name, args, tmp_path)
    assert keys <= set(result), (sorted(keys - set(result)), out[-2000:])
    # A few facts each quick run must reproduce (not timings: the machine is shared).
    if name == "quality.py":
        assert result["failed"] == []
    if name == "recipes.py":
        assert (
            "temperature_out_of_range" in result["recipes"]["loss_does_not_go_down"]["before_codes"]
        )
    if name == "report.py":
        assert (result["rows"], result["unique_queries"], result["gallery"]) == (1000, 1000, 200)
    if name == "lit_cache.py":
        assert result["encoded_inputs"] == 64  # 32 pairs x 2 towers, encoded once
    if name == "gpu.py":
        assert set(result["compiled"]) >= {"samples_per_s", "vs_bare_loop"}


@pytest.mark.slow
def test_recipes_help_is_help_not_an_output_folder(tmp_path: Path) -> None:
    """`bench/recipes.py --help` once took `--help` as its output folder."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "recipes.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
    assert list(tmp_path.iterdir()) == []
