"""Reading run files back: one file (either schema), its status alone (cheap, for a grid's plan), and every usable
file under a results tree, one per (task, algorithm, variant, seed).

Both reads check the metadata in one place (`parse_metadata`): a file with a value of the wrong type is a
RunFileError (the whole read) or `unreadable` (the status), which every reader reports with the file's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qsmbench.core.errors import ConfigError, RunFileError
from qsmbench.core.messages import plural
from qsmbench.runs.format import INTEGER_COLUMNS, METADATA_KEY, NUMERIC_COLUMNS, REQUIRED_COLUMNS, RunFile, RunMetadata
from qsmbench.runs.layout import walk_once


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
    metadata = parse_metadata(document)
    curve = table.to_pandas()
    if is_schema_1(document):
        curve = curve.rename(columns={"env": "task"})
    check_seed(path, metadata.seed, curve["seed"] if "seed" in curve.columns else None)
    if len(curve):
        check_columns(curve)
        curve = sorted_by_step(curve)
    return RunFile(path, metadata, curve)


def check_columns(curve: pd.DataFrame) -> None:
    """RunFileError when a column readers need is missing, or one they compute with does not hold numbers (a step
    of text or NaN would fail later, in sorting or alignment, naming no file)."""
    missing = [column for column in REQUIRED_COLUMNS if column not in curve.columns]
    if missing:
        raise RunFileError(f"missing columns {', '.join(missing)}")
    kinds = ((INTEGER_COLUMNS, pd.api.types.is_integer_dtype, "whole numbers"), (NUMERIC_COLUMNS, pd.api.types.is_numeric_dtype, "numbers"))
    for columns, valid, kind in kinds:
        for column in (name for name in columns if name in curve.columns):
            if not valid(curve[column]):
                raise RunFileError(f"its {column} column holds {curve[column].dtype} values, not {kind}")


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


def parse_metadata(document: Any) -> RunMetadata:
    """The stored metadata document of either schema, checked (RunMetadata.from_document): one place, for the
    whole file and for its status alone."""
    return RunMetadata.from_document(schema_2_document(document) if is_schema_1(document) else document)


def is_schema_1(document: Any) -> bool:
    return isinstance(document, dict) and document.get("schema_version", 1) == 1


def schema_2_document(document: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 document as schema 2: its `env` is the environment id (its rows' `env` is the task, renamed by
    read_run), and a dataset without reference scores recorded them as [None, None]."""
    document = dict(document)
    if "env" in document:
        document["env_id"] = document.pop("env")
    if document.get("ref_scores") == [None, None]:
        document["ref_scores"] = None
    return document


def read_status(path: Path) -> str | None:
    """The stored status of a run file, None when there is none, 'unreadable' when it is damaged.

    Reads the schema and the seed column only: cheap enough to ask of every seed file of a grid. A file
    whose metadata `read_run` refuses, or whose name, metadata and rows disagree on the seed, is unreadable.
    """
    if not path.exists():
        return None
    try:
        with pq.ParquetFile(path) as parquet:
            schema = parquet.schema_arrow
            metadata = parse_metadata(json.loads((schema.metadata or {})[METADATA_KEY]))
            row_seeds = parquet.read(columns=["seed"])["seed"].to_pandas() if "seed" in schema.names else None
        check_seed(path, metadata.seed, row_seeds)
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):  # RunFileError is a ValueError
        return "unreadable"
    return metadata.status


def run_file_paths(results_dir: Path) -> list[Path]:
    """Every *.parquet under `results_dir`, through linked directories, each real directory once (`walk_once`)."""
    return sorted(directory / name for directory, files in walk_once(results_dir) for name in files if name.endswith(".parquet"))


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
