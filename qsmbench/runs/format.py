"""Run files: what one holds, defined here and nowhere else (qsmbench.runs.layout says where they go).

One Parquet file per seed, `<out>/<task>/<algo>/seed_<k>.parquet`, with one row per evaluation
(`EvalRow`) and, in the Parquet schema metadata under the key `qsmbench`, a JSON document
(`RunMetadata`: how the run was made, the seed, its status). Files are rewritten after every
evaluation through a temporary file and an atomic rename, so a run killed at any moment leaves
valid files that hold every completed evaluation.

Names: the *task* is what a run learns and what results are filed and grouped under (the
environment id online, the dataset id offline); the *environment id* is the Gymnasium id that
evaluation runs in. Schema 1 (qsmbench up to commit 155e41c) called both `env`: its rows' `env`
column held the task and its metadata's `env` key the environment id. Readers accept both schemas.

A file is read back only if every value of its metadata has the type `RunMetadata` gives it (`METADATA_TYPES`):
a hand-edited or foreign file with `seed: "zero"` is a RunFileError naming the value, which readers of a
results tree report with the file's name, instead of a crash somewhere later.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd

from qsmbench.algorithms import ALGORITHMS
from qsmbench.core.errors import RunFileError
from qsmbench.core.messages import quoted

METADATA_KEY = b"qsmbench"
# Run settings added after files were first written, with the value every older file was made with: a file
# without the key reads as having it (before update_every, every run made one update per environment step;
# before action_repeat, every agent step was one simulator step).
LEGACY_RUN_SETTINGS = {"update_every": 1, "action_repeat": 1}


def with_added_hyperparameters(algo: str, algo_config: Mapping[str, Any]) -> dict[str, Any]:
    """`algo_config` as a run file or checkpoint holds it, with every hyperparameter its algorithm gained after the
    file was written set to its default (as JSON reads it back). A setting is only ever added with a default that
    keeps the algorithm's behaviour from before it existed (docs/algorithms.md), so an older file was made with
    that value: its checkpoint resumes and its seeds pool in `plot` with a new run's, and it differs from a run
    that sets another value. Files of an algorithm this qsmbench does not register are left as they are."""
    if algo not in ALGORITHMS:
        return dict(algo_config)
    defaults = json.loads(json.dumps(dataclasses.asdict(ALGORITHMS[algo].config_cls())))
    return {**defaults, **algo_config}


SCHEMA_VERSION = 2
Status = Literal["running", "complete", "diverged", "failed", "interrupted"]
STATUSES: tuple[str, ...] = get_args(Status)
FINISHED = ("complete", "diverged")  # a seed with either status is a result, and training it again would repeat it
REQUIRED_COLUMNS = ("task", "algo", "seed", "step", "eval_return")
OFFLINE_SCORE = "eval_normalized_score"  # D4RL convention, 0-100
INTEGER_COLUMNS = ("seed", "step")  # the columns readers compute with: these hold whole numbers,
NUMERIC_COLUMNS = ("eval_return", "wall_time_s", OFFLINE_SCORE)  # and these numbers (checked by read_run)


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
        }

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
        check_types(document)
        header = {name: document.pop(name) for name in names if name in document}
        header["run_config"] = {**LEGACY_RUN_SETTINGS, **header.get("run_config", {})}
        if header.get("ref_scores") is not None:
            header["ref_scores"] = tuple(header["ref_scores"])
        seed, error = document.pop("seed"), document.pop("error", None)
        divergence = _divergence(document.pop("divergence", None), status)
        document.pop("status"), document.pop("schema_version", None)
        return cls(RunHeader(**header, provenance=document), seed, status, error, divergence)


def is_count(value: Any) -> bool:
    """A whole number >= 0 as JSON reads it back (a JSON `true` is a bool, not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_name(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def is_reference_pair(value: Any) -> bool:
    """A dataset's stored (random, expert) returns, or null for none."""
    return value is None or (isinstance(value, list) and len(value) == 2 and all(map(is_number, value)))


# Each stored value readers compute with: what it must be, and how a message says so. The provenance keys are
# only shown, so any JSON value does.
METADATA_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "algo": (is_name, "a name"),
    "task": (is_name, "a name"),
    "env_id": (is_name, "a name"),
    "dataset": (lambda value: value is None or is_name(value), "a name or null"),
    "variant": (lambda value: isinstance(value, str), "text"),
    "ref_scores": (is_reference_pair, "two numbers or null"),
    "run_config": (lambda value: isinstance(value, dict), "a JSON object"),
    "algo_config": (lambda value: isinstance(value, dict), "a JSON object"),
    "seed": (is_count, "a whole number"),
    "error": (lambda value: value is None or isinstance(value, str), "text or null"),
}


def check_types(document: Mapping[str, Any]) -> None:
    """RunFileError naming the first stored value that is not what METADATA_TYPES says: a file is refused when it
    is read, with its name, not where a later step (sorting, grouping, a seed check) trips over the value."""
    for name, (valid, expected) in METADATA_TYPES.items():
        if name in document and not valid(document[name]):
            raise RunFileError(f"its qsmbench metadata has {name} {quoted(document[name])}, not {expected}")


def _divergence(stored: Any, status: str) -> Divergence | None:
    if status != "diverged":
        return None
    if not (isinstance(stored, dict) and is_count(stored.get("step")) and is_name(stored.get("quantity"))):
        raise RunFileError(f"its status is diverged but it does not say where (divergence {quoted(stored)}, not a step and a quantity)")
    return Divergence(stored["step"], stored["quantity"])


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
