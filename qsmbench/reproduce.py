"""`qsmbench reproduce GRID`: a grid of seed-batched runs, run one job after another, resumable, then plotted.

A grid is a TOML file (a name such as `paper` selects qsmbench/data/grids/paper.toml; any path works too) that
lists tasks, algorithms and the training protocol, with named scales (`[scales.smoke]`) that replace parts of
it; the file's header comment is its reference. Each (task, algorithm) pair is one job, trained as one
batched run of all its seeds by the ordinary Trainer, so a grid run and `qsmbench run` give the same files.

Resuming is per seed file. A seed is done when its file is complete and was trained with the job's settings
(steps, evaluation grid, hyperparameters). A job with every seed done is skipped; otherwise only its missing
seeds are trained, one batched run per contiguous block of seed values (seed_start), so a complete file is
never replaced. Seeds share the random streams of their batch, so a seed retrained in a smaller batch is a
statistically, not bitwise, equal run (see README, Seeds). A file that is complete but was trained with other
settings, or is not a readable run, is a conflict: nothing trains until it is moved away or another --out is
given. The trainer keeps no checkpoints: a run stopped by Ctrl-C restarts from step 0, so stopping loses at
most the run in progress.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import tomllib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow as pa

from algorithms import ALGORITHMS
from qsmbench.analysis import Settings
from qsmbench.config import ConfigError, OffPolicyConfig, RunConfig, apply_overrides, did_you_mean, require
from qsmbench.envs import check_env_id
from qsmbench.plotting import PlotReport, plot_results
from qsmbench.progress import make_reporter
from qsmbench.storage import path_safe, read_run, read_status, run_path
from qsmbench.trainer import Trainer, prepare

GRIDS = importlib.resources.files("qsmbench").joinpath("data/grids")
CONFIDENCE = ("confirmed", "likely", "extension", "smoke")
REQUIRED_KEYS = ("out", "algorithms", "seeds", "steps", "eval_every", "eval_episodes", "tasks")
OPTIONAL_KEYS = ("description", "seed_start", "overrides", "plot")
TASK_KEYS = ("env", "confidence", "source")
PLOT_KEYS = {"normalize": str, "last_evals": int, "reps": int}
KIND_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "a table"}
RUN_SETTINGS = ("steps", "eval_every", "eval_episodes")  # a complete file must match these to count as done


# ------------------------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class Task:
    env: str
    confidence: str  # one of CONFIDENCE: how sure we are that the paper used this task
    source: str


@dataclass(frozen=True)
class Grid:
    """One scale of a grid file, validated: known algorithms, registered env ids, well-formed overrides."""

    name: str  # the file's stem, e.g. "paper"
    scale: str
    description: str
    out: Path  # default results directory
    tasks: tuple[Task, ...]
    algorithms: tuple[str, ...]
    seeds: int
    seed_start: int
    steps: int
    eval_every: int
    eval_episodes: int
    overrides: Mapping[str, tuple[str, ...]]  # algorithm -> `--set key=value` assignments
    plot: Settings

    @property
    def seed_values(self) -> tuple[int, ...]:
        return tuple(range(self.seed_start, self.seed_start + self.seeds))


@contextmanager
def located(where: str) -> Iterator[None]:
    """Prefix a ConfigError raised inside with where it happened, keeping it one line."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def load_grid(name_or_path: str, scale: str = "paper") -> Grid:
    """Read, merge and validate one scale of a grid; every mistake is a one-line ConfigError."""
    source = grid_file(name_or_path)
    with located(str(source)):
        try:
            document = tomllib.loads(source.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"not valid TOML: {error}") from None
        scales = document.pop("scales", None)
        require(isinstance(scales, dict) and bool(scales), "needs at least one [scales.<name>] table")
        if scale not in scales:
            raise ConfigError(f"no scale {scale!r}{did_you_mean(scale, scales)}; scales: {', '.join(scales)}")
        with located(f"[scales.{scale}]"):
            require(isinstance(scales[scale], dict), "must be a table")
            check_keys(scales[scale], (), REQUIRED_KEYS + OPTIONAL_KEYS)
        check_keys(document, REQUIRED_KEYS, OPTIONAL_KEYS)
        with located(f"scale {scale}"):
            return build_grid(Path(source.name).stem, scale, {**document, **scales[scale]})


def grid_file(name_or_path: str) -> Traversable:
    """A grid shipped with qsmbench, by name, or else a TOML file at that path."""
    shipped = {entry.name.removesuffix(".toml"): entry for entry in GRIDS.iterdir() if entry.name.endswith(".toml")}
    if name_or_path in shipped:
        return shipped[name_or_path]
    if Path(name_or_path).is_file():
        return Path(name_or_path)
    raise ConfigError(
        f"unknown grid {name_or_path!r}{did_you_mean(name_or_path, shipped)}: "
        f"give a shipped grid ({', '.join(sorted(shipped))}) or the path of a grid .toml file"
    )


