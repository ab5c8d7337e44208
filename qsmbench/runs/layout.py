"""Every path under a results directory, defined here and nowhere else.

    <out>/
      <task>/<algo>[.<label>]/              run_dir: one directory per (task, algorithm, variant label)
        seed_<k>.parquet                    run_path: a seed's run file (qsmbench.runs.format)
        .seed_<k>.parquet.<pid>.tmp         temporary_path: a write in progress, removed when stale
        checkpoint_seeds_<a>-<b>.pt         checkpoint_path: an unfinished run's checkpoint
        .qsmbench.lock                      lock_path: the directory's claim, by `flock` (qsmbench.runs.locking)
        .qsmbench.claim                     claim_path: the claim's record, replaced whole at each heartbeat
        _policies/seed_<k>.pt               policy_path: a complete run's saved policies
        _policies/.seed_<k>.pt.<pid>.tmp    temporary_path: a policy's write in progress, removed when stale
      _figures/                             figures_dir: `qsmbench plot`'s tables and figures
      _tensorboard/<task>/<algo>[.<variant>]/seeds_<a>-<b>    tensorboard_dir: `run --track tensorboard`

Names starting with `_` or `.` are skipped by pyarrow's dataset discovery, so `pd.read_parquet(out)`
reads the run files and nothing else. A task id may hold `/` (`dm_control/cheetah-run-v0`): `path_safe`
makes it one directory level. Variant labels map to directories one to one (`label_name`); a run also checks
the labels stored in the files it finds there, so no run is ever taken for another's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

POLICY_DIR = "_policies"
FIGURES_DIR = "_figures"
TENSORBOARD_DIR = "_tensorboard"
LOCK_NAME = ".qsmbench.lock"
CLAIM_NAME = ".qsmbench.claim"
LABEL_HASH_DIGITS = 8  # hex digits of a label's hash in its directory name (label_name)
LONGEST_TEMPORARY = ".seed_0.parquet.0000000.tmp"  # for the path-length check of a run directory


def path_safe(name: str) -> str:
    """`dm_control/cheetah-run-v0` -> `dm_control-cheetah-run-v0`: one directory level per task, and never `.`,
    `..` or a name that pyarrow's discovery skips (a leading `.` or `_` becomes `-`)."""
    return re.sub(r"^[._]", "-", re.sub(r"[^A-Za-z0-9._-]+", "-", name)) or "-"


def label_name(label: str) -> str:
    """A variant label as the part of a directory name after `<algo>.`, one to one: a label of letters, digits
    and `._-` is itself; any other is its path-safe form, `~` and a hash of the label (`lr=3e-4` ->
    `lr-3e-4~debbbce8`), so that labels folding to one form (`a b` and `a/b`, `α` and `β`) keep apart."""
    if re.fullmatch(r"[A-Za-z0-9._-]+", label):
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:LABEL_HASH_DIGITS]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', label)}~{digest}"


def run_dir(out: str | Path, task: str, algo: str, variant: str = "") -> Path:
    """`<out>/<task>/<algo>`, or `<algo>.<label_name(variant)>` for a labelled variant: a directory per (task,
    algorithm, variant)."""
    return Path(out) / path_safe(task) / (f"{algo}.{label_name(variant)}" if variant else algo)


def run_path(out: str | Path, task: str, algo: str, seed: int, variant: str = "") -> Path:
    return seed_path(run_dir(out, task, algo, variant), seed)


def seed_path(run_dir: Path, seed: int) -> Path:
    """`<run dir>/seed_<k>.parquet`: a seed's run file in the run directory `run_dir`."""
    return run_dir / f"seed_{seed}.parquet"


def run_files(out: Path) -> list[Path]:
    """The run files at their own depth under `out` (`<task>/<algo>/seed_<k>.parquet`), sorted; a quick listing
    for timings, where `qsmbench.runs.read.run_file_paths` searches a whole tree."""
    return sorted(out.glob("*/*/seed_*.parquet"))


