"""Run files: one Parquet learning curve per seed, `<out>/<env>/<algo>/seed_<k>.parquet`.

Each file holds one row per evaluation and, in the Parquet schema metadata under the key
`qsmbench`, a JSON document with the full config, provenance and the run's status. Files are
rewritten after every evaluation through a temporary file and an atomic rename, so a run killed
at any moment leaves valid files that hold every completed evaluation.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qsmbench.config import ConfigError

METADATA_KEY = b"qsmbench"
SCHEMA_VERSION = 1
STATUSES = ("running", "complete", "failed", "interrupted")


def path_safe(env_id: str) -> str:
    """`dm_control/cheetah-run-v0` -> `dm_control-cheetah-run-v0`: one directory level per env."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", env_id)


def run_path(out: str | Path, env_id: str, algo: str, seed: int) -> Path:
    return Path(out) / path_safe(env_id) / algo / f"seed_{seed}.parquet"


def write_run(path: Path, rows: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    """Atomically replace `path` with a Parquet file of `rows` and `metadata`."""
    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    document = json.dumps({"schema_version": SCHEMA_VERSION, **metadata}, default=str)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: document.encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:  # also Ctrl-C mid-write: leave no debris, and the old file untouched
        temporary.unlink(missing_ok=True)
        raise


def read_run(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The learning curve and the metadata document of one run file."""
    table = pq.read_table(path)
    document = (table.schema.metadata or {}).get(METADATA_KEY)
    if document is None:
        raise ValueError(f"{path} is not a qsmbench run file (no '{METADATA_KEY.decode()}' metadata)")
    return table.to_pandas(), json.loads(document)


def read_status(path: Path) -> str | None:
    """The stored status of a run file, None when there is none, 'unreadable' when it is damaged."""
    if not path.exists():
        return None
    try:
        metadata = pq.read_schema(path).metadata or {}
        return str(json.loads(metadata[METADATA_KEY])["status"])
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        return "unreadable"


def check_can_write(paths: list[Path], overwrite: bool) -> None:
    """Refuse to replace a complete run, or a file we cannot read, unless asked to.

    Incomplete runs (running, failed, interrupted) are simply redone.
    """
    if overwrite:
        return
    for path in paths:
        status = read_status(path)
        if status == "complete":
            raise ConfigError(f"{path} holds a complete run; pass --overwrite to replace it")
        if status == "unreadable":
            raise ConfigError(f"{path} exists but is not a readable qsmbench run file; pass --overwrite to replace it")


class RunFiles:
    """The files of one seed-batched run: one growing learning curve and one metadata document per seed."""

    def __init__(self, paths: list[Path], seeds: list[int], metadata: dict[str, Any]):
        self.paths, self.seeds, self.metadata = paths, seeds, metadata
        self.rows: list[list[dict[str, Any]]] = [[] for _ in seeds]

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Add one evaluation row per seed, in seed order."""
        for seed_rows, row in zip(self.rows, rows):
            seed_rows.append(row)

    def write(self, status: str, error: str | None = None) -> None:
        """Rewrite every seed's file with all rows so far and the given status."""
        assert status in STATUSES, status
        for path, seed, rows in zip(self.paths, self.seeds, self.rows):
            write_run(path, rows, {**self.metadata, "seed": seed, "status": status, "error": error})
