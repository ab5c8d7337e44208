"""Run files: the on-disk format of results, defined here and nowhere else.

One Parquet file per seed, `<out>/<task>/<algo>/seed_<k>.parquet`, with one row per evaluation
(`EvalRow`) and, in the Parquet schema metadata under the key `qsmbench`, a JSON document
(`RunMetadata`: how the run was made, the seed, its status). Files are rewritten after every
evaluation through a temporary file and an atomic rename, so a run killed at any moment leaves
valid files that hold every completed evaluation.

Names: the *task* is what a run learns and what results are filed and grouped under (the
environment id online, the dataset id offline); the *environment id* is the Gymnasium id that
evaluation runs in. Schema 1 (qsmbench up to commit 155e41c) called both `env`: its rows' `env`
column held the task and its metadata's `env` key the environment id. Readers accept both schemas.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Literal, Mapping, get_args

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qsmbench.errors import CompleteRunError, ConfigError, RunFileError
from qsmbench.messages import format_bytes, plural, short_path

METADATA_KEY = b"qsmbench"
SCHEMA_VERSION = 2
Status = Literal["running", "complete", "diverged", "failed", "interrupted"]
STATUSES: tuple[str, ...] = get_args(Status)
FINISHED = ("complete", "diverged")  # a seed with either status is a result, and training it again would repeat it
REQUIRED_COLUMNS = ("task", "algo", "seed", "step", "eval_return")
OFFLINE_SCORE = "eval_normalized_score"  # D4RL convention, 0-100


# ------------------------------------------------------------------------------------------------ format


@dataclass(frozen=True)
class EvalRow:
    """One evaluation of one seed: a row of its learning curve."""

    task: str
    algo: str
    seed: int
    step: int  # environment steps of this seed (gradient steps offline)
    eval_return: float  # mean over the evaluation episodes
    eval_return_std: float
    train_return: float  # mean return of the training episodes finished since the last evaluation; NaN if none
    train_episodes: int
    wall_time_s: float  # from the start of the run to this evaluation
    sps: float  # steps per second per seed since the last evaluation, evaluation excluded; NaN at step 0
    eval_normalized_score: float | None = None  # offline runs on datasets with reference scores only
    diagnostics: Mapping[str, float] = field(default_factory=dict)  # the algorithm's update means, by name

    def columns(self) -> dict[str, Any]:
        """The row as Parquet columns: the fields, the normalised score when there is one, the diagnostics."""
        columns = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "diagnostics"}
        if self.eval_normalized_score is None:
            del columns[OFFLINE_SCORE]
        return {**columns, **self.diagnostics}


@dataclass(frozen=True)
class RunHeader:
    """What every seed file of one run records about how it was made."""

    algo: str
    task: str
    env_id: str  # the environment evaluated in (offline: the dataset's)
    dataset: str | None = None
    ref_scores: tuple[float, float] | None = None  # the dataset's (random, expert) returns
    run_config: Mapping[str, Any] = field(default_factory=dict)  # Protocol and Execution as one dict (config.run_settings)
    algo_config: Mapping[str, Any] = field(default_factory=dict)  # the effective hyperparameters
    variant: str = ""  # the run's variant label ("" = none): run --name, or derived from its --set values
    provenance: Mapping[str, Any] = field(default_factory=dict)  # versions, commit, device, host, start time


@dataclass(frozen=True)
class Divergence:
    """Where a seed's training went non-finite: the first check that found it, and in what."""

    step: int
    quantity: str  # e.g. "reward", "action", "critic_loss", "parameters"

    def __str__(self) -> str:
        return f"non-finite {self.quantity} at step {self.step}"


