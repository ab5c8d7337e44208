"""`qsmbench reproduce GRID`: train the pending jobs of a grid, one seed-batched run after another, then plot.

Each job is trained by the ordinary trainer from its run spec, so a grid run and `qsmbench run` give the
same files. What is pending, and why a file is in the way, is decided by `qsmbench.grid.plan`. A launcher may
take the whole grid or a part of it (`plan.select`: one job, or a shard), so that a Slurm array, Ray tasks
(qsmbench.grid.ray) or several machines share one results directory; each run claims its directory
(qsmbench.runs.locking), so no job is trained twice at once, and the figures are made once every job is complete
(`plot_if_complete`, `plot_grid`).
"""

from __future__ import annotations

from pathlib import Path

from qsmbench.analysis.report import PlotReport, plot_results
from qsmbench.core.config import DEFAULT_CHECKPOINT_EVERY
from qsmbench.core.errors import CompleteRunError, ConfigError, RunLocked
from qsmbench.core.messages import plural
from qsmbench.grid.files import Grid
from qsmbench.grid.plan import Job, format_plan, plan, seed_list
from qsmbench.runs.layout import figures_dir
from qsmbench.runs.locking import claim_run_dir
from qsmbench.runs.write import check_own_paths
from qsmbench.training.loop import train
from qsmbench.training.prepare import prepare
from qsmbench.training.progress import make_reporter


def run_grid(
    grid: Grid, out: Path, device: str = "auto", quiet: bool = False, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
) -> PlotReport | None:
    """Train every pending seed of the grid (see `train_jobs`), then plot `out` into out/_figures if every job
    is complete; None, after a line saying so, while other launchers sharing `out` still train some."""
    jobs = plan(grid, out)
    print(format_plan(grid, jobs, out), flush=True)
    train_jobs(jobs, device, quiet, checkpoint_every)
    return plot_if_complete(grid, out)


def plot_if_complete(grid: Grid, out: Path) -> PlotReport | None:
    """The grid's tables and figures if every job is complete; else None, after a line saying what is missing
    (other launchers sharing `out` may still be training it: the one that finishes last plots)."""
    unfinished = incomplete(grid, out)
    if unfinished:
        print(f"not plotted yet: {describe_incomplete(unfinished, len(grid.specs))}; the launcher that finishes last plots")
        return None
    check_own_paths(out, [figures_dir(out)], [])  # its claim and figures go there: never through a link
    try:
        with claim_run_dir(figures_dir(out)):  # two launchers finishing at once must not write the same figures
            return plot_results(out, grid.plot, figures_dir(out))
    except RunLocked:
        print("not plotted here: another launcher that finished at the same time is making the figures")
        return None


def incomplete(grid: Grid, out: Path) -> list[Job]:
    """The grid's jobs that are not complete on disk now."""
    return [job for job in plan(grid, out) if job.status != "complete"]


def describe_incomplete(unfinished: list[Job], total: int) -> str:
    return f"not complete: {len(unfinished)} of the grid's {plural(total, 'job')} (e.g. {unfinished[0].id}: {unfinished[0].status})"


def train_jobs(jobs: list[Job], device: str, quiet: bool, checkpoint_every: int) -> list[str]:
    """Train the pending seeds of `jobs`, one batched run after another.

    Everything is validated (conflicts, environments, device, files) before the first run starts; complete
    jobs are skipped, and so is a job that another launcher sharing the results is training or has finished
    since the plan was made (each run claims its directory). A job with a checkpoint resumes from it.
    A stop signal ends the run in progress with a checkpoint (qsmbench.training.stopping.Stopped) and keeps every
    finished run. Returns why each skipped run was skipped.
    """
    check_no_conflicts(jobs)
    runs, skipped = [], []
    for spec in (spec for job in jobs for spec in job.pending_specs(device, checkpoint_every)):
        try:
            runs.append(prepare(spec))
        except CompleteRunError as done:  # another launcher sharing `out` finished it since the plan was made
            print(f"skipped: {done}", flush=True)
            skipped.append(str(done))
    for index, prepared in enumerate(runs, 1):
        protocol = prepared.spec.protocol
        seeds = seed_list([(protocol.seed_start, protocol.seeds)])
        title = f"[{index}/{len(runs)}] {prepared.spec.method} {protocol.task} seeds {seeds} ({prepared.device.type})"
        print(title, flush=True)
        if prepared.resume:
            print(f"resuming from the checkpoint at {prepared.resume.describe()}", flush=True)
        try:
            train(prepared, make_reporter(title, protocol.seed_values, protocol.steps, quiet), on_takeover=say)
        except (RunLocked, CompleteRunError) as taken:  # another launcher sharing `out` has it, or has done it
            print(f"skipped: {taken}", flush=True)
            skipped.append(str(taken))
    return skipped


def say(line: str) -> None:
    print(line, flush=True)


def check_no_conflicts(jobs: list[Job]) -> None:
    """ConfigError naming the first file in the way of any job, before anything trains."""
    conflicts = [conflict for job in jobs for conflict in job.conflicts]
    if conflicts:
        raise ConfigError(f"{plural(len(conflicts), 'file')} in the way (see the plan above), e.g. {conflicts[0]}")


def plot_grid(grid: Grid, out: Path) -> PlotReport:
    """The grid's tables and figures into out/_figures, once every job is complete (ConfigError before)."""
    unfinished = incomplete(grid, out)
    if unfinished:
        raise ConfigError(
            f"{describe_incomplete(unfinished, len(grid.specs))}; plot once they are, or `qsmbench plot {out}` for "
            "what there is"
        )
    return plot_results(out, grid.plot, figures_dir(out))
