"""The doctor's generality matrix: every broken-run variant of `bench/broken_runs.py`
trained through the CLI, with whether its expected cause was found and whether it is the
top finding (the table of docs/doctor.md, "How the doctor is tested for generality").

    python -m bench.doctor_matrix [--quick] [--only NAME ...] [--keep DIR] [--seed N]

`--quick` runs one variant per failure class (the first listed); `--only` picks variants
by name (`failure-family`, see `--list`). Prints one `ROW` line per variant as it
finishes, the matrix as a Markdown table, and a final `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.broken_runs import VARIANTS, DataCache, Outcome, Variant, by_name, run_variant


def pick(quick: bool, only: list[str]) -> list[Variant]:
    """The variants to run: `only` by name, else one per class with `quick`, else all."""
    if only:
        known = by_name()
        unknown = [n for n in only if n not in known]
        if unknown:
            raise SystemExit(f"--only: unknown variant(s) {unknown}; see --list")
        return [known[n] for n in only]
    if not quick:
        return list(VARIANTS)
    first: dict[str, Variant] = {}
    for v in VARIANTS:
        first.setdefault(v.failure, v)
    return list(first.values())


def table(outcomes: list[Outcome]) -> str:
    """The matrix as Markdown: class, data, injection, expected, found, top, rank."""
    lines = [
        "| class | data | injected as | expected | found | top | the doctor's top finding |",
        "|---|---|---|---|:-:|:-:|---|",
    ]
    for o in outcomes:
        v = o.variant
        top_ok = o.top == v.expected
        lines.append(
            f"| {v.failure} | {v.family} | {v.how or '-'} | `{v.expected}` | "
            f"{'yes' if o.found else 'no'} | {'yes' if top_ok else 'no'} | `{o.top}` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the picked variants and print the matrix."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one variant per failure class")
    parser.add_argument("--only", nargs="*", default=[], help="variant names to run")
    parser.add_argument("--keep", type=Path, help="keep data and run folders here")
    parser.add_argument("--seed", type=int, default=0, help="train.seed of every run")
    parser.add_argument("--list", action="store_true", help="list the variant names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(v.name for v in VARIANTS))
        return 0
    variants = pick(args.quick, args.only)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        data = DataCache(root / "data")
        outcomes = []
        for v in variants:
            start = time.perf_counter()
            o = run_variant(v, data, root / "runs" / v.name, seed=args.seed)
            seconds = time.perf_counter() - start
            codes = [f["code"] for f in o.findings if f["severity"] != "info"]
            print(
                f"ROW {v.name} expected={v.expected} top={o.top} found={o.found} "
                f"exit={o.exit_code} seconds={seconds:.1f} codes={codes}",
                flush=True,
            )
            outcomes.append(o)
    print(table(outcomes))
    result = {
        "variants": len(outcomes),
        "top": sum(o.top == o.variant.expected for o in outcomes),
        "found": sum(o.found for o in outcomes),
        "matrix": {o.variant.name: {"expected": o.variant.expected, "top": o.top,
                                    "found": o.found} for o in outcomes},
    }  # fmt: skip
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