@dataclass(frozen=True)
class RunMetadata:
    """The JSON document of one seed's file."""

    header: RunHeader
    seed: int
    status: Status
    error: str | None = None  # the traceback of a failed run
    divergence: Divergence | None = None  # set exactly when status is "diverged"

    def document(self) -> dict[str, Any]:
        """The stored form: flat, as schema 1 had it, with provenance keys at the top level."""
        header = {f.name: getattr(self.header, f.name) for f in dataclasses.fields(self.header)}
        provenance = header.pop("provenance")
        return {
            "schema_version": SCHEMA_VERSION, **header, **provenance,
            "seed": self.seed, "status": self.status, "error": self.error,
            "divergence": dataclasses.asdict(self.divergence) if self.divergence else None,
        }  # fmt: skip

    @classmethod
    def from_document(cls, document: Any) -> RunMetadata:
        """Read schema 1 or 2; RunFileError when a key the format needs is missing or malformed."""
        if not isinstance(document, dict):
            raise RunFileError("its qsmbench metadata is not a JSON object")
        document = dict(document)
        status = document.get("status")
        if status not in STATUSES:
            raise RunFileError(f"its qsmbench metadata has no valid status ({status!r})")
        names = [f.name for f in dataclasses.fields(RunHeader) if f.name != "provenance"]
        missing = [name for name in ("algo", "task", "env_id", "seed") if name not in document]
        if missing:
            raise RunFileError(f"its qsmbench metadata lacks {', '.join(missing)}")
        header = {name: document.pop(name) for name in names if name in document}
        if header.get("ref_scores") is not None:
            header["ref_scores"] = tuple(header["ref_scores"])
        seed, error = document.pop("seed"), document.pop("error", None)
        divergence = _divergence(document.pop("divergence", None), status)
        document.pop("status"), document.pop("schema_version", None)
        return cls(RunHeader(**header, provenance=document), int(seed), status, error, divergence)


def _divergence(stored: Any, status: str) -> Divergence | None:
    if status != "diverged":
        return None
    try:
        return Divergence(int(stored["step"]), str(stored["quantity"]))
    except (TypeError, KeyError, ValueError):
        raise RunFileError("its status is diverged but it does not say where (no valid 'divergence')") from None


@dataclass(frozen=True)
class RunFile:
    """One seed's file as read back: its metadata and its learning curve (sorted by step, one row per step)."""

    path: Path
    metadata: RunMetadata
    curve: pd.DataFrame

    @property
    def task(self) -> str:
        return self.metadata.header.task

    @property
    def algo(self) -> str:
        return self.metadata.header.algo

    @property
    def variant(self) -> str:
        return self.metadata.header.variant

    @property
    def seed(self) -> int:
        return self.metadata.seed

    @property
    def status(self) -> str:
        return self.metadata.status


