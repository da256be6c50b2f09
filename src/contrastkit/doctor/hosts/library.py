"""Import a host's library on first use, with the install hint when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from contrastkit.errors import ConfigError


def host_library(module: str, extra: str) -> ModuleType:
    """`importlib.import_module(module)`, or a ConfigError naming the extra to install.

    Raises:
        ConfigError: the library is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"the doctor's {module} integration needs the `{module}` package, which is not "
            f"installed ({err}): pip install contrastkit[{extra}]"
        ) from None
