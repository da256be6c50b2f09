"""The subcommands of `contrastkit`, grouped by what they do; `app/cli.py` registers them.

Here: the console every command prints to and the repeatable --override option they share.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()

Overrides = Annotated[
    list[str] | None,
    typer.Option("-o", "--override", help="dotted config override key=value (repeatable)"),
]
