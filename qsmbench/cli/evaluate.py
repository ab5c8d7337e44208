"""`qsmbench eval`: the saved policies of runs on fresh seeded episodes, as a table, and videos.

A policy or run that cannot be used is skipped with a warning line naming its file (qsmbench.tools.evaluate);
the rest is evaluated.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qsmbench.core.errors import ConfigError
from qsmbench.tools.evaluate import PolicyReturns, check_eval_fits, evaluate_runs, find_policies, load_runs, parse_seeds
from qsmbench.tools.toy import register_bandit
from qsmbench.tools.video import check_can_film, film_runs


def eval_command(
    path: Annotated[Path, typer.Argument(help="A run directory, or a results directory searched at any depth.")],
    episodes: Annotated[int, typer.Option(help="Fresh evaluation episodes per seed.")] = 10,
    seeds: Annotated[str | None, typer.Option(help="Seeds to evaluate, e.g. 0,2,5-7 (default: all saved).")] = None,
    eval_seed: Annotated[int, typer.Option(help="Which fresh episodes: another value, other episodes.")] = 0,
    video: Annotated[
        Path | None, typer.Option(help="Also film each seed's first --video-episodes episodes as MP4s here.")
    ] = None,
    video_episodes: Annotated[int, typer.Option(help="Episodes filmed per seed with --video.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Evaluate the saved policies of the runs under PATH on fresh seeded episodes, and print a table."""
    if min(episodes, video_episodes) < 1 or eval_seed < 0:
        raise ConfigError("--episodes and --video-episodes must be at least 1, --eval-seed non-negative")
    found = find_policies(path, parse_seeds(seeds) if seeds is not None else None)
    check_eval_fits(found, max(episodes, video_episodes if video is not None else 1))
    register_bandit()  # the toy demo's runs save policies too; its env is registered by qsmbench only
    loaded = load_runs(found, device)
    if video is not None:
        check_can_film(loaded, video)
    for reason in loaded.skipped:
        print(f"qsmbench: warning: {reason}; skipped", file=sys.stderr)
    Console().print(returns_table(evaluate_runs(loaded, episodes, eval_seed), episodes, eval_seed))
    if video is not None:
        for directory, films in film_runs(loaded, video, episodes, video_episodes, eval_seed):
            print(f"videos: {len(films)} in {directory}")


def returns_table(results: list[PolicyReturns], episodes: int, eval_seed: int) -> Table:
    """One row per seed (mean and standard deviation over its episodes), and each run's mean over seeds."""
    title = f"qsmbench eval: {episodes} episodes per seed, eval seed {eval_seed}"
    table = Table("task", "algorithm", "seed", "step", "return", "std", title=title)
    for result in results:
        header = result.policies[0].header
        for policy, returns in zip(result.policies, result.returns):
            mean, std = f"{returns.mean():.1f}", f"{returns.std():.1f}"
            table.add_row(header.task, escape(result.label), str(policy.seed), f"{policy.step:,}", mean, std)
        if len(result.policies) > 1:
            table.add_row(header.task, escape(result.label), "mean", "", f"{result.returns.mean(axis=1).mean():.1f}", "", style="bold")
    return table