def path_safe(name: str) -> str:
    """`dm_control/cheetah-run-v0` -> `dm_control-cheetah-run-v0`: one directory level per task."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def run_dir(out: str | Path, task: str, algo: str, variant: str = "") -> Path:
    """`<out>/<task>/<algo>`, or `<algo>.<variant>` for a labelled variant: a directory per (task, algorithm, variant)."""
    return Path(out) / path_safe(task) / (f"{algo}.{path_safe(variant)}" if variant else algo)


def run_path(out: str | Path, task: str, algo: str, seed: int, variant: str = "") -> Path:
    return run_dir(out, task, algo, variant) / f"seed_{seed}.parquet"


# ------------------------------------------------------------------------------------------------ writing


def write_run(path: Path, curve: pd.DataFrame, metadata: RunMetadata) -> None:
    """Atomically replace `path` with a Parquet file of `curve` and `metadata`."""
    table = pa.Table.from_pandas(curve, preserve_index=False)
    document = json.dumps(metadata.document(), default=str)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: document.encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda handle: pq.write_table(table, handle))


def replace_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` with what `write` writes, so that a kill at any moment leaves the old file or the new
    one, whole: a temporary file beside it, fsync, rename, fsync of the directory (so the rename survives a
    power cut). The temporary's name is `.<name>.<pid>.tmp`, which `remove_stale_temporaries` knows."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:  # also Ctrl-C mid-write: leave no debris, and the old file untouched
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class RunFiles:
    """The files of one seed-batched run: one growing learning curve per seed, all with one header.

    A seed that diverged keeps the rows it had and the status `diverged` whatever the run's status.
    """

    def __init__(self, paths: list[Path], seeds: list[int], header: RunHeader):
        self.paths, self.seeds, self.header = paths, seeds, header
        self.rows: list[list[EvalRow]] = [[] for _ in seeds]
        self.position = {seed: index for index, seed in enumerate(seeds)}

    def append(self, rows: list[EvalRow]) -> None:
        """Add the rows of one evaluation, each to its own seed's curve (a diverged seed has none)."""
        for row in rows:
            self.rows[self.position[row.seed]].append(row)

    def write(
        self, status: Status, error: str | None = None, divergences: list[Divergence | None] | None = None
    ) -> None:
        """Rewrite every seed's file with all rows so far and the given status; a seed with a divergence
        (same order as the seeds) says `diverged` instead."""
        for index, (path, seed, rows) in enumerate(zip(self.paths, self.seeds, self.rows)):
            divergence = divergences[index] if divergences else None
            curve = pd.DataFrame([row.columns() for row in rows])
            metadata = RunMetadata(self.header, seed, "diverged", None, divergence) if divergence else None
            write_run(path, curve, metadata or RunMetadata(self.header, seed, status, error))


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files `write_run` (or a checkpoint's write) left in `directory` when killed mid-write.

    Call it only while holding the directory's lock: then no other writer can own them.
    """
    stale = sorted([*directory.glob(".seed_*.parquet.*.tmp"), *directory.glob(".checkpoint_seeds_*.pt.*.tmp")])
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


RUN_FILE_BYTES = 64 * 1024  # a run file's size beyond its rows (schema, metadata with provenance), generously
ROW_BYTES = 1024  # one evaluation row with an algorithm's diagnostics, generously


def check_out_dir(directory: Path, seeds: int, evaluations: int) -> None:
    """Refuse, before anything is written, a run directory that cannot hold the run's files.

    The name must fit the filesystem's limits, the deepest existing ancestor must take a real write
    (read-only mounts, permissions) and have room for every seed's final file twice over (each
    rewrite goes through a temporary copy). A disk that fills up later still fails the run, but a
    full one is refused up front instead of leaving files at `running`.
    """
    absolute = directory.absolute()
    existing = next(parent for parent in absolute.parents if _exists(parent))
    name_max, path_max = _limit(existing, "PC_NAME_MAX", 255), _limit(existing, "PC_PATH_MAX", 4096)
    for part in absolute.parts:
        if len(part.encode()) > name_max:
            raise ConfigError(
                f"a path component is {len(part.encode())} bytes long, over this filesystem's {name_max}: "
                f"{short_path(Path(part))}"
            )
    if len(str(absolute).encode()) + len(".seed_0.parquet.0000000.tmp") + 1 > path_max:
        raise ConfigError(f"the run directory's path is over this filesystem's {path_max} bytes: {short_path(absolute)}")
    existing = next(parent for parent in (absolute, *absolute.parents) if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out: {short_path(existing)} exists and is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(bytes(4096))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise ConfigError(f"cannot write results under {short_path(existing)}: {error.strerror or error}") from None
    free, needed = free_bytes(existing), 2 * seeds * (RUN_FILE_BYTES + evaluations * ROW_BYTES)
    if free < needed:
        raise ConfigError(
            f"{short_path(existing)} has {format_bytes(free)} free, and the run files need about {format_bytes(needed)}"
        )


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem of `path`, or of its deepest existing
    ancestor when it does not exist yet."""
    existing = next(parent for parent in (path.absolute(), *path.absolute().parents) if _exists(parent))
    stats = os.statvfs(existing)
    return stats.f_bavail * stats.f_frsize


def _exists(path: Path) -> bool:
    """`path.exists()`, False also for a name the filesystem refuses (too long)."""
    try:
        return path.exists()
    except OSError:
        return False


def _limit(directory: Path, name: str, fallback: int) -> int:
    try:
        return os.pathconf(directory, name)
    except (OSError, ValueError):
        return fallback