def check_keys(table: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    valid = required + optional
    for key in table:
        if key not in valid:
            raise ConfigError(f"unknown key {key!r}{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}")
    for key in required:
        require(key in table, f"missing key {key!r}")


def typed(table: Mapping[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """`table[key]` (or `default` when absent and not None), checked to be a `kind` (a bool is no int)."""
    value = table.get(key, default)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{key} must be {KIND_NAMES[kind]}, got {value!r}")
    return value


def build_grid(name: str, scale: str, settings: Mapping[str, Any]) -> Grid:
    numbers = {key: typed(settings, key, int) for key in ("seeds", "steps", "eval_every", "eval_episodes")}
    seed_start = typed(settings, "seed_start", int, 0)
    for key, value in numbers.items():
        require(value >= 1, f"{key} must be at least 1, got {value}")
    require(seed_start >= 0, f"seed_start must be non-negative, got {seed_start}")
    return Grid(
        name=name,
        scale=scale,
        description=typed(settings, "description", str, ""),
        out=Path(typed(settings, "out", str)),
        tasks=parse_tasks(typed(settings, "tasks", list)),
        algorithms=parse_algorithms(typed(settings, "algorithms", list)),
        seed_start=seed_start,
        overrides=parse_overrides(typed(settings, "overrides", dict, {})),
        plot=parse_plot(typed(settings, "plot", dict, {})),
        **numbers,
    )


def parse_tasks(entries: list[Any]) -> tuple[Task, ...]:
    require(bool(entries), "tasks must list at least one task")
    tasks = []
    for index, entry in enumerate(entries):
        with located(f"task {index + 1}"):
            require(isinstance(entry, dict), f"must be a table with {', '.join(TASK_KEYS)}, got {entry!r}")
            check_keys(entry, TASK_KEYS, ())
            task = Task(*(typed(entry, key, str) for key in TASK_KEYS))
            choices = ", ".join(CONFIDENCE)
            require(task.confidence in CONFIDENCE, f"confidence must be one of {choices}, got {task.confidence!r}")
            check_env_id(task.env)
        tasks.append(task)
    require(len({task.env for task in tasks}) == len(tasks), "tasks lists an env twice")
    return tuple(tasks)


def parse_algorithms(names: list[Any]) -> tuple[str, ...]:
    require(bool(names), "algorithms must list at least one algorithm")
    for name in names:
        check_algorithm(name)
    require(len(set(names)) == len(names), "algorithms lists an algorithm twice")
    return tuple(names)


def check_algorithm(name: Any) -> None:
    if name not in ALGORITHMS:
        choices = ", ".join(ALGORITHMS)
        raise ConfigError(f"unknown algorithm {name!r}{did_you_mean(str(name), ALGORITHMS)}; choose from: {choices}")


def parse_overrides(table: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Per-algorithm `--set` lists, each checked against its algorithm's hyperparameters now."""
    overrides = {}
    for algo, assignments in table.items():
        with located(f"overrides.{algo}"):
            check_algorithm(algo)
            require(
                isinstance(assignments, list) and all(isinstance(item, str) for item in assignments),
                f"must be a list of \"key=value\" strings, got {assignments!r}",
            )
            apply_overrides(ALGORITHMS[algo].config_cls(), assignments)
        overrides[algo] = tuple(assignments)
    return overrides


def parse_plot(table: Mapping[str, Any]) -> Settings:
    with located("plot"):
        check_keys(table, (), tuple(PLOT_KEYS))
        return Settings(**{key: typed(table, key, kind) for key, kind in PLOT_KEYS.items() if key in table})


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Job:
    """One (task, algorithm) pair of a grid: its seeds, and what of it is already on disk under `out`."""

    task: str
    algo: str
    seeds: tuple[int, ...]
    steps: int
    eval_every: int
    eval_episodes: int
    overrides: tuple[str, ...]
    done: tuple[int, ...]  # seeds whose file is complete and was trained with these settings
    conflicts: tuple[str, ...]  # files in the way, each with the reason
    seconds_per_step: float | None = None  # measured wall time per run step, evaluations included
    timing_basis: str | None = None  # what seconds_per_step was measured on

    @property
    def status(self) -> str:
        if self.conflicts:
            return "conflict"
        if len(self.done) == len(self.seeds):
            return "complete"
        return "partial" if self.done else "to run"

    @property
    def pending(self) -> tuple[int, ...]:
        return tuple(seed for seed in self.seeds if seed not in self.done)

    def blocks(self) -> list[tuple[int, int]]:
        """The pending seeds as (seed_start, seeds) runs of contiguous seed values."""
        return contiguous(self.pending)

    @property
    def env_steps_to_run(self) -> int:
        return self.steps * len(self.pending)

    @property
    def seconds_to_run(self) -> float | None:
        """Each block is one batched run of `steps` run steps; None without a measurement."""
        return None if self.seconds_per_step is None else len(self.blocks()) * self.steps * self.seconds_per_step

    def config(self) -> OffPolicyConfig:
        return apply_overrides(ALGORITHMS[self.algo].config_cls(), self.overrides)

    def run_configs(self, out: Path, device: str) -> list[RunConfig]:
        settings = dict(steps=self.steps, eval_every=self.eval_every, eval_episodes=self.eval_episodes)
        return [
            RunConfig(algo=self.algo, env=self.task, seeds=count, seed_start=start, device=device, out=str(out), **settings)
            for start, count in self.blocks()
        ]


def contiguous(seeds: tuple[int, ...]) -> list[tuple[int, int]]:
    """(0, 1, 2, 5) -> [(0, 3), (5, 1)]: (first seed, count) of each run of consecutive values."""
    blocks: list[tuple[int, int]] = []
    for seed in seeds:
        if blocks and sum(blocks[-1]) == seed:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + 1)
        else:
            blocks.append((seed, 1))
    return blocks


def plan(grid: Grid, out: Path) -> list[Job]:
    """Every job of the grid, task-major, with what is done and a time measurement where there is one."""
    timings = measured_seconds_per_step(out)
    jobs = []
    for task in grid.tasks:
        for algo in grid.algorithms:
            job = Job(
                task=task.env,
                algo=algo,
                seeds=grid.seed_values,
                steps=grid.steps,
                eval_every=grid.eval_every,
                eval_episodes=grid.eval_episodes,
                overrides=grid.overrides.get(algo, ()),
                done=(),
                conflicts=(),
            )
            jobs.append(dataclasses.replace(job, **on_disk(job, out), **timing_for(job, timings)))
    return jobs


def on_disk(job: Job, out: Path) -> dict[str, tuple[Any, ...]]:
    """The job's `done` seeds and `conflicts`, from its seed files."""
    expected = jsonable(dataclasses.asdict(job.config()))
    done, conflicts = [], []
    for seed in job.seeds:
        path = run_path(out, job.task, job.algo, seed)
        status = read_status(path)
        if status == "unreadable":
            conflicts.append(f"{path}: not a readable qsmbench run file")
        elif status == "complete":
            why = mismatch(read_run(path)[1], job, expected)
            if why:
                conflicts.append(f"{path}: complete, but trained with {why}")
            else:
                done.append(seed)
    return {"done": tuple(done), "conflicts": tuple(conflicts)}


def jsonable(value: Any) -> Any:
    """`value` as it reads back from a run file's JSON metadata (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def mismatch(metadata: Mapping[str, Any], job: Job, expected_config: Mapping[str, Any]) -> str | None:
    """Why a complete file does not count for `job`, or None. Keys missing on either side are not compared,
    so adding a hyperparameter to an algorithm does not invalidate the runs already made."""
    run = metadata.get("run_config", {})
    stored_config = metadata.get("algo_config", {})
    differences = [(key, run.get(key), getattr(job, key)) for key in RUN_SETTINGS if run.get(key) != getattr(job, key)]
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


def settings_key(algo_config: Any, eval_every: Any, eval_episodes: Any, seeds: Any) -> str:
    """What a run's cost per step depends on besides its task: hyperparameters, evaluation load, batch size."""
    return json.dumps([algo_config, eval_every, eval_episodes, seeds], sort_keys=True, default=str)


def job_settings_key(job: Job) -> str:
    return settings_key(jsonable(dataclasses.asdict(job.config())), job.eval_every, job.eval_episodes, len(job.seeds))


def measured_seconds_per_step(out: Path) -> Timings:
    """Wall time per run step, evaluations included, of the run files under `out`: the median per task
    directory, algorithm and settings (so a smoke run never times a paper run)."""
    rates: dict[tuple[str, str, str], list[float]] = {}
    for path in sorted(out.glob("*/*/seed_*.parquet")):
        try:
            curve, metadata = read_run(path)
        except (OSError, ValueError, pa.ArrowException):
            continue
        run = metadata.get("run_config") or {}
        key = settings_key(metadata.get("algo_config"), run.get("eval_every"), run.get("eval_episodes"), run.get("seeds"))
        if len(curve) and curve["step"].iloc[-1] > 0:
            rate = float(curve["wall_time_s"].iloc[-1] / curve["step"].iloc[-1])
            rates.setdefault((path.parent.parent.name, path.parent.name, key), []).append(rate)
    return {key: float(np.median(values)) for key, values in rates.items()}


def timing_for(job: Job, timings: Timings) -> dict[str, Any]:
    """The closest measurement with the job's settings: on its own task, else the median over other tasks."""
    key = job_settings_key(job)
    own = timings.get((path_safe(job.task), job.algo, key))
    if own is not None:
        return {"seconds_per_step": own, "timing_basis": "the same task, algorithm and settings"}
    others = [rate for (_, algo, other_key), rate in timings.items() if algo == job.algo and other_key == key]
    if others:
        basis = "the same algorithm and settings on other tasks"
        return {"seconds_per_step": float(np.median(others)), "timing_basis": basis}
    return {}


def format_plan(grid: Grid, jobs: list[Job], out: Path) -> str:
    """The dry-run text: one line per job, the env steps left, and a time estimate with what it rests on."""
    lines = [
        f"{grid.name}: {grid.description}" if grid.description else f"grid {grid.name}",
        f"scale {grid.scale}: {len(grid.tasks)} tasks x {len(grid.algorithms)} algorithms = "
        f"{len(jobs)} jobs, {grid.seeds} seeds x {grid.steps:,} steps each; results in {out}",
        f"{'task':<32} {'algo':<5} {'seeds':<8} {'steps':>10}  status",
    ]
    for job in jobs:
        lines.append(f"{job.task:<32} {job.algo:<5} {seed_list(job.seeds):<8} {job.steps:>10,}  {job_status(job)}")
    pending = [job for job in jobs if job.pending]
    lines.append(
        f"to run: {len(pending)} of {len(jobs)} jobs, {sum(job.env_steps_to_run for job in jobs):,} env steps "
        f"({sum(job.status == 'complete' for job in jobs)} jobs complete)"
    )
    lines.append(estimate_line(pending, out))
    conflicts = [conflict for job in jobs for conflict in job.conflicts]
    if conflicts:
        lines.append("conflicts: nothing will train until these files are moved away or another --out is given:")
        lines += [f"  {conflict}" for conflict in conflicts]
    return "\n".join(lines)


def job_status(job: Job) -> str:
    if job.status == "partial":
        return f"partial ({len(job.done)} of {len(job.seeds)} seeds complete; to run: {seed_list(job.pending)})"
    return job.status


def seed_list(seeds: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> "0-2,5"."""
    return ",".join(str(start) if count == 1 else f"{start}-{start + count - 1}" for start, count in contiguous(seeds))


def estimate_line(pending: list[Job], out: Path) -> str:
    if not pending:
        return "estimate: nothing to run"
    timed = [job for job in pending if job.seconds_to_run is not None]
    if not timed:
        return f"estimate: no measurement yet (no run under {out} with these algorithms and settings to time)"
    bases = Counter(job.timing_basis for job in timed)
    untimed = len(pending) - len(timed)
    seconds = sum(job.seconds_to_run or 0.0 for job in timed)
    return (
        f"estimate: {duration(seconds)} on a machine like the one that made the runs under {out}, "
        "from their measured wall time per step (evaluations included) on "
        + "; ".join(f"{basis} for {count} jobs" for basis, count in bases.items())
        + (f"; {untimed} jobs have no measurement yet and are not counted" if untimed else "")
    )


def duration(seconds: float) -> str:
    """45 s, 12 min, 3.4 h or 12.5 days: one unit, rounded, as an estimate needs no more."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 120 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# ------------------------------------------------------------------------------------------------ running


def run_grid(grid: Grid, out: Path, device: str = "auto", quiet: bool = False) -> PlotReport:
    """Train every pending seed of the grid, one batched run after another, then plot `out` into out/figures.

    Everything is validated (conflicts, environments, device, files) before the first run starts; complete
    jobs are skipped. Ctrl-C stops with KeyboardInterrupt and keeps every finished run.
    """
    jobs = plan(grid, out)
    print(format_plan(grid, jobs, out), flush=True)
    conflicts = [conflict for job in jobs for conflict in job.conflicts]
    if conflicts:
        raise ConfigError(f"{len(conflicts)} files in the way (see the plan above), e.g. {conflicts[0]}")
    runs = [prepare(run, job.config(), overwrite=False) for job in jobs for run in job.run_configs(out, device)]
    for index, prepared in enumerate(runs, 1):
        run = prepared.run
        seeds = seed_list(tuple(run.seed_values))
        title = f"[{index}/{len(runs)}] {run.algo} {run.task} seeds {seeds} ({prepared.device.type})"
        print(title, flush=True)
        Trainer(prepared, make_reporter(title, run.seed_values, run.steps, quiet)).train()
    plot = grid.plot
    return plot_results(out, out / "figures", plot.normalize, plot.last_evals, plot.reps, plot.seed)
