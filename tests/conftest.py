"""Suite-wide pytest set-up.

Shared helpers live in the `helpers` package beside this file (importable because
pyproject.toml sets `pythonpath = ["tests"]`). Markers: `slow` (over ~5 s on a loaded
2-core machine; `pytest -m "not slow"` is the inner loop), `dist` (gloo process groups),
`gpu` (skipped without CUDA).
"""

from __future__ import annotations

import os

import torch


def pytest_report_header() -> list[str]:
    """Print the machine's load and torch's thread count: test timings depend on both."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return [f"load average (1/5/15 min): {load}; torch threads: {torch.get_num_threads()}"]
