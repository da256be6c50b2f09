"""docs/config.md, generated from the pydantic config models: every key with its type,
default and description.

The reference is a pure function of the models, so a test regenerates it and compares it
with the file: a key added, renamed or re-described without `contrastkit config reference
--out docs/config.md` fails the test.

    contrastkit config reference --out docs/config.md
    python -m contrastkit.app.config_reference docs/config.md
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from contrastkit.config import AuxTermConfig, Config, LossConfig, ModelConfig, ObjectiveConfig
from contrastkit.registry import HEADS, LOSSES

HEADER = """# Config reference

Generated from the pydantic models in `contrastkit.config` and the objective models
registered in `contrastkit.registry.LOSSES` by `contrastkit config reference --out
docs/config.md`; `tests/app/test_config_reference.py` fails when this file is stale. Do not
edit it by hand: edit the `Field(description=...)` in the code and regenerate.

Keys are dotted paths as `-o key=value` takes them. `N` is a list index
(`loss.objectives.0.temperature`), `<tower>`, `<stream>`, ... a name you choose
(`model.towers.image`). Every
section rejects unknown keys. `required` marks keys without a default.
"""


def _type_name(tp: Any) -> str:
    """A short readable type: `float | null`, `clip | siglip`, `list[str]`, `TowerConfig`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " \\| ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, tuple, dict, set):
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _sections(tp: Any) -> tuple[str, list[type[BaseModel]]]:
    """How a field nests config models: ("", [M]) for a section, (".N", [...]) for a
    list of them, (".<name>", [...]) for a dict of them; ("", []) for a plain value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _sections(args[0])
    if origin in (typing.Union, types.UnionType):
        found = [m for a in args for m in _sections(a)[1]]
        return "", found
    if origin is list and args:
        return ".N", _sections(args[0])[1]
    if origin is dict and len(args) == 2:
        return ".<name>", _sections(args[1])[1]  # <name> becomes <tower>, <stream>, ...
    if isinstance(tp, type) and issubclass(tp, ObjectiveConfig):
        return "", [LOSSES.get(name) for name in _shipped(LOSSES.names(), LOSSES.get)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "", [tp]
    return "", []


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    try:
        text = json.dumps(value)
    except TypeError:
        text = str(value)
    return f"`{text}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, description) of every field of `model`, depth first."""
    hints = typing.get_type_hints(model, include_extras=True)
    for name, field in model.model_fields.items():
        if name == "heads" and model in (ModelConfig, LossConfig):
            yield from _head_rows(model, prefix)
            continue
        key = f"{prefix}{name}"
        tp = hints.get(name, field.annotation)
        suffix, nested = _sections(tp)
        yield key, _type_name(tp), _default(field), field.description or ""
        suffix = suffix.replace("name", name.removesuffix("s"))
        for sub in nested:
            where = key + suffix
            if issubclass(sub, ObjectiveConfig):
                kind = sub.model_fields["type"].default
                where = f"{where} (type: {kind})"
            yield from rows(sub, where + ".")


def _shipped(names: list[str], get: Any) -> list[str]:
    """The entries contrastkit itself registers: the reference documents the package, not
    the objectives or heads a user's code (or a test) registered in this process."""
    return [n for n in names if getattr(get(n), "__module__", "").startswith("contrastkit.")]


def _head_rows(section: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    """The registered heads, written `model.<term>` (the head) and `loss.<term>` (its term)."""
    for term in _shipped(HEADS.names(), HEADS.get):
        head = HEADS.get(term)
        if issubclass(section, LossConfig):
            yield (
                f"{prefix}{term}",
                "AuxTermConfig \\| null",
                "`null`",
                f"the {term} head's loss term (needs model.{term})",
            )
            yield from rows(AuxTermConfig, f"{prefix}{term}.")
        else:
            doc = (head.__doc__ or "").strip().split("\n\n")[0]
            yield f"{prefix}{term}", f"{head.__name__} \\| null", "`null`", doc
            yield from rows(head, f"{prefix}{term}.")


def render_reference() -> str:
    """The whole of docs/config.md."""
    out = [HEADER]
    hints = typing.get_type_hints(Config, include_extras=True)
    top = [(k, t, d, x) for k, t, d, x in rows(Config, "") if "." not in k.split(" ")[0]]
    out.append("\n## Top level\n\n| key | type | default | description |\n|---|---|---|---|")
    out += [f"| `{k}` | {t} | {d} | {_cell(x)} |" for k, t, d, x in top]
    for name in Config.model_fields:
        _, nested = _sections(hints[name])
        if not nested:
            continue
        doc = (nested[0].__doc__ or "").strip().split("\n\n")[0]
        out.append(f"\n## `{name}`\n")
        if doc and not doc.startswith("Base for every"):
            out.append(_cell(doc) + "\n")
        out.append("| key | type | default | description |\n|---|---|---|---|")
        for k, t, d, x in rows(nested[0], f"{name}."):
            out.append(f"| `{k}` | {t} | {d} | {_cell(x)} |")
    return "\n".join(out) + "\n"


def undescribed() -> list[str]:
    """Keys without a description (the reference test keeps this list empty)."""
    return [k for k, _, _, x in rows(Config, "") if not x.strip()]


def main(argv: list[str] | None = None) -> int:
    """Write the reference to the path in `argv` (else print it); returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    text = render_reference()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
