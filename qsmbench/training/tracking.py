"""Experiment tracking (`run --track tensorboard|wandb`): a copy of what a run records, for live dashboards.

The run files stay the record of a run; a tracker only receives the same numbers, so tracking can never
change a result. One tracker per run (all seeds of a run are one process), with per-seed tags:

    seed_<k>/<column>               at each evaluation: the run file's row (returns, sps, the diagnostics'
                                    means since the previous evaluation, ...)
    seed_<k>/diagnostics/<name>     every `--track-every` steps: the diagnostics' means over those steps

and the run's header (run and algorithm config, provenance) once, as TensorBoard text or W&B config.
TensorBoard writes under `<out>/_tensorboard/<task>/<algo>[.<variant>]/seeds_<first>-<last>`; a resumed run purges the
steps after its checkpoint there, so the curves go on without the steps it redoes (the diagnostics' sum for
the tracker is not in the checkpoint: the first means after a resume cover the steps since it). W&B follows its own
settings (WANDB_MODE, WANDB_DIR, WANDB_PROJECT, default project "qsmbench"); each start or resume of a run
is one W&B run, grouped by task and algorithm.

Both packages are optional (`pip install 'qsmbench[track]'`) and imported only by a run that asks for them.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from qsmbench.core.errors import ConfigError
from qsmbench.runs.format import EvalRow
from qsmbench.runs.layout import tensorboard_dir

ROW_KEYS = ("task", "algo", "seed", "step")  # what identifies a row: the tag and the step say it already


class Tracker(Protocol):
    def log_config(self, config: Mapping[str, Any]) -> None:
        """Record the run's settings and provenance, once per start of the process."""

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record `scalars` (tag -> value) at run step `step`; steps never go back within one tracker."""

    def close(self) -> None:
        """Flush and finish; called on every way a run ends."""


class NoTracker:
    """What a run without `--track` logs to: nothing."""

    def log_config(self, config: Mapping[str, Any]) -> None:
        pass

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker:
    """Event files in `log_dir`; `first_step` (0, or the step a run resumes from) purges later steps logged before."""

    def __init__(self, log_dir: Path, first_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.first_step = first_step
        self.writer = SummaryWriter(str(log_dir), purge_step=first_step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        text = json.dumps(config, indent=2, default=str)
        self.writer.add_text("config", f"```json\n{text}\n```", self.first_step)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run named after the run's algorithm, task and seeds."""

    def __init__(self, name: str, group: str):
        import wandb

        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "qsmbench"), name=name, group=group)
        except wandb.Error as error:
            raise ConfigError(f"--track wandb could not start a W&B run: {error}") from None

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(dict(config))

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log(dict(scalars), step=step)

    def close(self) -> None:
        self.run.finish()


def check_installed(tracker: str | None) -> None:
    """ConfigError (one line, before anything is written) when the package `tracker` needs is not installed."""
    if tracker is None:
        return
    try:
        importlib.import_module(tracker)  # each tracker's package is named after it
    except ImportError:
        raise ConfigError(f"--track {tracker} needs the {tracker} package: pip install 'qsmbench[track]'") from None


def make_tracker(tracker: str | None, run_dir: Path, out: Path, seeds: list[int], first_step: int) -> Tracker:
    """The tracker `tracker` names (None: NoTracker) for the seeds `seeds` of the run in `run_dir` under `out`."""
    if tracker == "tensorboard":
        return TensorBoardTracker(tensorboard_dir(out, run_dir, seeds), first_step)
    if tracker == "wandb":
        group = run_dir.relative_to(out).as_posix()  # <task>/<algo>
        return WandbTracker(name=f"{group} seeds_{seeds[0]}-{seeds[-1]}", group=group)
    return NoTracker()


def row_scalars(row: EvalRow) -> dict[str, float]:
    """A run-file row as tags `seed_<k>/<column>`; values that are not there (None, NaN) are left out."""
    values = {key: value for key, value in dataclasses.asdict(row).items() if key not in (*ROW_KEYS, "diagnostics")}
    return seed_scalars(row.seed, {**values, **row.diagnostics})


def seed_scalars(seed: int, values: Mapping[str, float | int | None], prefix: str = "") -> dict[str, float]:
    """`values` of seed `seed` as tags `seed_<seed>/<prefix><name>`, without None and NaN."""
    return {
        f"seed_{seed}/{prefix}{name}": float(value)
        for name, value in values.items()
        if value is not None and not math.isnan(value)
    }
