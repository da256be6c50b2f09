"""Where a page goes: the `--out` path checked before the work, and an atomic write.

`report` and `compare` spend seconds to minutes building a page, so a path that cannot
take it (an existing folder, a parent folder that does not exist) is refused first; the
page is written to `<out>.tmp` and renamed, and the temporary file is removed when the
write fails, so a failed command leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from contrastkit.errors import ContrastkitError


def check_out(path: str | Path, option: str = "--out") -> Path:
    """`path` if a file can be written there.

    Raises:
        ContrastkitError: it is a folder, or its parent folder does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise ContrastkitError(
            f"{option} {path} is a folder; give a file name, e.g. {path / 'report.html'}"
        )
    if not path.parent.is_dir():
        raise ContrastkitError(
            f"{option} {path}: the folder {path.parent} does not exist; create it or pick "
            "another path"
        )
    return path


def write_atomic(path: str | Path, text: str, option: str = "--out") -> Path:
    """Write `text` to `path` through `<path>.tmp` (never half a page; no .tmp left).

    Raises:
        ContrastkitError: `check_out` refuses the path.
        OSError: the disk is full or read-only (the CLI reports it in one paragraph).
    """
    path = check_out(path, option)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
