"""The Typer app every command registers on, and the options of `qsmbench` itself."""

from __future__ import annotations

import importlib.metadata
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Seed-batched benchmarks of QSM, SAC, TD3 and Diffusion-QL on continuous control.",
)


def print_version(asked: bool) -> None:
    """`qsmbench --version`: the installed distribution's version, from its metadata (the one pip reports)."""
    if asked:
        print(f"qsmbench {importlib.metadata.version('qsmbench')}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool, typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Options of `qsmbench` itself, before the command."""
