"""Assemble report.html: one self-contained page (inline CSS, images as data URIs).

The page carries a Content-Security-Policy that allows nothing but inline styles and
`data:` images, so even a path that slipped into the page could not make the browser
fetch anything: the report reads the same offline, from an e-mail or an archive.
"""

from __future__ import annotations

import html
import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

import yaml

from contrastkit.app.report.facts import DATA_CODES, RunFacts
from contrastkit.doctor.findings import Finding, sort_findings

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# `chance` (1 / gallery size, eval/baselines.py) sits beside R@1: a train_sample row and a
# val row have galleries of different sizes, and R@1 compares only through it.
HEADLINE = ("R@1", "chance", "R@5", "R@10", "median_rank", "mAP", "class_R@1")
PROBES = ("knn_accuracy", "zero_shot_accuracy", "linear_probe_accuracy", "majority_accuracy")
_METRIC_KEY = re.compile(r"^(?P<where>.+)/(?P<dir>[^/]+_to_[^/]+)/(?P<metric>[^/]+)$")

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1400px}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:14px}td,th{padding:4px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.best{font-weight:bold;color:#06692a}.start td{color:#666;font-style:italic}
.error{color:#b00020}.warning{color:#a35c00}.info{color:#0b5394}
pre{background:#f6f6f6;padding:6px;white-space:pre-wrap;font-size:12px;margin:4px 0}
.ex{border:1px solid #ddd;border-radius:6px;padding:8px;margin:10px 0}
.ex.hit{border-left:6px solid #2e7d32}.ex.miss{border-left:6px solid #c62828}
.tag{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:bold}
.tag.hit{background:#2e7d32}.tag.miss{background:#c62828}
.row{display:flex;gap:8px;flex-wrap:wrap;align-items:flex-start;margin-top:6px}
.cell{border:2px solid #eee;border-radius:4px;padding:4px;width:128px;font-size:12px}
.cell.match{border-color:#2e7d32;background:#f1f8f1}.q{width:200px;background:#fafafa}
.th{display:block;width:64px;height:64px;margin-top:2px}.strip{display:block;height:48px;margin-top:2px}.txt{margin:2px 0}
.dim{color:#777}.mark{background:#ffd6d6;font-weight:bold}.cmp td{max-width:520px}
img.fig{max-width:100%}
"""


def fmt(value: Any) -> str:
    """A metric as the tables show it: 3 decimals below 2 (recalls), 1 above (ranks)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    if value != value:  # NaN
        return "nan"
    return f"{value:.1f}" if abs(value) >= 2 else f"{value:.3f}"


def _override_value(value: Any) -> str:
    """JSON (which YAML reads), except a string YAML reads back as itself goes bare."""
    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def fix_command(fix: dict[str, Any]) -> str:
    """The finding's fix as `-o key=value` arguments, quoted for a POSIX shell."""
    return " ".join(f"-o {shlex.quote(f'{k}={_override_value(v)}')}" for k, v in fix.items())


def header(facts: RunFacts) -> str:
    """Run name, status, wall time, config hash, manifest, and rows / groups per split."""
    wall = "-" if facts.wall_s is None else f"{facts.wall_s:.0f} s"
    items = [
        ("run", html.escape(str(facts.run_dir))),
        ("status", f"<b>{facts.status}</b>"),
        ("wall time", wall),
        ("config hash", f"<code>{facts.config_hash}</code>"),
        ("manifest", html.escape(facts.config.data.manifest)),
    ]
    if facts.rows_skipped is not None:
        items.append(("rows skipped", str(facts.rows_skipped)))
    head = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    data = ""
    if facts.data_rows:
        cells = "".join(
            f"<tr><td>{html.escape(s)}</td><td class=num>{d['rows']}</td>"
            f"<td class=num>{d['groups']}</td></tr>"
            for s, d in facts.data_rows.items()
        )
        data = f"<table><tr><th>split</th><th>rows</th><th>groups</th></tr>{cells}</table>"
    return f"<h1>{html.escape(facts.name)}</h1><div class=row><table>{head}</table>{data}</div>"


def _is_start(where: str) -> bool:
    return "start" in where or "zero_shot" in where


def metrics_table(metrics: dict[str, float], directions: Sequence[str] = ()) -> str:
    """Headline retrieval metrics, one row per (split, direction); rows measured before
    training (keys with `start` in their prefix, e.g. `eval.at_start`) sit above the
    final row of the same direction, in grey. `directions` (`q_to_g`, from
    `pairing.eval_pairs`) orders the directions as every other table does, text query
    first; others follow alphabetically."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        m = _METRIC_KEY.match(key)
        if m and m["metric"] in HEADLINE:
            rows.setdefault((m["where"], m["dir"]), {})[m["metric"]] = value
    if not rows:
        return (
            "<p class=dim>no test metrics yet (the run has not finished its final evaluation)</p>"
        )
    cols = [c for c in HEADLINE if any(c in r for r in rows.values())]

    def order(item: tuple[tuple[str, str], dict]) -> tuple:
        (where, direction), _ = item
        base = "/".join(p for p in re.split(r"[/]", where) if not _is_start(p))
        rank = directions.index(direction) if direction in directions else len(directions)
        return (base != "test", base, rank, direction, not _is_start(where))

    body = []
    for (where, direction), r in sorted(rows.items(), key=order):
        cls = " class=start" if _is_start(where) else ""
        cells = "".join(f"<td class=num>{fmt(r[c]) if c in r else '-'}</td>" for c in cols)
        arrow = html.escape(direction.replace("_to_", " → "))
        body.append(f"<tr{cls}><td>{html.escape(where)}</td><td>{arrow}</td>{cells}</tr>")
    probes = [
        f"<tr><td>{html.escape(k)}</td><td class=num>{fmt(v)}</td></tr>"
        for k, v in sorted(metrics.items())
        if k.rsplit("/", 1)[-1] in PROBES or "/captioning/" in k
    ]
    extra = f"<h3>probes and captioning</h3><table>{''.join(probes)}</table>" if probes else ""
    head = "".join(f"<th>{c}</th>" for c in cols)
    return f"<table><tr><th>split</th><th>direction</th>{head}</tr>{''.join(body)}</table>{extra}"


def findings_section(findings: Sequence[Finding]) -> str:
    """Data findings, then run findings, each with evidence and the fix to copy."""
    if not findings:
        return "<p>The doctor found nothing to report.</p>"
    out = []
    for kind, wanted in (("data", True), ("run", False)):
        chosen = [f for f in sort_findings(findings) if (f.code in DATA_CODES) == wanted]
        if not chosen:
            continue
        rows = []
        for f in chosen:
            fix = fix_command(f.fix)
            fix_html = f"<pre>{html.escape(fix)}</pre>" if fix else ""
            note = f"<div>{html.escape(f.fix_note)}</div>" if f.fix_note else ""
            evidence = html.escape(json.dumps(f.to_dict()["evidence"], indent=1))
            rows.append(
                f"<tr><td class={f.severity}>{f.severity}</td><td><b>{f.code}</b><br>"
                f"{html.escape(f.title)}</td><td>{html.escape(f.cause)}<details><summary>evidence"
                f"</summary><pre>{evidence}</pre></details></td><td>{fix_html}{note}</td></tr>"
            )
        out.append(
            f"<h3>{kind}</h3><table><tr><th>severity</th><th>code</th><th>cause and evidence</th>"
            f"<th>fix (add to the train command)</th></tr>{''.join(rows)}</table>"
        )
    return "".join(out)


def figure(uri: str | None, alt: str) -> str:
    """An inline figure, or a note when nothing was recorded yet."""
    if uri is None:
        return "<p class=dim>nothing recorded yet</p>"
    return f"<img class=fig alt='{html.escape(alt)}' src='{uri}'>"


def page(title: str, sections: Sequence[tuple[str, str]], head: str = "") -> str:
    """The whole document: `sections` are (heading, HTML body) pairs."""
    body = "".join(
        f"<section><h2>{html.escape(h)}</h2>{b}</section>" if h else b for h, b in sections
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{head}{body}</body></html>"
    )


def config_section(text: str) -> str:
    """The resolved config.yaml, collapsed."""
    return (
        "<details><summary>resolved config.yaml (click to open)</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )
