"""Writing run files so that a kill at any moment leaves valid files: atomic replacement, the writer of one run's
files (`RunFiles`), the checks before a run writes anything (`check_own_paths`, `check_out_dir`, `check_can_write`),
and the clean-up of what a killed run left (`remove_stale_temporaries`, `remove_stranded_checkpoints`).

Nothing is written, truncated or deleted through a symbolic link below --out: `check_own_paths` refuses a linked
folder where a run writes, and a temporary is always a new file (O_EXCL|O_NOFOLLOW), so a link planted at its
name is never followed; the rename that puts it in place replaces a link at the final name, never its target."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qsmbench.core.errors import CompleteRunError, ConfigError, RunFileError
from qsmbench.core.messages import format_bytes, short_path
from qsmbench.runs.format import FINISHED, METADATA_KEY, Divergence, EvalRow, RunHeader, RunMetadata, Status
from qsmbench.runs.layout import (
    LONGEST_TEMPORARY,
    checkpoint_path,
    checkpoint_ranges,
    seed_path,
    stale_temporaries,
    temporary_path,
)
from qsmbench.runs.read import read_run, read_status
from qsmbench.runs.spec import RunSpec


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
    temporary = temporary_path(path)
    descriptor = _create_new(temporary)
    try:
        with open(descriptor, "wb") as handle:
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


def _create_new(temporary: Path) -> int:
    """Open `temporary` as a new file: a link planted at its name is not followed but removed (the link, never
    its target), as is a temporary left by a dead process that had our pid."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(temporary, flags, 0o666)
    except FileExistsError:
        temporary.unlink()
        return os.open(temporary, flags, 0o666)


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
    """Delete the temporary files `replace_atomically` (a run file's, a checkpoint's or a policy's write) left in
    `directory` when killed mid-write.

    Call it only while holding the directory's lock: then no other writer can own them.
    """
    stale = stale_temporaries(directory)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def remove_stranded_checkpoints(directory: Path) -> list[Path]:
    """Delete the checkpoints in `directory` whose seeds' files all say their run finished: left by a run killed
    between its last final write and the checkpoint's deletion, they would never be read again.

    Call it only while holding the directory's lock: a run finishing from its checkpoint holds it.
    """
    stranded = [
        checkpoint_path(directory, start, count)
        for start, count in checkpoint_ranges(directory)
        if finished([seed_path(directory, seed) for seed in range(start, start + count)])
    ]
    for path in stranded:
        path.unlink(missing_ok=True)
    return stranded


def finished(paths: Sequence[Path]) -> bool:
    """Whether every one of these run files says its run finished (complete or diverged): then the run is over."""
    return all(read_status(path) in FINISHED for path in paths)


def check_own_paths(out: Path, directories: Sequence[Path], files: Sequence[Path]) -> None:
    """Refuse, before anything is written, a tree below `out` where a run's writes would follow a link or hit the
    wrong kind of entry: each of `directories` and every folder between it and `out` must be a real directory or
    absent, and each of `files` must not be a directory.

    In a results directory shared by many launchers, a linked folder would send this run's writes and deletions
    into someone else's files. `out` itself may be a link (results kept on scratch space), and reading through
    links (`plot`) is another matter.
    """
    for directory in directories:
        parts = directory.relative_to(out).parts
        for folder in (out.joinpath(*parts[:depth]) for depth in range(1, len(parts) + 1)):
            mode = _mode(folder)
            if mode is None:
                break
            if stat.S_ISLNK(mode):
                raise ConfigError(f"{folder} is a symbolic link; qsmbench writes into a results directory only through real directories")
            if not stat.S_ISDIR(mode):
                raise ConfigError(f"{folder} exists and is not a directory; move it away")
    for path in files:
        mode = _mode(path)
        if mode is not None and stat.S_ISDIR(mode):
            raise ConfigError(f"{path} is a directory where the run writes a file; move it away")


def _mode(path: Path) -> int | None:
    """The mode of `path` itself (a link is not followed), or None when there is nothing there."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


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
    if len(str(absolute).encode()) + len(LONGEST_TEMPORARY) + 1 > path_max:
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


def check_can_write(paths: list[Path], overwrite: bool, resuming: bool = False, finishing: bool = False) -> None:
    """Refuse to replace a finished run (complete or diverged), or a file we cannot read, unless asked to.

    Unfinished runs (running, failed, interrupted) are simply redone, or, `resuming` from a checkpoint,
    continued: then a seed that diverged is part of the run that goes on (its file is written again from
    the checkpoint), and only a complete file means the run is finished. A checkpoint of the run's last
    step (`finishing`) holds every row: the run's final writes failed or were cut short, finishing them
    writes the same rows again, and so a complete file is part of the run too.
    """
    if overwrite:
        return
    for path in paths:
        status = read_status(path)
        if (status == "complete" and not finishing) or (status == "diverged" and not resuming):
            raise CompleteRunError(f"{path} holds a finished run ({status}); pass --overwrite to replace it")
        if status == "unreadable":
            raise ConfigError(f"{path} exists but is not a readable qsmbench run file; pass --overwrite to replace it")


def check_same_run(paths: list[Path], spec: RunSpec, overwrite: bool) -> None:
    """Refuse to take the files of another run for this one's, unless asked to replace them: a file whose task,
    algorithm or variant label differs from `spec`'s (directories of an older qsmbench folded labels together,
    `a b` and `a/b` into one). Unreadable files are `check_can_write`'s to refuse."""
    if overwrite:
        return
    ours = (spec.algo, spec.protocol.task, spec.execution.variant)
    for path in paths:
        if not path.is_file():
            continue
        try:
            stored = read_run(path).metadata.header
        except RunFileError:
            continue
        theirs = (stored.algo, stored.task, stored.variant)
        if theirs != ours:
            raise ConfigError(
                f"{path} holds a run of {describe_run(*theirs)}, not of {describe_run(*ours)}; "
                "choose another --name, or pass --overwrite to replace it"
            )


def describe_run(algo: str, task: str, variant: str) -> str:
    """`sac on Pendulum-v1 labelled 'a b'`, or `... unlabelled`."""
    return f"{algo} on {task} " + (f"labelled {variant!r}" if variant else "unlabelled")
