"""Results as data: every evaluation of every seed file under a directory, as one pandas DataFrame.

For notebooks and scripts (`qsmbench.runs.results.load("results")`): the run files are read and checked by
`qsmbench.runs.read.read_results`, as `qsmbench plot` reads them, so both see the same runs. Seed files of different
algorithms log different diagnostics; the frame has the union of them (NaN where a run has none), and its
columns come in one order whatever files are read, so code written against it keeps working as runs are
added.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from qsmbench.core.config import RUN_SETTING_NAMES
from qsmbench.runs.format import EvalRow, RunFile
from qsmbench.runs.read import read_results

RUN_PREFIX = "run."  # run settings (Protocol and Execution: steps, eval_every, ...), e.g. `run.steps`
HYPERPARAMETER_PREFIX = "hp."  # the algorithm's effective hyperparameters, e.g. `hp.batch_size`
IDENTITY_COLUMNS = ("task", "algo", "variant", "seed", "status", "env_id", "dataset")
CURVE_COLUMNS = tuple(f.name for f in dataclasses.fields(EvalRow) if f.name not in ("diagnostics", *IDENTITY_COLUMNS))


class SkippedRunFileWarning(UserWarning):
    """A file under the results directory that `load` left out, and why."""


def load(results_dir: str | Path) -> pd.DataFrame:
    """One row per evaluation of every usable seed file under `results_dir` (at any depth).

    Columns, in this order: what the run is (task, algo, variant, seed, status, env_id, dataset); the
    learning curve (step, eval_return, ... as in the run files); the algorithms' diagnostics, the union
    over the files, sorted by name; the run settings as `run.<name>` (Protocol, then Execution order); the
    hyperparameters as `hp.<name>`, sorted by name (tuples such as hidden_sizes stay tuples). A value a
    run does not have is NaN. Files that cannot be used are skipped with a SkippedRunFileWarning each;
    ConfigError (one line) when none can be used.
    """
    tree = read_results(Path(results_dir))
    for message in tree.warnings:
        warnings.warn(message, SkippedRunFileWarning, stacklevel=2)
    frame = pd.concat([run_frame(run) for run in tree.runs], ignore_index=True, sort=False)
    return frame[column_order(frame.columns)]


def run_frame(run: RunFile) -> pd.DataFrame:
    """One seed file's rows with what the file says about the run as constant columns."""
    header = run.metadata.header
    identity = {"task": run.task, "algo": run.algo, "variant": header.variant, "seed": run.seed,
                "status": run.status, "env_id": header.env_id, "dataset": header.dataset}
    constants = {**identity, **prefixed(RUN_PREFIX, header.run_config), **prefixed(HYPERPARAMETER_PREFIX, header.algo_config)}
    curve = run.curve.drop(columns=[name for name in identity if name in run.curve.columns])
    return curve.assign(**{name: [value] * len(curve) for name, value in constants.items()})


def prefixed(prefix: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """`{"hidden_sizes": [256, 256]}` -> `{"hp.hidden_sizes": (256, 256)}`: JSON lists back as the tuples
    the configs hold, hashable for groupby."""
    return {f"{prefix}{key}": tuple(value) if isinstance(value, list) else value for key, value in settings.items()}


def column_order(columns: pd.Index) -> list[str]:
    """Identity, curve, diagnostics (sorted), run settings (Protocol, then Execution order, then any others sorted),
    hyperparameters (sorted): an order that depends only on which columns exist."""
    present = set(columns)
    run_known = [f"{RUN_PREFIX}{name}" for name in RUN_SETTING_NAMES]
    fixed = [name for name in (*IDENTITY_COLUMNS, *CURVE_COLUMNS) if name in present]
    run_settings = [name for name in run_known if name in present]
    run_settings += sorted(name for name in present if name.startswith(RUN_PREFIX) and name not in run_known)
    hyperparameters = sorted(name for name in present if name.startswith(HYPERPARAMETER_PREFIX))
    diagnostics = sorted(present - {*fixed, *run_settings, *hyperparameters})
    return [*fixed, *diagnostics, *run_settings, *hyperparameters]
