"""Reading a run's own files back: one reader for JSON, JSONL and YAML, one error style.

contrastkit writes its run folders itself, but reads them back after kills, full disks,
copies between machines and hand edits. Every reader here turns what can go wrong into a
`RunDirError` that names the file and the fault, never a traceback:

- missing: `read_json`/`read_yaml` raise (or return `default` when one is given);
  `read_jsonl` returns no records (a run that has not logged yet);
- a directory, or unreadable (permissions, I/O error): "cannot be read";
- not UTF-8: the byte offset of the first bad byte;
- not JSON / YAML: the line and column;
- the wrong shape at the top (`[1, 2]` where an object is expected): the type found.

JSONL files are logs: a torn or damaged *line* (a kill mid-write, bytes appended by
something else) costs that line only, with one warning naming the file and the count; the
rest of the log is still read. Everything below `app/` (train, doctor) reads run files
through this module, so a new file type gets the same checks by construction.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from contrastkit.errors import RunDirError

log = logging.getLogger(__name__)

_MISSING = object()


class NotYamlError(RunDirError):
    """The text does not parse as YAML (a caller may take such a text as a plain string)."""


_TYPE_NAMES: dict[type, str] = {dict: "a JSON object", list: "a list"}


def _fault(path: Path, what: str) -> RunDirError:
    return RunDirError(
        f"{path} {what}; the run folder is damaged. Restore the file, or delete it if the "
        "command can do without it (a checkpoint's state.json: delete the checkpoint)"
    )


def read_bytes(path: Path, *, default: Any = _MISSING) -> Any:
    """The file's bytes; `default` when it does not exist (if given).

    Raises:
        RunDirError: missing (without `default`), a directory, or unreadable.
    """
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if default is not _MISSING:
            return default
        raise RunDirError(f"{path} is missing") from None
    except IsADirectoryError:
        raise _fault(path, "is a directory, not a file") from None
    except OSError as err:
        raise _fault(path, f"cannot be read ({err.strerror or err})") from None


def read_text(path: Path, *, default: Any = _MISSING) -> Any:
    """The file as UTF-8 text (see `read_bytes` for `default`).

    Raises:
        RunDirError: as `read_bytes`, or the bytes are not UTF-8 (names the offset).
    """
    data = read_bytes(path, default=default)
    if data is default and default is not _MISSING:
        return default
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _fault(Path(path), f"is not UTF-8 text (byte {err.start})") from None


def _check_type(path: Path, value: Any, expect: type) -> Any:
    if not isinstance(value, expect):
        found = type(value).__name__ if value is not None else "empty"
        raise _fault(path, f"holds {found}, not {_TYPE_NAMES.get(expect) or expect.__name__}")
    return value


def read_json(path: Path, *, expect: type = dict, default: Any = _MISSING) -> Any:
    """A JSON file whose top level is an `expect` (an object unless told).

    Raises:
        RunDirError: as `read_text`; not JSON (line and column); the wrong top-level type.
    """
    text = read_text(path, default=default)
    if text is default and default is not _MISSING:
        return default
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fault(
            Path(path), f"is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    return _check_type(Path(path), value, expect)


# A config or sweep space is a few hundred YAML nodes (the largest shipped example: ~200).
# Aliases let a few hundred bytes stand for 10^9 nodes ("billion laughs": 258 bytes took
# 14 s and an 8 MB error message before this cap), so the document's size *with every alias
# expanded* is counted before anything is built from it. 100,000 is 500 times the largest
# real config and takes ~0.1 s to walk.
MAX_YAML_NODES = 100_000


def _expanded_size(node: yaml.Node, memo: dict[int, int], stack: set[int], source: str) -> int:
    """Nodes under `node` with every alias expanded; raises on a node that contains itself."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in stack:
        line = node.start_mark.line + 1
        raise RunDirError(f"{source}: an alias at line {line} refers to the node that holds it")
    stack.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, stack, source)
            if size > MAX_YAML_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, stack, source) + _expanded_size(v, memo, stack, source)
            if size > MAX_YAML_NODES:
                break
    stack.discard(key)
    memo[key] = size
    return size


def load_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load(text)` for configs, sweep spaces and run files, with aliases bounded.

    Raises:
        RunDirError: not YAML (line and column), nested too deeply, an alias that refers to
            itself, or more than `MAX_YAML_NODES` nodes once aliases are expanded. Callers
            that read user configs re-raise it as their own error type.
    """
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its Reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set(), source)
        if size > MAX_YAML_NODES:
            raise RunDirError(
                f"{source}: more than {MAX_YAML_NODES:,} values once its aliases (*name) are "
                "expanded; a config never needs that many (an alias bomb?)"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise NotYamlError(f"{source} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise RunDirError(f"{source}: YAML nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path, *, default: Any = _MISSING) -> Any:
    """A YAML file whose top level is a mapping (safe loader).

    Raises:
        RunDirError: as `read_text`; not YAML (line and column); not a mapping.
    """
    text = read_text(path, default=default)
    if text is default and default is not _MISSING:
        return default
    return _check_type(Path(path), load_yaml(text, str(path)), dict)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The object records of a JSONL log; [] when it does not exist.

    A line that is not UTF-8, not JSON or not an object (a torn last line of a run still
    writing, a kill mid-write, appended garbage) is skipped; one warning gives the count and
    the first line number.

    Raises:
        RunDirError: the path is a directory or cannot be read.
    """
    path = Path(path)
    data = read_bytes(path, default=b"")
    out, bad = [], []
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            rec = None
        if isinstance(rec, dict):
            out.append(rec)
        elif raw.strip():
            bad.append(number)
    if bad and bad[-1] == len(data.splitlines()) and not data.endswith(b"\n"):
        bad.pop()  # the unfinished last line of a run that is still writing: no fault
    if bad:
        log.warning(
            "%s: skipped %d damaged line(s) (not UTF-8, not JSON or not an object), first at line %d",
            path,
            len(bad),
            bad[0],
        )
    return out
