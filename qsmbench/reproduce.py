"""`qsmbench reproduce GRID`: train the pending jobs of a grid, one seed-batched run after another, then plot.

Each job is trained by the ordinary trainer from its run spec, so a grid run and `qsmbench run` give the
same files. What is pending, and why a file is in the way, is decided by `qsmbench.plan`. A launcher may
take the whole grid or a part of it (`plan.select`: one job, or a shard), so that a Slurm array or several
machines share one results directory; each run holds its directory's lock, so no job is trained twice at
once, and the figures are made once every job is complete (`plot_grid`).
"""

from __future__ import annotations

from pathlib import Path

from qsmbench.config import DEFAULT_CHECKPOINT_EVERY, ConfigError
from qsmbench.grid import Grid
from qsmbench.locking import RunLocked
from qsmbench.plan import Job, format_plan, plan, seed_list
from qsmbench.plotting import PlotReport, plot_results
from qsmbench.progress import make_reporter
from qsmbench.storage import CompleteRunError
from qsmbench.trainer import Trainer, prepare


def run_grid(
    grid: Grid, out: Path, device: str = "auto", quiet: bool = False, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
) -> PlotReport:
    """Train every pending seed of the grid, then plot `out` into out/figures (see `train_jobs`)."""
    jobs = plan(grid, out)
    print(format_plan(grid, jobs, out), flush=True)
    train_jobs(jobs, device, quiet, checkpoint_every)
    return plot_results(out, grid.plot, out / "figures")


def train_jobs(jobs: list[Job], device: str, quiet: bool, checkpoint_every: int) -> None:
    """Train the pending seeds of `jobs`, one batched run after another.

    Everything is validated (conflicts, environments, device, files) before the first run starts; complete
    jobs are skipped, and so is a job that another launcher sharing the results is training or has finished
    since the plan was made (each run holds its directory's lock). A job with a checkpoint resumes from it.
    A stop signal ends the run in progress with a checkpoint (qsmbench.stopping.Stopped) and keeps every
    finished run.
    """
    conflicts = [conflict for job in jobs for conflict in job.conflicts]
    if conflicts:
        raise ConfigError(f"{len(conflicts)} files in the way (see the plan above), e.g. {conflicts[0]}")
    runs = [prepare(spec) for job in jobs for spec in job.pending_specs(device, checkpoint_every)]
    for index, prepared in enumerate(runs, 1):
        run = prepared.spec.run
        seeds = seed_list([(run.seed_start, run.seeds)])
        title = f"[{index}/{len(runs)}] {prepared.spec.algo} {run.task} seeds {seeds} ({prepared.device.type})"
        print(title, flush=True)
        if prepared.resume:
            print(f"resuming from the checkpoint at {prepared.resume.describe()}", flush=True)
        try:
            trainer = Trainer(prepared, make_reporter(title, run.seed_values, run.steps, quiet))
        except (RunLocked, CompleteRunError) as taken:  # another launcher sharing `out` has it, or has done it
            print(f"skipped: {taken}", flush=True)
            continue
        trainer.train()


def plot_grid(grid: Grid, out: Path) -> PlotReport:
    """The grid's tables and figures into out/figures, once every job is complete (ConfigError before)."""
    jobs = plan(grid, out)
    pending = [job for job in jobs if job.status != "complete"]
    if pending:
        raise ConfigError(
            f"{len(pending)} of {len(jobs)} jobs of the grid are not complete yet (e.g. {pending[0].id}: "
            f"{pending[0].status}); plot once they are, or `qsmbench plot {out}` for what there is"
        )
    return plot_results(out, grid.plot, out / "figures")
