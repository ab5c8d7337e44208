"""`qsmbench toy`: the multimodal bandit demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qsmbench.core.errors import ConfigError
from qsmbench.tools.toy import run_toy, toy_grid, toy_specs


def toy(
    algos: Annotated[
        str | None, typer.Option(help="Comma-separated algorithms to compare (default: those of qsmbench/data/toy.toml).")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per algorithm; their samples are pooled (default 1).")] = None,
    steps: Annotated[int | None, typer.Option(help="Bandit steps (one-step episodes) per seed (default 4000).")] = None,
    out: Annotated[Path | None, typer.Option(help="Directory for the runs and multimodal.png (default results/toy).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Plain log lines instead of the live display.")] = False,
) -> None:
    """Train on a 2-D bandit with four equal optima and plot each policy's action samples."""
    names = [name.strip() for name in algos.split(",") if name.strip()] if algos is not None else None
    if names is not None and not names:
        raise ConfigError("--algos needs at least one algorithm")
    specs = toy_specs(toy_grid(), names, seeds, steps, None if out is None else str(out))
    print(f"figure: {run_toy(specs, quiet=quiet)}")
