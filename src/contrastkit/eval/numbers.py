"""The numbers a report states, read as quantities: value (or range) and unit.

`numeric_fidelity` and `numeric_error` (eval/captioning.py) compare these, so the grammar
decides what counts as "the same number". It is stated in docs/evaluation.md; in short:

- a *numeral* is digits with `.` / `,` between digit runs. A `.` is a decimal point. A
  `,` is a thousands separator when every group after the first has exactly three digits
  and the first group is 1-3 digits not starting with 0 ("1,200" = 1200); otherwise a
  single `,` in a numeral without `.` is a decimal comma ("2,5" = 2.5, "0,250" = 0.25);
  otherwise the commas separate a list ("1,2,3" = 1, 2, 3). A numeral with two `.` and
  no `,` ("1.2.3", a section number) is not a number.
- a *unit* is `%` or a known unit word (`UNITS`) right after the numeral, with or without
  a space; any other word is not a unit ("2 vessels" is 2 with no unit).
- a *range* `A-B`, `A–B`, `A to B`, `between A and B` is ONE quantity (low, high) with the
  unit written after either end ("70-80%", "5 mm to 10 mm").
- a *list* `A,B,C`, `A, B and C`, `A or B`: each number is its own quantity; numbers
  without a unit take the list's last unit when the list is compact (`,` with no space)
  or closed by "and"/"or" ("1, 2 and 3 mm" = 1 mm, 2 mm, 3 mm). A list of spaced commas
  only ("segment 6, 70%") shares nothing: 6 has no unit.
- a *dimension* `A x B [unit]` gives A and B, both with the unit ("3 x 4 mm").
- a *multiplier* `x N`, `×N`, `N x`, `Nx` is N with unit "x" ("stent x 2").
- `-N` is negative only where the minus is not a range dash (nothing numeric before it).
- a numeral glued to a word before it ("LAD2", "V1") is a label, not a number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

UNITS = frozenset(
    {"%", "mm", "cm", "m", "km", "ms", "s", "min", "h", "kg", "g", "mg", "ml", "l", "bpm",
     "mmhg", "hz", "khz", "mhz", "x", "deg", "px", "µm", "um"}
)  # fmt: skip
_TIMES = frozenset({"x", "×"})
_RANGE = frozenset({"-", "–", "—", "to"})
_LIST_WORDS = frozenset({"and", "or"})
_MINUS = frozenset({"-", "−"})
# Numerals, runs of letters, or one other visible character.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+|[^\w\s]|_")
_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")


class Quantity(NamedTuple):
    """A stated number: `low == high` for a single value, `low < high` for a range."""

    low: float
    high: float
    unit: str

    @property
    def value(self) -> float:
        """The number itself, or the middle of a range (what an error is measured on)."""
        return (self.low + self.high) / 2

    def same_as(self, other: Quantity) -> bool:
        """Same unit and the same value(s) up to float rounding."""
        return (
            self.unit == other.unit
            and math.isclose(self.low, other.low, rel_tol=1e-9, abs_tol=1e-12)
            and math.isclose(self.high, other.high, rel_tol=1e-9, abs_tol=1e-12)
        )


@dataclass
class _Tok:
    text: str
    kind: str  # "num", "word" or "sym"
    glued: bool  # written directly after the previous token


def _tokens(text: str) -> list[_Tok]:
    out, end = [], None
    for m in _TOKEN.finditer(text):
        s = m.group()
        kind = "num" if s[0].isdigit() else "word" if s[0].isalpha() else "sym"
        out.append(_Tok(s, kind, m.start() == end))
        end = m.end()
    return out


def numeral_values(raw: str) -> tuple[list[float], bool]:
    """Values of one numeral and whether it was a compact list ("1,2,3").

    Returns ([], False) for a numeral that is not a number ("1.2.3").
    """
    if "," not in raw:
        return ([float(raw)], False) if raw.count(".") <= 1 else ([], False)
    if _THOUSANDS.fullmatch(raw):
        return [float(raw.replace(",", ""))], False
    if raw.count(",") == 1 and "." not in raw:
        return [float(raw.replace(",", "."))], False  # decimal comma
    parts = raw.split(",")
    if any(p.count(".") > 1 for p in parts):
        return [], False
    return [float(p) for p in parts], True


class _Parser:
    """One pass over the tokens; each `_item` reads a value or range and its unit."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)

    def _at(self, i: int) -> _Tok | None:
        return self.toks[i] if 0 <= i < len(self.toks) else None

    def _is_num(self, i: int) -> bool:
        tok = self._at(i)
        return tok is not None and tok.kind == "num"

    def _low(self, i: int) -> str:
        tok = self._at(i)
        return tok.text.lower() if tok is not None else ""

    def _unit(self, i: int) -> tuple[str, int]:
        """The unit at token i (and the index after it), or ("", i)."""
        word = self._low(i)
        if word in UNITS and not (word in _TIMES and self._is_num(i + 1)):
            return word, i + 1
        return "", i

    def _item(self, i: int, between: bool) -> tuple[list[Quantity], bool, int]:
        """Quantities of the item starting at numeral i, whether it was a compact list,
        and the index after it. `between` reads "A and B" as a range."""
        values, compact = numeral_values(self.toks[i].text)
        if not values:
            return [], False, i + 1
        minus = self._low(i - 1) in _MINUS and self.toks[i].glued
        if minus and len(values) == 1 and not self._is_num(i - 2) and self._unit(i - 2)[0] == "":
            values = [-values[0]]
        times = self._low(i - 1) in _TIMES and not self._is_num(i - 2)
        unit, j = self._unit(i + 1)
        unit = unit or ("x" if times else "")
        sep = self._low(j)
        if (
            len(values) == 1
            and (sep in _RANGE or (between and sep == "and"))
            and self._is_num(j + 1)
        ):
            high, _ = numeral_values(self.toks[j + 1].text)
            high_unit, k = self._unit(j + 2)
            if len(high) == 1 and (not unit or not high_unit or unit == high_unit):
                u = unit or high_unit
                return [Quantity(values[0], high[0], u)], False, k
        return [Quantity(v, v, unit) for v in values], compact, j

    def quantities(self) -> list[Quantity]:
        out: list[Quantity] = []
        i = 0
        while i < len(self.toks):
            tok = self.toks[i]
            prev = self._at(i - 1)
            labelled = tok.glued and prev is not None and prev.kind == "word"
            if tok.kind != "num" or (
                labelled and prev is not None and prev.text.lower() not in _TIMES
            ):
                i += 1
                continue
            out_list, i = self._list(i)
            out += out_list
        return out

    def _list(self, i: int) -> tuple[list[Quantity], int]:
        """A run of items joined by list separators or `x`, with the unit shared where
        the grammar says so (see the module docstring)."""
        between = self._low(i - 1) == "between"
        items, compact, i = self._item(i, between)
        shared = compact  # a compact "1,2,3" shares its unit
        dims = False
        while True:
            sep = self._low(i)
            if sep == "," and self._is_num(i + 1):
                glued = self.toks[i].glued and self.toks[i + 1].glued
                step = 1
            elif (sep in _LIST_WORDS or sep in _TIMES) and self._is_num(i + 1):
                glued, step = False, 1
            else:
                break
            more, more_compact, i = self._item(i + step, False)
            shared = shared or glued or more_compact or sep in _LIST_WORDS
            dims = dims or sep in _TIMES
            items += more
        last_unit = items[-1].unit if items else ""
        if (shared or dims) and last_unit:
            items = [q if q.unit else q._replace(unit=last_unit) for q in items]
        return items, i


def parse_quantities(text: str) -> list[Quantity]:
    """Every quantity stated in `text`, in order (grammar: module docstring)."""
    return _Parser(text).quantities()


def first_percentage(text: str) -> float | None:
    """The value of the first "%" quantity of `text` (a range's middle), or None."""
    return next((q.value for q in parse_quantities(text) if q.unit == "%"), None)