def check_can_write(paths: list[Path], overwrite: bool, resuming: bool = False) -> None:
    """Refuse to replace a finished run (complete or diverged), or a file we cannot read, unless asked to.

    Unfinished runs (running, failed, interrupted) are simply redone, or, `resuming` from a checkpoint,
    continued: then a seed that diverged is part of the run that goes on (its file is written again from
    the checkpoint), and only a complete file means the run is finished.
    """
    if overwrite:
        return
    for path in paths:
        status = read_status(path)
        if status == "complete" or (status in FINISHED and not resuming):
            raise CompleteRunError(f"{path} holds a finished run ({status}); pass --overwrite to replace it")
        if status == "unreadable":
            raise ConfigError(f"{path} exists but is not a readable qsmbench run file; pass --overwrite to replace it")


# ------------------------------------------------------------------------------------------------ reading


def read_run(path: str | Path) -> RunFile:
    """One run file, either schema; RunFileError (one line) when it cannot be used as one."""
    path = Path(path)
    try:
        with pq.ParquetFile(path) as parquet:  # a third of read_table's cost, which sets up a whole dataset
            table = parquet.read()
        document = json.loads((table.schema.metadata or {})[METADATA_KEY])
    except KeyError:
        raise RunFileError(f"not a qsmbench run file (no '{METADATA_KEY.decode()}' metadata)") from None
    except (OSError, ValueError, pa.ArrowException) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise RunFileError(f"not a readable qsmbench run file ({reason})") from None
    curve = table.to_pandas()
    if isinstance(document, dict) and document.get("schema_version", 1) == 1:
        document, curve = from_schema_1(document, curve)
    metadata = RunMetadata.from_document(document)
    check_seed(path, metadata.seed, curve["seed"] if "seed" in curve.columns else None)
    if len(curve):
        missing = [column for column in REQUIRED_COLUMNS if column not in curve.columns]
        if missing:
            raise RunFileError(f"missing columns {', '.join(missing)}")
        curve = sorted_by_step(curve)
    return RunFile(path, metadata, curve)


