"""Captioning examples for the report: generated text beside its reference, with the
numbers that disagree highlighted.

Quantities are read with the captioning metrics' own grammar (eval/numbers.py), and one
quantity of a side is matched by at most one of the other, exactly as
`numeric_fidelity` counts: what is highlighted is what that metric counts as wrong.
"""

from __future__ import annotations

import html
import math
import re

from contrastkit.eval.numbers import Quantity, numeral_values, parse_quantities

_NUMERAL = re.compile(r"\d+(?:[.,]\d+)*")  # the numerals of eval/numbers.py's tokeniser


def unmatched(text: str, other: str) -> list[Quantity]:
    """The quantities of `text` with no counterpart (same value(s) and unit) in `other`."""
    available = parse_quantities(other)
    out = []
    for quantity in parse_quantities(text):
        j = next((i for i, c in enumerate(available) if c.same_as(quantity)), None)
        if j is None:
            out.append(quantity)
        else:
            del available[j]
    return out


def highlight(text: str, wrong: list[Quantity]) -> str:
    """`text` escaped, with each numeral that states a `wrong` quantity's value (either end
    of a range) wrapped in `<span class=mark>`."""
    values = [v for q in wrong for v in (q.low, q.high)]
    out, last = [], 0
    for m in _NUMERAL.finditer(text):
        numbers, _ = numeral_values(m.group(0))
        if any(
            math.isclose(n, v, rel_tol=1e-9) or math.isclose(-n, v) for n in numbers for v in values
        ):
            out += [html.escape(text[last : m.start()]), f"<span class=mark>{m.group(0)}</span>"]
            last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def captions_table(generated: list[str], references: list[str], inputs: list[str]) -> str:
    """Rows of (input thumbnails, generated with its wrong numbers marked, reference with
    the numbers the generation missed marked)."""
    rows = [
        f"<tr><td>{shown}</td><td>{highlight(gen, unmatched(gen, ref))}</td>"
        f"<td>{highlight(ref, unmatched(ref, gen))}</td></tr>"
        for gen, ref, shown in zip(generated, references, inputs, strict=True)
    ]
    return (
        "<p>Numbers marked <span class=mark>red</span> have no counterpart of the same value "
        "and unit on the other side (what numeric fidelity counts as wrong or missed).</p>"
        "<table class=cmp><tr><th>input</th><th>generated</th><th>reference</th></tr>"
        f"{''.join(rows)}</table>"
    )
