"""`qsmbench list`: the algorithms with their defaults, or one algorithm's settings explained."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qsmbench.algorithms import ALGORITHMS, lookup
from qsmbench.core.config import explain
from qsmbench.envs.environments import EXAMPLE_ENV_IDS


def list_algorithms(
    explain_algo: Annotated[
        str | None,
        typer.Option(
            "--explain", metavar="ALGO",
            help="Explain each hyperparameter of ALGO instead: its name, default, meaning and where the default "
            "comes from.",
        ),
    ] = None,
) -> None:
    """Show the algorithms with their default hyperparameters, and example environment ids."""
    console = Console()
    if explain_algo is not None:
        algorithm = lookup(explain_algo)
        console.print(f"[bold]{algorithm.name}[/bold]: {algorithm.summary}")
        table = Table(show_lines=True)
        table.add_column("name", no_wrap=True)
        table.add_column("default", no_wrap=True)
        table.add_column("meaning", overflow="fold")
        table.add_column("source", overflow="fold")
        for name, default, meaning, source in explain(algorithm.config_cls):
            table.add_row(name, repr(default), escape(meaning), escape(source))
        console.print(table)
        return
    for algorithm in ALGORITHMS.values():
        console.print(f"[bold]{algorithm.name}[/bold]: {algorithm.summary}")
        table = Table(show_header=False)
        for name, value in dataclasses.asdict(algorithm.config_cls()).items():
            table.add_row(name, repr(value))
        console.print(table)
    console.print("Example environments: " + ", ".join(EXAMPLE_ENV_IDS))
    console.print("Any Gymnasium id with Box actions works, and DeepMind Control tasks as dm_control/<domain>-<task>-v0.")
