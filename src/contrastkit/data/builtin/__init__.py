"""Builtin datasets: `data.manifest: builtin:NAME`, generated on first use into the cache.

Each generator module defines `NAME`, `VERSION` (bumped whenever its output changes),
`DEFAULTS` (the `data.builtin_options` it accepts) and `generate(folder, options)`, which
writes `manifest.jsonl` and its media into `folder`. Its docstring says what is real and
what is generated.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from contrastkit.data.builtin import (
    angio_reports,
    chart_radar,
    digits_captions,
    pydoc_code,
    sign_keypoints,
)
from contrastkit.data.builtin.cache import cache_root, dataset_dir, generate_once
from contrastkit.errors import ConfigError

BUILTIN_PREFIX = "builtin:"

_MODULES: tuple[ModuleType, ...] = (
    digits_captions,
    pydoc_code,
    angio_reports,
    chart_radar,
    sign_keypoints,
)


def builtin_names() -> list[str]:
    """Names accepted after `builtin:`."""
    return sorted(m.NAME for m in _MODULES)


def _module(name: str) -> ModuleType:
    for m in _MODULES:
        if name == m.NAME:
            return m
    raise ConfigError(
        f"data.manifest: unknown builtin dataset {name!r}; available: {', '.join(builtin_names())}"
    )


def resolve_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `data.builtin_options`; unknown keys are a ConfigError."""
    module = _module(name)
    unknown = sorted(set(options) - set(module.DEFAULTS))
    if unknown:
        raise ConfigError(
            f"data.builtin_options: {unknown} not accepted by builtin:{name}; "
            f"allowed: {sorted(module.DEFAULTS)}"
        )
    return {**module.DEFAULTS, **options}


def builtin_manifest(
    name: str, *, cache_dir: str | Path | None = None, options: dict[str, Any] | None = None
) -> Path:
    """Generate `name` if needed and return its manifest path.

    Args:
        name: the dataset name (without `builtin:`).
        cache_dir: see `cache.cache_root`.
        options: `data.builtin_options`, e.g. `{"n_studies": 200}`.
    """
    module = _module(name)
    full = resolve_options(name, dict(options or {}))
    key = {**full, **module.cache_key()} if hasattr(module, "cache_key") else full
    target = dataset_dir(cache_root(cache_dir), name, module.VERSION, key)
    return generate_once(target, lambda folder: module.generate(folder, full))
