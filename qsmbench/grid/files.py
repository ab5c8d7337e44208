"""Grid files: a comparison (tasks x algorithms, one training protocol) as data, expanded into run specs.

A grid is a TOML file (a name such as `paper` selects qsmbench/data/grids/paper.toml; any path works
too; the shipped file's header comment is the reference for the format). Its named scales
(`[scales.smoke]`) replace parts of it. Every table is checked with the same code as the command
line: the protocol keys are `Protocol` fields (SEEDS and BUDGET), algorithm names and `overrides` go through
`algorithms.resolve` (as `--algo` and `--set` do), `sweeps` are made into variants as `run --set` makes them
(qsmbench.grid.sweeps), the `plot` table builds `PlotSettings`. So a grid that loads is a tuple of valid
`RunSpec`s, one per (task, algorithm, variant) with all its seeds.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from qsmbench.algorithms import Algorithm, resolve
from qsmbench.analysis.settings import PlotSettings
from qsmbench.core.config import (
    BUDGET,
    EVALUATION,
    SEEDS,
    Execution,
    OffPolicyConfig,
    Protocol,
    apply_overrides,
    check_value,
    did_you_mean,
    from_table,
    known_key,
    require,
)
from qsmbench.core.errors import ConfigError
from qsmbench.envs.environments import check_env_id
from qsmbench.grid.sweeps import Sweep, Sweeps, check_job_count, job_count, parse_sweeps, variants
from qsmbench.runs.spec import RunSpec

GRIDS = importlib.resources.files("qsmbench").joinpath("data/grids")
Confidence = Literal["confirmed", "likely", "extension", "smoke"]
PROTOCOL_KEYS = (*SEEDS, *BUDGET)  # Protocol fields, one value per grid
TASK_PROTOCOL_KEYS = (*EVALUATION, "action_repeat")  # protocol keys a task may set for its own jobs
GRID_KEYS = ("description", "out", "algorithms", "overrides", "sweeps", "plot", "resources", "tasks", *PROTOCOL_KEYS)
REQUIRED_KEYS = ("out", "algorithms", "tasks", "seeds", "steps", "eval_every", "eval_episodes")


@dataclass(frozen=True)
class JobResources:
    """What one job (all its seeds, one process) asks of a cluster engine such as Ray: `cpus` cores (its
    torch threads too) and `gpus` GPUs, a fraction so that several seed-batched jobs share one GPU."""

    cpus: int = 1
    gpus: float = 0.25

    def __post_init__(self) -> None:
        require(self.cpus >= 1, f"resources.cpus must be at least 1, got {self.cpus}")
        require(
            0 < self.gpus <= 1 or float(self.gpus).is_integer(),
            f"resources.gpus must be a fraction in (0, 1] or a whole number, got {self.gpus}",
        )


@dataclass(frozen=True)
class Task:
    env: str  # a registered Gymnasium id
    confidence: Confidence  # how sure we are that the paper used this task
    source: str
    overrides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per algorithm, after the grid's
    eval_every: int | None = None  # this task's evaluation settings, instead of the grid's
    eval_episodes: int | None = None
    action_repeat: int | None = None  # simulator steps per agent step on this task (DMC papers set it per task)
    resources: JobResources | None = None  # this task's jobs' resources, instead of the grid's
    sweeps: Sweeps | None = None  # per algorithm, instead of the grid's sweeps of that algorithm

    def sweeps_of(self, algo: str, grid_sweeps: Sweeps) -> tuple[Sweep, ...]:
        """The sweeps of `algo` on this task: its own where it has some for `algo`, else the grid's."""
        return (self.sweeps or {}).get(algo, grid_sweeps.get(algo, ()))

    def __post_init__(self) -> None:
        check_env_id(self.env)


@dataclass(frozen=True)
class Grid:
    """One scale of a grid file: its tasks and the run spec of every (task, algorithm, variant) job, task-major."""

    name: str  # the file's stem, e.g. "paper"
    scale: str
    description: str
    out: Path  # default results directory
    tasks: tuple[Task, ...]
    specs: tuple[RunSpec, ...]
    plot: PlotSettings
    resources: JobResources = JobResources()  # each job's, unless its task sets its own

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(spec.algo for spec in self.specs))

    @property
    def variant_counts(self) -> dict[str, int]:
        """Each swept algorithm's variants over all tasks (its unlabelled job included): what the sweeps add."""
        labels = {algo: {spec.execution.variant for spec in self.specs if spec.algo == algo} for algo in self.algorithms}
        return {algo: len(found) for algo, found in labels.items() if found != {""}}

    def resources_of(self, spec: RunSpec) -> JobResources:
        """The resources a job asks for: its task's, else the grid's."""
        task = next(task for task in self.tasks if task.env == spec.protocol.env)
        return task.resources or self.resources

    @property
    def protocol(self) -> Protocol:
        """The protocol every job shares (the first job's, with its env)."""
        return self.specs[0].protocol


