"""`qsmbench reproduce GRID`: a grid of runs, whole, by job or shard, on Ray, or as a plan."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qsmbench.analysis.report import PlotReport
from qsmbench.cli.exits import EXIT_FAILED, interrupted
from qsmbench.core.config import DEFAULT_CHECKPOINT_EVERY
from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import plural
from qsmbench.grid.files import load_grid
from qsmbench.grid.local import plot_grid, plot_if_complete, run_grid, train_jobs
from qsmbench.grid.plan import format_job_list, format_plan, plan, select
from qsmbench.grid.ray import run_on_ray


def reproduce(
    grid: Annotated[str, typer.Argument(help="A shipped grid (paper) or the path of a grid .toml file.")],
    scale: Annotated[str, typer.Option(help="Scale of the grid: paper (as written) or smoke (tiny, for tests).")] = "paper",
    out: Annotated[Path | None, typer.Option(help="Results directory (default: the grid's, e.g. results/paper).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and a time estimate; train nothing.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    checkpoint_every: Annotated[
        int, typer.Option(help="Steps between checkpoints of each run (one is also written on a stop signal).")
    ] = DEFAULT_CHECKPOINT_EVERY,
    list_jobs: Annotated[
        bool,
        typer.Option("--list-jobs", help="Print each job's index, id and status (of --shard's jobs with it); train nothing."),
    ] = False,
    job: Annotated[
        str | None, typer.Option(help="Train this job only: its index or id from --list-jobs (e.g. $SLURM_ARRAY_TASK_ID).")
    ] = None,
    shard: Annotated[str | None, typer.Option(help="Train the shard I/N of the jobs: every N-th, from the I-th.")] = None,
    plot_only: Annotated[
        bool, typer.Option("--plot-only", help="Make the grid's tables and figures; every job must be complete.")
    ] = False,
    workers: Annotated[
        int, typer.Option(help="With --dry-run: also estimate the time on this many machines (GPUs) at once.")
    ] = 1,
    ray: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Train the jobs as Ray tasks: 'local' starts Ray on this machine, 'auto' or host:port joins a cluster.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Plain log lines instead of the live display.")] = False,
) -> None:
    """Train every job (task x algorithm or swept variant, all seeds batched) of GRID not yet complete, then plot; resumable.

    With --ray, each job is a Ray task (retried and resumed if its worker is lost).

    With --job or --shard, train that part only, and make the figures with --plot-only at the end.

    That is how a Slurm array or several machines share one results directory (docs/cluster.md)."""
    loaded = load_grid(grid, scale)
    results = out or loaded.out
    if plot_only and (dry_run or list_jobs or job is not None or shard is not None or ray is not None):
        raise ConfigError("--plot-only trains nothing: give it without --dry-run, --list-jobs, --job, --shard or --ray")
    if ray is not None and (job is not None or shard is not None):
        raise ConfigError("--ray trains every pending job of the grid: give it without --job or --shard")
    if plot_only:
        report_plot(plot_grid(loaded, results))
        return
    jobs = plan(loaded, results)
    selected = select(jobs, job, shard)
    if list_jobs:
        print(format_job_list(jobs, selected))
        return
    if dry_run:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        print(format_plan(loaded, jobs, results, workers))
        return
    try:
        if ray is not None:
            failed = run_on_ray(loaded, grid, results, ray, device, checkpoint_every)
            for line in failed:
                print(f"qsmbench: job failed: {line}", file=sys.stderr)
            if failed:
                raise typer.Exit(EXIT_FAILED)
            report_plot(plot_if_complete(loaded, results))
            return
        if job is None and shard is None:
            report_plot(run_grid(loaded, results, device, quiet, checkpoint_every))
            return
        print(format_job_list(jobs, selected), flush=True)
        train_jobs(selected, device, quiet, checkpoint_every)
    except KeyboardInterrupt as interrupt:
        raise interrupted(interrupt, "finished runs are kept: run the same command again to go on") from None
    same = f"{grid}{f' --scale {scale}' if scale != 'paper' else ''}{f' --out {out}' if out else ''}"
    print(f"done: {len(selected)} of {plural(len(jobs), 'job')}; once all are complete: qsmbench reproduce {same} --plot-only")


def report_plot(report: PlotReport | None) -> None:
    """The plot's warnings on stderr, and where its table and figures are (nothing when there was no plot)."""
    if report is None:
        return
    for warning in report.warnings:
        print(f"qsmbench: warning: {warning}", file=sys.stderr)
    print(f"table: {report.out_dir / 'summary.md'}; figures: {report.out_dir}")
