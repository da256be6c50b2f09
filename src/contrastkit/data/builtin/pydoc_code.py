"""`builtin:pydoc-code`: (docstring, source code) pairs from the installed standard library.

Real: every function and class with a docstring in the Python standard library next to
`os.__file__` (tests, `idle_test`, `lib2to3` tests, `site-packages` and `__pycache__`
skipped), parsed with `ast`. `text` = the docstring's first paragraph (whitespace
collapsed); `text_code` = the definition's source without its docstring, dedented and
truncated to `max_code_chars`. Pairs are de-duplicated on the docstring and on the code,
both compared after lowercasing and dropping punctuation and whitespace (a docstring or
body seen twice keeps its first definition in path order), so no two groups share a text.

Nothing is generated, but the content depends on the Python version, which is therefore
part of the cache key. Splits are by module (`sha256(module name)`, 80 / 10 / 10 %), so no
module spans two splits. Every pair is its own group.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import textwrap
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contrastkit.data.builtin.cache import write_manifest

NAME = "pydoc-code"
VERSION = 2
DEFAULTS: dict[str, Any] = {"max_code_chars": 400, "min_words": 3, "max_pairs": None}
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def cache_key() -> dict[str, str]:
    """The stdlib differs between Python versions, so the cache does too."""
    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"}


def stdlib_files(root: Path) -> list[Path]:
    """Standard-library .py files under `root`, sorted, test folders excluded."""
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        files.extend(Path(folder) / n for n in names if n.endswith(".py"))
    return sorted(files)


def first_paragraph(docstring: str) -> str:
    """The docstring up to its first blank line, whitespace collapsed."""
    paragraph = textwrap.dedent(docstring).strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def code_without_docstring(source_lines: list[str], node: ast.AST, limit: int) -> str:
    """The definition's source lines minus the docstring statement, dedented, truncated."""
    body = node.body  # type: ignore[attr-defined]
    doc = body[0]
    start, end = node.lineno, node.end_lineno  # type: ignore[attr-defined]
    lines = [
        source_lines[n - 1] for n in range(start, end + 1) if not doc.lineno <= n <= doc.end_lineno
    ]
    code = textwrap.dedent("".join(lines)).strip()
    return code[:limit]


def pairs_in_file(path: Path, min_words: int, limit: int) -> Iterator[tuple[str, str, str]]:
    """(qualified name, docstring paragraph, code) for each documented def/class."""
    try:
        with tokenize.open(path) as f:
            source = f.read()
        tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return
    lines = source.splitlines(keepends=True)
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        doc = ast.get_docstring(node, clean=True)
        if not doc:
            continue
        text = first_paragraph(doc)
        code = code_without_docstring(lines, node, limit)
        if len(text.split()) >= min_words and code:
            yield f"{node.name}@{node.lineno}", text, code


def split_of(module: str) -> str:
    """The split of a module, from a hash of its name (stable across runs and machines): 80/10/10."""
    bucket = int(hashlib.sha256(module.encode()).hexdigest(), 16) % 10
    return "val" if bucket == 8 else "test" if bucket == 9 else "train"


def _key(kind: str, text: str) -> str:
    """Case-, punctuation- and whitespace-blind key, so near-identical copies count once."""
    return kind + ":" + "".join(c for c in text.lower() if c.isalnum())


def generate(folder: Path, options: dict[str, Any]) -> None:
    """Write manifest.jsonl (text = docstring, text_code = code) into `folder`."""
    root = Path(os.__file__).parent
    seen: set[str] = set()
    rows = []
    for path in stdlib_files(root):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for name, text, code in pairs_in_file(
            path, options["min_words"], options["max_code_chars"]
        ):
            keys = (_key("doc", text), _key("code", code))
            if any(k in seen for k in keys):
                continue
            seen.update(keys)
            rows.append(
                {
                    "id": f"{module}:{name}",
                    "split": split_of(module),
                    "text": text,
                    "text_code": code,
                    "module": module,
                }
            )
            if options["max_pairs"] is not None and len(rows) >= options["max_pairs"]:
                write_manifest(folder, rows)
                return
    write_manifest(folder, rows)