def sorted_by_step(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per step, in step order, the last written winning. Files the writer made are already so;
    checking that first spares pandas' sort and deduplication, most of the cost of reading a file."""
    steps = curve["step"]
    if steps.is_monotonic_increasing and steps.is_unique:
        return curve
    return curve.drop_duplicates("step", keep="last").sort_values("step", ignore_index=True)


def check_seed(path: Path, seed: Any, row_seeds: pd.Series | None) -> None:
    """File name, metadata and rows must name one seed: a seed_0 file copied to seed_1 must not count twice."""
    named = re.fullmatch(r"seed_(\d+)\.parquet", path.name)
    if named and int(named[1]) != seed:
        raise RunFileError(f"its metadata is seed {seed}, but its name says seed {int(named[1])}")
    if row_seeds is not None and not (row_seeds == seed).all():
        raise RunFileError(f"its rows are not all of seed {seed}, the seed its metadata names")


def from_schema_1(document: dict[str, Any], curve: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """A schema-1 file as schema 2: its metadata `env` is the environment id, its rows' `env` the task,
    and a dataset without reference scores recorded them as [None, None]."""
    document = dict(document)
    if "env" in document:
        document["env_id"] = document.pop("env")
    if document.get("ref_scores") == [None, None]:
        document["ref_scores"] = None
    return document, curve.rename(columns={"env": "task"})


def read_status(path: Path) -> str | None:
    """The stored status of a run file, None when there is none, 'unreadable' when it is damaged.

    Reads the schema and the seed column only: cheap enough to ask of every seed file of a grid. A file
    whose name, metadata and rows disagree on the seed is unreadable.
    """
    if not path.exists():
        return None
    try:
        with pq.ParquetFile(path) as parquet:
            schema = parquet.schema_arrow
            document = json.loads((schema.metadata or {})[METADATA_KEY])
            status = document["status"]
            row_seeds = parquet.read(columns=["seed"])["seed"].to_pandas() if "seed" in schema.names else None
        check_seed(path, document["seed"], row_seeds)
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):  # RunFileError is a ValueError
        return "unreadable"
    return str(status) if status in STATUSES else "unreadable"


def run_file_paths(results_dir: Path) -> list[Path]:
    """Every *.parquet under `results_dir`, following directory symlinks (a run directory linked in from
    elsewhere counts); each real directory is walked once, so a link to an ancestor cannot loop."""
    seen: set[str] = set()
    paths: list[Path] = []
    for directory, subdirectories, files in os.walk(results_dir, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories.clear()
            continue
        seen.add(real)
        subdirectories.sort()
        paths += [Path(directory) / name for name in files if name.endswith(".parquet")]
    return sorted(paths)


def _usable_run(path: Path) -> RunFile | RunFileError:
    """The run file at `path`, or why it cannot be used."""
    try:
        run = read_run(path)
    except RunFileError as error:
        return error
    return RunFileError("no evaluations yet") if run.curve.empty else run


@dataclass(frozen=True)
class ResultsTree:
    """The usable run files under a results directory, and what was skipped and why."""

    runs: list[RunFile]
    warnings: list[str]
    skipped: list[Path]


def read_results(results_dir: Path, progress: Callable[[str], None] | None = None) -> ResultsTree:
    """Every run file with at least one evaluation at any depth under `results_dir`.

    A file that cannot be used is skipped with a warning naming it. When several files hold the same task,
    algorithm, variant and seed (a copy of a results tree inside the tree, a run repeated elsewhere),
    counting them all would fake seeds: one is used (`preferred_run`) and a warning says which and why.
    Raises ConfigError when there is no directory, no *.parquet file, or no usable run.
    `progress`, when given, hears how far reading is every few hundred files.
    """
    if not results_dir.is_dir():
        raise ConfigError(f"results directory {results_dir} does not exist")
    paths = run_file_paths(results_dir)
    if not paths:
        raise ConfigError(f"no run files (*.parquet) under {results_dir}")
    warnings: list[str] = []
    skipped: list[Path] = []
    same_seed: dict[tuple[str, str, str, int], list[RunFile]] = {}
    for index, path in enumerate(paths):
        if progress is not None and index % 250 == 0:
            progress(f"reading run files ({index:,} of {len(paths):,})")
        run = _usable_run(path)
        if isinstance(run, RunFileError):
            warnings.append(f"skipped {path}: {run}")
            skipped.append(path)
            continue
        same_seed.setdefault((run.task, run.algo, run.variant, run.seed), []).append(run)
    runs: list[RunFile] = []
    for found in same_seed.values():
        ranked = sorted(found, key=preference, reverse=True)
        runs.append(ranked[0])
        if len(ranked) > 1:
            warnings.append(duplicate_choice(ranked))
            skipped += [run.path for run in ranked[1:]]
    if not runs:
        raise ConfigError(f"no readable qsmbench run among {plural(len(paths), '.parquet file')} under {results_dir}")
    return ResultsTree(runs, warnings, skipped)


def preference(run: RunFile) -> tuple[bool, int, float]:
    """Sort key among files of one seed, best last: complete, then the furthest step evaluated, then the
    file written last (an untrained copy must not replace a trained run because its path sorts first)."""
    return run.status == "complete", int(run.curve["step"].iloc[-1]), run.path.stat().st_mtime


def duplicate_choice(ranked: list[RunFile]) -> str:
    """One line: which of several files of one seed is used (the first of `ranked`), and why."""
    chosen, runner_up = ranked[0], ranked[1]
    if preference(chosen)[0] != preference(runner_up)[0]:
        why = "it is complete"
    elif preference(chosen)[1] != preference(runner_up)[1]:
        why = "it evaluated more steps"
    else:
        why = "it was written last"
    variant = f" [{chosen.variant}]" if chosen.variant else ""
    others = "; ".join(f"{run.path} ({file_summary(run)})" for run in ranked[1:])
    return (
        f"{chosen.task} / {chosen.algo}{variant} seed {chosen.seed} is in several files: used {chosen.path} "
        f"({file_summary(chosen)}) because {why}; skipped {others}"
    )


def file_summary(run: RunFile) -> str:
    return f"{run.status}, evaluated to step {int(run.curve['step'].iloc[-1])}"
