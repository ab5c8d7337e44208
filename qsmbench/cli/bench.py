"""`qsmbench bench`: measured speed of each part of a training step here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qsmbench.algorithms import ALGORITHMS, resolve
from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import plural
from qsmbench.envs.environments import check_env_id
from qsmbench.tools.bench import append_results
from qsmbench.tools.bench import bench as measure
from qsmbench.training.prepare import check_compile_device, resolve_device


def bench_command(
    algos: Annotated[str, typer.Option(help="Comma-separated algorithms to measure (default: every one).")] = ",".join(
        ALGORITHMS
    ),
    env: Annotated[str, typer.Option(help="Gymnasium id whose sizes and simulator to use.")] = "Hopper-v4",
    seeds: Annotated[str, typer.Option(help="Comma-separated seed counts (each one batched run).")] = "1,10",
    calls: Annotated[int, typer.Option(help="Timed calls per measurement (after a tenth as many warm-up calls).")] = 100,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="JSON-lines file the results are appended to.")] = Path("results/bench.jsonl"),
    compile: Annotated[
        bool, typer.Option("--compile", help="CUDA only: also measure every algorithm with compiled networks.")
    ] = False,
) -> None:
    """Measure env, act, update and whole-step speed, and operators per update and act, of each algorithm here."""
    names = [name.strip() for name in algos.split(",") if name.strip()]
    for name in names:
        resolve(name, [])
    counts = parse_counts("--seeds", seeds)
    if not names or calls < 1:
        raise ConfigError("--algos needs at least one algorithm and --calls at least 1")
    check_env_id(env)
    torch_device = resolve_device(device)
    check_compile_device(compile, torch_device)
    results = []
    table = Table("algo", "seeds", "env/s", "act/s", "update/s", "loop/s", "seed-steps/s", "ops/update", "ops/act",
                  title=f"qsmbench bench: {env} on {torch_device.type} (per second: batched steps and calls)")
    modes = [False, True] if compile else [False]  # eager, then compiled
    for name, compiled in [(name, compiled) for name in names for compiled in modes]:
        for count in counts:
            result = measure(name, env, count, calls, torch_device, compiled)
            results.append(result)
            table.add_row(
                f"{name} (compiled)" if compiled else name, str(count), f"{result.env_sps:,.0f}", f"{result.act_per_s:,.0f}",
                f"{result.update_per_s:,.1f}",
                f"{result.loop_sps:,.1f}", f"{result.loop_sps * count:,.1f}", f"{result.update_operators:,.0f}",
                f"{result.act_operators:,.0f}",
            )
    Console().print(table)
    append_results(out, results, torch_device)
    print(f"appended {plural(len(results), 'result')} to {out}")


def parse_counts(option: str, text: str) -> list[int]:
    """'1,10' -> [1, 10]; one line naming the option otherwise."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated whole numbers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise ConfigError(f"{option} needs whole numbers of at least 1, got {text!r}")
    return counts