def seed_of(run_file: Path) -> int | None:
    """The seed a run file's name says (`seed_<k>.parquet`), or None for another name."""
    named = re.fullmatch(r"seed_(0|[1-9]\d*)\.parquet", run_file.name)
    return int(named[1]) if named else None


def seed_files(run_dir: Path, seed_start: int, seeds: int) -> list[int]:
    """The seeds in [seed_start, seed_start + seeds) that have a run file in `run_dir`, in order (one listing)."""
    if not run_dir.is_dir():
        return []
    found = (seed_of(Path(entry.name)) for entry in os.scandir(run_dir))
    return sorted(seed for seed in found if seed is not None and seed_start <= seed < seed_start + seeds)


def checkpoint_path(run_dir: Path, seed_start: int, seeds: int) -> Path:
    return run_dir / f"checkpoint_seeds_{seed_start}-{seed_start + seeds - 1}.pt"


def checkpoint_ranges(run_dir: Path) -> list[tuple[int, int]]:
    """The (seed_start, seeds) of every checkpoint in `run_dir`, from the file names."""
    if not run_dir.is_dir():
        return []
    ranges = []
    for entry in os.scandir(run_dir):
        match = re.fullmatch(r"checkpoint_seeds_(0|[1-9]\d*)-(0|[1-9]\d*)\.pt", entry.name)
        if match and int(match[2]) >= int(match[1]):
            ranges.append((int(match[1]), int(match[2]) - int(match[1]) + 1))
    return sorted(ranges)


def policy_path(run_file: Path) -> Path:
    """`<run dir>/_policies/seed_<k>.pt` for the run file `<run dir>/seed_<k>.parquet`."""
    return run_file.parent / POLICY_DIR / f"{run_file.stem}.pt"


def policy_seed(policy_file: Path) -> int | None:
    """The seed a saved policy's name says (`seed_<k>.pt`), or None for another name."""
    named = re.fullmatch(r"seed_(\d+)\.pt", policy_file.name)
    return int(named[1]) if named else None


def policy_run_dir(policy_file: Path) -> Path:
    """The run directory a saved policy belongs to."""
    return policy_file.parent.parent


def policy_files(root: Path) -> list[Path]:
    """Every saved policy under `root`, at any depth, through linked directories as `plot` reads run files
    (`walk_once`)."""
    return sorted(
        directory / name
        for directory, files in walk_once(root)
        if directory.name == POLICY_DIR
        for name in files
        if name.startswith("seed_") and name.endswith(".pt")
    )


def walk_once(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """Each directory under `root` (itself included) with the names of its files, following directory symlinks (a
    run directory linked in from elsewhere counts); each real directory is walked once, so a link to an ancestor
    cannot loop and a run linked twice is not found twice."""
    seen: set[str] = set()
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories.clear()
            continue
        seen.add(real)
        subdirectories.sort()
        yield Path(directory), files


def lock_path(run_dir: Path) -> Path:
    return run_dir / LOCK_NAME


def claim_path(run_dir: Path) -> Path:
    return run_dir / CLAIM_NAME


def figures_dir(out: str | Path) -> Path:
    return Path(out) / FIGURES_DIR


def tensorboard_dir(out: str | Path, run_dir: Path, seeds: list[int]) -> Path:
    """`<out>/_tensorboard/<task>/<algo>/seeds_<a>-<b>` for the seeds `seeds` of the run in `run_dir`."""
    return Path(out) / TENSORBOARD_DIR / run_dir.relative_to(out) / f"seeds_{seeds[0]}-{seeds[-1]}"


def temporary_path(path: Path) -> Path:
    """Where an atomic write of `path` by this process goes first: `.<name>.<pid>.tmp` beside it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def stale_temporaries(run_dir: Path) -> list[Path]:
    """The temporaries of run files, checkpoints, claim records and saved policies in `run_dir`: stale when
    nobody holds the directory."""
    patterns = (".seed_*.parquet.*.tmp", ".checkpoint_seeds_*.pt.*.tmp", f".{CLAIM_NAME}.*.tmp", f"{POLICY_DIR}/.seed_*.pt.*.tmp")
    return sorted(path for pattern in patterns for path in run_dir.glob(pattern))
