"""Loading a `Config`: YAML file -> `-o key=value` overrides -> validation; and dumping it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from contrastkit.config.root import Config
from contrastkit.errors import ConfigError, RunDirError
from contrastkit.run_io import NotYamlError, load_yaml

# Longest quoted value in an error message: a message is one paragraph, even for a value
# of megabytes (an alias bomb expanded to 8 MB of text before this cap).
MAX_QUOTED = 200


def quoted(value: Any) -> str:
    """`repr(value)`, cut to `MAX_QUOTED` characters for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else f"{text[:MAX_QUOTED]}... ({len(text):,} characters)"


def _parse_value(text: str) -> Any:
    try:
        return load_yaml(text, f"override value {quoted(text)}")
    except NotYamlError:
        return text  # not YAML: the text itself (e.g. a path with a colon)
    except RunDirError as err:  # an alias bomb or a self-reference
        raise ConfigError(str(err)) from None


def apply_override(data: dict, override: str) -> None:
    """Apply one `a.b.c=value` override in place (list items by index: `a.0.b=1`)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    path, _, raw = override.partition("=")
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {override!r} has an empty key")
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"override {override!r}: {where} is not an index of the list")
            node = node[int(key)]
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        # A list item can be a value too (`towers: [a, b]`): `towers.0.x` goes into a string.
        if not isinstance(node, dict | list):
            raise ConfigError(f"override {override!r}: {where} is a value, not a section")
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"override {override!r}: {last} is not an index of the list")
        node[int(last)] = _parse_value(raw)
    else:
        node[last] = _parse_value(raw)


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `contrastkit config show` lists valid keys)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        value = e.get("input")
        shown = (
            f" (got {quoted(value)})"
            if e["type"] not in ("missing",) and not isinstance(value, dict)
            else ""
        )
        lines.append(f"  {loc or '<root>'}: {msg}{shown}")
    return f"invalid config {source}:\n" + "\n".join(lines)


def _invalid_unicode(node: Any, where: str = "") -> str | None:
    """Key path of the first string (key or value) with a lone surrogate, or None; such
    text cannot be written to config.yaml, a path or the terminal."""
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(node, dict):
        items: Any = node.items()
    else:
        items = enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        here = f"{where}.{key}" if where else str(key)
        found = _invalid_unicode(key, here) if isinstance(key, str) else None
        found = found if found is not None else _invalid_unicode(value, here)
        if found is not None:
            return found
    return None


def config_from_dict(
    data: dict, source: str = "<dict>", overrides: list[str] | None = None
) -> Config:
    """Validate a plain mapping (after applying overrides) into a `Config`."""
    data = yaml.safe_load(yaml.safe_dump(data, sort_keys=False))  # deep copy, keeps key order
    for ov in overrides or []:
        apply_override(data, ov)
    bad = _invalid_unicode(data)
    if bad is not None:
        raise ConfigError(
            f"invalid config {source}:\n  {bad or '<root>'}: text is not valid Unicode "
            "(a lone surrogate such as \\ud800)"
        )
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file, apply `key=value` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as err:  # not the disk's fault: say which file and why
        raise ConfigError(
            f"config file {path} cannot be read ({err.strerror or err}); check its permissions"
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at byte "
            f"offset {err.start}, line {line}); save it as UTF-8"
        ) from None
    try:
        data = load_yaml(text, f"config file {path}") or {}
    except RunDirError as err:  # not YAML, nested too deeply, an alias bomb or self-reference
        raise ConfigError(str(err)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    cfg = config_from_dict(data, source=str(path), overrides=overrides)
    # Relative manifest paths are relative to the config file.
    m = cfg.data.manifest
    if not m.startswith("builtin:") and not Path(m).is_absolute():
        candidate = path.parent / m
        try:
            relative = candidate.exists() or not Path(m).exists()
        except OSError:  # a name too long for the filesystem: the data loader reports it
            relative = True
        if relative:
            cfg.data.manifest = str(candidate)
    return cfg


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML (what is saved to `config.yaml` in the run directory)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
