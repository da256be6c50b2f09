"""Train one config through the CLI and return its findings: the shared step of the tests
that check which finding a (broken) run puts on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from contrastkit.app.cli import main


def train_findings(folder: Path, config: dict[str, Any], overrides: list[str]) -> list[dict]:
    """`contrastkit train` of `config` with `-o overrides` into `folder/run`; the run's
    findings.json list (asserts the run exits 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = folder / "run"
    args = ["train", str(path), "--run-dir", str(run_dir)]
    for o in overrides:
        args += ["-o", o]
    assert main(args) == 0
    return json.loads((run_dir / "findings.json").read_text())["findings"]
