"""The plan of a grid: what each job (task x algorithm, all seeds) has on disk, and how long the rest takes.

Resuming is per seed file. A seed is done when its file is complete and was trained with the job's settings
(steps, evaluation grid, hyperparameters). A job with every seed done is skipped; otherwise only its missing
seeds are trained, one batched run per contiguous block of seed values (seed_start), so a complete file is
never replaced. Seeds share the random streams of their batch, so a seed retrained in a smaller batch is a
statistically, not bitwise, equal run (docs/training.md, "What a run does"). A file that is complete but was trained with other
settings, or is not a readable run, is a conflict of its job, named with why (so is an unreadable checkpoint):
a launcher whose jobs include it trains nothing until it is moved away or another --out is given, while the plan,
the job list and launchers of other jobs (--job, --shard) go on as usual. A block of seeds with a checkpoint (an
interrupted run) is kept as one block and resumes from it; its diverged seeds are part of that run, not done on
their own.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qsmbench.core.config import BUDGET, EVALUATION, Protocol, did_you_mean
from qsmbench.core.errors import CheckpointError, ConfigError, RunFileError
from qsmbench.core.messages import format_duration, plural
from qsmbench.grid.files import Grid
from qsmbench.runs.checkpoint import checkpoint_info
from qsmbench.runs.format import FINISHED, RunHeader
from qsmbench.runs.layout import checkpoint_path, checkpoint_ranges, path_safe, run_dir, run_files, run_path, seed_files
from qsmbench.runs.locking import read_claim
from qsmbench.runs.read import read_run, read_status
from qsmbench.runs.spec import RunSpec


@dataclass(frozen=True)
class Job:
    """One (task, algorithm) pair of a grid: its spec (all seeds, results under `spec.execution.out`) and what is on disk."""

    spec: RunSpec
    done: tuple[int, ...] = ()  # seeds whose file is complete and was trained with these settings
    conflicts: tuple[str, ...] = ()  # files in the way, each with the reason
    resumable: tuple[tuple[int, int, int], ...] = ()  # (seed_start, seeds, step) of each block with a checkpoint
    seconds_per_step: float | None = None  # measured wall time per run step, evaluations included
    timing_basis: str | None = None  # what seconds_per_step was measured on

    @property
    def task(self) -> str:
        return self.spec.protocol.task

    @property
    def id(self) -> str:
        """`<task>/<algo>`, the job's run directory under the results directory: stable across launchers."""
        return self.run_dir(Path()).as_posix()

    def run_dir(self, out: Path) -> Path:
        """The job's run directory under the results directory `out`."""
        return run_dir(out, self.task, self.algo, self.spec.execution.variant)

    @property
    def algo(self) -> str:
        return self.spec.algo

    @property
    def status(self) -> str:
        if self.conflicts:
            return "conflict"
        if not self.pending_count:
            return "complete"
        return "partial" if self.done else "to run"

    @property
    def pending_count(self) -> int:
        return self.spec.protocol.seeds - len(self.done)

    def blocks(self) -> list[tuple[int, int]]:
        """The pending seeds as (seed_start, seeds) runs of contiguous seed values.

        Computed from the done seeds, never by listing every seed: a grid may ask for millions.
        """
        blocks, cursor = [], self.spec.protocol.seed_start
        for seed in sorted(self.done):
            if seed > cursor:
                blocks.append((cursor, seed - cursor))
            cursor = seed + 1
        end = self.spec.protocol.seed_start + self.spec.protocol.seeds
        blocks = [*blocks, (cursor, end - cursor)] if cursor < end else blocks
        return [piece for block in blocks for piece in split_at_checkpoints(block, self.resumable)]

    @property
    def env_steps_to_run(self) -> int:
        return self.spec.protocol.steps * self.pending_count

    def block_seconds(self) -> list[float] | None:
        """Each pending block's time, one batched run of the steps it has left (a resumed one from its
        checkpoint's step); None without a measurement."""
        if self.seconds_per_step is None:
            return None
        resumed = {(first, count): step for first, count, step in self.resumable}
        return [(self.spec.protocol.steps - resumed.get(block, 0)) * self.seconds_per_step for block in self.blocks()]

    @property
    def seconds_to_run(self) -> float | None:
        blocks = self.block_seconds()
        return None if blocks is None else sum(blocks)

    def pending_specs(self, device: str, checkpoint_every: int) -> list[RunSpec]:
        """One spec per block of pending seeds, on `device`."""
        return [
            self.spec.with_settings(seed_start=start, seeds=count, device=device, checkpoint_every=checkpoint_every)
            for start, count in self.blocks()
        ]


