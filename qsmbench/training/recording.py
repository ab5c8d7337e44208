"""Where a run's results go: at each evaluation one `EvalRow` per live seed into the run files, the tracker and
the reporter; a true status in the files on every way out; and the run's clock, so that `sps` counts training
only (evaluations, checkpoints and restores left out)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsmbench.envs.datasets import OfflineDataset
from qsmbench.runs.format import Divergence, EvalRow, RunHeader, Status
from qsmbench.runs.spec import RunSpec
from qsmbench.runs.write import RunFiles
from qsmbench.training.progress import Reporter
from qsmbench.training.tracking import NoTracker, Tracker, row_scalars, seed_scalars

RESUME_KEYS = ("hostname", "device", "git_commit", "start_time")  # what each resume records in the files


@dataclass(frozen=True)
class Interval:
    """The training between two evaluations, timed when the second one starts."""

    steps: int
    train_seconds: float
    eval_start: float


class Recorder:
    """The run files of one run with the tracker and reporter that follow them, and the run's clock."""

    def __init__(self, spec: RunSpec, files: RunFiles, reporter: Reporter, dataset: OfflineDataset | None):
        self.spec, self.files, self.reporter, self.dataset = spec, files, reporter, dataset
        self.tracker: Tracker = NoTracker()  # replaced by --track's once the run is built and restored
        self.last_eval_step = 0
        self.started = self.interval_start = time.perf_counter()

    def end_interval(self, step: int) -> Interval:
        """Stop the training clock at the evaluation of `step`."""
        now = time.perf_counter()
        interval = Interval(step - self.last_eval_step, now - self.interval_start, now)
        self.last_eval_step = step
        return interval

    def record_evaluation(
        self,
        step: int,
        interval: Interval,
        returns: np.ndarray,
        live: np.ndarray,
        diagnostics: dict[str, np.ndarray],
        train_returns: list[list[float]] | None,
        divergences: list[Divergence | None],
    ) -> None:
        """One row per live seed -> the files (status running), the tracker, the reporter; then the clock restarts."""
        seeds = self.spec.protocol.seed_values
        train_returns = train_returns or [[] for _ in seeds]
        normalized = self.dataset.normalized_score(returns.mean(axis=1)) if self.dataset else None
        rows = [
            EvalRow(
                task=self.spec.protocol.task,
                algo=self.spec.algo,
                seed=seed,
                step=step,
                eval_return=float(returns[k].mean()),
                eval_return_std=float(returns[k].std()),
                train_return=float(np.mean(train_returns[k])) if train_returns[k] else float("nan"),
                train_episodes=len(train_returns[k]),
                wall_time_s=interval.eval_start - self.started,
                sps=interval.steps / interval.train_seconds if interval.steps else float("nan"),
                eval_normalized_score=float(normalized[k]) if normalized is not None else None,
                diagnostics={name: float(values[k]) for name, values in diagnostics.items()},
            )
            for k, seed in enumerate(seeds)
            if live[k]
        ]
        self.files.append(rows)
        self.write("running", divergences)
        self.tracker.log_scalars(step, {tag: value for row in rows for tag, value in row_scalars(row).items()})
        self.reporter.evaluated(step, np.where(live, returns.mean(axis=1), np.nan))
        self.interval_start = time.perf_counter()

    def track_diagnostics(self, step: int, means: dict[str, np.ndarray], live: np.ndarray) -> None:
        """The live seeds' diagnostic means since the last call, to the tracker."""
        scalars: dict[str, float] = {}
        for k, seed in enumerate(self.spec.protocol.seed_values):
            if live[k]:
                scalars |= seed_scalars(seed, {name: values[k] for name, values in means.items()}, "diagnostics/")
        if scalars:
            self.tracker.log_scalars(step, scalars)

    def write(self, status: Status, divergences: list[Divergence | None], error: str | None = None) -> None:
        """Rewrite the files with `status`; the seeds that diverged say so instead."""
        self.files.write(status, error, divergences)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside counts neither as training (sps) nor as evaluation: a checkpoint's write."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.interval_start += time.perf_counter() - started

    def close(self) -> None:
        self.reporter.close()
        self.tracker.close()

    def state_dict(self) -> dict[str, Any]:
        """Named as a checkpoint's document stores them."""
        return {
            "provenance": self.files.header.provenance,
            "rows": [[dataclasses.asdict(row) for row in rows] for rows in self.files.rows],
            "last_eval_step": self.last_eval_step,
            "elapsed_s": time.perf_counter() - self.started,
        }

    def load_state_dict(self, state: dict[str, Any], step: int) -> None:
        """Go on from a checkpoint at `step`: its rows and clock, and its start's provenance with this resume added."""
        self.files.rows = [[EvalRow(**row) for row in rows] for rows in state["rows"]]
        self.last_eval_step = int(state["last_eval_step"])
        self.interval_start = time.perf_counter()  # sps leaves out the restore, as it does evaluation
        self.started = self.interval_start - float(state["elapsed_s"])
        self.files.header = self._resumed_header(state["provenance"], step)
        self.reporter.advance(step)

    def _resumed_header(self, started: dict[str, Any], step: int) -> RunHeader:
        """This run's header with the provenance of the run's start and a list of its resumes (step, host,
        device, commit, time): the files tell the run's whole story."""
        now = self.files.header.provenance
        resume = {"step": step, **{key: now.get(key) for key in RESUME_KEYS}}
        provenance = {**started, "resumes": [*started.get("resumes", []), resume]}
        return dataclasses.replace(self.files.header, provenance=provenance)
