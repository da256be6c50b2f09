"""bench/watcher.py's quick mode runs end to end and prints its RESULT line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_quick_mode_prints_a_result():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "watcher.py"), "--quick"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("RESULT ")
    result = json.loads(line[len("RESULT ") :])
    assert result["steps_per_arm"] == 20 and result["every"] == 5
    assert set(result) >= {"watcher_overhead", "plain_step_ms", "watched_step_ms"}
    # The bench's AdamW keeps its default weight decay (0.01) on logit_scale: the watched
    # arm's doctor must say so, which shows the watcher really ran.
    assert result["findings"] == ["weight_decay_on_temperature"]