def select(jobs: list[Job], job: str | None = None, shard: str | None = None) -> list[Job]:
    """The jobs one launcher takes: all, one (`job`: its index in the grid's order or its id, as
    `--list-jobs` prints them; a Slurm array passes $SLURM_ARRAY_TASK_ID), or the shard `I/N`. Shards deal
    each round of N consecutive jobs out one per shard, rotated by one each round: the N shards split the
    grid exactly, differ by at most one job, and each mixes algorithms (plain every-N-th would give one
    shard every Diffusion-QL job of a task-major grid)."""
    if job is not None and shard is not None:
        raise ConfigError("give --job or --shard, not both")
    if job is not None:
        ids = [candidate.id for candidate in jobs]
        if job.isdigit() and int(job) < len(jobs):
            return [jobs[int(job)]]
        if job in ids:
            return [jobs[ids.index(job)]]
        raise ConfigError(
            f"no job {job!r} in this grid{did_you_mean(job, ids)}: give an index 0-{len(jobs) - 1} or an id from --list-jobs"
        )
    if shard is not None:
        index, count = parse_shard(shard)
        return [candidate for k, candidate in enumerate(jobs) if (k + k // count) % count == index]
    return jobs


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` -> (I, N) with 0 <= I < N."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ConfigError(f"--shard takes I/N with 0 <= I < N, e.g. 0/4, got {text!r}")
    return int(index), int(count)


def format_job_list(jobs: list[Job], selected: list[Job]) -> str:
    """One line per selected job: its index in the grid, its id, its status."""
    width = max((len(job.id) for job in jobs), default=0)  # over the whole grid: one job lists as in the full list
    return "\n".join(f"{jobs.index(job):>4}  {job.id:<{width}}  {job_status(job)}" for job in selected)


def split_at_checkpoints(block: tuple[int, int], resumable: tuple[tuple[int, int, int], ...]) -> list[tuple[int, int]]:
    """`block` cut so that each checkpoint's seed range within it is a block of its own, as it was trained."""
    start, end = block[0], block[0] + block[1]
    edges = (edge for first, count, _ in resumable for edge in (first, first + count) if start < edge < end)
    cuts = sorted({start, end, *edges})
    return [(low, high - low) for low, high in itertools.pairwise(cuts)]


def plan(grid: Grid, out: Path) -> list[Job]:
    """Every job of the grid with results under `out`, task-major, with what is done and a time measurement."""
    timings = measured_seconds_per_step(out)
    jobs = []
    for grid_spec in grid.specs:
        spec = grid_spec.with_settings(out=str(out))
        jobs.append(Job(spec, **on_disk(spec), **timing_for(spec, timings)))
    return jobs


def on_disk(spec: RunSpec) -> dict[str, tuple[Any, ...]]:
    """The job's `done` seeds, `conflicts` and `resumable` blocks, from the files that exist (a listing, not a
    stat per seed)."""
    expected_config = jsonable(dataclasses.asdict(spec.config))
    done = []
    directory = run_dir(spec.execution.out, spec.protocol.task, spec.algo, spec.execution.variant)
    statuses = {
        seed: read_status(run_path(spec.execution.out, spec.protocol.task, spec.algo, seed, spec.execution.variant))
        for seed in seed_files(directory, spec.protocol.seed_start, spec.protocol.seeds)
    }
    resumable, conflicts = resumable_blocks(spec, directory, statuses)  # an unreadable checkpoint is a conflict
    resuming = {seed for start, count, _ in resumable for seed in range(start, start + count) if seed in statuses}
    for seed, status in statuses.items():
        path = run_path(spec.execution.out, spec.protocol.task, spec.algo, seed, spec.execution.variant)
        if status == "unreadable" or (status in FINISHED and seed not in resuming):  # a diverged seed is a result too
            conflict = seed_file_conflict(path, status, spec.protocol, expected_config)
            if conflict:
                conflicts.append(conflict)
            else:
                done.append(seed)
    return {"done": tuple(done), "conflicts": tuple(conflicts), "resumable": tuple(resumable)}


def seed_file_conflict(path: Path, status: str, protocol: Protocol, expected_config: Mapping[str, Any]) -> str | None:
    """Why the unreadable or finished seed file at `path` is in the job's way, naming it; None when its seed is done.
    A bad file is a conflict of its own job, never an error of the whole plan: the other jobs of a grid (of a
    Slurm array) go on."""
    try:
        header = read_run(path).metadata.header
    except RunFileError as error:
        return f"{path}: not a readable qsmbench run file ({error})"
    if status == "unreadable":
        return f"{path}: not a readable qsmbench run file"
    why = mismatch(header, protocol, expected_config)
    return f"{path}: {status}, but trained with {why}" if why else None


def resumable_blocks(
    spec: RunSpec, run_dir: Path, statuses: Mapping[int, str | None]
) -> tuple[list[tuple[int, int, int]], list[str]]:
    """The (seed_start, seeds, step) of the checkpoints of unfinished runs within the job's seeds, and the
    checkpoints that cannot be read. A checkpoint whose seeds' files all say finished is left over from a run
    that finished (killed before it deleted it): it is ignored, as `run` ignores it. One beside some complete
    files is a run whose final writes failed, which `run` finishes from it."""
    first, end = spec.protocol.seed_start, spec.protocol.seed_start + spec.protocol.seeds
    resumable, unreadable = [], []
    for start, count in checkpoint_ranges(run_dir):
        finished = all(statuses.get(seed) in FINISHED for seed in range(start, start + count))
        if start < first or start + count > end or finished:
            continue
        try:
            resumable.append((start, count, checkpoint_info(checkpoint_path(run_dir, start, count)).step))
        except CheckpointError as error:
            unreadable.append(str(error))
    return resumable, unreadable


def jsonable(value: Any) -> Any:
    """`value` as it reads back from a run file's JSON metadata (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def mismatch(header: RunHeader, protocol: Protocol, expected_config: Mapping[str, Any]) -> str | None:
    """Why a complete file does not count for a job with `protocol` and `expected_config` (as JSON reads it
    back), or None: its BUDGET and hyperparameters must be the job's. Hyperparameters missing on either side
    are not compared, so adding one to an algorithm does not invalidate the runs already made."""
    stored_run, stored_config = header.run_config, header.algo_config
    differences = [
        (key, stored_run.get(key), getattr(protocol, key))
        for key in BUDGET
        if stored_run.get(key) != getattr(protocol, key)
    ]
    differences += [
        (key, stored_config[key], value)
        for key, value in expected_config.items()
        if key in stored_config and stored_config[key] != value
    ]
    if not differences:
        return None
    key, stored, wanted = differences[0]
    return f"{key}={stored} (the grid asks for {wanted})"


Timings = Mapping[tuple[str, str, str], float]  # (task directory, algorithm, settings_key) -> seconds per step


def settings_key(algo_config: Any, run_config: Mapping[str, Any]) -> str:
    """What a run's cost per step depends on besides its task: hyperparameters, evaluation load (EVALUATION),
    batch size (seeds), updates per step (update_every) and simulator steps per step (action_repeat; each 1 in
    files older than it)."""
    load = [run_config.get(key) for key in (*EVALUATION, "seeds")] + [run_config.get("update_every", 1)]
    load += [run_config.get("action_repeat", 1)]
    return json.dumps([algo_config, *load], sort_keys=True, default=str)


def spec_settings_key(spec: RunSpec) -> str:
    return settings_key(jsonable(dataclasses.asdict(spec.config)), dataclasses.asdict(spec.protocol))


def measured_seconds_per_step(out: Path) -> Timings:
    """Wall time per run step, evaluations included, of the run files under `out`: the median per task
    directory, algorithm and settings (so a smoke run never times a paper run)."""
    rates: dict[tuple[str, str, str], list[float]] = {}
    for path in run_files(out):
        try:
            run_file = read_run(path)
        except RunFileError:
            continue
        header, curve = run_file.metadata.header, run_file.curve
        key = settings_key(header.algo_config, header.run_config)
        if len(curve) and curve["step"].iloc[-1] > 0 and "wall_time_s" in curve.columns:
            rate = float(curve["wall_time_s"].iloc[-1] / curve["step"].iloc[-1])
            rates.setdefault((path_safe(header.task), header.algo, key), []).append(rate)
    return {key: float(np.median(values)) for key, values in rates.items()}


def timing_for(spec: RunSpec, timings: Timings) -> dict[str, Any]:
    """The closest measurement with the job's settings: on its own task, else the median over other tasks; for a
    variant nothing has measured yet (a sweep's), the median of its algorithm's other variants on its task with
    the same protocol, named as the rough guide it is."""
    key = spec_settings_key(spec)
    own = timings.get((path_safe(spec.protocol.task), spec.algo, key))
    if own is not None:
        return {"seconds_per_step": own, "timing_basis": "the same task, algorithm and settings"}
    others = [rate for (_, algo, other_key), rate in timings.items() if algo == spec.algo and other_key == key]
    if others:
        basis = "the same algorithm and settings on other tasks"
        return {"seconds_per_step": float(np.median(others)), "timing_basis": basis}
    load = json.loads(key)[1:]  # a sweep's new variant: its algorithm's other variants on the task, same protocol
    variants = [
        rate
        for (task, algo, other_key), rate in timings.items()
        if (task, algo) == (path_safe(spec.protocol.task), spec.algo) and json.loads(other_key)[1:] == load
    ]
    if variants:
        basis = "other hyperparameters of the same algorithm and task (a rough guide: T and network widths change the cost)"
        return {"seconds_per_step": float(np.median(variants)), "timing_basis": basis}
    return {}


def format_plan(grid: Grid, jobs: list[Job], out: Path, workers: int = 1) -> str:
    """The dry-run text: one line per job, the env steps left, and a time estimate with what it rests on,
    on one machine and, for `workers` > 1, on that many at once."""
    protocol = grid.protocol
    swept = "".join(f", {algo} in {plural(count, 'variant')}" for algo, count in grid.variant_counts.items())
    width = max(len("algo"), *(len(job.spec.method) for job in jobs))
    lines = [
        f"{grid.name}: {grid.description}" if grid.description else f"grid {grid.name}",
        f"scale {grid.scale}: {plural(len(grid.tasks), 'task')} x {plural(len(grid.algorithms), 'algorithm')}{swept} = "
        f"{plural(len(jobs), 'job')}, {plural(protocol.seeds, 'seed')} x {protocol.steps:,} steps each; results in {out}",
        f"{'task':<32} {'algo':<{width}} {'seeds':<8} {'steps':>10}  status",
    ]
    for job in jobs:
        seeds = seed_list([(job.spec.protocol.seed_start, job.spec.protocol.seeds)])
        steps, status = f"{job.spec.protocol.steps:>10,}", f"{job_status(job)}{claim_note(job, out)}"
        lines.append(f"{job.task:<32} {job.spec.method:<{width}} {seeds:<8} {steps}  {status}")
    pending = [job for job in jobs if job.pending_count]
    lines.append(
        f"to run: {len(pending)} of {plural(len(jobs), 'job')}, {sum(job.env_steps_to_run for job in jobs):,} env steps "
        f"({plural(sum(job.status == 'complete' for job in jobs), 'job')} complete)"
    )
    lines.append(estimate_line(pending, out, workers))
    conflicts = [conflict for job in jobs for conflict in job.conflicts]
    if conflicts:
        lines.append("conflicts: nothing will train until these files are moved away or another --out is given:")
        lines += [f"  {conflict}" for conflict in conflicts]
    return "\n".join(lines)


def job_status(job: Job) -> str:
    resumes = "".join(f"; seeds {seed_list([(first, count)])} resume at step {step:,}" for first, count, step in job.resumable)
    if job.status == "partial":
        done = f"{len(job.done)} of {plural(job.spec.protocol.seeds, 'seed')} complete"
        return f"partial ({done}; to run: {seed_list(job.blocks())}{resumes})"
    return job.status + (f" ({resumes[2:]})" if resumes else "")


def claim_note(job: Job, out: Path) -> str:
    """'; claimed by <holder> (host, pid), step s of n, heartbeat t ago' for a job that is not complete and whose
    run directory holds a claim not released (see qsmbench.runs.locking for when a claim no longer counts)."""
    record = read_claim(job.run_dir(out)) if job.status != "complete" else None
    return f"; {record.state(time.time())}" if record is not None and not record.released else ""


def seed_list(blocks: list[tuple[int, int]]) -> str:
    """[(0, 3), (5, 1)] ((first seed, count) of each block) -> "0-2,5"."""
    return ",".join(str(start) if count == 1 else f"{start}-{start + count - 1}" for start, count in blocks)


def estimate_line(pending: list[Job], out: Path, workers: int = 1) -> str:
    if not pending:
        return "estimate: nothing to run"
    timed = [job for job in pending if job.seconds_to_run is not None]
    if not timed:
        return f"estimate: no measurement yet (no run under {out} with these algorithms and settings to time)"
    bases = Counter(job.timing_basis for job in timed)
    untimed = len(pending) - len(timed)
    seconds = sum(job.seconds_to_run or 0.0 for job in timed)
    at_once = f"; on {workers} such machines at once, longest runs first: {parallel_estimate(timed, workers)}"
    return (
        f"estimate: {format_duration(seconds)} on a machine like the one that made the runs under {out}, "
        "from their measured wall time per step (evaluations included) on "
        + "; ".join(f"{basis} for {plural(count, 'job')}" for basis, count in bases.items())
        + (f"; not counted: {plural(untimed, 'job')} with no measurement yet" if untimed else "")
        + (at_once if workers > 1 else "")
    )


def parallel_estimate(timed: list[Job], workers: int) -> str:
    """The wall time of the timed runs spread over `workers` machines, each taking the longest run left
    when it is free (within 4/3 of the best split): at least the longest single run."""
    finish = [0.0] * workers
    for seconds in sorted((s for job in timed for s in job.block_seconds() or []), reverse=True):
        heapq.heapreplace(finish, finish[0] + seconds)
    return format_duration(max(finish))
