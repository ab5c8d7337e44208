"""`qsmbench reproduce GRID --ray ADDRESS`: the grid's pending jobs as Ray tasks, placed by Ray's scheduler.

Each job is one Ray task doing in its worker what `reproduce GRID --job ID` does in a shell: plan the job from
the results directory, claim its run directory, resume from its checkpoint if there is one, train. So Ray
tasks, Slurm array tasks and a person at a terminal can share one results directory (qsmbench.runs.locking keeps
them from training a job twice at once), and a task that Ray retries after its worker died resumes from the
job's last checkpoint.

Each task asks for the grid's `JobResources`: `cpus` (also its torch thread count) and a fraction of a GPU,
so that several seed-batched jobs, each driven by one Python thread, share one GPU. The driver prints a line
when a job starts, ends, fails, is retried or waits for another launcher's claim, and every
`PROGRESS_EVERY_S` the jobs complete / running / pending, each running job's step (from its claim's
heartbeat) and an ETA. Ctrl-C (or SIGTERM) cancels the tasks: a running one gets SIGINT in its worker, writes
a checkpoint and stops (qsmbench.training.stopping), so every job is left resumable.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qsmbench.core.errors import ConfigError
from qsmbench.core.messages import format_duration
from qsmbench.grid.files import Grid, load_grid
from qsmbench.grid.local import check_no_conflicts, train_jobs
from qsmbench.grid.plan import Job, format_plan, plan, select
from qsmbench.runs.locking import HEARTBEAT_EVERY_S, HOLDER_MAX_CHARS, HOLDER_VARIABLE, read_claim

RETRIES = 3  # attempts after a worker dies (killed, out of memory, node lost); each resumes from the checkpoint
POLL_S = 1.0  # seconds between the driver's looks at its tasks and their claims
PROGRESS_EVERY_S = 30.0  # seconds between progress lines
RECHECK_S = 10.0  # seconds before a job held by another launcher is tried again (a cheap task: plan and claim)
CANCEL_WAIT_S = 600.0  # how long Ctrl-C waits for the running jobs' checkpoints


@dataclass(frozen=True)
class JobCall:
    """Everything a worker needs to train one job, as plain values (the worker reads the grid itself)."""

    grid: str  # a shipped grid's name or a grid file's absolute path
    scale: str
    out: str  # absolute: workers may run elsewhere, on the same shared filesystem
    job_id: str
    device: str
    checkpoint_every: int
    threads: int
    holder: str  # names the claim's holder, e.g. "ray task Hopper-v4/qsm of host:pid"


def train_job(call: JobCall) -> list[str]:
    """The body of a job's Ray task: `reproduce --job` in this worker. Returns why its runs were skipped (held by
    another launcher), empty when every run was trained."""
    torch.set_num_threads(call.threads)
    os.environ[HOLDER_VARIABLE] = call.holder
    grid = load_grid(call.grid, call.scale)
    return train_jobs(select(plan(grid, Path(call.out)), call.job_id, None), call.device, True, call.checkpoint_every)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'qsmbench[ray]' (the version in constraints.txt)") from None
    return ray


def run_on_ray(
    grid: Grid, grid_source: str, out: Path, address: str, device: str, checkpoint_every: int
) -> list[str]:
    """Train the grid's pending jobs as Ray tasks on the cluster at `address` ("local": start one on this
    machine); returns one line per job that failed. KeyboardInterrupt after cancelling every task."""
    ray = import_ray()
    jobs = plan(grid, out)
    print(format_plan(grid, jobs, out), flush=True)
    check_no_conflicts(jobs)
    pending = [job for job in jobs if job.status != "complete"]
    if not pending:
        return []
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        print(f"ray: {address}, {describe_resources(ray.cluster_resources())}", flush=True)
        driver = Driver(ray, grid, pending, out, grid_source, device, checkpoint_every, has_gpus)
        return driver.run()
    finally:
        ray.shutdown()


def describe_resources(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"


@dataclass
class Tracked:
    """The driver's view of one job: its task, and what the claim its task took said first and last."""

    job: Job
    holder: str  # the claim's holder name this driver's task uses
    ref: Any = None
    retry_at: float | None = None  # when a job held by another launcher is tried again
    pid: int | None = None  # the worker process of the task's current attempt
    first: tuple[float, int] | None = None  # (heartbeat time, step) when this attempt was first seen
    last: tuple[float, int] | None = None  # (heartbeat time, step) at its latest heartbeat

    @property
    def step(self) -> int:
        return self.last[1] if self.last else 0