@contextmanager
def located(where: str) -> Iterator[None]:
    """Prefix a ConfigError raised inside with where it happened, keeping it one line."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def load_grid(name_or_path: str, scale: str = "paper") -> Grid:
    """One scale of a shipped grid (by name) or of a grid file (by path)."""
    return read_grid(grid_file(name_or_path), scale)


def read_grid(source: Traversable, scale: str) -> Grid:
    """Read, merge and validate one scale of a grid file; every mistake is a one-line ConfigError."""
    with located(str(source)):
        try:
            document = tomllib.loads(source.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError("not a text file (a grid file is UTF-8 TOML)") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"not valid TOML: {error}") from None
        scales = document.pop("scales", None)
        require(isinstance(scales, dict) and bool(scales), "needs at least one [scales.<name>] table")
        if scale not in scales:
            raise ConfigError(f"no scale {scale!r}{did_you_mean(scale, scales)}; scales: {', '.join(scales)}")
        with located(f"[scales.{scale}]"):
            require(isinstance(scales[scale], dict), "must be a table")
            check_keys(scales[scale], required=())
        check_keys(document, REQUIRED_KEYS)
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


def check_keys(table: Mapping[str, Any], required: tuple[str, ...]) -> None:
    hints = dict.fromkeys(GRID_KEYS)
    for key in table:
        known_key(key, hints)
    for key in required:
        require(key in table, f"missing key {key!r}")


def build_grid(name: str, scale: str, settings: Mapping[str, Any]) -> Grid:
    out = check_value("out", settings["out"], str)
    require(out.strip() != "", "out must name a results directory, got an empty string")
    require("\0" not in out, "out contains a NUL character, which no path can hold")
    algorithms = parse_algorithms(settings["algorithms"], settings.get("overrides", {}))
    names = tuple(algorithm.name for algorithm, _ in algorithms)
    tasks = parse_tasks(settings["tasks"], names)
    sweeps = parse_sweeps(settings.get("sweeps", {}), names)
    check_job_count(sum(job_count(task.sweeps_of(name, sweeps)) for task in tasks for name in names))
    protocol = {key: settings[key] for key in PROTOCOL_KEYS if key in settings}
    from_table(Protocol, {**protocol, "env": tasks[0].env})  # the grid's own protocol first
    specs = tuple(
        RunSpec(run, Execution(out=out, variant=label), algorithm, variant)
        for index, (task, run) in enumerate(zip(tasks, task_protocols(tasks, protocol)), 1)
        for algorithm, config in algorithms
        for label, variant in variants(
            algorithm,
            apply_overrides(config, task.overrides.get(algorithm.name, ())),  # the grid's overrides, then the task's
            task.sweeps_of(algorithm.name, sweeps),
            f"task {index} ({task.env}), sweeps.{algorithm.name}",
        )
    )
    with located("plot"):
        require(isinstance(settings.get("plot", {}), dict), "must be a table")
        plot = from_table(PlotSettings, settings.get("plot", {}))
    description = check_value("description", settings.get("description", ""), str)
    return Grid(name, scale, description, Path(out), tasks, specs, plot, parse_resources(settings.get("resources", {})))


def task_protocols(tasks: tuple[Task, ...], protocol: Mapping[str, Any]) -> list[Protocol]:
    """Each task's protocol: the grid's, with the task's own evaluation settings and action repeat."""
    runs = []
    for index, task in enumerate(tasks):
        own = {key: getattr(task, key) for key in TASK_PROTOCOL_KEYS if getattr(task, key) is not None}
        with located(f"task {index + 1}"):
            runs.append(from_table(Protocol, {**protocol, **own, "env": task.env}))
    return runs


def parse_resources(table: Any) -> JobResources:
    with located("resources"):
        require(isinstance(table, dict), f"must be a table of cpus and gpus, got {table!r}")
        return from_table(JobResources, table)


def parse_tasks(entries: Any, algorithms: tuple[str, ...]) -> tuple[Task, ...]:
    require(isinstance(entries, list) and bool(entries), "tasks must list at least one task")
    tasks = []
    for index, entry in enumerate(entries):
        with located(f"task {index + 1}"):
            require(isinstance(entry, dict), f"must be a table with env, confidence and source, got {entry!r}")
            fields = {key: value for key, value in entry.items() if key not in ("overrides", "resources", "sweeps")}
            overrides = parse_task_overrides(entry.get("overrides", {}))
            resources = parse_resources(entry["resources"]) if "resources" in entry else None
            sweeps = parse_sweeps(entry["sweeps"], algorithms) if "sweeps" in entry else None
            task = from_table(Task, fields)
            tasks.append(dataclasses.replace(task, overrides=overrides, resources=resources, sweeps=sweeps))
    require(len({task.env for task in tasks}) == len(tasks), "tasks lists an env twice")
    return tuple(tasks)


def parse_task_overrides(overrides: Any) -> dict[str, tuple[str, ...]]:
    """A task's `overrides = { algo = ["key=value", ...] }`, each list checked against its algorithm."""
    require(isinstance(overrides, dict), f"overrides must be a table of algorithm = [key=value, ...], got {overrides!r}")
    checked = {}
    for algo, assignments in overrides.items():
        with located(f"overrides.{algo}"):
            checked[algo] = check_value(algo, assignments, tuple[str, ...])
            resolve(algo, checked[algo])
    return checked


def parse_algorithms(names: Any, overrides: Any) -> list[tuple[Algorithm, OffPolicyConfig]]:
    """Each listed algorithm with its config; every `overrides` list is checked, also for unlisted algorithms."""
    names = check_value("algorithms", names, tuple[str, ...])
    require(bool(names), "algorithms must list at least one algorithm")
    require(len(set(names)) == len(names), "algorithms lists an algorithm twice")
    require(isinstance(overrides, dict), f"overrides must be a table, got {overrides!r}")
    resolved = {}
    for algo, assignments in {**{key: [] for key in names}, **overrides}.items():
        with located(f"overrides.{algo}" if algo in overrides else "algorithms"):
            resolved[algo] = resolve(algo, check_value(algo, assignments, tuple[str, ...]))
    return [resolved[name] for name in names]
