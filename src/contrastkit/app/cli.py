"""The `contrastkit` command. `main(argv) -> int` so tests call it directly.

This module assembles the command tree; the commands live in `app/commands/`.
User errors (`ContrastkitError`) print one paragraph and exit with code 2; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import errno
import sys
import traceback
from typing import Annotated

import typer
from rich.console import Console

from contrastkit import __version__
from contrastkit.app.commands import checkpoints, console, doctor_logs, inputs, reports, training
from contrastkit.errors import ContrastkitError
from contrastkit.train.preemption import Preempted

app = typer.Typer(
    name="contrastkit",
    help="Train, evaluate and diagnose contrastive multimodal models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)
doctor_app = typer.Typer(help="Diagnose data and runs.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(doctor_app, name="doctor")

# Disk full, file too large (ulimit -f), quota, read-only, no permission: the user's
# environment, not a bug; reported in one paragraph like a ContrastkitError.
DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _version(value: bool) -> None:
    if value:
        console.print(f"contrastkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        # metavar "": typer would print a flag's type (`<bool>`) beside it, as if it took one.
        typer.Option(
            "--version", callback=_version, is_eager=True, metavar="", help="print the version"
        ),
    ] = False,
) -> None:
    """contrastkit: CLIP / SigLIP-style training with a doctor that says what is wrong."""


# Registration order is the order of `contrastkit --help`.
app.command("train")(training.train_cmd)
app.command("demo")(training.demo_cmd)
app.command("shard")(inputs.shard_cmd)
config_app.command("show")(inputs.config_show)
config_app.command("reference")(inputs.config_reference)
app.command("eval")(checkpoints.eval_cmd)
app.command("export")(checkpoints.export_cmd)
app.command("embed")(checkpoints.embed_cmd)
app.command("search")(checkpoints.search_cmd)
doctor_app.command("data")(inputs.doctor_data_cmd)
doctor_app.command("run")(reports.doctor_run_cmd)
doctor_app.command("logs")(doctor_logs.doctor_logs_cmd)
app.command("report")(reports.report_cmd)
app.command("compare")(reports.compare_cmd)
app.command("sweep")(training.sweep_cmd)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="contrastkit", standalone_mode=False)
    except ContrastkitError as err:
        if debug:
            traceback.print_exc()
        Console(stderr=True).print(f"error: {err}", style="bold red", markup=False, highlight=False)
        return 2
    except typer.Exit as ex:
        return ex.exit_code
    except Preempted as stop:
        # Not an error: the checkpoint holds the run; the code tells schedulers which signal.
        Console(stderr=True).print(f"{stop}", style="bold yellow", markup=False, highlight=False)
        return stop.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        if debug:
            traceback.print_exc()
        where = f" ({err.filename})" if err.filename else ""
        Console(stderr=True).print(
            f"error: {err.strerror or err}{where}: the disk is full, read-only or not writable "
            "here; free space or pick another --run-dir (finished checkpoints are intact)",
            style="bold red",
            markup=False,
            highlight=False,
        )
        return 2
    except Exception as err:
        # Usage errors of the argument parser (typer vendors click) carry show/exit_code.
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            return int(err.exit_code)
        if type(err).__name__ == "Abort":
            return 130
        raise
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