class Driver:
    """Submits one task per job and follows them to the end; see the module docstring."""

    def __init__(
        self, ray: Any, grid: Grid, jobs: list[Job], out: Path, grid_source: str, device: str,
        checkpoint_every: int, has_gpus: bool,
    ):
        self.ray, self.grid, self.out, self.has_gpus = ray, grid, out, has_gpus
        self.grid_source = grid_source if grid_source == grid.name else str(Path(grid_source).resolve())
        self.device, self.checkpoint_every = device, checkpoint_every
        holder = f"ray driver {socket.gethostname()}:{os.getpid()}"
        self.tracked = {job.id: Tracked(job, f"{job.id} of {holder}"[:HOLDER_MAX_CHARS]) for job in jobs}  # as the record cuts it
        self.total = len(jobs)
        self.complete: list[str] = []
        self.failed: list[str] = []
        self.last_progress = time.monotonic()

    def run(self) -> list[str]:
        for tracked in self.tracked.values():
            self.submit(tracked)
        try:
            while self.tracked:
                self.poll()
        except KeyboardInterrupt:
            self.cancel()
            raise
        return self.failed

    def submit(self, tracked: Tracked) -> None:
        resources = self.grid.resources_of(tracked.job.spec)
        gpus = resources.gpus if self.has_gpus else 0
        call = JobCall(
            self.grid_source, self.grid.scale, str(self.out.resolve()), tracked.job.id, self.device,
            self.checkpoint_every, resources.cpus, tracked.holder,
        )
        task = self.ray.remote(train_job).options(num_cpus=resources.cpus, num_gpus=gpus, max_retries=RETRIES)
        tracked.ref, tracked.retry_at = task.remote(call), None

    def poll(self) -> None:
        refs = [tracked.ref for tracked in self.tracked.values() if tracked.retry_at is None]
        ready = []
        if refs:
            ready = self.ray.wait(refs, num_returns=len(refs), timeout=POLL_S)[0]
        else:
            time.sleep(POLL_S)
        for job_id, tracked in list(self.tracked.items()):
            if tracked.retry_at is not None:
                if time.monotonic() >= tracked.retry_at:
                    self.submit(tracked)
            elif tracked.ref in ready:
                self.finished(job_id, tracked)
            else:
                self.follow(job_id, tracked)
        if time.monotonic() - self.last_progress >= PROGRESS_EVERY_S:
            print(self.progress_line(), flush=True)
            self.last_progress = time.monotonic()

    def follow(self, job_id: str, tracked: Tracked) -> None:
        """Notice from the job's claim that its task started, or that Ray retries it in a new worker."""
        record = read_claim(tracked.job.run_dir(self.out))
        if record is None or record.released or record.holder != tracked.holder:
            return  # not yet taken by this driver's task
        if record.pid == tracked.pid:
            tracked.last = (record.heartbeat, record.step)
            return
        if tracked.pid is None:
            print(f"started {job_id} (host {record.host}, pid {record.pid})", flush=True)
        else:
            print(f"{job_id}: its worker (pid {tracked.pid}) was lost; Ray retried it as pid {record.pid}, "
                  "resuming from its checkpoint", flush=True)
        tracked.pid = record.pid
        tracked.first = tracked.last = (record.heartbeat, record.step)

    def finished(self, job_id: str, tracked: Tracked) -> None:
        try:
            skipped = self.ray.get(tracked.ref)
        except self.ray.exceptions.RayError as error:
            cause = error.cause if isinstance(error, self.ray.exceptions.RayTaskError) else error
            last_line = (str(cause).strip().splitlines() or [""])[-1]
            self.failed.append(f"{job_id}: {type(cause).__name__}: {last_line}")
            print(f"failed {self.failed[-1]}", flush=True)
            del self.tracked[job_id]
            return
        if skipped:
            tracked.retry_at = time.monotonic() + RECHECK_S
            print(f"waiting for {job_id}: {skipped[0]}; trying again in {format_duration(RECHECK_S)}", flush=True)
            return
        self.complete.append(job_id)
        print(f"complete {job_id} ({len(self.complete)} of {self.total})", flush=True)
        del self.tracked[job_id]

    def progress_line(self) -> str:
        running = {job_id: tracked for job_id, tracked in self.tracked.items() if tracked.pid is not None}
        steps = ", ".join(f"{job_id} {tracked.step:,}/{tracked.job.spec.protocol.steps:,}" for job_id, tracked in running.items())
        return (
            f"jobs: {len(self.complete)} complete, {len(running)} running, {len(self.tracked) - len(running)} pending"
            f"{', ' + str(len(self.failed)) + ' failed' if self.failed else ''}"
            f"{' | ' + steps if steps else ''} | ETA {self.eta(running)}"
        )

    def eta(self, running: dict[str, Tracked]) -> str:
        """Steps left over the observed steps per second of the running jobs, spread over as many slots as run."""
        rates = [
            (t.last[1] - t.first[1]) / (t.last[0] - t.first[0])
            for t in running.values()
            if t.first and t.last and t.last[0] > t.first[0] and t.last[1] > t.first[1]
        ]
        if not rates:
            return f"not yet known (heartbeats every {format_duration(HEARTBEAT_EVERY_S)})"
        rate = sum(rates) / len(rates)
        left = sum(t.job.spec.protocol.steps - t.step for t in self.tracked.values())
        return format_duration(left / rate / max(len(running), 1))

    def cancel(self) -> None:
        """Cancel every task; the running ones checkpoint and stop. Waits up to CANCEL_WAIT_S for them."""
        print("cancelling: each running job writes a checkpoint and stops; run the same command to go on", flush=True)
        refs = [tracked.ref for tracked in self.tracked.values() if tracked.retry_at is None]
        for ref in refs:
            self.ray.cancel(ref)
        self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
