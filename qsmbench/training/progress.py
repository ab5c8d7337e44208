"""Progress while training: a live rich display on a terminal, plain log lines otherwise.

Returns are printed without thousands separators, the per-seed list of a plain line comma-separated:
`per_seed=[-1325.8, -1298.1, diverged]`, never `[-1,325.8 -1,298.1]`, which reads as four numbers.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from qsmbench.core.messages import format_duration


class Reporter(Protocol):
    def advance(self, step: int) -> None:
        """Called after every env step with the number of steps done per seed."""

    def evaluated(self, step: int, eval_returns: np.ndarray) -> None:
        """Called after every evaluation with each seed's mean return `[seeds]`, NaN for a diverged seed."""

    def close(self) -> None: ...


class StepsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0.0:,.0f} steps/s", style="progress.data.speed")


class LiveReporter:
    """A progress bar with steps, SPS and ETA, above each seed's latest evaluation return."""

    REFRESH_EVERY = 25  # env steps between progress updates; rich redraws on its own clock

    def __init__(self, title: str, seeds: list[int], total_steps: int):
        self.seeds = seeds
        self.latest: dict[int, tuple[int, float]] = {}
        self.progress = Progress(
            TextColumn(f"[bold]{title}"),
            BarColumn(),
            MofNCompleteColumn(),
            StepsPerSecond(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.task = self.progress.add_task("train", total=total_steps)
        self.live = Live(Group(self.progress, self), refresh_per_second=4, transient=False)
        self.live.start()

    def __rich__(self) -> Table:
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        table.add_column("seed", justify="right")
        table.add_column("eval step", justify="right")
        table.add_column("eval return", justify="right")
        for seed in self.seeds:
            step, value = self.latest.get(seed, (None, None))
            table.add_row(str(seed), "-" if step is None else f"{step:,}", "-" if value is None else format_return(value))
        return table

    def advance(self, step: int) -> None:
        if step % self.REFRESH_EVERY == 0:
            self.progress.update(self.task, completed=step)

    def evaluated(self, step: int, eval_returns: np.ndarray) -> None:
        self.progress.update(self.task, completed=step)
        self.latest = {seed: (step, float(value)) for seed, value in zip(self.seeds, eval_returns)}

    def close(self) -> None:
        self.live.stop()


class PlainReporter:
    """One log line per evaluation, for batch jobs and log files: steps/s and ETA as the live display has them.

    The rate is that of the whole loop (evaluations included) since the previous line, or since the step a
    resumed run went on from; the ETA assumes it holds for the remaining steps.
    """

    def __init__(self, title: str, seeds: list[int], total_steps: int):
        self.title, self.total_steps = title, total_steps
        self.started = time.perf_counter()
        self.since: tuple[int, float] | None = None  # (step, time) the rate is measured from

    def advance(self, step: int) -> None:
        if self.since is None:  # a resumed run's first call: its checkpoint's step
            self.since = (step, time.perf_counter())

    def evaluated(self, step: int, eval_returns: np.ndarray) -> None:
        now = time.perf_counter()
        per_seed = ", ".join(format_return(value) for value in eval_returns)
        live = eval_returns[~np.isnan(eval_returns)]
        mean = f"{live.mean():.1f}" if live.size else "-"
        print(
            f"{self.title} step {step}/{self.total_steps} t={now - self.started:.0f}s {self.rate(step, now)} "
            f"eval_return mean={mean} per_seed=[{per_seed}]",
            flush=True,
        )
        self.since = (step, now)

    def rate(self, step: int, now: float) -> str:
        """'1,234 steps/s ETA 5 min' since `self.since`, or '- steps/s ETA -' before any step was timed."""
        if self.since is None or step <= self.since[0] or now <= self.since[1]:
            return "- steps/s ETA -"
        steps_per_s = (step - self.since[0]) / (now - self.since[1])
        return f"{steps_per_s:,.0f} steps/s ETA {format_duration((self.total_steps - step) / steps_per_s)}"

    def close(self) -> None:
        pass


def format_return(value: float) -> str:
    """'-1325.8' or 'diverged': no thousands separator, whose comma would split one return in two in a list."""
    return "diverged" if np.isnan(value) else f"{value:.1f}"


def make_reporter(title: str, seeds: list[int], total_steps: int, quiet: bool) -> Reporter:
    """The live display when stdout is a terminal and `--quiet` is off, else plain lines."""
    if quiet or not Console(file=sys.stdout).is_terminal:
        return PlainReporter(title, seeds, total_steps)
    return LiveReporter(title, seeds, total_steps)
